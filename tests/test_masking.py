"""Tests for `keras_lth.masking`: mask_model, strip_masks, sparsity, masks.

Also the weights `mask_model` leaves dense (its warning, `sparsity`'s
"dense"), and subclassed models: built on demand, or a clear error, and
`strip_masks(in_place=True)`. Custom training loops are in
`test_custom_loops.py`.
"""

import json
import pathlib
import re
import warnings
import zipfile

import keras
import numpy as np
import pytest
from keras import ops

from keras_lth import LotteryTicket
from keras_lth import get_masks
from keras_lth import mask_model
from keras_lth import set_masks
from keras_lth import sparsity
from keras_lth import strip_masks
from keras_lth.layers import MASKED_TWINS
from keras_lth.layers import MaskedDense
from keras_lth.layers import MaskedLayer
from keras_lth.masking import get_prunable_weights
from keras_lth.masking import prunable_tensors
from keras_lth.masking import require_prunable_tensors
from tests import backends

# --- Models -------------------------------------------------------------------


def sequential_model():
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same", name="conv"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.SeparableConv2D(4, 3, activation="relu", name="sep"),
            keras.layers.DepthwiseConv2D(3, name="dw"),
            keras.layers.Conv2DTranspose(2, 3, strides=2, name="deconv"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dropout(0.5, name="drop"),
            keras.layers.Dense(3, name="out"),
        ],
        name="seq",
    )


def functional_model():
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(20, 6, name="emb")(tokens)
    x = keras.layers.EinsumDense(
        "abc,cd->abd", output_shape=(None, 4), bias_axes="d", name="einsum"
    )(x)
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = keras.layers.Dense(2, name="out")(x)
    return keras.Model(tokens, outputs, name="func")


