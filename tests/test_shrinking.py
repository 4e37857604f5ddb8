"""`keras_lth.shrink`: smaller models with the same outputs."""

import warnings

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from keras import ops

import keras_lth
from keras_lth.shrinking import shrink


def outputs(model, x):
    return ops.convert_to_numpy(model(x, training=False))


def assert_same_outputs(a, b, x):
    ya, yb = outputs(a, x), outputs(b, x)
    scale = max(float(np.abs(ya).max()), 1e-6)
    assert float(np.abs(ya - yb).max()) / scale <= 1e-5


def mlp(widths, seed=0):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((widths[0],))]
    for i, width in enumerate(widths[1:]):
        last = i == len(widths) - 2
        layers.append(
            keras.layers.Dense(
                width,
                activation=None if last else "relu",
                bias_initializer="random_normal",
                name=f"d{i}",
            )
        )
    return keras.Sequential(layers)


def reference_live_units(masks, widths):
    """Units that can change the output, by the rules of `shrink`, on masks.

    A hidden unit is dead when every weight from it to a live unit of the
    next layer is pruned, or every weight into it from a live unit of the
    previous layer is (a constant, folded into the next biases). Returns the
    live counts, and whether a whole layer died (Keras has no empty layer:
    `shrink` then keeps one unit, and which one depends on the order units
    died in, so only an upper bound is known).
    """
    live = [np.ones(w, bool) for w in widths]
    emptied = False
    changed = True
    while changed:
        changed = False
        for layer in range(1, len(widths) - 1):  # Hidden layers.
            w_in, w_out = masks[layer - 1], masks[layer]
            incoming = (w_in[live[layer - 1]] != 0).any(axis=0)
            outgoing = (w_out[:, live[layer + 1]] != 0).any(axis=1)
            new = live[layer] & incoming & outgoing
            if not new.any():
                emptied = True
                new[np.argmax(live[layer])] = True
            if not np.array_equal(new, live[layer]):
                live[layer], changed = new, True
    return [int(x.sum()) for x in live], emptied


@settings(max_examples=15, deadline=None)
@given(
    widths=st.lists(st.integers(2, 12), min_size=3, max_size=5),
    keep=st.floats(0.05, 0.6),
    seed=st.integers(0, 2**16),
)
def test_shrink_removes_exactly_the_removable_units_of_an_mlp(widths, keep, seed):
    model = keras_lth.mask_model(mlp(widths))
    rng = np.random.default_rng(seed)
    masks = {
        key: (rng.random(mask.shape) < keep).astype("float32")
        for key, mask in keras_lth.get_masks(model).items()
    }
    keras_lth.set_masks(model, masks)
    small = shrink(model)
    ordered = [masks[f"d{i}/kernel"] for i in range(len(widths) - 1)]
    expected, emptied = reference_live_units(ordered, widths)
    got = [widths[0]] + [
        layer.units for layer in small.layers if hasattr(layer, "units")
    ]
    if emptied:
        assert all(g <= e for g, e in zip(got, expected, strict=True))
    else:
        assert got == expected
    x = rng.normal(size=(4, widths[0])).astype("float32")
    assert_same_outputs(model, small, x)


def convnet():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 10, 3))
    a = keras.layers.Conv2D(8, 3, padding="same", name="a")(inputs)
    a = keras.layers.BatchNormalization(name="bn")(a)
    a = keras.layers.ReLU()(a)
    b = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="b")(a)
    residual = keras.layers.Add(name="add")([a, b])
    c = keras.layers.Conv2D(6, 3, padding="valid", activation="relu", name="c")(
        residual
    )
    side = keras.layers.Conv2D(4, 3, padding="same", name="side")(c)
    joined = keras.layers.Concatenate(name="cat")([c, side])
    d = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(joined)
    pooled = keras.layers.MaxPooling2D(name="pool")(d)
    flat = keras.layers.Flatten(name="flat")(pooled)
    hidden = keras.layers.Dense(12, activation="relu", name="hidden")(flat)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(hidden))


def with_statistics(model, rng):
    bn = model.get_layer("bn")
    bn.moving_mean.assign(rng.normal(size=8).astype("float32"))
    bn.moving_variance.assign((rng.random(8) + 0.5).astype("float32"))
    bn.gamma.assign(rng.normal(size=8).astype("float32"))
    return model


def test_residual_concatenate_batchnorm_depthwise_and_flatten_keep_outputs():
    rng = np.random.default_rng(0)
    model = keras_lth.mask_model(with_statistics(convnet(), rng))
    masks = keras_lth.get_masks(model)
    # Filter 2 of "c": nothing reads it (its outgoing weights are pruned),
    # neither "side" nor, through the depthwise convolution (which reads one
    # channel each, so is not a reader) and the flattening, "hidden".
    masks["side/kernel"][..., 2, :] = 0
    masks["hidden/kernel"][2::10] = 0  # 10 channels after the concatenation.
    # Filters 5 of "a" and "b" make channel 5 of the residual sum, read by
    # "b" and "c": they go together.
    masks["b/kernel"][..., 5, :] = 0
    masks["c/kernel"][..., 5, :] = 0
    # Filter 1 of "c" gets no input: a constant (relu(1)), which "side"
    # reads through its zero padding, so not as a constant: it stays. (Into
    # "hidden", through the "same" depthwise convolution and the flattening,
    # it would fold: each position is a constant of its own.)
    masks["c/kernel"][..., 1] = 0
    # Unit 7 of "hidden" gets no input: a constant folded into "out".
    masks["hidden/kernel"][..., 7] = 0
    keras_lth.set_masks(model, masks)
    small, report = shrink(model, return_report=True)
    assert report.units == {"c": (6, 5), "a": (8, 7), "b": (8, 7), "hidden": (12, 11)}
    assert report.folded == 1
    assert report.unshrunk == {}
    x = rng.normal(size=(3, 10, 10, 3)).astype("float32")
    assert_same_outputs(model, small, x)
    assert small.count_params() == report.params_after < report.params_before


