"""Tests for the masked convolution layers (`keras_lth/layers/convolutional.py`).

Every class is checked against the stock Keras layer it extends: same weights
plus one ones-initialised mask per prunable weight; pruning with `set_mask`
stores the pruned entries as exact zeros, so the output is the stock output
once the mask is folded into the weight; exactly zero gradients at pruned
positions; pruned weights that stay exactly zero under Adam or SGD with
momentum and weight decay, also when pruned mid-training with
`keras_lth.set_masks`; and lossless serialization.
"""

import dataclasses

import keras
import numpy as np
import pytest

import keras_lth
from keras_lth.layers import MaskedConv1D
from keras_lth.layers import MaskedConv1DTranspose
from keras_lth.layers import MaskedConv2D
from keras_lth.layers import MaskedConv2DTranspose
from keras_lth.layers import MaskedConv3D
from keras_lth.layers import MaskedConv3DTranspose
from keras_lth.layers import MaskedDepthwiseConv1D
from keras_lth.layers import MaskedDepthwiseConv2D
from keras_lth.layers import MaskedSeparableConv1D
from keras_lth.layers import MaskedSeparableConv2D

requires_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="uses tf.GradientTape",
)


@dataclasses.dataclass(frozen=True)
class Case:
    masked: type
    stock: type
    kwargs: dict
    input_shape: tuple
    prunable: tuple = ("kernel",)


SEPARABLE = ("depthwise_kernel", "pointwise_kernel")

CASES = [
    Case(
        MaskedConv1D, keras.layers.Conv1D, {"filters": 3, "kernel_size": 2}, (2, 5, 2)
    ),
    Case(
        MaskedConv2D,
        keras.layers.Conv2D,
        {"filters": 3, "kernel_size": 2},
        (2, 5, 5, 2),
    ),
    Case(
        MaskedConv3D,
        keras.layers.Conv3D,
        {"filters": 3, "kernel_size": 2},
        (2, 4, 4, 4, 2),
    ),
    Case(
        MaskedConv1DTranspose,
        keras.layers.Conv1DTranspose,
        {"filters": 3, "kernel_size": 2, "strides": 2},
        (2, 4, 2),
    ),
    Case(
        MaskedConv2DTranspose,
        keras.layers.Conv2DTranspose,
        {"filters": 3, "kernel_size": 2, "strides": 2},
        (2, 3, 3, 2),
    ),
    Case(
        MaskedConv3DTranspose,
        keras.layers.Conv3DTranspose,
        {"filters": 3, "kernel_size": 2, "strides": 2},
        (2, 3, 3, 3, 2),
    ),
    Case(
        MaskedDepthwiseConv1D,
        keras.layers.DepthwiseConv1D,
        {"kernel_size": 2, "depth_multiplier": 2},
        (2, 5, 2),
    ),
    Case(
        MaskedDepthwiseConv2D,
        keras.layers.DepthwiseConv2D,
        {"kernel_size": 2, "depth_multiplier": 2},
        (2, 5, 5, 2),
    ),
    Case(
        MaskedSeparableConv1D,
        keras.layers.SeparableConv1D,
        {"filters": 3, "kernel_size": 2, "depth_multiplier": 2},
        (2, 5, 2),
        SEPARABLE,
    ),
    Case(
        MaskedSeparableConv2D,
        keras.layers.SeparableConv2D,
        {"filters": 3, "kernel_size": 2, "depth_multiplier": 2},
        (2, 5, 5, 2),
        SEPARABLE,
    ),
]

# Arguments that change the code path in `call`: causal padding, strides,
# groups, channels_first, output_padding, dilation, activation, no bias.
VARIANTS = [
    Case(
        MaskedConv1D,
        keras.layers.Conv1D,
        {"filters": 3, "kernel_size": 3, "padding": "causal", "dilation_rate": 2},
        (2, 7, 2),
    ),
    Case(
        MaskedConv2D,
        keras.layers.Conv2D,
        {
            "filters": 3,
            "kernel_size": 3,
            "strides": 2,
            "padding": "same",
            "activation": "relu",
        },
        (2, 6, 6, 2),
    ),
    Case(
        MaskedConv2D,
        keras.layers.Conv2D,
        {"filters": 4, "kernel_size": 2, "groups": 2},
        (2, 4, 4, 4),
    ),
    Case(
        MaskedConv2D,
        keras.layers.Conv2D,
        {"filters": 3, "kernel_size": 2, "data_format": "channels_first"},
        (2, 2, 5, 5),
    ),
    Case(
        MaskedConv3D,
        keras.layers.Conv3D,
        {"filters": 3, "kernel_size": 2, "use_bias": False},
        (2, 3, 3, 3, 2),
    ),
    Case(
        MaskedConv2DTranspose,
        keras.layers.Conv2DTranspose,
        {
            "filters": 2,
            "kernel_size": 3,
            "strides": 2,
            "padding": "same",
            "output_padding": 1,
        },
        (2, 3, 3, 2),
    ),
    Case(
        MaskedConv2DTranspose,
        keras.layers.Conv2DTranspose,
        {"filters": 2, "kernel_size": 2, "data_format": "channels_first"},
        (2, 3, 4, 4),
    ),
    Case(
        MaskedDepthwiseConv2D,
        keras.layers.DepthwiseConv2D,
        {"kernel_size": 2, "strides": 2, "data_format": "channels_first"},
        (2, 3, 5, 5),
    ),
    Case(
        MaskedSeparableConv2D,
        keras.layers.SeparableConv2D,
        {
            "filters": 3,
            "kernel_size": 2,
            "dilation_rate": 2,
            "data_format": "channels_first",
            "activation": "tanh",
        },
        (2, 2, 5, 5),
        SEPARABLE,
    ),
]