def nested_model():
    inner_seq = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(3, 3, name="inner_conv"),
            keras.layers.BatchNormalization(name="inner_bn"),
            keras.layers.Flatten(name="inner_flat"),
        ],
        name="inner_seq",
    )
    features = keras.Input((48,), name="features")
    hidden = keras.layers.Dense(5, activation="tanh", name="inner_dense")(features)
    inner_func = keras.Model(
        features, keras.layers.Dense(4, name="inner_out")(hidden), name="inner_func"
    )
    image = keras.Input((6, 6, 2), name="image")
    x = inner_func(inner_seq(image))
    x = keras.layers.BatchNormalization(name="outer_bn")(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(image, outputs, name="outer")


BUILDERS = {
    "sequential": sequential_model,
    "functional": functional_model,
    "nested": nested_model,
}


def walk(layer):
    """Every layer of a model, nested models and their layers included."""
    for child in getattr(layer, "layers", ()):
        yield child
        yield from walk(child)


def randomize(model, seed=0):
    """Random values in every variable but the masks (positive variances)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        if variable.name.endswith("_mask"):
            continue
        value = rng.normal(size=variable.shape)
        if variable.name == "moving_variance":
            value = np.abs(value) + 0.5
        variable.assign(value.astype(variable.dtype))
    return model


def random_input(model, seed=1, batch=4):
    rng = np.random.default_rng(seed)
    spec = model.inputs[0]
    shape = (batch, *spec.shape[1:])
    if "int" in str(spec.dtype):
        return rng.integers(0, 20, size=shape).astype("int32")
    return rng.normal(size=shape).astype("float32")


def predict(model, x):
    return ops.convert_to_numpy(model(x, training=False))


def random_masks(model, seed=2):
    rng = np.random.default_rng(seed)
    return {
        key: (rng.random(mask.shape) < 0.5).astype("float32")
        for key, mask in get_masks(model).items()
    }


def masked_names(model):
    return {layer.name for layer in walk(model) if isinstance(layer, MaskedLayer)}


# --- mask_model ---------------------------------------------------------------


@pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())
def test_mask_model_swaps_in_masked_twins(build):
    model = randomize(build())
    masked = mask_model(model)
    original_layers = list(walk(model))
    masked_layers = list(walk(masked))
    assert [layer.name for layer in masked_layers] == [
        layer.name for layer in original_layers
    ]
    assert masked.name == model.name
    for before, after in zip(original_layers, masked_layers):
        twin = MASKED_TWINS.get(type(before))
        if twin is not None:
            assert type(after) is twin, before.name
            assert isinstance(after, type(before))
            for name in after.prunable_weight_names:
                np.testing.assert_array_equal(
                    ops.convert_to_numpy(after.mask_variable(name)),
                    np.ones(after.mask_variable(name).shape),
                )
        else:
            assert type(after) is type(before), before.name
            assert not isinstance(after, MaskedLayer)
        # Every variable of the original layer is copied, not re-initialized.
        if not hasattr(before, "layers"):
            after_vars = {v.name: v for v in after.weights}
            for variable in before.weights:
                np.testing.assert_array_equal(
                    ops.convert_to_numpy(after_vars[variable.name]),
                    ops.convert_to_numpy(variable),
                )


def test_mask_model_covers_every_twin_in_these_models():
    stock = {
        type(layer) for build in BUILDERS.values() for layer in walk(build())
    } & set(MASKED_TWINS)
    expected = {
        keras.layers.Dense,
        keras.layers.Conv2D,
        keras.layers.SeparableConv2D,
        keras.layers.DepthwiseConv2D,
        keras.layers.Embedding,
        keras.layers.Conv2DTranspose,
        keras.layers.EinsumDense,
    }
    assert expected <= stock


@pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())
def test_mask_model_outputs_equal_the_original(build):
    model = randomize(build())
    masked = mask_model(model)
    x = random_input(model)
    np.testing.assert_array_equal(predict(masked, x), predict(model, x))


@pytest.mark.parametrize("build", [sequential_model, nested_model])
def test_mask_model_copies_batch_norm_moving_statistics(build):
    model = randomize(build())
    masked = mask_model(model)
    batch_norms = [
        layer
        for layer in walk(model)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert batch_norms
    for layer in batch_norms:
        twin = next(other for other in walk(masked) if other.name == layer.name)
        assert type(twin) is keras.layers.BatchNormalization
        for attr in ("moving_mean", "moving_variance", "gamma", "beta"):
            value = ops.convert_to_numpy(getattr(layer, attr))
            assert not np.allclose(value, 0.0) and not np.allclose(value, 1.0)
            np.testing.assert_array_equal(
                ops.convert_to_numpy(getattr(twin, attr)), value
            )


def test_mask_model_leaves_the_original_untouched():
    model = randomize(sequential_model())
    before = [ops.convert_to_numpy(v) for v in model.weights]
    masked = mask_model(model)
    set_masks(masked, {key: np.zeros_like(m) for key, m in get_masks(masked).items()})
    assert not any(isinstance(layer, MaskedLayer) for layer in walk(model))
    for variable, value in zip(model.weights, before):
        np.testing.assert_array_equal(ops.convert_to_numpy(variable), value)


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ("sep", {"sep"}),
        (keras.layers.Conv2D, {"conv"}),
        (keras.layers.Dense, {"out"}),
        (["sep", keras.layers.Dense], {"sep", "out"}),
        (("dw", "deconv"), {"dw", "deconv"}),
        ({"conv", keras.layers.DepthwiseConv2D}, {"conv", "dw"}),
        (lambda layer: layer.name.startswith("d"), {"dw", "deconv"}),
    ],
    ids=["name", "class", "dense-class", "list", "tuple", "set", "predicate"],
)
def test_mask_model_layer_selection(layers, expected):
    model = randomize(sequential_model())
    masked = mask_model(model, layers=layers)
    assert masked_names(masked) == expected
    assert set(get_masks(masked)) == {
        key for key in get_masks(mask_model(model)) if key.split("/")[0] in expected
    }
    x = random_input(model)
    np.testing.assert_array_equal(predict(masked, x), predict(model, x))


def test_mask_model_selection_reaches_nested_models():
    model = nested_model()
    masked = mask_model(model, layers=["inner_dense", keras.layers.Conv2D])
    assert masked_names(masked) == {"inner_dense", "inner_conv"}


@pytest.mark.parametrize("layers", [5, ["sep", 5], [None], 2.5])
def test_mask_model_invalid_selection(layers):
    with pytest.raises(
        TypeError, match=r"`layers`.*Received: " + re.escape(repr(layers))
    ):
        mask_model(sequential_model(), layers=layers)


@pytest.mark.parametrize(
    ("layers", "shown"),
    [
        ("nope", "layers='nope'"),
        (["nope", keras.layers.Embedding], r"layers=\['nope', <class"),
        (lambda layer: False, "layers=<function"),
    ],
)
def test_mask_model_selecting_nothing(layers, shown):
    with pytest.raises(
        ValueError, match=rf"no layer to make prunable in model 'seq' with {shown}"
    ):
        mask_model(sequential_model(), layers=layers)


def test_mask_model_without_supported_layers():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.BatchNormalization(), keras.layers.Flatten()],
        name="no_twins",
    )
    with pytest.raises(ValueError, match=r"'no_twins'.*Supported layers:.*'Dense'"):
        mask_model(model)


class _Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)

    def call(self, inputs):
        return self.dense(inputs)


def test_mask_model_refuses_a_subclassed_model():
    model = _Subclassed()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match=r"_Subclassed.*in_place=True"):
        mask_model(model)


def test_strip_masks_refuses_to_copy_a_subclassed_model():
    model = _Subclassed()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match=r"_Subclassed.*in_place=True"):
        strip_masks(model)


@pytest.mark.parametrize("function", [mask_model, strip_masks])
@pytest.mark.parametrize(
    ("make", "shown"),
    [
        (lambda: keras.layers.Dense(2), "of type Dense"),
        (lambda: "model", "'model' of type str"),
    ],
)
def test_non_model_is_refused(function, make, shown):
    with pytest.raises(TypeError, match=rf"keras\.Model.*{shown}"):
        function(make())


def test_mask_model_on_a_masked_model_keeps_masks():
    masked = mask_model(randomize(sequential_model()))
    masks = random_masks(masked)
    set_masks(masked, masks)
    again = mask_model(masked)
    assert masked_names(again) == masked_names(masked)
    assert [type(layer) for layer in walk(again)] == [
        type(layer) for layer in walk(masked)
    ]
    again_masks = get_masks(again)
    assert list(again_masks) == list(masks)
    for key, mask in masks.items():
        assert 0 < mask.sum() < mask.size
        np.testing.assert_array_equal(again_masks[key], mask)
    x = random_input(masked)
    np.testing.assert_array_equal(predict(again, x), predict(masked, x))


def test_mask_model_functional_with_unnamed_input():
    inputs = keras.Input((4,))
    model = randomize(keras.Model(inputs, keras.layers.Dense(2, name="out")(inputs)))
    masked = mask_model(model)
    assert type(masked.get_layer("out")) is MaskedDense
    x = random_input(model)
    np.testing.assert_array_equal(predict(masked, x), predict(model, x))


def test_strip_masks_functional_with_unnamed_input():
    inputs = keras.Input((4,))
    model = randomize(keras.Model(inputs, MaskedDense(2, name="out")(inputs)))
    plain = strip_masks(model)
    assert type(plain.get_layer("out")) is keras.layers.Dense
    x = random_input(model)
    np.testing.assert_array_equal(predict(plain, x), predict(model, x))


# --- strip_masks --------------------------------------------------------------


def _assign_masks_only(model, masks):
    """Assigns masks without zeroing stored weights, unlike `set_masks`.

    This breaks the masked layers' invariant (pruned entries stored as zero),
    to check that `strip_masks` bakes the masks in without relying on it.
    """
    for key, (layer, name) in prunable_tensors(model).items():
        layer.mask_variable(name).assign(masks[key])


@pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())
def test_strip_masks_bakes_masks_into_stock_layers(build):
    masked = mask_model(randomize(build()))
    masks = random_masks(masked)
    _assign_masks_only(masked, masks)
    plain = strip_masks(masked)

    assert not type(plain).__module__.startswith("keras_lth")
    for layer in walk(plain):
        assert not type(layer).__module__.startswith("keras_lth"), layer.name
        assert type(layer).__module__.startswith("keras."), layer.name
        assert not isinstance(layer, MaskedLayer)
    assert not [v.path for v in plain.weights if v.name.endswith("_mask")]
    assert [layer.name for layer in walk(plain)] == [
        layer.name for layer in walk(masked)
    ]

    plain_layers = {layer.name: layer for layer in walk(plain)}
    for key, (layer, name) in prunable_tensors(masked).items():
        stored = ops.convert_to_numpy(layer.prunable_variable(name))
        baked = ops.convert_to_numpy(getattr(plain_layers[layer.name], name))
        pruned = masks[key] == 0
        assert pruned.any() and (~pruned).any()
        assert np.all(stored[pruned] != 0)  # Only the mask hides them.
        assert np.all(baked[pruned] == 0.0)
        np.testing.assert_array_equal(baked[~pruned], stored[~pruned])

    # Every other variable (biases, normalization statistics) is copied as is.
    masked_layers = {layer.name: layer for layer in walk(masked)}
    for name, layer in plain_layers.items():
        if hasattr(layer, "layers"):
            continue
        source = {v.name: v for v in masked_layers[name].weights}
        for variable in layer.weights:
            if isinstance(masked_layers[name], MaskedLayer) and (
                variable.name in masked_layers[name].prunable_weight_names
            ):
                continue
            np.testing.assert_array_equal(
                ops.convert_to_numpy(variable),
                ops.convert_to_numpy(source[variable.name]),
            )

    set_masks(masked, {})  # Restores the invariant: pruned entries are 0.
    x = random_input(masked)
    np.testing.assert_array_equal(predict(plain, x), predict(masked, x))


def test_strip_masks_after_set_masks():
    masked = mask_model(randomize(functional_model()))
    set_masks(masked, random_masks(masked))
    plain = strip_masks(masked)
    x = random_input(masked)
    np.testing.assert_array_equal(predict(plain, x), predict(masked, x))


@pytest.mark.parametrize("build", [sequential_model, nested_model])
def test_stripped_model_saves_and_loads_with_plain_keras(build, tmp_path):
    masked = mask_model(randomize(build()))
    _assign_masks_only(masked, random_masks(masked))
    plain = strip_masks(masked)
    path = tmp_path / "ticket.keras"
    plain.save(path)

    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    json.loads(config)
    assert "keras_lth" not in config
    assert "Masked" not in config

    loaded = keras.models.load_model(path)
    assert not any(
        type(layer).__module__.startswith("keras_lth") for layer in walk(loaded)
    )
    set_masks(masked, {})  # Restores the invariant: pruned entries are 0.
    x = random_input(masked)
    np.testing.assert_array_equal(predict(loaded, x), predict(masked, x))


# --- sparsity, get_masks, set_masks -------------------------------------------


def test_sparsity_of_a_fresh_masked_model_is_zero():
    masked = mask_model(sequential_model())
    report = sparsity(masked)
    assert set(report) == {"global", "layers", "dense", "dense_fraction"}
    assert report["global"] == 0.0
    assert report["dense"] == {}
    assert report["dense_fraction"] == 0.0
    assert report["layers"] == {
        "conv/kernel": 0.0,
        "sep/depthwise_kernel": 0.0,
        "sep/pointwise_kernel": 0.0,
        "dw/kernel": 0.0,
        "deconv/kernel": 0.0,
        "out/kernel": 0.0,
    }


@pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())
def test_sparsity_after_set_masks(build):
    masked = mask_model(build())
    masks = random_masks(masked)
    set_masks(masked, masks)
    report = sparsity(masked)
    assert list(report["layers"]) == list(masks)
    for key, mask in masks.items():
        assert report["layers"][key] == pytest.approx(np.mean(mask == 0), abs=1e-12)
    total = sum(mask.size for mask in masks.values())
    zeros = sum(int(np.sum(mask == 0)) for mask in masks.values())
    assert report["global"] == pytest.approx(zeros / total, abs=1e-12)


def test_sparsity_exact_fractions():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, name="a"),  # 12 weights
            keras.layers.Dense(2, name="b"),  # 6 weights
        ]
    )
    masked = mask_model(model)
    mask_a = np.ones((4, 3), "float32")
    mask_a[0, :] = 0.0  # 3 of 12
    mask_b = np.zeros((3, 2), "float32")  # 6 of 6
    set_masks(masked, {"a/kernel": mask_a, "b/kernel": mask_b})
    report = sparsity(masked)
    assert report["layers"] == {"a/kernel": 0.25, "b/kernel": 1.0}
    assert report["global"] == pytest.approx(9 / 18)


def test_sparsity_without_masked_layers():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(2)], name="plain_model"
    )
    with pytest.raises(ValueError, match=r"'plain_model' has no masked layers"):
        sparsity(model)


def test_get_masks_returns_numpy_arrays_keyed_like_sparsity():
    masked = mask_model(nested_model())
    masks = get_masks(masked)
    assert list(masks) == list(sparsity(masked)["layers"])
    assert list(masks) == [
        "inner_conv/kernel",
        "inner_dense/kernel",
        "inner_out/kernel",
        "head/kernel",
    ]
    for key, (layer, name) in prunable_tensors(masked).items():
        assert isinstance(masks[key], np.ndarray)
        assert masks[key].shape == tuple(layer.prunable_variable(name).shape)
        # float32, as the pruning functions take and return them, whatever
        # dtype the mask variables have on this backend.
        assert masks[key].dtype == np.float32
        np.testing.assert_array_equal(masks[key], np.ones(masks[key].shape))


def test_a_ticket_saved_with_float32_masks_loads_on_every_backend():
    # tests/data/ticket_float_masks.keras was saved on TensorFlow by keras_lth
    # at commit 635806f, the last whose masks were float32: Dense(3) then
    # Dense(2), biases 0.5, these kernels and masks.
    path = pathlib.Path(__file__).parent / "data" / "ticket_float_masks.keras"
    k = {"dense": np.arange(12).reshape(4, 3), "out": np.arange(6).reshape(3, 2)}
    kernels = {"dense": (k["dense"] + 1) / 10, "out": -(k["out"] + 1) / 10}
    masks = {"dense": k["dense"] % 3 != 0, "out": k["out"] % 2 == 0}
    model = keras.models.load_model(path)
    for name, mask in masks.items():
        layer = model.get_layer(name)
        assert layer.kernel_mask.dtype == backends.mask_dtype("float32")
        np.testing.assert_array_equal(ops.convert_to_numpy(layer.kernel_mask), mask)
        np.testing.assert_allclose(
            ops.convert_to_numpy(layer.kernel), kernels[name] * mask, rtol=1e-6
        )
    x = np.linspace(-1, 1, 8, dtype="float32").reshape(2, 4)
    hidden = x @ (kernels["dense"] * masks["dense"]) + 0.5
    expected = hidden @ (kernels["out"] * masks["out"]) + 0.5
    np.testing.assert_allclose(ops.convert_to_numpy(model(x)), expected, rtol=1e-5)


def test_set_masks_assigns_masks_and_zeroes_pruned_weights():
    masked = mask_model(randomize(sequential_model()))
    tensors = prunable_tensors(masked)
    before = {
        key: ops.convert_to_numpy(layer.prunable_variable(name))
        for key, (layer, name) in tensors.items()
    }
    masks = random_masks(masked)
    # Only some keys: the others keep their masks and weights.
    chosen = {key: masks[key] for key in ["sep/pointwise_kernel", "out/kernel"]}
    set_masks(masked, chosen)
    after_masks = get_masks(masked)
    for key, (layer, name) in tensors.items():
        stored = ops.convert_to_numpy(layer.prunable_variable(name))
        if key in chosen:
            pruned = chosen[key] == 0
            assert pruned.any() and (~pruned).any()
            np.testing.assert_array_equal(after_masks[key], chosen[key])
            assert np.all(stored[pruned] == 0.0)
            np.testing.assert_array_equal(stored[~pruned], before[key][~pruned])
        else:
            np.testing.assert_array_equal(after_masks[key], np.ones(stored.shape))
            np.testing.assert_array_equal(stored, before[key])


def test_set_masks_rejects_unknown_keys():
    masked = mask_model(sequential_model())
    with pytest.raises(ValueError, match=r"\['nope/kernel'\].*'out/kernel'"):
        set_masks(masked, {"nope/kernel": np.ones((3, 3))})


def test_layers_sharing_a_name_are_keyed_by_their_path():
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, name="twice")], name="inner"
    )
    inputs = keras.Input((4,), name="x")
    once = keras.layers.Dense(4, name="once")(inner(inputs))
    outputs = keras.layers.Dense(2, name="twice")(once)
    masked = mask_model(keras.Model(inputs, outputs))
    assert list(prunable_tensors(masked)) == [
        "inner/twice/kernel",
        "once/kernel",
        "twice/kernel",
    ]
    assert list(sparsity(masked)["layers"]) == list(prunable_tensors(masked))


def test_set_masks_zeroes_the_optimizer_slots_of_pruned_entries():
    model = mask_model(sequential_model())
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    x = random_input(model, batch=16)
    model.fit(x, np.ones((16, *model.outputs[0].shape[1:])), epochs=2, verbose=0)
    masks = random_masks(model)
    set_masks(model, masks)
    tensors = prunable_tensors(model)
    checked = 0
    for slot in model.optimizer.variables:
        for key, (layer, name) in tensors.items():
            prefix = layer.prunable_variable(name).path.replace("/", "_") + "_"
            if slot.path.split("/")[-1].startswith(prefix):
                value = ops.convert_to_numpy(slot)
                assert np.all(value[masks[key] == 0] == 0)
                assert np.any(value[masks[key] == 1] != 0)
                checked += 1
    assert checked == 2 * len(tensors)  # Adam's momentum and velocity.


def test_set_masks_finds_slots_of_layers_whose_paths_collide():
    # Layer `dense` in model `block` and layer `block_dense` both name their
    # slots `block_dense_kernel_momentum`.
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, name="dense")], name="block"
    )
    inputs = keras.Input((4,), name="x")
    outputs = keras.layers.Dense(4, name="block_dense")(inner(inputs))
    model = mask_model(keras.Model(inputs, outputs))
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.normal(size=(32, 4)).astype("float32")
    model.fit(x, y, epochs=2, verbose=0)
    masks = random_masks(model)
    assert masks["dense/kernel"].tolist() != masks["block_dense/kernel"].tolist()
    set_masks(model, masks)
    model.fit(x, y, epochs=2, verbose=0)
    for key, (layer, name) in prunable_tensors(model).items():
        weights = ops.convert_to_numpy(layer.prunable_variable(name))
        assert np.all(weights[masks[key] == 0] == 0), key


def test_copies_share_no_variable_values_with_their_source():
    # On JAX, a shared array is deleted under one model by the other's next
    # jitted step (buffer donation).
    x = np.random.default_rng(0).random((4, 6)).astype("float32")
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5), keras.layers.Dense(3)]
    )
    masked = mask_model(model)
    masked.predict(x, verbose=0)
    plain = strip_masks(masked)
    plain.predict(x, verbose=0)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), masked.predict(x, verbose=0), atol=1e-6
    )
    np.testing.assert_allclose(
        plain.predict(x, verbose=0), masked.predict(x, verbose=0), atol=1e-6
    )


# --- Weights left dense: the warning and sparsity's "dense" -------------------


def text_model():
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(50, 8, name="emb")(tokens)
    x = keras.layers.MultiHeadAttention(2, 4, name="mha")(x, x)
    lstm = keras.layers.LSTM(4, return_sequences=True, name="lstm")
    x = keras.layers.Bidirectional(lstm, name="bi")(x)
    x = keras.layers.TimeDistributed(keras.layers.Dense(3, name="proj"), name="td")(x)
    x = keras.layers.GRU(3, name="gru")(x)
    outputs = keras.layers.Dense(2, name="out")(x)
    return keras.Model(tokens, outputs, name="text")


#: Every kernel of `text_model()`, keyed as `prunable_tensors` keys them: by
#: layer name, or by path where two cells share the name `lstm_cell`.
TEXT_PRUNABLE = {
    "emb/embeddings": 50 * 8,
    "query/kernel": 8 * 2 * 4,
    "key/kernel": 8 * 2 * 4,
    "value/kernel": 8 * 2 * 4,
    "attention_output/kernel": 2 * 4 * 8,
    "bi/forward_lstm/lstm_cell/kernel": 8 * 16,
    "bi/forward_lstm/lstm_cell/recurrent_kernel": 4 * 16,
    "bi/backward_lstm/lstm_cell/kernel": 8 * 16,
    "bi/backward_lstm/lstm_cell/recurrent_kernel": 4 * 16,
    "proj/kernel": 8 * 3,
    "gru_cell/kernel": 3 * 9,
    "gru_cell/recurrent_kernel": 3 * 9,
    "out/kernel": 3 * 2,
}


def mask_model_warnings(model, **kwargs):
    """`mask_model(model, **kwargs)` and the warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        masked = mask_model(model, **kwargs)
    return masked, [w for w in caught if "could not make" in str(w.message)]


def test_mask_model_masks_attention_recurrent_and_wrapped_layers():
    model = text_model()
    masked, caught = mask_model_warnings(model)
    assert caught == []
    assert {key: int(np.prod(w.shape)) for key, w in get_masks(masked).items()} == (
        TEXT_PRUNABLE
    )
    assert sparsity(masked)["dense"] == {}
    assert sparsity(masked)["dense_fraction"] == 0.0
    x = random_input(model, batch=4)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), masked.predict(x, verbose=0), atol=1e-6
    )