def attention_model():
    keras.utils.set_random_seed(0)
    tokens = keras.Input((5, 8))
    x = keras.layers.Dense(8, name="proj")(tokens)
    x = keras.layers.MultiHeadAttention(
        3, 4, name="mha", bias_initializer="random_normal"
    )(x, x)
    x = keras.layers.Dense(6, activation="relu", name="ff")(x)
    return keras_lth.mask_model(
        keras.Model(tokens, keras.layers.Dense(2, name="out")(x))
    )


def test_attention_heads_and_channels_are_removed_exactly():
    model = attention_model()
    masks = keras_lth.get_masks(model)
    masks["value/kernel"][:, 1] = 0  # Head 1 outputs its value bias: folded.
    masks["attention_output/kernel"][2] = 0  # Head 2 reaches nothing.
    masks["ff/kernel"][3] = 0  # Channel 3 of the attention output: unread.
    masks["proj/kernel"][:, 0] = 0  # A constant, folded into q, k, v biases.
    keras_lth.set_masks(model, masks)
    small, report = shrink(model, return_report=True)
    assert report.units == {"proj": (8, 7), "mha heads": (3, 1), "mha": (8, 7)}
    assert small.get_layer("mha").num_heads == 1
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    assert_same_outputs(model, small, x)


def test_layers_it_cannot_follow_are_left_as_they_were_and_reported():
    keras.utils.set_random_seed(0)
    tokens = keras.Input((5, 8))
    x = keras.layers.Dense(8, name="proj")(tokens)
    x = keras.layers.LayerNormalization(name="norm")(x)
    x = keras.layers.Reshape((8, 5), name="turn")(x)
    x = keras.layers.Dense(6, activation="relu", name="ff")(x)
    model = keras_lth.mask_model(
        keras.Model(tokens, keras.layers.Dense(2, name="out")(x))
    )
    masks = keras_lth.get_masks(model)
    masks["out/kernel"][3] = 0  # Unit 3 of "ff" is read by nothing.
    masks["proj/kernel"][:, 0] = 0  # Normalized with the others: stays.
    keras_lth.set_masks(model, masks)
    with pytest.warns(UserWarning, match="left these layers.*'norm'.*'turn'"):
        small, report = shrink(model, return_report=True)
    assert report.units == {"ff": (6, 5)}
    assert set(report.unshrunk) == {"norm", "turn"}
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    assert_same_outputs(model, small, x)


def test_a_softmax_layer_keeps_its_units():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(5, activation="softmax", name="soft")(inputs)
    model = keras_lth.mask_model(
        keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    )
    masks = keras_lth.get_masks(model)
    masks["out/kernel"][0] = 0  # Unread, but the softmax normalizes over it.
    keras_lth.set_masks(model, masks)
    with pytest.warns(UserWarning, match="'soft' \\(its activation mixes"):
        small, report = shrink(model, return_report=True)
    assert report.units == {}
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    assert_same_outputs(model, small, x)


def test_a_shrunk_model_saves_and_loads_with_plain_keras(tmp_path):
    model = keras_lth.mask_model(mlp([6, 8, 8, 3]))
    masks = keras_lth.get_masks(model)
    masks["d1/kernel"][:, :4] = 0
    keras_lth.set_masks(model, masks)
    small = shrink(model)
    assert small.get_layer("d1").units == 4
    small.save(tmp_path / "small.keras")
    loaded = keras.saving.load_model(tmp_path / "small.keras")
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    assert_same_outputs(small, loaded, x)


def test_the_input_model_is_left_unchanged():
    model = mlp([4, 5, 2])
    model.get_layer("d0").kernel.assign(np.zeros((4, 5), "float32"))
    before = [ops.convert_to_numpy(w) for w in model.weights]
    small = shrink(model)
    assert small.get_layer("d0").units == 1
    for weight, value in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(weight), value)


def test_a_subclassed_model_is_refused():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Sub()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="Sequential and Functional.*Sub"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shrink(model)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="LiteRT converts on TensorFlow"
)
def test_a_shrunk_ticket_exports_to_litert(tmp_path):
    pytest.importorskip("ai_edge_litert")
    model = keras_lth.mask_model(mlp([6, 16, 8, 3]))
    masks = keras_lth.get_masks(model)
    masks["d1/kernel"][:, 2:] = 0
    keras_lth.set_masks(model, masks)
    small = shrink(model)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    report = keras_lth.export_litert(small, tmp_path / "small.tflite", sample_inputs=x)
    assert all(e <= t for e, t in zip(report.output_errors, report.output_tolerances))
