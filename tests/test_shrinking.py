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


def reference_live_units(masks, widths, foldable=None, zero=None):
    """Units that can change the output, by the rules of `shrink`, on masks.

    `masks[l]` is the `(in, out)` connectivity of layer `l` (nonzero where a
    weight links them). A hidden unit is dead when every weight from it to
    a live unit of the next layer is pruned, or every weight into it from a
    live unit of the previous layer is (a constant, folded into the next
    biases) and `foldable[l]` says its readers can take a constant (a
    ConvTranspose cannot), or `zero[l]` (a boolean per unit) says that
    constant is exactly 0, which any reader can drop. Returns the live
    counts, and whether a whole layer died (Keras has no empty layer:
    `shrink` then keeps one unit, and which one depends on the order units
    died in, so only an upper bound is known).
    """
    foldable = [True] * (len(widths) - 2) if foldable is None else foldable
    live = [np.ones(w, bool) for w in widths]
    emptied = False
    changed = True
    while changed:
        changed = False
        for layer in range(1, len(widths) - 1):  # Hidden layers.
            w_in, w_out = masks[layer - 1], masks[layer]
            incoming = (w_in[live[layer - 1]] != 0).any(axis=0)
            outgoing = (w_out[:, live[layer + 1]] != 0).any(axis=1)
            constant_ok = foldable[layer - 1]
            if zero is not None:
                constant_ok = constant_ok | zero[layer - 1]
            new = live[layer] & outgoing & (incoming | ~np.asarray(constant_ok))
            if not new.any():
                emptied = True
                new[np.argmax(live[layer])] = True
            if not np.array_equal(new, live[layer]):
                live[layer], changed = new, True
    return [int(x.sum()) for x in live], emptied


def assert_counts(got, expected, emptied):
    if emptied:
        assert all(g <= e for g, e in zip(got, expected, strict=True))
    else:
        assert got == expected


def random_masks(model, keep, seed):
    rng = np.random.default_rng(seed)
    masks = {
        key: (rng.random(mask.shape) < keep).astype("float32")
        for key, mask in keras_lth.get_masks(model).items()
    }
    keras_lth.set_masks(model, masks)
    return masks, rng


@settings(max_examples=15, deadline=None)
@given(
    widths=st.lists(st.integers(2, 12), min_size=3, max_size=5),
    keep=st.floats(0.05, 0.6),
    seed=st.integers(0, 2**16),
)
def test_shrink_removes_exactly_the_removable_units_of_an_mlp(widths, keep, seed):
    model = keras_lth.mask_model(mlp(widths))
    masks, rng = random_masks(model, keep, seed)
    small = shrink(model)
    ordered = [masks[f"d{i}/kernel"] for i in range(len(widths) - 1)]
    expected, emptied = reference_live_units(ordered, widths)
    got = [widths[0]] + [
        layer.units for layer in small.layers if hasattr(layer, "units")
    ]
    assert_counts(got, expected, emptied)
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
    c_bias = np.zeros(6, "float32")
    c_bias[1] = 1.0  # Exactly zero, it would go anywhere (the next test).
    model.get_layer("c").bias.assign(c_bias)
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


CONV = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D, 3: keras.layers.Conv3D}
TRANSPOSE = {
    1: keras.layers.Conv1DTranspose,
    2: keras.layers.Conv2DTranspose,
    3: keras.layers.Conv3DTranspose,
}
POOL = {
    1: keras.layers.GlobalAveragePooling1D,
    2: keras.layers.GlobalAveragePooling2D,
    3: keras.layers.GlobalAveragePooling3D,
}