def test_mask_model_selects_layers_with_everything_inside_them():
    masked, caught = mask_model_warnings(
        text_model(), layers=[keras.layers.MultiHeadAttention, "td"]
    )
    assert caught == []
    assert sorted(get_masks(masked)) == sorted(
        [
            "query/kernel",
            "key/kernel",
            "value/kernel",
            "attention_output/kernel",
            "proj/kernel",
        ]
    )
    # Layers left out on purpose are still reported as dense.
    assert set(sparsity(masked)["dense"]) == {
        "emb/embeddings",
        "bi/forward_lstm/lstm_cell/kernel",
        "bi/forward_lstm/lstm_cell/recurrent_kernel",
        "bi/backward_lstm/lstm_cell/kernel",
        "bi/backward_lstm/lstm_cell/recurrent_kernel",
        "gru/gru_cell/kernel",
        "gru/gru_cell/recurrent_kernel",
        "out/kernel",
    }


class _Block(keras.layers.Layer):
    """A custom layer with a masked sublayer, a stock one and its own kernel."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.masked = MaskedDense(4, name="block_masked")
        self.stock = keras.layers.Dense(4, name="block_stock")

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(4, 4), name="kernel")

    def call(self, inputs):
        return ops.matmul(self.stock(self.masked(inputs)), self.kernel)


class _ListBlock(keras.layers.Layer):
    """A custom layer holding its kernels in a list, which `call` reads."""

    def build(self, input_shape):
        self.kernels = [self.add_weight(shape=(3, 3), name=f"{i}_kernel") for i in "ab"]

    def call(self, inputs):
        return ops.matmul(ops.matmul(inputs, self.kernels[0]), self.kernels[1])


def block_model():
    inputs = keras.Input((3,))
    return keras.Model(inputs, _Block(name="block")(inputs), name="blocks")


def test_masked_layers_inside_custom_layers_are_prunable_and_the_rest_reported():
    report = sparsity(block_model())
    assert list(report["layers"]) == ["block_masked/kernel"]
    assert report["dense"] == {"block/kernel": 16, "block/block_stock/kernel": 16}
    assert report["dense_fraction"] == pytest.approx(32 / 44)


def test_a_copy_leaves_custom_layers_dense_and_says_how_to_mask_them():
    masked, caught = mask_model_warnings(block_model())
    assert len(caught) == 1
    assert caught[0].category is UserWarning
    assert caught[0].filename == __file__  # Points at the caller.
    message = str(caught[0].message)
    assert "'block/kernel' (16), 'block/block_stock/kernel' (16)" in message
    assert "32 of its 44 kernel and embedding weights (72.7%)" in message
    assert "in_place=True" in message
    assert "bias" not in message


def test_in_place_masks_custom_layers_and_names_what_it_cannot_reach():
    inputs = keras.Input((3,))
    x = _Block(name="block")(inputs)
    model = keras.Model(inputs, _ListBlock(name="listed")(x[:, :3]))
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    before = model.predict(x, verbose=0)
    masked, caught = mask_model_warnings(model, in_place=True)
    assert masked is model
    assert sorted(get_masks(model)) == [
        "block/kernel",
        "block_masked/kernel",
        "block_stock/kernel",
    ]
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-6)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "'listed/a_kernel' (9), 'listed/b_kernel' (9)" in message
    assert "not a list or a dict" in message


# --- Subclassed models --------------------------------------------------------


class SubclassedTicket(keras.Model):
    """The README's recipe: a subclassed model built from keras_lth.layers."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = MaskedDense(16, activation="relu", name="hidden")
        self.out = MaskedDense(3, name="out")

    def call(self, inputs):
        return self.out(self.hidden(inputs))


