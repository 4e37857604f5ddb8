"""Tests for the `MaskedLayer` mixin and the registry (`keras_lth/layers/base.py`)."""

import keras
import numpy as np
import pytest

import keras_lth
from keras_lth import layers
from keras_lth.layers import MASKED_TWINS
from keras_lth.layers import MaskedConv2D
from keras_lth.layers import MaskedDense
from keras_lth.layers import MaskedEmbedding
from keras_lth.layers import MaskedLayer
from keras_lth.layers import MaskedSeparableConv2D
from keras_lth.layers import stock_class

# The supported stock layers, each with its twin, small arguments, an input
# shape, and the constructor argument holding each prunable weight's
# initializer. Written out by hand: it is what the package promises.
SUPPORTED = [
    (
        keras.layers.Dense,
        "MaskedDense",
        {"units": 3},
        (2, 4),
        {"kernel": "kernel_initializer"},
    ),
    (
        keras.layers.EinsumDense,
        "MaskedEinsumDense",
        {"equation": "ab,bc->ac", "output_shape": 3},
        (2, 4),
        {"kernel": "kernel_initializer"},
    ),
    (
        keras.layers.Conv1D,
        "MaskedConv1D",
        {"filters": 3, "kernel_size": 2},
        (2, 5, 2),
        {"kernel": "kernel_initializer"},
    ),
    (
        keras.layers.Conv2D,
        "MaskedConv2D",
        {"filters": 3, "kernel_size": 2},
        (2, 5, 5, 2),
        {"kernel": "kernel_initializer"},
    ),
    (
        keras.layers.Conv3D,
        "MaskedConv3D",
        {"filters": 3, "kernel_size": 2},
        (2, 3, 3, 3, 2),
        {"kernel": "kernel_initializer"},
    ),
    (
        keras.layers.Conv1DTranspose,
        "MaskedConv1DTranspose",
        {"filters": 3, "kernel_size": 2},
        (2, 5, 2),
        {"kernel": "kernel_initializer"},
    ),
    (
        keras.layers.Conv2DTranspose,
        "MaskedConv2DTranspose",
        {"filters": 3, "kernel_size": 2},
        (2, 5, 5, 2),
        {"kernel": "kernel_initializer"},
    ),
    (
        keras.layers.Conv3DTranspose,
        "MaskedConv3DTranspose",
        {"filters": 3, "kernel_size": 2},
        (2, 3, 3, 3, 2),
        {"kernel": "kernel_initializer"},
    ),
    (
        keras.layers.DepthwiseConv1D,
        "MaskedDepthwiseConv1D",
        {"kernel_size": 2},
        (2, 5, 2),
        {"kernel": "depthwise_initializer"},
    ),
    (
        keras.layers.DepthwiseConv2D,
        "MaskedDepthwiseConv2D",
        {"kernel_size": 2},
        (2, 5, 5, 2),
        {"kernel": "depthwise_initializer"},
    ),
    (
        keras.layers.SeparableConv1D,
        "MaskedSeparableConv1D",
        {"filters": 3, "kernel_size": 2},
        (2, 5, 2),
        {
            "depthwise_kernel": "depthwise_initializer",
            "pointwise_kernel": "pointwise_initializer",
        },
    ),
    (
        keras.layers.SeparableConv2D,
        "MaskedSeparableConv2D",
        {"filters": 3, "kernel_size": 2},
        (2, 5, 5, 2),
        {
            "depthwise_kernel": "depthwise_initializer",
            "pointwise_kernel": "pointwise_initializer",
        },
    ),
    (
        keras.layers.Embedding,
        "MaskedEmbedding",
        {"input_dim": 10, "output_dim": 4},
        (2, 3),
        {"embeddings": "embeddings_initializer"},
    ),
]


# Registry: MASKED_TWINS, exports, stock_class, serialization registration.
# One test per property, with a subtest per class: these checks are cheap
# and the suite's per-test setup is not.


def test_masked_twins_maps_every_supported_stock_layer_to_its_twin():
    expected = {stock: getattr(layers, name) for stock, name, *_ in SUPPORTED}
    assert MASKED_TWINS == expected
    assert set(layers.MASKED_LAYERS) == set(expected.values())
    assert len(layers.MASKED_LAYERS) == len(SUPPORTED)


def test_every_twin_is_exported_and_extends_its_stock_layer(subtests):
    for stock, masked_name, _, _, initializers in SUPPORTED:
        with subtests.test(msg=masked_name):
            masked = getattr(layers, masked_name)
            assert masked_name in layers.__all__
            assert masked.__name__ == masked_name
            assert issubclass(masked, stock)
            assert issubclass(masked, MaskedLayer)
            assert stock_class(masked) is stock
            assert tuple(masked.prunable_weight_names) == tuple(initializers)


