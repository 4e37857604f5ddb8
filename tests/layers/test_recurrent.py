"""Masked twins of the recurrent layers (`MaskedLSTM`, ...) and their cells."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_lth
from keras_lth import layers
from keras_lth import pruned_nonzero

#: name -> (stock class, twin, constructor arguments, input shape).
RNNS = {
    "LSTM": (keras.layers.LSTM, layers.MaskedLSTM, {"units": 4}, (2, 5, 3)),
    "GRU": (keras.layers.GRU, layers.MaskedGRU, {"units": 4}, (2, 5, 3)),
    "GRU-reset_before": (
        keras.layers.GRU,
        layers.MaskedGRU,
        {"units": 4, "reset_after": False},
        (2, 5, 3),
    ),
    "SimpleRNN": (
        keras.layers.SimpleRNN,
        layers.MaskedSimpleRNN,
        {"units": 4},
        (2, 5, 3),
    ),
    "ConvLSTM1D": (
        keras.layers.ConvLSTM1D,
        layers.MaskedConvLSTM1D,
        {"filters": 2, "kernel_size": 2},
        (2, 3, 6, 2),
    ),
    "ConvLSTM2D": (
        keras.layers.ConvLSTM2D,
        layers.MaskedConvLSTM2D,
        {"filters": 2, "kernel_size": 2},
        (2, 3, 5, 5, 2),
    ),
}
rnns = pytest.mark.parametrize("name", list(RNNS))


def model_of(name, masked, **extra):
    stock, twin, kwargs, shape = RNNS[name]
    inputs = keras.Input(shape[1:])
    layer = (twin if masked else stock)(**kwargs, **extra, name="rnn")
    outputs = keras.layers.Flatten()(layer(inputs))
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(outputs))


def inputs_of(name, seed=0):
    shape = RNNS[name][3]
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def random_masks(model, seed=1):
    rng = np.random.default_rng(seed)
    return {
        key: (rng.random(mask.shape) < 0.5).astype("float32")
        for key, mask in keras_lth.get_masks(model).items()
    }


@rnns
def test_the_cell_is_masked_and_computes_what_the_stock_layer_does(name):
    masked, stock = model_of(name, True), model_of(name, False)
    cell = masked.get_layer("rnn").cell
    assert isinstance(cell, layers.MaskedLayer)
    assert cell.prunable_weight_names == ("kernel", "recurrent_kernel")
    # Never a fused kernel, which would read the kernels unmasked.
    assert getattr(masked.get_layer("rnn"), "use_cudnn", False) is False
    stock.set_weights(masked.get_weights())
    x = inputs_of(name)
    np.testing.assert_allclose(
        ops.convert_to_numpy(masked(x)), ops.convert_to_numpy(stock(x)), atol=1e-6
    )


@rnns
def test_pruned_kernels_get_no_gradient(name):
    model = model_of(name, True)
    keras_lth.set_masks(model, random_masks(model))
    before = keras_lth.get_prunable_weights(model)
    # Plain SGD with momentum: any gradient at a pruned entry would move it.
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    x = inputs_of(name)
    model.fit(x, np.ones((len(x), 2)), epochs=3, verbose=0)
    assert pruned_nonzero(model) == {}
    after = keras_lth.get_prunable_weights(model)
    assert len(after) == 2  # The kernel and the recurrent kernel.
    for key in after:  # Their kept entries trained.
        assert not np.array_equal(after[key], before[key]), key


@rnns
def test_saved_and_loaded_with_plain_keras_the_masks_hold(name, tmp_path):
    model = model_of(name, True)
    masks = random_masks(model)
    keras_lth.set_masks(model, masks)
    path = tmp_path / "rnn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.get_layer("rnn")) is RNNS[name][1]
    for key, mask in keras_lth.get_masks(loaded).items():
        np.testing.assert_array_equal(mask, masks[key])
    x = inputs_of(name)
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)), atol=1e-6
    )


def test_a_cell_twin_works_in_a_generic_rnn_and_in_bidirectional():
    inputs = keras.Input((5, 3))
    cell = layers.MaskedGRUCell(4, name="cell")
    x = keras.layers.RNN(cell, return_sequences=True, name="generic")(inputs)
    x = keras.layers.Bidirectional(layers.MaskedLSTM(2), name="bi")(x)
    model = keras.Model(inputs, x)
    keys = sorted(keras_lth.get_masks(model))
    assert keys == [
        "bi/backward_masked_lstm/lstm_cell/kernel",
        "bi/backward_masked_lstm/lstm_cell/recurrent_kernel",
        "bi/forward_masked_lstm/lstm_cell/kernel",
        "bi/forward_masked_lstm/lstm_cell/recurrent_kernel",
        "cell/kernel",
        "cell/recurrent_kernel",
    ]


@pytest.mark.parametrize("twin", [layers.MaskedLSTMCell, layers.MaskedGRUCell])
def test_cells_draw_their_weights_again_from_their_own_initializers(twin):
    cell = twin(3, kernel_initializer="ones", recurrent_initializer="zeros")
    cell.build((None, 2))
    assert isinstance(cell.initializer_for("kernel"), keras.initializers.Ones)
    assert isinstance(
        cell.initializer_for("recurrent_kernel"), keras.initializers.Zeros
    )