def test_require_prunable_tensors_refuses_an_unbuilt_model_clearly():
    model = SubclassedTicket(name="sub")
    with pytest.raises(
        ValueError,
        match=r"'sub' is not built: its masked layers \['hidden', 'out'\].*"
        r"model\.build\(input_shape\).*model\(x\[:1\]\)",
    ):
        require_prunable_tensors(model)


def test_require_prunable_tensors_builds_a_model_that_knows_its_input_shape():
    model = SubclassedTicket()
    with warnings.catch_warnings():
        # Keras warns that the default `build` leaves sublayers unbuilt.
        warnings.simplefilter("ignore")
        model.build((None, 8))
    assert not model.hidden.built
    assert list(require_prunable_tensors(model)) == ["hidden/kernel", "out/kernel"]
    assert model.hidden.built and model.out.built
    assert tuple(model.out.kernel_mask.shape) == (16, 3)


def _fit_subclassed_ticket(model):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 3, size=64)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    ticket = LotteryTicket(2, 1, prune_rate=0.5, monitor="loss", verbose=0)
    model.fit(x, y, epochs=ticket.total_epochs, callbacks=[ticket], verbose=0)
    return x


def test_lottery_ticket_on_an_unbuilt_subclassed_model():
    model = SubclassedTicket(name="sub")
    if backends.BACKEND == "tensorflow":
        # Its `fit` builds the model when the first step runs, after
        # `on_train_begin`: the error says what to do.
        with pytest.raises(ValueError, match=r"'sub' is not built.*model\(x"):
            _fit_subclassed_ticket(model)
    else:
        # JAX and PyTorch build it from the data before callbacks start.
        _fit_subclassed_ticket(model)
        assert sparsity(model)["layers"]["hidden/kernel"] == 0.5