def test_every_twin_is_registered_for_loading_without_custom_objects(subtests):
    for _, masked_name, kwargs, _, _ in SUPPORTED:
        with subtests.test(msg=masked_name):
            masked = getattr(layers, masked_name)
            registered_name = f"keras_lth>{masked_name}"
            assert keras.saving.get_registered_name(masked) == registered_name
            assert keras.saving.get_registered_object(registered_name) is masked

            layer = masked(**kwargs)
            config = keras.saving.serialize_keras_object(layer)
            assert config["registered_name"] == registered_name
            restored = keras.saving.deserialize_keras_object(config)
            assert type(restored) is masked
            assert restored.get_config() == layer.get_config()


def test_stock_class_of_a_stock_layer_is_itself():
    assert stock_class(keras.layers.Dense) is keras.layers.Dense


def test_stock_class_of_a_user_subclass_is_the_keras_layer():
    class MyMaskedDense(MaskedDense):
        pass

    assert stock_class(MyMaskedDense) is keras.layers.Dense


@pytest.mark.parametrize("not_a_layer", [int, MaskedLayer])
def test_stock_class_rejects_classes_that_are_not_keras_layers(not_a_layer):
    with pytest.raises(TypeError, match=not_a_layer.__name__):
        stock_class(not_a_layer)


# Mask creation and naming.


def test_every_twin_adds_one_ones_mask_per_prunable_weight(subtests):
    for _, masked_name, kwargs, input_shape, initializers in SUPPORTED:
        with subtests.test(msg=masked_name):
            layer = getattr(layers, masked_name)(**kwargs)
            layer.build(input_shape)

            masks = [v for v in layer.weights if v.name.endswith("_mask")]
            assert [v.name for v in masks] == [f"{name}_mask" for name in initializers]
            assert [v.path for v in layer.non_trainable_weights] == [
                v.path for v in masks
            ]
            for name in initializers:
                mask = layer.mask_variable(name)
                weight = layer.prunable_variable(name)
                assert getattr(layer, f"{name}_mask") is mask
                assert mask.path == f"{layer.name}/{name}_mask"
                assert tuple(mask.shape) == tuple(weight.shape)
                assert not mask.trainable
                assert mask.aggregation == "only_first_replica"
                np.testing.assert_array_equal(np.asarray(mask), np.ones(weight.shape))


def test_masks_of_different_layers_have_distinct_paths():
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            MaskedSeparableConv2D(3, 2),
            MaskedConv2D(3, 2),
            keras.layers.Flatten(),
            MaskedDense(4),
            MaskedDense(2),
        ]
    )
    mask_paths = [v.path for v in model.non_trainable_weights]
    assert len(mask_paths) == 5
    assert len(set(mask_paths)) == len(mask_paths)
    assert not any(v.name == "mask" for v in model.weights)
    assert sorted(path.rsplit("/", 1)[1] for path in mask_paths) == [
        "depthwise_kernel_mask",
        "kernel_mask",
        "kernel_mask",
        "kernel_mask",
        "pointwise_kernel_mask",
    ]


@pytest.mark.parametrize("dtype", ["float32", "float64", "mixed_float16", "bfloat16"])
def test_mask_dtype_is_the_weight_variable_dtype(dtype):
    layer = MaskedDense(3, dtype=dtype)
    layer.build((2, 4))
    expected = keras.DTypePolicy(dtype).variable_dtype
    assert layer.prunable_variable("kernel").dtype == expected
    assert layer.mask_variable("kernel").dtype == expected


def test_initializer_for_returns_the_stock_layers_initializer(subtests):
    for _, masked_name, kwargs, input_shape, initializers in SUPPORTED:
        with subtests.test(msg=masked_name):
            arguments = {
                argument: keras.initializers.Constant(0.5 + i)
                for i, argument in enumerate(initializers.values())
            }
            layer = getattr(layers, masked_name)(**kwargs, **arguments)
            layer.build(input_shape)
            for name, argument in initializers.items():
                initializer = layer.initializer_for(name)
                assert initializer is arguments[argument]
                weight = np.asarray(layer.prunable_variable(name))
                np.testing.assert_array_equal(
                    weight, np.full(weight.shape, initializer.value)
                )


# Accessors and their errors.


def _built_dense():
    layer = MaskedDense(3, name="dense")
    layer.build((2, 4))
    return layer


def test_masked_weight_multiplies_the_weight_by_its_mask():
    rng = np.random.default_rng(0)
    layer = _built_dense()
    mask = (rng.random((4, 3)) < 0.5).astype("float32")
    layer.mask_variable("kernel").assign(mask)
    kernel = np.asarray(layer.prunable_variable("kernel"))
    np.testing.assert_array_equal(
        np.asarray(layer.masked_weight("kernel")), kernel * mask
    )


