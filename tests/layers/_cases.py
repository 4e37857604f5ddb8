"""The masked layer classes as test cases, and the helpers their tests share.

A `Case` is one masked class with small constructor arguments and an input
shape. The generic tests of the `MaskedLayer` contract in `test_base.py` run
on every case in `CASES`; the per-family test files add variants (arguments
that change the code path in `call`) and run the shared checks below on them.
"""

import dataclasses

import keras
import numpy as np
import pytest
from keras import ops

from keras_lth import layers

KERNEL = {"kernel": "kernel_initializer"}
DEPTHWISE = {"kernel": "depthwise_initializer"}
SEPARABLE = {
    "depthwise_kernel": "depthwise_initializer",
    "pointwise_kernel": "pointwise_initializer",
}


@dataclasses.dataclass(frozen=True)
class Case:
    """One masked layer class, with small arguments and an input shape.

    `name` is the stock class in `keras.layers`; its masked twin is
    `keras_lth.layers.Masked<name>`. `initializers` maps each prunable weight,
    in order, to the constructor argument that holds its initializer.
    """

    name: str
    kwargs: dict
    input_shape: tuple
    initializers: dict = dataclasses.field(default_factory=lambda: dict(KERNEL))
    # Integer inputs are indices into a table of `kwargs["input_dim"]` rows.
    input_dtype: str = "float32"
    # The stock layer takes `lora_rank`.
    lora: bool = False

    @property
    def masked(self):
        return getattr(layers, f"Masked{self.name}")

    @property
    def stock(self):
        return getattr(keras.layers, self.name)

    @property
    def prunable(self):
        return tuple(self.initializers)

    @property
    def trains_every_kept_entry(self):
        """Whether training gives every kept entry a nonzero gradient.

        Not so with two prunable weights in a chain (separable convolutions):
        a pointwise entry fed by a fully pruned depthwise channel, or a
        depthwise entry whose pointwise entries are all pruned, gets none.
        """
        return len(self.initializers) == 1

    def inputs(self, rng, batch=None):
        """Random inputs; for a table, every row is looked up at least once."""
        shape = (batch or self.input_shape[0], *self.input_shape[1:])
        if "input_dim" not in self.kwargs:
            return rng.normal(size=shape).astype(self.input_dtype)
        rows = np.arange(np.prod(shape)) % self.kwargs["input_dim"]
        assert len(rows) >= self.kwargs["input_dim"]
        return rng.permutation(rows).reshape(shape).astype(self.input_dtype)

    def keras_input(self):
        return keras.Input(self.input_shape[1:], dtype=self.input_dtype)


def case_id(case):
    """The class name and the arguments that tell its cases apart."""
    common = ("units", "filters", "kernel_size", "input_dim", "output_dim")
    extras = [f"{k}={v}" for k, v in case.kwargs.items() if k not in common]
    if "input_dim" in case.kwargs and case.input_dtype != "int32":
        extras.append(f"indices={case.input_dtype}")
    return "-".join([case.name, *extras])


def parametrize_cases(cases):
    return pytest.mark.parametrize("case", cases, ids=case_id)


_CONV = {"filters": 3, "kernel_size": 2}
_TRANSPOSE = {**_CONV, "strides": 2}
_DEPTHWISE = {"kernel_size": 2, "depth_multiplier": 2}
_SEPARABLE = {**_CONV, "depth_multiplier": 2}

# Every supported class once: what the package promises, written out by hand.
SUPPORTED = [
    Case("Dense", {"units": 3}, (2, 4), lora=True),
    Case(
        "EinsumDense",
        {"equation": "ab,bc->ac", "output_shape": 3, "bias_axes": "c"},
        (2, 4),
        lora=True,
    ),
    Case("Conv1D", _CONV, (2, 5, 2), lora=True),
    Case("Conv2D", _CONV, (2, 5, 5, 2), lora=True),
    Case("Conv3D", _CONV, (2, 4, 4, 4, 2), lora=True),
    Case("Conv1DTranspose", _TRANSPOSE, (2, 4, 2)),
    Case("Conv2DTranspose", _TRANSPOSE, (2, 3, 3, 2)),
    Case("Conv3DTranspose", _TRANSPOSE, (2, 3, 3, 3, 2)),
    Case("DepthwiseConv1D", _DEPTHWISE, (2, 5, 2), DEPTHWISE),
    Case("DepthwiseConv2D", _DEPTHWISE, (2, 5, 5, 2), DEPTHWISE),
    Case("SeparableConv1D", _SEPARABLE, (2, 5, 2), SEPARABLE),
    Case("SeparableConv2D", _SEPARABLE, (2, 5, 5, 2), SEPARABLE),
    Case(
        "Embedding",
        {"input_dim": 10, "output_dim": 4},
        (2, 6),
        {"embeddings": "embeddings_initializer"},
        input_dtype="int32",
        lora=True,
    ),
]
BY_NAME = {case.name: case for case in SUPPORTED}

# What the generic tests run on: every class, and EinsumDense once more with
# a 3-D kernel and a bias over one of two output axes.
CASES = [
    *SUPPORTED,
    Case(
        "EinsumDense",
        {"equation": "abc,cde->abde", "output_shape": (5, 2, 3), "bias_axes": "e"},
        (2, 5, 4),
        lora=True,
    ),
]
LORA_CASES = [case for case in CASES if case.lora]


# Layers and weights.