def test_lottery_ticket_on_a_subclassed_model_built_first():
    model = SubclassedTicket()
    model(np.zeros((1, 8), "float32"))
    _fit_subclassed_ticket(model)
    assert sparsity(model)["layers"]["hidden/kernel"] == 0.5


def test_strip_masks_in_place_on_a_subclassed_ticket():
    model = SubclassedTicket()
    x = np.random.default_rng(1).normal(size=(5, 8)).astype("float32")
    model(x)
    set_masks(model, random_masks(model))
    expected = predict(model, x)
    pruned = {key: mask == 0 for key, mask in get_masks(model).items()}

    assert strip_masks(model, in_place=True) is model
    np.testing.assert_allclose(predict(model, x), expected, rtol=1e-6, atol=1e-6)
    assert sparsity(model)["global"] == 0.0  # Masks all ones: nothing masked.
    weights = get_prunable_weights(model)
    for key, where in pruned.items():
        assert where.any()
        assert np.all(weights[key][where] == 0.0)


def test_strip_masks_in_place_keeps_a_sequential_model_and_its_outputs():
    masked = mask_model(randomize(sequential_model()))
    set_masks(masked, random_masks(masked))
    x = random_input(masked)
    copy = strip_masks(masked)
    assert strip_masks(masked, in_place=True) is masked
    np.testing.assert_allclose(predict(masked, x), predict(copy, x), atol=1e-5)


