"""Tests for `MaskedDense` and `MaskedEinsumDense` (`keras_lth/layers/dense.py`).

What every masked class promises (weights, masks, output, gradients, no
regrowth in training, serialization, LoRA) is tested for both classes by the
generic tests in `test_base.py`. Here: the arguments that change the code path
in `call`, checked against the stock layer the same way.
"""

from tests.layers import _cases
from tests.layers._cases import Case

VARIANTS = [
    # An activation, on inputs of rank 3.
    Case("Dense", {"units": 3, "activation": "relu"}, (2, 5, 4)),
    Case("Dense", {"units": 3, "use_bias": False}, (2, 4)),
    # A partly unknown output shape, an activation, no bias.
    Case(
        "EinsumDense",
        {"equation": "abc,cd->abd", "output_shape": (None, 3), "activation": "tanh"},
        (2, 5, 4),
    ),
]


@_cases.parametrize_cases(VARIANTS)
def test_output_and_config_match_the_stock_layer(case):
    _cases.check_output_equals_stock_layer_with_masked_weights(case)
    _cases.check_config_round_trip(case)