def variable(layer, name):
    """The layer's variable `name`, a mask or a weight."""
    matches = [v for v in layer.variables if v.name == name]
    assert len(matches) == 1, [v.name for v in layer.variables]
    return matches[0]


def build(case, **kwargs):
    """The built masked layer of `case`, with `kwargs` added to its own."""
    layer = case.masked(**case.kwargs, **kwargs)
    layer.build(case.input_shape)
    return layer


def random_mask(shape, rng, keep=0.5):
    """A random 0/1 mask that prunes its first entry and keeps its last."""
    mask = (rng.random(shape) < keep).astype("float32")
    mask.flat[0] = 0.0
    mask.flat[-1] = 1.0
    return mask


def randomize_weights(layer, rng):
    """Gives every trainable weight (bias included) random nonzero values."""
    for weight in layer.trainable_weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32"))


def prune_randomly(layer, case, rng):
    """Prunes every prunable weight at random with `set_mask`.

    Returns the masks and the weights as they were just before pruning, after
    checking that `set_mask` stored the pruned entries as exact zeros.
    """
    dense = {
        name: ops.convert_to_numpy(layer.prunable_variable(name))
        for name in case.prunable
    }
    masks = {}
    for name in case.prunable:
        masks[name] = random_mask(tuple(layer.mask_variable(name).shape), rng)
        layer.set_mask(name, masks[name])
    for name, mask in masks.items():
        stored = ops.convert_to_numpy(layer.prunable_variable(name))
        np.testing.assert_array_equal(
            ops.convert_to_numpy(layer.mask_variable(name)), mask
        )
        np.testing.assert_array_equal(stored, dense[name] * mask)
        assert np.all(stored[mask == 0] == 0.0), name
    return masks, dense


def stock_holding(case, layer, values=None, **kwargs):
    """A stock layer holding the masked layer's stored weights.

    `values` maps weight names to arrays to hold instead; `kwargs` are added
    to the case's constructor arguments.
    """
    values = values or {}
    stock = case.stock(**case.kwargs, **kwargs)
    stock.build(case.input_shape)
    stock.set_weights(
        [
            values.get(v.name, ops.convert_to_numpy(variable(layer, v.name)))
            for v in stock.weights
        ]
    )
    return stock


# Training.


def optimizer(name):
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=1e-2)
    return keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, weight_decay=1e-2)


OPTIMIZERS = pytest.mark.parametrize("optimizer", ["adam", "sgd_momentum_weight_decay"])


def slots(optimizer, variable):
    """The per-entry slots (momentum, Adam's moments) of `variable`.

    Found through the optimizer's own index of its variables, not by name,
    so that the test does not share `keras_lth.set_masks`'s way of finding them.
    """
    index = optimizer._get_variable_index(variable)
    if isinstance(optimizer, keras.optimizers.Adam):
        return [optimizer._momentums[index], optimizer._velocities[index]]
    return [optimizer.momentums[index]]


def prune_half_of_the_rest(mask, rng):
    """`mask` with half of its kept entries (at least one) pruned too."""
    kept = np.flatnonzero(mask)
    assert len(kept) >= 2
    more = mask.copy()
    more.flat[rng.choice(kept, size=len(kept) // 2, replace=False)] = 0.0
    return more


def assert_pruned_entries_stayed_zero(layer, masks, before):
    """After training: the masks as set, zeros where pruned, kept ones trained."""
    for name, mask in masks.items():
        pruned = mask == 0
        weight = ops.convert_to_numpy(layer.prunable_variable(name))
        np.testing.assert_array_equal(
            ops.convert_to_numpy(layer.mask_variable(name)), mask
        )
        assert np.all(weight[pruned] == 0.0), name
        assert np.all(ops.convert_to_numpy(layer.masked_weight(name))[pruned] == 0.0), (
            name
        )
        # Training happened on the kept entries.
        assert np.any(weight[~pruned] != before[name][~pruned]), name


# Checks that the generic tests and the per-family variants share.


def check_output_equals_stock_layer_with_masked_weights(case):
    rng = np.random.default_rng(0)
    layer = build(case)
    randomize_weights(layer, rng)
    x = case.inputs(rng)

    dense_output = ops.convert_to_numpy(layer(x))
    np.testing.assert_array_equal(
        dense_output, ops.convert_to_numpy(stock_holding(case, layer)(x))
    )

    masks, dense = prune_randomly(layer, case, rng)
    # The stock layer holds `weight * mask` computed from the weights as they
    # were before pruning, not from what `set_mask` stored.
    folded = {name: dense[name] * mask for name, mask in masks.items()}
    pruned_stock = stock_holding(case, layer, folded)
    pruned_output = ops.convert_to_numpy(layer(x))
    np.testing.assert_array_equal(pruned_output, ops.convert_to_numpy(pruned_stock(x)))
    assert not np.array_equal(pruned_output, dense_output)
    for name in masks:
        np.testing.assert_array_equal(
            ops.convert_to_numpy(layer.masked_weight(name)), folded[name]
        )


def check_config_round_trip(case):
    layer = case.masked(**case.kwargs)
    config = layer.get_config()

    clone = case.masked.from_config(config)
    assert type(clone) is case.masked
    assert clone.get_config() == config

    # Constructor arguments only, exactly those of the stock layer.
    stock_config = case.stock(**case.kwargs).get_config()
    stock_config.pop("name")
    assert {k: v for k, v in config.items() if k != "name"} == stock_config