def _case_id(case):
    return case.stock.__name__


def _variant_id(case):
    extras = "-".join(
        f"{key}={value}"
        for key, value in case.kwargs.items()
        if key not in ("filters", "kernel_size")
    )
    return f"{case.stock.__name__}-{extras}"


cases = pytest.mark.parametrize("case", CASES, ids=_case_id)


def _variable(layer, name):
    matches = [v for v in layer.weights if v.name == name]
    assert len(matches) == 1, [v.name for v in layer.weights]
    return matches[0]


def _build(case):
    layer = case.masked(**case.kwargs)
    layer.build(case.input_shape)
    return layer


def _inputs(case, rng):
    return rng.normal(size=case.input_shape).astype("float32")


def _random_mask(shape, rng):
    mask = (rng.random(shape) < 0.5).astype("float32")
    mask.flat[0] = 0.0
    mask.flat[-1] = 1.0
    return mask


def _randomize_weights(layer, rng):
    """Gives every stock weight (bias included) random nonzero values."""
    for variable in layer.trainable_weights:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))


def _prune_randomly(layer, case, rng):
    """Prunes every prunable weight at random with `set_mask`.

    Returns the masks and the weights as they were just before pruning, after
    checking that `set_mask` stored the pruned entries as exact zeros.
    """
    dense = {name: np.asarray(layer.prunable_variable(name)) for name in case.prunable}
    masks = {}
    for name in case.prunable:
        masks[name] = _random_mask(tuple(layer.mask_variable(name).shape), rng)
        layer.set_mask(name, masks[name])
    for name, mask in masks.items():
        stored = np.asarray(layer.prunable_variable(name))
        np.testing.assert_array_equal(np.asarray(layer.mask_variable(name)), mask)
        np.testing.assert_array_equal(stored, dense[name] * mask)
        assert np.all(stored[mask == 0] == 0.0), name
    return masks, dense


def _stock_holding(case, layer, values=None):
    """A stock layer holding the masked layer's stored weights.

    `values` maps weight names to arrays to hold instead.
    """
    values = values or {}
    stock = case.stock(**case.kwargs)
    stock.build(case.input_shape)
    stock.set_weights(
        [
            values.get(v.name, np.asarray(_variable(layer, v.name)))
            for v in stock.weights
        ]
    )
    return stock


# Weights.


@cases
def test_weights_are_the_stock_weights_plus_one_mask_each(case):
    layer = _build(case)
    stock = case.stock(**case.kwargs)
    stock.build(case.input_shape)

    stock_shapes = {v.name: tuple(v.shape) for v in stock.weights}
    assert {v.name: tuple(v.shape) for v in layer.trainable_weights} == stock_shapes
    assert len(layer.trainable_weights) == len(stock.trainable_weights)
    assert sorted(v.name for v in layer.non_trainable_weights) == sorted(
        f"{name}_mask" for name in case.prunable
    )
    assert len(layer.weights) == len(stock.weights) + len(case.prunable)

    for name in case.prunable:
        weight = _variable(layer, name)
        mask = _variable(layer, f"{name}_mask")
        assert layer.mask_variable(name) is mask
        assert layer.prunable_variable(name) is weight
        assert mask.path == f"{layer.name}/{name}_mask"
        assert not mask.trainable
        assert tuple(mask.shape) == tuple(weight.shape)
        assert mask.dtype == weight.dtype == "float32"
        np.testing.assert_array_equal(np.asarray(mask), np.ones(weight.shape))


# Mask application.


