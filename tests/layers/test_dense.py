"""Tests for `MaskedDense` and `MaskedEinsumDense` (`keras_lth/layers/dense.py`).

Each class is checked against the stock Keras layer it extends: same weights
plus a ones-initialised `kernel_mask`, the stock output once the mask is
folded into the kernel, exactly zero gradients at pruned positions, no
regrowth under Adam or SGD with momentum and weight decay, and lossless
serialization.
"""

import dataclasses

import keras
import numpy as np
import pytest

from keras_lth.layers import MaskedDense
from keras_lth.layers import MaskedEinsumDense

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


CASES = [
    Case(MaskedDense, keras.layers.Dense, {"units": 3}, (2, 4)),
    Case(
        MaskedEinsumDense,
        keras.layers.EinsumDense,
        {"equation": "ab,bc->ac", "output_shape": 3, "bias_axes": "c"},
        (2, 4),
    ),
    # A 3-D kernel and a bias over one of two output axes.
    Case(
        MaskedEinsumDense,
        keras.layers.EinsumDense,
        {"equation": "abc,cde->abde", "output_shape": (5, 2, 3), "bias_axes": "e"},
        (2, 5, 4),
    ),
]

# Arguments that change the code path in `call`.
VARIANTS = [
    Case(
        MaskedDense, keras.layers.Dense, {"units": 3, "activation": "relu"}, (2, 5, 4)
    ),
    Case(MaskedDense, keras.layers.Dense, {"units": 3, "use_bias": False}, (2, 4)),
    Case(
        MaskedEinsumDense,
        keras.layers.EinsumDense,
        {"equation": "abc,cd->abd", "output_shape": (None, 3), "activation": "tanh"},
        (2, 5, 4),
    ),
]


def _case_id(case):
    if "equation" in case.kwargs:
        return f"{case.stock.__name__}-{case.kwargs['equation']}"
    return case.stock.__name__


def _variant_id(case):
    extras = "-".join(
        f"{key}={value}" for key, value in case.kwargs.items() if key != "units"
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
    masks = {}
    for name in case.prunable:
        masks[name] = _random_mask(tuple(layer.mask_variable(name).shape), rng)
        layer.mask_variable(name).assign(masks[name])
    return masks


def _stock_holding_effective_weights(case, layer, masks):
    """A stock layer whose weights are the masked layer's `weight * mask`."""
    stock = case.stock(**case.kwargs)
    stock.build(case.input_shape)
    values = []
    for variable in stock.weights:
        value = np.asarray(_variable(layer, variable.name))
        if variable.name in masks:
            value = value * masks[variable.name]
        values.append(value)
    stock.set_weights(values)
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

    dense_stock = _stock_holding_effective_weights(case, layer, {})
    dense_output = np.asarray(layer(x))
    np.testing.assert_array_equal(dense_output, np.asarray(dense_stock(x)))

    masks = _prune_randomly(layer, case, rng)
    pruned_stock = _stock_holding_effective_weights(case, layer, masks)
    pruned_output = np.asarray(layer(x))
    np.testing.assert_array_equal(pruned_output, np.asarray(pruned_stock(x)))
    assert not np.array_equal(pruned_output, dense_output)
    for name, mask in masks.items():
        np.testing.assert_array_equal(
            np.asarray(layer.masked_weight(name)),
            np.asarray(_variable(layer, name)) * mask,
        )


# Gradients.


@requires_tensorflow
@cases
def test_gradient_is_exactly_zero_at_pruned_positions(case):
    import tensorflow as tf

    rng = np.random.default_rng(2)
    layer = _build(case)
    _randomize_weights(layer, rng)
    masks = _prune_randomly(layer, case, rng)
    x = _inputs(case, rng)
    upstream = rng.normal(size=layer(x).shape).astype("float32")

    weights = [layer.prunable_variable(name) for name in case.prunable]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) * upstream)
    gradients = tape.gradient(loss, weights)

    for name, gradient in zip(case.prunable, gradients):
        gradient = np.asarray(tf.convert_to_tensor(gradient))
        assert gradient.shape == masks[name].shape
        assert np.all(gradient[masks[name] == 0] == 0.0), name
        assert np.any(gradient[masks[name] == 1] != 0.0), name


# No regrowth during training.

STEPS = 4  # 4 samples, batch size 2, 2 epochs.
SGD_LEARNING_RATE = 0.1
SGD_WEIGHT_DECAY = 1e-2


def _optimizer(name):
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=1e-2)
    return keras.optimizers.SGD(
        learning_rate=SGD_LEARNING_RATE, momentum=0.9, weight_decay=SGD_WEIGHT_DECAY
    )


@pytest.mark.parametrize("optimizer", ["adam", "sgd_momentum_weight_decay"])
@cases
def test_pruned_weights_never_grow_back(case, optimizer):
    rng = np.random.default_rng(3)
    layer = case.masked(**case.kwargs)
    model = keras.Sequential([keras.Input(case.input_shape[1:]), layer])
    _randomize_weights(layer, rng)
    masks = _prune_randomly(layer, case, rng)
    before = {name: np.asarray(layer.prunable_variable(name)) for name in masks}

    x = rng.normal(size=(4, *case.input_shape[1:])).astype("float32")
    y = rng.normal(size=model(x).shape).astype("float32")
    model.compile(optimizer=_optimizer(optimizer), loss="mse")
    model.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0)

    for name, mask in masks.items():
        pruned = mask == 0
        weight = np.asarray(layer.prunable_variable(name))
        np.testing.assert_array_equal(np.asarray(layer.mask_variable(name)), mask)
        assert np.all(np.asarray(layer.masked_weight(name))[pruned] == 0.0)
        # Training happened on the kept entries...
        assert np.any(weight[~pruned] != before[name][~pruned])
        # ...while the pruned ones got no gradient: Adam leaves them alone and
        # SGD only applies its decoupled weight decay.
        if optimizer == "adam":
            np.testing.assert_array_equal(weight[pruned], before[name][pruned])
        else:
            decay = (1.0 - SGD_LEARNING_RATE * SGD_WEIGHT_DECAY) ** STEPS
            np.testing.assert_allclose(
                weight[pruned], before[name][pruned] * decay, rtol=1e-6
            )

    stock = _stock_holding_effective_weights(case, layer, masks)
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
    _prune_randomly(layer, case, rng)
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
    for name in case.prunable:
        np.testing.assert_array_equal(
            np.asarray(loaded_layer.mask_variable(name)),
            np.asarray(layer.mask_variable(name)),
        )
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


# Arguments of the stock layer that the masked twin must accept too.


@cases
def test_lora_rank_is_accepted(case):
    rng = np.random.default_rng(5)
    kwargs = {**case.kwargs, "lora_rank": 2}
    layer = case.masked(**kwargs)
    layer.build(case.input_shape)
    kernel_shape = tuple(_variable(layer, "kernel").shape)
    assert tuple(layer.kernel_mask.shape) == kernel_shape
    np.testing.assert_array_equal(np.asarray(layer.kernel_mask), np.ones(kernel_shape))

    stock = case.stock(**kwargs)
    stock.build(case.input_shape)
    stock.set_weights([np.asarray(_variable(layer, v.name)) for v in stock.weights])
    x = _inputs(case, rng)
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(stock(x)))
