"""Tests for the masked convolution layers (`keras_lth/layers/convolutional.py`).

What every masked class promises (weights, masks, output, gradients, no
regrowth in training, serialization, LoRA) is tested for every convolution
by the generic tests in `test_base.py`. Here: the arguments that change the
code path in `call`, checked against the stock layer the same way.
"""

from tests import _capabilities
from tests.layers import _cases
from tests.layers._cases import SEPARABLE
from tests.layers._cases import Case


def _conv(name, input_shape, initializers=_cases.KERNEL, **kwargs):
    """A case of `name` with 3 filters of size 2, unless `kwargs` say otherwise."""
    arguments = {"filters": 3, "kernel_size": 2, **kwargs}
    return Case(name, arguments, input_shape, initializers)


# Causal padding, strides, groups, channels_first, output_padding, dilation,
# activation, no bias.
VARIANTS = [
    _conv("Conv1D", (2, 7, 2), kernel_size=3, padding="causal", dilation_rate=2),
    _conv(
        "Conv2D",
        (2, 6, 6, 2),
        kernel_size=3,
        strides=2,
        padding="same",
        activation="relu",
    ),
    _conv("Conv2D", (2, 4, 4, 4), filters=4, groups=2),
    _conv("Conv2D", (2, 2, 5, 5), data_format="channels_first"),
    _conv("Conv3D", (2, 3, 3, 3, 2), use_bias=False),
    _conv(
        "Conv2DTranspose",
        (2, 3, 3, 2),
        filters=2,
        kernel_size=3,
        strides=2,
        padding="same",
        output_padding=1,
    ),
    # `valid` padding: here output_padding=1 changes the output's shape.
    _conv("Conv2DTranspose", (2, 3, 3, 2), kernel_size=3, strides=2, output_padding=1),
    _conv("Conv2DTranspose", (2, 3, 4, 4), filters=2, data_format="channels_first"),
    Case(
        "DepthwiseConv2D",
        {"kernel_size": 2, "strides": 2, "data_format": "channels_first"},
        (2, 3, 5, 5),
        _cases.DEPTHWISE,
    ),
    _conv(
        "SeparableConv2D",
        (2, 2, 5, 5),
        SEPARABLE,
        dilation_rate=2,
        data_format="channels_first",
        activation="tanh",
    ),
]


@_cases.parametrize_cases(VARIANTS)
def test_output_and_config_match_the_stock_layer(case):
    _cases.check_config_round_trip(case)
    if case.kwargs.get("data_format") == "channels_first":
        # Not every machine runs it: see tests/_capabilities.py.
        _capabilities.require_channels_first(case.name)
    _cases.check_output_equals_stock_layer_with_masked_weights(case)