@pytest.mark.parametrize("case", CASES + VARIANTS, ids=_variant_id)
def test_output_equals_stock_layer_with_masked_weights(case):
    rng = np.random.default_rng(0)
    layer = _build(case)
    _randomize_weights(layer, rng)
    x = _inputs(case, rng)

    dense_output = np.asarray(layer(x))
    np.testing.assert_array_equal(
        dense_output, np.asarray(_stock_holding(case, layer)(x))
    )

    masks, dense = _prune_randomly(layer, case, rng)
    # The stock layer holds `weight * mask` computed from the weights as they
    # were before pruning, not from what `set_mask` stored.
    folded = {name: dense[name] * mask for name, mask in masks.items()}
    pruned_stock = _stock_holding(case, layer, folded)
    pruned_output = np.asarray(layer(x))
    np.testing.assert_array_equal(pruned_output, np.asarray(pruned_stock(x)))
    assert not np.array_equal(pruned_output, dense_output)
    for name in masks:
        np.testing.assert_array_equal(
            np.asarray(layer.masked_weight(name)), folded[name]
        )


# Gradients.


@requires_tensorflow
@cases
def test_gradient_is_exactly_zero_at_pruned_positions(case):
    import tensorflow as tf

    rng = np.random.default_rng(2)
    layer = _build(case)
    _randomize_weights(layer, rng)
    masks, _ = _prune_randomly(layer, case, rng)
    x = _inputs(case, rng)
    upstream = rng.normal(size=layer(x).shape).astype("float32")
    stock = _stock_holding(case, layer)

    def gradients(layer):
        weights = [_variable(layer, name) for name in case.prunable]
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) * upstream)
        return [
            np.asarray(tf.convert_to_tensor(g)) for g in tape.gradient(loss, weights)
        ]

    for name, gradient, stock_gradient in zip(
        case.prunable, gradients(layer), gradients(stock)
    ):
        mask = masks[name]
        assert gradient.shape == mask.shape
        assert np.all(gradient[mask == 0] == 0.0), name
        assert np.any(gradient[mask == 1] != 0.0), name
        # Kept entries get the gradient the stock layer would give them.
        np.testing.assert_array_equal(gradient, stock_gradient * mask)


# No regrowth during training.


def _optimizer(name):
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=1e-2)
    return keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, weight_decay=1e-2)


def _slots(optimizer, variable):
    """The per-entry slots (momentum, Adam's moments) of `variable`.

    Found through the optimizer's own index of its variables, not by name,
    so that the test does not share `keras_lth.set_masks`'s way of finding them.
    """
    index = optimizer._get_variable_index(variable)
    if isinstance(optimizer, keras.optimizers.Adam):
        return [optimizer._momentums[index], optimizer._velocities[index]]
    return [optimizer.momentums[index]]