def transpose_model(rank):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,) * rank + (3,))
    x = CONV[rank](6, 3, padding="same", name="a")(inputs)
    x = TRANSPOSE[rank](
        8, 3, strides=2, padding="same", activation="relu", name="t",
        bias_initializer="random_normal",
    )(x)  # fmt: skip
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = TRANSPOSE[rank](5, 2, strides=2, name="u", bias_initializer="random_normal")(x)
    x = CONV[rank](4, 3, name="c")(x)  # "valid": it takes constants.
    x = POOL[rank]()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_conv_transpose_filters_and_the_channels_they_read_are_removed(rank):
    rng = np.random.default_rng(0)
    model = transpose_model(rank)
    bn = model.get_layer("bn")
    bn.moving_mean.assign(rng.normal(size=8).astype("float32"))
    bn.moving_variance.assign((rng.random(8) + 0.5).astype("float32"))
    model = keras_lth.mask_model(model)
    masks = keras_lth.get_masks(model)
    # ConvTranspose kernels are (..., out, in).
    masks["t/kernel"][..., 1] = 0  # Filter 1 of "a": "t" reads none of it.
    masks["u/kernel"][..., 4] = 0  # Filter 4 of "t" (through "bn"): unread.
    # Filter 2 of "t" gets no input: a constant, but "u" is transposed (it
    # adds an input unevenly across its output), so it stays.
    masks["t/kernel"][..., 2, :] = 0
    masks["u/kernel"][..., 0, :] = 0  # A constant, folded into "c" ("valid").
    masks["c/kernel"][..., 3, :] = 0  # Filter 3 of "u": unread.
    keras_lth.set_masks(model, masks)
    small, report = shrink(model, return_report=True)
    assert report.units == {"a": (6, 5), "t": (8, 7), "u": (5, 3)}
    assert report.folded == 1 and report.unshrunk == {}
    assert small.get_layer("t").kernel.shape[-2:] == (7, 5)
    assert small.get_layer("u").kernel.shape[-2:] == (3, 7)
    x = rng.normal(size=(2, *(4,) * rank, 3)).astype("float32")
    assert_same_outputs(model, small, x)


def connectivity(mask, transposed=False):
    """A kernel mask as `(in, out)`: whether any weight links the two."""
    mask = np.asarray(mask) != 0
    if transposed:
        mask = np.swapaxes(mask, -1, -2)
    return mask.reshape(-1, *mask.shape[-2:]).any(axis=0)


@settings(max_examples=12, deadline=None)
@given(
    widths=st.lists(st.integers(2, 8), min_size=4, max_size=4),
    keep=st.floats(0.05, 0.5),
    strides=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_shrink_removes_exactly_the_unread_filters_of_conv_transposes(
    widths, keep, strides, seed
):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((5, widths[0]))]
    for i, width in enumerate(widths[1:]):
        layers.append(
            keras.layers.Conv1DTranspose(
                width, 3, strides=strides, padding="same" if i else "valid",
                activation="relu" if i < 2 else None,
                bias_initializer="random_normal", name=f"t{i}",
            )
        )  # fmt: skip
    model = keras_lth.mask_model(keras.Sequential(layers))
    masks, rng = random_masks(model, keep, seed)
    small = shrink(model)
    ordered = [connectivity(masks[f"t{i}/kernel"], True) for i in range(3)]
    # Each hidden layer is read by a ConvTranspose: constants stay, unless
    # they are exactly zero (relu of a negative bias).
    zero = [ops.convert_to_numpy(model.get_layer(f"t{i}").bias) <= 0 for i in range(2)]
    expected, emptied = reference_live_units(ordered, widths, [False, False], zero)
    got = [widths[0]] + [small.get_layer(f"t{i}").filters for i in range(3)]
    assert_counts(got, expected, emptied)
    x = rng.normal(size=(3, 5, widths[0])).astype("float32")
    assert_same_outputs(model, small, x)


def norm_model(widths, axis, seed=0):
    """Dense layers on `(steps, features)`, a LayerNormalization after d0."""
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((4, widths[0]))
    x = keras.layers.Dense(
        widths[1], activation="relu", bias_initializer="random_normal", name="d0"
    )(tokens)
    x = keras.layers.LayerNormalization(
        axis=axis, beta_initializer="random_normal", name="norm"
    )(x)
    x = keras.layers.Dense(
        widths[2], activation="relu", bias_initializer="random_normal", name="d1"
    )(x)
    return keras_lth.mask_model(
        keras.Model(tokens, keras.layers.Dense(widths[3], name="d2")(x))
    )


@pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="Keras 3's LayerNormalization(axis=1) raises on torch: it calls "
    "torch's layer_norm, which normalizes the last axes",
)
@settings(max_examples=10, deadline=None)
@given(
    widths=st.lists(st.integers(2, 8), min_size=4, max_size=4),
    keep=st.floats(0.05, 0.6),
    seed=st.integers(0, 2**16),
)
def test_a_layer_norm_over_the_steps_lets_the_channels_through(widths, keep, seed):
    model = norm_model(widths, axis=1)
    masks, rng = random_masks(model, keep, seed)
    small, report = shrink(model, return_report=True)
    assert report.unshrunk == {}
    ordered = [masks[f"d{i}/kernel"] for i in range(3)]
    # A constant unit of d0 leaves the normalization as its beta, one value
    # per step, not a constant: it stays.
    expected, emptied = reference_live_units(ordered, widths, [False, True])
    got = [widths[0]] + [small.get_layer(f"d{i}").units for i in range(3)]
    assert_counts(got, expected, emptied)
    x = rng.normal(size=(3, 4, widths[0])).astype("float32")
    assert_same_outputs(model, small, x)


