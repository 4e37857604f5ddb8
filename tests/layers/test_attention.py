"""`MaskedMultiHeadAttention`: masked projections, saved and loaded by Keras."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_lth
from keras_lth import layers
from keras_lth import pruned_nonzero

PROJECTIONS = ["query", "key", "value", "attention_output"]


def block(masked, **kwargs):
    cls = layers.MaskedMultiHeadAttention if masked else keras.layers.MultiHeadAttention
    query = keras.Input((4, 6))
    value = keras.Input((3, 5))
    attention = cls(num_heads=2, key_dim=3, name="mha", **kwargs)
    return keras.Model([query, value], attention(query, value))


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(2, 4, 6)), rng.normal(size=(2, 3, 5))]


def random_masks(model, seed=1):
    rng = np.random.default_rng(seed)
    return {
        key: (rng.random(mask.shape) < 0.5).astype("float32")
        for key, mask in keras_lth.get_masks(model).items()
    }


@pytest.mark.parametrize("kwargs", [{}, {"use_bias": False, "output_shape": 7}])
def test_every_projection_is_masked_and_outputs_match_the_stock_layer(kwargs):
    masked, stock = block(True, **kwargs), block(False, **kwargs)
    assert sorted(keras_lth.get_masks(masked)) == sorted(
        f"{name}/kernel" for name in PROJECTIONS
    )
    assert all(
        isinstance(sub, layers.MaskedEinsumDense)
        for sub in masked.get_layer("mha")._flatten_layers(include_self=False)
        if isinstance(sub, keras.layers.EinsumDense)
    )
    stock.set_weights(masked.get_weights())
    np.testing.assert_allclose(
        ops.convert_to_numpy(masked(inputs())),
        ops.convert_to_numpy(stock(inputs())),
        atol=1e-6,
    )


def test_pruned_projections_get_no_gradient_and_stay_zero():
    model = block(True)
    keras_lth.set_masks(model, random_masks(model))
    before = keras_lth.get_prunable_weights(model)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    model.fit(inputs(), np.ones((2, 4, 6)), epochs=3, verbose=0)
    assert pruned_nonzero(model) == {}
    after = keras_lth.get_prunable_weights(model)
    for key in after:
        assert not np.array_equal(after[key], before[key]), key


def test_saved_and_loaded_with_plain_keras_the_masks_hold(tmp_path):
    model = block(True)
    masks = random_masks(model)
    keras_lth.set_masks(model, masks)
    model.save(tmp_path / "mha.keras")
    loaded = keras.saving.load_model(tmp_path / "mha.keras")
    assert type(loaded.get_layer("mha")) is layers.MaskedMultiHeadAttention
    for key, mask in keras_lth.get_masks(loaded).items():
        np.testing.assert_array_equal(mask, masks[key])
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded(inputs())),
        ops.convert_to_numpy(model(inputs())),
        atol=1e-6,
    )


def test_the_twin_is_registered_and_its_config_round_trips():
    layer = layers.MaskedMultiHeadAttention(num_heads=2, key_dim=3, dropout=0.1)
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == "keras_lth>MaskedMultiHeadAttention"
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is layers.MaskedMultiHeadAttention
    assert restored.get_config() == layer.get_config()