def _prune_half_of_the_rest(mask, rng):
    """`mask` with half of its kept entries (at least one) pruned too."""
    kept = np.flatnonzero(mask)
    assert len(kept) >= 2
    more = mask.copy()
    more.flat[rng.choice(kept, size=len(kept) // 2, replace=False)] = 0.0
    return more


def _assert_pruned_entries_stayed_zero(layer, masks, before):
    for name, mask in masks.items():
        pruned = mask == 0
        weight = np.asarray(layer.prunable_variable(name))
        np.testing.assert_array_equal(np.asarray(layer.mask_variable(name)), mask)
        assert np.all(weight[pruned] == 0.0), name
        assert np.all(np.asarray(layer.masked_weight(name))[pruned] == 0.0), name
        # Training happened on the kept entries.
        assert np.any(weight[~pruned] != before[name][~pruned]), name


@pytest.mark.parametrize("optimizer", ["adam", "sgd_momentum_weight_decay"])
@cases
def test_pruned_weights_never_grow_back(case, optimizer):
    rng = np.random.default_rng(3)
    layer = case.masked(**case.kwargs)
    model = keras.Sequential([keras.Input(case.input_shape[1:]), layer])
    _randomize_weights(layer, rng)
    x = rng.normal(size=(4, *case.input_shape[1:])).astype("float32")
    y = rng.normal(size=model(x).shape).astype("float32")

    def stored():
        return {n: np.asarray(layer.prunable_variable(n)) for n in case.prunable}

    def fit():
        model.fit(x, y, batch_size=2, shuffle=False, verbose=0)  # 2 steps.

    # Pruned before training: the optimizer has no slots yet.
    masks, _ = _prune_randomly(layer, case, rng)
    model.compile(optimizer=_optimizer(optimizer), loss="mse")
    before = stored()
    fit()
    _assert_pruned_entries_stayed_zero(layer, masks, before)

    # Pruned further after training, when the slots of the entries about to
    # be pruned hold nonzero moments: `set_masks` zeroes them too.
    slots = {n: _slots(model.optimizer, layer.prunable_variable(n)) for n in masks}
    more = {n: _prune_half_of_the_rest(mask, rng) for n, mask in masks.items()}
    slots_before = {n: [np.asarray(s) for s in slots[n]] for n in masks}
    for name, mask in more.items():
        newly_pruned = (masks[name] == 1) & (mask == 0)
        assert np.any(newly_pruned), name
        # (Not all of them: a pointwise entry fed by a pruned depthwise
        # channel never had a gradient.)
        for slot in slots_before[name]:
            assert np.any(slot[newly_pruned] != 0.0), name
    keras_lth.set_masks(model, {f"{layer.name}/{n}": m for n, m in more.items()})
    for name, mask in more.items():
        for slot, slot_before in zip(slots[name], slots_before[name]):
            np.testing.assert_array_equal(np.asarray(slot), slot_before * mask)
        assert np.all(np.asarray(layer.prunable_variable(name))[mask == 0] == 0.0)
    before = stored()
    fit()
    _assert_pruned_entries_stayed_zero(layer, more, before)
    for name, mask in more.items():
        for slot in slots[name]:
            assert np.all(np.asarray(slot)[mask == 0] == 0.0), name

    # The stored weights are the effective ones.
    stock = _stock_holding(case, layer)
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(stock(x)))


# Serialization.


@cases
def test_config_round_trip(case):
    layer = case.masked(**case.kwargs)
    config = layer.get_config()

    clone = case.masked.from_config(config)
    assert type(clone) is case.masked
    assert clone.get_config() == config

    # Constructor arguments only, exactly those of the stock layer.
    stock_config = case.stock(**case.kwargs).get_config()
    stock_config.pop("name")
    assert {k: v for k, v in config.items() if k != "name"} == stock_config


@cases
def test_keras_file_round_trip_without_custom_objects(case, tmp_path):
    rng = np.random.default_rng(4)
    model = keras.Sequential(
        [keras.Input(case.input_shape[1:]), case.masked(**case.kwargs)]
    )
    layer = model.layers[0]
    _randomize_weights(layer, rng)
    masks, _ = _prune_randomly(layer, case, rng)
    x = _inputs(case, rng)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)

    loaded_layer = loaded.layers[0]
    assert type(loaded_layer) is case.masked
    assert loaded_layer.get_config() == layer.get_config()
    assert [v.name for v in loaded_layer.weights] == [v.name for v in layer.weights]
    for original, restored in zip(layer.weights, loaded_layer.weights):
        assert restored.trainable == original.trainable
        np.testing.assert_array_equal(np.asarray(restored), np.asarray(original))
    for name, mask in masks.items():
        np.testing.assert_array_equal(
            np.asarray(loaded_layer.mask_variable(name)), mask
        )
        loaded_weight = np.asarray(loaded_layer.prunable_variable(name))
        assert np.all(loaded_weight[mask == 0] == 0.0), name
        assert np.all(loaded_weight[mask == 1] != 0.0), name
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


# Arguments of the stock layer that the masked twin must accept too.


def test_lora_rank_is_accepted():
    rng = np.random.default_rng(5)
    kwargs = {"filters": 3, "kernel_size": 2, "lora_rank": 2}
    layer = MaskedConv2D(**kwargs)
    layer.build((2, 5, 5, 2))
    assert tuple(layer.kernel_mask.shape) == (2, 2, 2, 3)
    np.testing.assert_array_equal(np.asarray(layer.kernel_mask), np.ones((2, 2, 2, 3)))

    stock = keras.layers.Conv2D(**kwargs)
    stock.build((2, 5, 5, 2))
    stock.set_weights([np.asarray(_variable(layer, v.name)) for v in stock.weights])
    x = rng.normal(size=(2, 5, 5, 2)).astype("float32")
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(stock(x)))


def test_lora_update_is_masked_in_call():
    # With LoRA the effective kernel is `kernel + scale * a @ b`, and the
    # low-rank part is not stored in the kernel: it is nonzero at pruned
    # entries, so `masked_weight` multiplies by the mask instead.
    rng = np.random.default_rng(6)
    case = CASES[1]
    assert case.masked is MaskedConv2D
    layer = MaskedConv2D(**case.kwargs, lora_rank=2)
    layer.build(case.input_shape)
    assert layer.lora_enabled
    _randomize_weights(layer, rng)  # The bias and both LoRA factors.
    kernel = _variable(layer, "kernel")
    kernel.assign(rng.normal(size=kernel.shape).astype("float32"))
    masks, _ = _prune_randomly(layer, case, rng)
    mask = masks["kernel"]

    effective = np.asarray(layer.kernel)
    assert np.all(effective[mask == 0] != 0.0)
    np.testing.assert_array_equal(
        np.asarray(layer.masked_weight("kernel")), effective * mask
    )
    x = _inputs(case, rng)
    stock = _stock_holding(case, layer, {"kernel": effective * mask})
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(stock(x)))