@settings(max_examples=10, deadline=None)
@given(
    widths=st.lists(st.integers(2, 8), min_size=4, max_size=4),
    keep=st.floats(0.05, 0.6),
    seed=st.integers(0, 2**16),
)
def test_a_layer_norm_over_the_channels_keeps_them_all(widths, keep, seed):
    model = norm_model(widths, axis=-1)
    masks, rng = random_masks(model, keep, seed)
    with pytest.warns(UserWarning, match="'norm' \\(it normalizes over its channels"):
        small, report = shrink(model, return_report=True)
    assert set(report.unshrunk) == {"norm"}
    # Even the units of d0 nothing reads, or that are constants: the others
    # are normalized with them. After it, units go by the usual rules.
    assert small.get_layer("d0").units == widths[1]
    ordered = [masks[f"d{i}/kernel"] for i in (1, 2)]
    expected, emptied = reference_live_units(ordered, widths[1:])
    got = [widths[1]] + [small.get_layer(f"d{i}").units for i in (1, 2)]
    assert_counts(got, expected, emptied)
    x = rng.normal(size=(3, 4, widths[0])).astype("float32")
    assert_same_outputs(model, small, x)


def test_a_zero_channel_goes_through_same_padding_but_a_constant_does_not():
    # A filter with no incoming weights outputs relu(bias): a constant, which a
    # "same" convolution cannot take into its bias (the zero padding), unless
    # that constant is exactly zero.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="a")(inputs)
    x = keras.layers.Conv2D(3, 3, padding="same", name="b")(x)
    model = keras_lth.mask_model(keras.Model(inputs, x))
    masks = keras_lth.get_masks(model)
    masks["a/kernel"][..., 0] = 0  # Filters 0 and 1 have no inputs.
    masks["a/kernel"][..., 1] = 0
    keras_lth.set_masks(model, masks)
    bias = model.get_layer("a").bias
    bias.assign(np.array([0.0, 0.5, 0.1, 0.1], "float32"))  # Filter 1: relu(0.5).
    small, report = shrink(model, return_report=True)
    assert report.units == {"a": (4, 3)}
    assert small.get_layer("a").filters == 3
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 2)).astype("float32")
    assert_same_outputs(model, small, x)


def test_a_grouped_convolution_is_left_as_it_was():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 4))
    x = keras.layers.Conv2D(4, 1, name="a")(inputs)
    x = keras.layers.Conv2D(4, 3, groups=2, name="grouped")(x)
    model = keras_lth.mask_model(
        keras.Model(inputs, keras.layers.Conv2D(2, 1, name="out")(x))
    )
    masks = keras_lth.get_masks(model)
    masks["grouped/kernel"][..., 0, :] = 0  # Its rows are per group.
    masks["out/kernel"][..., 1, :] = 0  # Filter 1 of "grouped": unread.
    keras_lth.set_masks(model, masks)
    with pytest.warns(UserWarning, match="'grouped' \\(a grouped convolution"):
        small, report = shrink(model, return_report=True)
    assert report.units == {}
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype("float32")
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


def test_a_summed_channel_is_a_constant_only_when_every_writer_makes_it_so():
    # Channel 0 of the sum gets no input from "a" nor "b": a constant (their
    # biases), folded into "out". Channel 1 still gets "b"'s input: it stays.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    a = keras.layers.Dense(4, name="a", bias_initializer="random_normal")(inputs)
    b = keras.layers.Dense(4, name="b", bias_initializer="random_normal")(inputs)
    summed = keras.layers.Add()([a, b])
    model = keras_lth.mask_model(
        keras.Model(inputs, keras.layers.Dense(2, name="out")(summed))
    )
    masks = keras_lth.get_masks(model)
    masks["a/kernel"][:, :2] = 0
    masks["b/kernel"][:, 0] = 0
    keras_lth.set_masks(model, masks)
    small, report = shrink(model, return_report=True)
    assert report.units == {"a": (4, 3), "b": (4, 3)}
    assert report.folded == 1
    x = np.random.default_rng(0).normal(size=(3, 5)).astype("float32")
    assert_same_outputs(model, small, x)


def test_the_report_lines_up_long_layer_names():
    report = keras_lth.shrinking.ShrinkReport(
        units={"a": (8, 4), "stage2_block1_shortcut_conv": (32, 10)},
        params_before=100,
        params_after=40,
        folded=0,
        unshrunk={},
    )
    lines = str(report).splitlines()
    assert lines[1].index("->") == lines[2].index("->")