def test_strip_masks_in_place_refuses_lora_layers():
    model = SubclassedTicket()
    model(np.zeros((1, 8), "float32"))
    model.hidden.enable_lora(2)
    with pytest.raises(ValueError, match=r"\['hidden'\].*LoRA"):
        strip_masks(model, in_place=True)


def test_copies_keep_the_masks_of_masked_layers_inside_other_layers():
    # `get_weights` leaves masks out; copying must not lose these.
    inputs = keras.Input((4, 3))
    inner = keras.layers.TimeDistributed(MaskedDense(5, name="inner"), name="td")
    model = keras.Model(inputs, inner(inputs))
    masks = random_masks(model)
    set_masks(model, masks)
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32")
    copy = mask_model(model)
    np.testing.assert_array_equal(
        get_masks(copy)["inner/kernel"], masks["inner/kernel"]
    )
    np.testing.assert_allclose(predict(copy, x), predict(model, x), atol=1e-6)
    # Stripping reaches inside the wrapper: a stock Dense, masks baked in.
    plain = strip_masks(model)
    assert type(plain.get_layer("td").layer) is keras.layers.Dense
    kernel = ops.convert_to_numpy(plain.get_layer("td").layer.kernel)
    assert np.all(kernel[masks["inner/kernel"] == 0] == 0)
    np.testing.assert_allclose(predict(plain, x), predict(model, x), atol=1e-6)