def test_prunable_variable_is_the_stored_trainable_weight():
    layer = _built_dense()
    kernel = layer.prunable_variable("kernel")
    assert kernel.path == "dense/kernel"
    assert kernel.trainable
    kernel.assign(np.full((4, 3), 2.0, dtype="float32"))
    np.testing.assert_array_equal(np.asarray(layer.kernel), np.full((4, 3), 2.0))


@pytest.mark.parametrize("name", ["bias", "kernel_mask", "weights", "Kernel"])
def test_mask_variable_rejects_names_that_are_not_prunable(name):
    layer = _built_dense()
    with pytest.raises(ValueError, match=r"Expected one of \('kernel',\)") as error:
        layer.mask_variable(name)
    assert repr(name) in str(error.value)
    assert "'dense'" in str(error.value)


def test_masked_weight_rejects_a_non_prunable_weight():
    layer = _built_dense()
    with pytest.raises(ValueError, match=r"Expected one of \('kernel',\).*'bias'"):
        layer.masked_weight("bias")


@pytest.mark.parametrize("name", ["mask", "kernal"])
def test_masked_weight_rejects_unknown_names_with_a_value_error(name):
    layer = _built_dense()
    with pytest.raises(ValueError, match=r"Expected one of \('kernel',\)"):
        layer.masked_weight(name)


def test_separable_layers_have_no_plain_kernel():
    layer = MaskedSeparableConv2D(3, 2)
    layer.build((2, 5, 5, 2))
    with pytest.raises(ValueError, match="depthwise_kernel"):
        layer.mask_variable("kernel")


def test_embedding_mask_is_keyed_by_embeddings():
    layer = MaskedEmbedding(10, 4)
    layer.build((2, 3))
    with pytest.raises(ValueError, match="embeddings"):
        layer.mask_variable("kernel")


def test_prunable_variable_rejects_unknown_names_and_lists_the_weights():
    layer = _built_dense()
    with pytest.raises(ValueError, match="no weight named 'depthwise_kernel'") as error:
        layer.prunable_variable("depthwise_kernel")
    assert "['kernel', 'bias', 'kernel_mask']" in str(error.value)


def test_prunable_variable_of_an_unbuilt_layer_says_it_has_no_weights():
    layer = MaskedDense(3, name="unbuilt")
    with pytest.raises(ValueError, match=r"'unbuilt' has no weight named 'kernel'"):
        layer.prunable_variable("kernel")


# Saving: the mixin saves every variable, masks included.


def test_own_variables_include_the_masks():
    rng = np.random.default_rng(1)
    layer = MaskedSeparableConv2D(3, 2)
    layer.build((2, 5, 5, 2))
    for variable in layer.weights:
        variable.assign(rng.random(variable.shape).astype("float32"))

    store = {}
    layer.save_own_variables(store)
    assert len(store) == len(layer.weights) == 5

    restored = MaskedSeparableConv2D(3, 2)
    restored.build((2, 5, 5, 2))
    restored.load_own_variables(store)
    for original, copy in zip(layer.weights, restored.weights):
        assert copy.name == original.name
        np.testing.assert_array_equal(np.asarray(copy), np.asarray(original))


def test_weights_file_round_trip_keeps_masks(tmp_path):
    def build():
        return keras.Sequential(
            [
                keras.Input((5, 5, 2)),
                MaskedConv2D(3, 2),
                keras.layers.Flatten(),
                MaskedDense(2),
            ]
        )

    rng = np.random.default_rng(2)
    model = build()
    masks = []
    for index in (0, 2):
        layer = model.layers[index]
        mask = (rng.random(layer.kernel_mask.shape) < 0.5).astype("float32")
        layer.mask_variable("kernel").assign(mask)
        masks.append((index, mask))
    path = tmp_path / "masked.weights.h5"
    model.save_weights(path)

    restored = build()
    restored.load_weights(path)
    assert len(restored.weights) == len(model.weights)
    for original, copy in zip(model.weights, restored.weights):
        assert copy.name == original.name
        np.testing.assert_array_equal(np.asarray(copy), np.asarray(original))
    for index, mask in masks:
        restored_mask = restored.layers[index].mask_variable("kernel")
        np.testing.assert_array_equal(np.asarray(restored_mask), mask)


def test_mask_model_swaps_in_the_twins_with_ones_masks():
    stock = keras.Sequential(
        [
            keras.Input((5, 5, 2)),
            keras.layers.Conv2D(3, 2),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    masked = keras_lth.mask_model(stock)
    assert [type(layer) for layer in masked.layers] == [
        MaskedConv2D,
        keras.layers.Flatten,
        MaskedDense,
    ]
    for layer in (masked.layers[0], masked.layers[2]):
        np.testing.assert_array_equal(
            np.asarray(layer.mask_variable("kernel")), np.ones(layer.kernel.shape)
        )
    x = np.random.default_rng(3).normal(size=(2, 5, 5, 2)).astype("float32")
    np.testing.assert_array_equal(np.asarray(masked(x)), np.asarray(stock(x)))
