"""Tests for the `MaskedLayer` mixin and the registry (`keras_lth/layers/base.py`).

The generic tests run on every masked class (`_cases.CASES`), each checked
against the stock Keras layer it extends: the same weights (`get_weights`
and `set_weights` leave the masks out), plus one ones-initialised mask
variable per prunable weight; pruning with `set_mask` stores the
pruned entries as exact zeros, so the output is the stock output once the
mask is folded into the weight; exactly zero gradients at pruned positions;
pruned weights that stay exactly zero under Adam or SGD with momentum and
weight decay, also when pruned mid-training with `keras_lth.set_masks`;
lossless serialization; and LoRA, whose update is masked in `call`.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_lth
from keras_lth import layers
from keras_lth.layers import MASKED_TWINS
from keras_lth.layers import MaskedConv2D
from keras_lth.layers import MaskedDense
from keras_lth.layers import MaskedEmbedding
from keras_lth.layers import MaskedLayer
from keras_lth.layers import MaskedSeparableConv2D
from keras_lth.layers import stock_class
from tests import backends
from tests.layers import _cases
from tests.layers._cases import CASES
from tests.layers._cases import LORA_CASES
from tests.layers._cases import SUPPORTED

cases = _cases.parametrize_cases(CASES)


# Registry: MASKED_TWINS, exports, stock_class, serialization registration.
# One test per property, with a subtest per class: these checks are cheap
# and the suite's per-test setup is not.


#: Twins of layers whose kernels live in sublayers, and of the RNN cells that
#: hold them: `test_attention.py` and `test_recurrent.py` test these.
NESTED = {
    keras.layers.MultiHeadAttention: layers.MaskedMultiHeadAttention,
    keras.layers.LSTM: layers.MaskedLSTM,
    keras.layers.GRU: layers.MaskedGRU,
    keras.layers.SimpleRNN: layers.MaskedSimpleRNN,
    keras.layers.ConvLSTM1D: layers.MaskedConvLSTM1D,
    keras.layers.ConvLSTM2D: layers.MaskedConvLSTM2D,
    keras.layers.ConvLSTM3D: layers.MaskedConvLSTM3D,
    keras.layers.LSTMCell: layers.MaskedLSTMCell,
    keras.layers.GRUCell: layers.MaskedGRUCell,
    keras.layers.SimpleRNNCell: layers.MaskedSimpleRNNCell,
    type(keras.layers.ConvLSTM1D(1, 1).cell): layers.MaskedConvLSTMCell,
}


def test_masked_twins_maps_every_supported_stock_layer_to_its_twin():
    expected = {case.stock: case.masked for case in SUPPORTED} | NESTED
    assert MASKED_TWINS == expected
    assert set(layers.MASKED_LAYERS) == set(expected.values())
    assert len(layers.MASKED_LAYERS) == len(expected)


def test_every_twin_is_exported_and_extends_its_stock_layer(subtests):
    for case in SUPPORTED:
        with subtests.test(msg=case.name):
            masked_name = f"Masked{case.name}"
            masked = getattr(layers, masked_name)
            assert masked_name in layers.__all__
            assert masked.__name__ == masked_name
            assert issubclass(masked, case.stock)
            assert issubclass(masked, MaskedLayer)
            assert stock_class(masked) is case.stock
            assert tuple(masked.prunable_weight_names) == case.prunable


def test_every_twin_is_registered_for_loading_without_custom_objects(subtests):
    for case in SUPPORTED:
        with subtests.test(msg=case.name):
            masked = case.masked
            registered_name = f"keras_lth>Masked{case.name}"
            assert keras.saving.get_registered_name(masked) == registered_name
            assert keras.saving.get_registered_object(registered_name) is masked

            layer = masked(**case.kwargs)
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


# Weights and masks: creation and naming.


@cases
def test_weights_are_the_stock_weights_and_variables_add_one_ones_mask_each(case):
    layer = _cases.build(case)
    stock = case.stock(**case.kwargs)
    stock.build(case.input_shape)

    def names_and_shapes(weights):
        return [(v.name, tuple(v.shape)) for v in weights]

    # The masks are state, not weights: `get_weights` has the stock layout.
    assert names_and_shapes(layer.weights) == names_and_shapes(stock.weights)
    assert [w.shape for w in layer.get_weights()] == [
        w.shape for w in stock.get_weights()
    ]
    # One mask per prunable weight, in their order, and nothing else.
    assert [v.name for v in layer.non_trainable_variables] == [
        f"{name}_mask" for name in case.prunable
    ]
    assert len(layer.variables) == len(stock.variables) + len(case.prunable)

    for name in case.prunable:
        weight = _cases.variable(layer, name)
        mask = _cases.variable(layer, f"{name}_mask")
        assert layer.mask_variable(name) is mask
        assert getattr(layer, f"{name}_mask") is mask
        assert layer.prunable_variable(name) is weight
        assert mask.path == f"{layer.name}/{name}_mask"
        assert not mask.trainable
        assert mask.aggregation == "only_first_replica"
        assert tuple(mask.shape) == tuple(weight.shape)
        assert weight.dtype == "float32"
        assert mask.dtype == backends.mask_dtype("float32")
        np.testing.assert_array_equal(ops.convert_to_numpy(mask), np.ones(weight.shape))


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
    mask_paths = [v.path for v in model.non_trainable_variables]
    assert len(mask_paths) == 5
    assert len(set(mask_paths)) == len(mask_paths)
    assert not any(v.name == "mask" for v in model.variables)
    assert sorted(path.rsplit("/", 1)[1] for path in mask_paths) == [
        "depthwise_kernel_mask",
        "kernel_mask",
        "kernel_mask",
        "kernel_mask",
        "pointwise_kernel_mask",
    ]


@pytest.mark.parametrize("dtype", ["float32", "float64", "mixed_float16", "bfloat16"])
def test_masks_are_bool_on_jax_and_of_the_weight_dtype_elsewhere(dtype):
    policy = keras.DTypePolicy(dtype)
    layer = MaskedDense(3, dtype=dtype)
    layer.build((2, 4))
    assert layer.prunable_variable("kernel").dtype == policy.variable_dtype
    assert layer.mask_variable("kernel").dtype == backends.mask_dtype(
        policy.variable_dtype
    )
    mask = _cases.random_mask((4, 3), np.random.default_rng(0))
    layer.set_mask("kernel", mask)
    stock = keras.layers.Dense(3, dtype=dtype)
    stock.build((2, 4))
    assert keras.backend.standardize_dtype(layer(np.ones((2, 4))).dtype) == (
        keras.backend.standardize_dtype(stock(np.ones((2, 4))).dtype)
    )
    (gradient,) = backends.gradients(
        lambda: ops.sum(ops.cast(layer(np.ones((2, 4))), "float32")),
        [layer.prunable_variable("kernel")],
    )
    assert np.all(gradient[mask == 0] == 0.0)
    assert np.all(gradient[mask == 1] != 0.0)


def test_initializer_for_returns_the_stock_layers_initializer(subtests):
    for case in SUPPORTED:
        with subtests.test(msg=case.name):
            arguments = {
                argument: keras.initializers.Constant(0.5 + i)
                for i, argument in enumerate(case.initializers.values())
            }
            layer = _cases.build(case, **arguments)
            for name, argument in case.initializers.items():
                initializer = layer.initializer_for(name)
                assert initializer is arguments[argument]
                weight = ops.convert_to_numpy(layer.prunable_variable(name))
                np.testing.assert_array_equal(
                    weight, np.full(weight.shape, initializer.value)
                )


# Helpers.


def _built_dense():
    layer = MaskedDense(3, name="dense")
    layer.build((2, 4))
    return layer


def _built_randomized(case, rng):
    """A built twin whose trainable weights are random and nonzero."""
    layer = _cases.build(case)
    _cases.randomize_weights(layer, rng)
    return layer


def _values(layer):
    return {v.name: ops.convert_to_numpy(v) for v in layer.variables}


# Changing masks: `set_mask`, `apply_masks`, `set_weights`.


def test_set_mask_stores_pruned_entries_as_zeros(subtests):
    rng = np.random.default_rng(0)
    for case in SUPPORTED:
        with subtests.test(msg=case.name):
            layer = _built_randomized(case, rng)
            before = _values(layer)
            # Checks the masks, and the weights times the masks, as stored.
            masks, _ = _cases.prune_randomly(layer, case, rng)

            after = _values(layer)
            for name, mask in masks.items():
                stored = after[name]
                np.testing.assert_array_equal(after[f"{name}_mask"], mask)
                assert np.all(stored[mask == 1] != 0.0)
                # `call` reads the stored weight as it is.
                np.testing.assert_array_equal(
                    ops.convert_to_numpy(layer.masked_weight(name)), stored
                )
            # Biases are left alone.
            for name, value in before.items():
                if name not in masks and not name.endswith("_mask"):
                    np.testing.assert_array_equal(after[name], value)


@pytest.mark.parametrize("dtype", ["bool", "int32", "float64"])
def test_set_mask_casts_the_mask_to_the_mask_dtype(dtype):
    rng = np.random.default_rng(1)
    layer = _built_dense()
    kernel = ops.convert_to_numpy(layer.kernel)
    mask = _cases.random_mask((4, 3), rng)
    layer.set_mask("kernel", mask.astype(dtype))
    assert layer.kernel_mask.dtype == backends.mask_dtype("float32")
    np.testing.assert_array_equal(ops.convert_to_numpy(layer.kernel_mask), mask)
    np.testing.assert_array_equal(ops.convert_to_numpy(layer.kernel), kernel * mask)


@pytest.mark.parametrize("value", [0.5, -1.0, 2, float("nan")])
def test_set_mask_rejects_values_other_than_0_and_1_and_changes_nothing(value):
    layer = _built_dense()
    before = _values(layer)
    mask = np.ones((4, 3), dtype="float32")
    mask[1, 2] = value
    with pytest.raises(ValueError) as error:
        layer.set_mask("kernel", mask)
    message = str(error.value)
    assert "Expected a mask of 0 (pruned) and 1 (kept) for 'dense/kernel'" in message
    assert "Received 1 other values" in message
    for name, value in _values(layer).items():
        np.testing.assert_array_equal(value, before[name])


def test_set_mask_rejects_a_mask_of_the_wrong_shape_and_changes_nothing():
    layer = _built_dense()
    before = _values(layer)
    with pytest.raises(ValueError) as error:
        layer.set_mask("kernel", np.zeros((3, 4), dtype="float32"))
    message = str(error.value)
    assert "Expected a mask of shape (4, 3) for 'dense/kernel'" in message
    assert "Received shape (3, 4)" in message
    for name, value in _values(layer).items():
        np.testing.assert_array_equal(value, before[name])


def test_set_mask_rejects_a_non_prunable_weight():
    layer = _built_dense()
    with pytest.raises(ValueError, match=r"Expected one of \('kernel',\).*'bias'"):
        layer.set_mask("bias", np.zeros((3,), dtype="float32"))


def test_set_mask_on_an_unbuilt_layer_asks_to_build_it():
    layer = MaskedDense(3, name="unbuilt")
    with pytest.raises(ValueError, match="'unbuilt' has no masks until it is built"):
        layer.set_mask("kernel", np.ones((4, 3), dtype="float32"))


def test_set_weights_re_zeroes_pruned_entries_and_keeps_the_masks(subtests):
    rng = np.random.default_rng(2)
    for case in SUPPORTED:
        with subtests.test(msg=case.name):
            layer = _built_randomized(case, rng)
            masks, _ = _cases.prune_randomly(layer, case, rng)

            # Nonzero everywhere, pruned entries included: the stock weights.
            new = {
                v.name: rng.normal(size=v.shape).astype("float32")
                for v in layer.weights
            }
            layer.set_weights([new[v.name] for v in layer.weights])

            after = _values(layer)
            for name, value in new.items():
                if name in masks:
                    np.testing.assert_array_equal(after[name], value * masks[name])
                    assert np.all(after[name][masks[name] == 0] == 0.0)
                else:
                    np.testing.assert_array_equal(after[name], value)
            for name, mask in masks.items():
                np.testing.assert_array_equal(after[f"{name}_mask"], mask)


def test_set_weights_refuses_a_list_holding_masks():
    # Masks change with `set_mask` only; Keras refuses the longer list.
    layer = _built_dense()
    values = [ops.convert_to_numpy(v) for v in layer.variables]
    with pytest.raises(ValueError, match="length 3.*expecting 2"):
        layer.set_weights(values)


def test_assigning_a_mask_variable_directly_leaves_stale_weights_until_apply_masks():
    # The caveat in the `MaskedLayer` docstring: the forward pass reads the
    # stored weight, so a mask assigned without `set_mask` does not prune
    # anything until `apply_masks` (or `set_mask`) zeroes the weight.
    rng = np.random.default_rng(4)
    case = _cases.BY_NAME["Dense"]
    layer = _built_randomized(case, rng)
    kernel = ops.convert_to_numpy(layer.kernel)
    mask = _cases.random_mask((4, 3), rng)
    x = case.inputs(rng)

    def stock_output(kernel):
        # The bias is the layer's, which nothing here changes.
        return ops.convert_to_numpy(
            _cases.stock_holding(case, layer, {"kernel": kernel})(x)
        )

    layer.kernel_mask.assign(mask)
    np.testing.assert_array_equal(ops.convert_to_numpy(layer.kernel), kernel)
    assert np.all(ops.convert_to_numpy(layer.kernel)[mask == 0] != 0.0)
    stale_output = ops.convert_to_numpy(layer(x))
    # The pruned entries still contribute...
    np.testing.assert_array_equal(stale_output, stock_output(kernel))
    assert not np.array_equal(stale_output, stock_output(kernel * mask))

    layer.apply_masks()
    # ...until `apply_masks` zeroes them.
    np.testing.assert_array_equal(ops.convert_to_numpy(layer.kernel), kernel * mask)
    assert np.all(ops.convert_to_numpy(layer.kernel)[mask == 0] == 0.0)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer(x)), stock_output(kernel * mask)
    )
    np.testing.assert_array_equal(ops.convert_to_numpy(layer.kernel_mask), mask)


def test_model_set_weights_keeps_the_masks_and_set_masks_re_zeroes_entries():
    # `Model.set_weights` assigns the variables one by one, bypassing the
    # masked layers' `set_weights`: the masks are not among them, and
    # `set_masks(model, {})` (or `restore_weights`) zeroes pruned entries.
    rng = np.random.default_rng(5)
    model = keras.Sequential(
        [keras.Input((4,)), MaskedDense(5, name="a"), MaskedDense(2, name="b")]
    )
    snapshot = model.get_weights()  # Before pruning: all-ones masks then.
    assert len(snapshot) == 4  # Two kernels, two biases.
    masks = {
        "a/kernel": _cases.random_mask((4, 5), rng),
        "b/kernel": _cases.random_mask((5, 2), rng),
    }
    keras_lth.set_masks(model, masks)
    model.set_weights(snapshot)
    kernels = {f"{layer.name}/kernel": layer.kernel for layer in model.layers}
    for key, mask in masks.items():
        np.testing.assert_array_equal(
            ops.convert_to_numpy(model.get_layer(key.split("/")[0]).kernel_mask), mask
        )
        assert np.any(ops.convert_to_numpy(kernels[key])[mask == 0] != 0.0)

    keras_lth.set_masks(model, {})
    by_path = {v.path: value for v, value in zip(model.weights, snapshot)}
    for key, mask in masks.items():
        kernel = kernels[key]
        np.testing.assert_array_equal(
            ops.convert_to_numpy(kernel), by_path[kernel.path] * mask
        )
    assert keras_lth.sparsity(model)["layers"]["a/kernel"] == np.mean(
        masks["a/kernel"] == 0
    )


# Accessors and their errors.


def test_masked_weight_is_the_stored_weight_with_a_masked_gradient():
    rng = np.random.default_rng(6)
    layer = _built_dense()
    kernel = ops.convert_to_numpy(layer.kernel)
    mask = _cases.random_mask((4, 3), rng)
    layer.set_mask("kernel", mask)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer.masked_weight("kernel")), kernel * mask
    )
    upstream = rng.normal(size=(4, 3)).astype("float32")
    (gradient,) = backends.gradients(
        lambda: ops.sum(ops.multiply(layer.masked_weight("kernel"), upstream)),
        [layer.prunable_variable("kernel")],
    )
    np.testing.assert_array_equal(gradient, upstream * mask)


def _kernel_gradient(layer, upstream):
    x = np.ones((2, 4), dtype="float32")
    (gradient,) = backends.gradients(
        lambda: ops.sum(ops.multiply(layer(x), upstream)),
        [layer.prunable_variable("kernel")],
    )
    return gradient


def test_gradient_follows_set_mask_after_the_layer_has_trained():
    rng = np.random.default_rng(7)
    layer = _built_dense()
    upstream = rng.normal(size=(2, 3)).astype("float32")
    dense_gradient = _kernel_gradient(layer, upstream)  # Dense's: x^T upstream.
    for _ in range(2):
        mask = _cases.random_mask((4, 3), rng)
        layer.set_mask("kernel", mask)
        np.testing.assert_array_equal(
            _kernel_gradient(layer, upstream), dense_gradient * mask
        )


@pytest.mark.skipif(backends.BACKEND != "torch", reason="PyTorch's tensor hook")
def test_on_torch_the_hook_is_registered_once_however_often_the_layer_is_called():
    layer = _built_dense()
    upstream = np.ones((2, 3), dtype="float32")
    for _ in range(3):
        layer(np.ones((2, 4), dtype="float32"))
        _kernel_gradient(layer, upstream)
    # PyTorch keeps a tensor's hooks in `_backward_hooks`; no public API
    # counts them.
    assert len(layer.kernel.value._backward_hooks) == 1


@pytest.mark.skipif(backends.BACKEND != "torch", reason="PyTorch's tensor hook")
def test_on_torch_the_hook_skips_the_multiply_while_the_mask_is_all_ones():
    import torch

    from keras_lth.layers._torch_gradient import MaskGradient

    layer = _built_dense()
    hook = MaskGradient(layer.kernel_mask.value)
    gradient = torch.full((4, 3), 2.0)
    assert hook(gradient) is None  # PyTorch's "unchanged".
    mask = _cases.random_mask((4, 3), np.random.default_rng(11))
    layer.set_mask("kernel", mask)
    np.testing.assert_array_equal(hook(gradient).numpy(), 2.0 * mask)
    # In another dtype too, and back to all ones.
    half = hook(gradient.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16
    np.testing.assert_array_equal(half.float().numpy(), 2.0 * mask)
    layer.set_mask("kernel", np.ones((4, 3)))
    assert hook(gradient) is None


def test_a_deep_copy_masks_its_gradient_with_its_own_mask():
    import copy

    rng = np.random.default_rng(8)
    layer = _built_dense()
    upstream = rng.normal(size=(2, 3)).astype("float32")
    mask = _cases.random_mask((4, 3), rng)
    layer.set_mask("kernel", mask)
    _kernel_gradient(layer, upstream)
    twin = copy.deepcopy(layer)
    np.testing.assert_array_equal(
        _kernel_gradient(twin, upstream), _kernel_gradient(layer, upstream)
    )
    twin.set_mask("kernel", np.ones((4, 3)))
    assert np.all(_kernel_gradient(twin, upstream) != 0.0)
    assert np.all(_kernel_gradient(layer, upstream)[mask == 0] == 0.0)


@pytest.mark.skipif(backends.BACKEND != "torch", reason="PyTorch's tensor hook")
def test_on_torch_call_reads_the_stored_tensor_and_a_hook_masks_its_gradient():
    import torch

    layer = _built_dense()
    mask = _cases.random_mask((4, 3), np.random.default_rng(9))
    layer.set_mask("kernel", mask)
    # No multiply in the forward pass: the stored zeros are read as they are.
    assert layer.masked_weight("kernel") is layer.kernel.value
    # A value swapped in by a StatelessScope gets the hook too.
    kernel = torch.ones((4, 3), requires_grad=True)
    with keras.StatelessScope(state_mapping=[(layer.kernel, kernel)]):
        output = ops.sum(layer(np.ones((2, 4), dtype="float32")))
    (gradient,) = torch.autograd.grad(output, [kernel])
    np.testing.assert_array_equal(gradient.numpy(), 2.0 * mask)


@pytest.mark.skipif(backends.BACKEND != "torch", reason="PyTorch's tensor hook")
def test_on_torch_while_torch_compile_traces_call_multiplies_by_the_mask(
    monkeypatch,
):
    import torch

    layer = _built_dense()
    mask = _cases.random_mask((4, 3), np.random.default_rng(10))
    layer.set_mask("kernel", mask)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    weight = layer.masked_weight("kernel")
    assert weight is not layer.kernel.value  # Computed, not the stored tensor.
    np.testing.assert_array_equal(
        ops.convert_to_numpy(weight), ops.convert_to_numpy(layer.kernel) * mask
    )
    (gradient,) = torch.autograd.grad(ops.sum(weight), [layer.kernel.value])
    np.testing.assert_array_equal(gradient.numpy(), mask)


def test_prunable_variable_is_the_stored_trainable_weight():
    layer = _built_dense()
    kernel = layer.prunable_variable("kernel")
    assert kernel.path == "dense/kernel"
    assert kernel.trainable
    kernel.assign(np.full((4, 3), 2.0, dtype="float32"))
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer.kernel), np.full((4, 3), 2.0)
    )


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
    assert "['kernel', 'bias']" in str(error.value)


def test_prunable_variable_of_an_unbuilt_layer_says_it_has_no_weights():
    layer = MaskedDense(3, name="unbuilt")
    with pytest.raises(ValueError, match=r"'unbuilt' has no weight named 'kernel'"):
        layer.prunable_variable("kernel")


# Mask application and gradients.


@cases
def test_output_equals_stock_layer_with_masked_weights(case):
    _cases.check_output_equals_stock_layer_with_masked_weights(case)


@cases
def test_gradient_is_exactly_zero_at_pruned_positions(case):
    rng = np.random.default_rng(2)
    layer = _built_randomized(case, rng)
    masks, _ = _cases.prune_randomly(layer, case, rng)
    x = case.inputs(rng)
    upstream = rng.normal(size=layer(x).shape).astype("float32")
    stock = _cases.stock_holding(case, layer)

    def gradients(layer):
        weights = [_cases.variable(layer, name) for name in case.prunable]
        return backends.gradients(
            lambda: ops.sum(ops.multiply(layer(x), upstream)), weights
        )

    for name, gradient, stock_gradient in zip(
        case.prunable, gradients(layer), gradients(stock)
    ):
        mask = masks[name]
        assert gradient.shape == mask.shape
        assert np.all(gradient[mask == 0] == 0.0), name
        assert np.any(gradient[mask == 1] != 0.0), name
        # Kept entries get the gradient the stock layer would give them.
        np.testing.assert_array_equal(gradient, stock_gradient * mask)


@_cases.parametrize_cases(LORA_CASES)
def test_lora_rank_is_accepted(case):
    rng = np.random.default_rng(5)
    layer = _cases.build(case, lora_rank=2)
    for name in case.prunable:
        shape = tuple(_cases.variable(layer, name).shape)
        mask = layer.mask_variable(name)
        assert tuple(mask.shape) == shape
        np.testing.assert_array_equal(ops.convert_to_numpy(mask), np.ones(shape))

    stock = _cases.stock_holding(case, layer, lora_rank=2)
    x = case.inputs(rng)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer(x)), ops.convert_to_numpy(stock(x))
    )


@_cases.parametrize_cases(LORA_CASES)
def test_lora_update_is_masked_in_call(case):
    # With LoRA the effective weight is `weight + scale * a @ b`, and the
    # low-rank part is not stored in the weight: it is nonzero at pruned
    # entries, so the layer multiplies by the mask instead.
    rng = np.random.default_rng(6)
    layer = _cases.build(case, lora_rank=2)
    assert layer.lora_enabled
    _cases.randomize_weights(layer, rng)  # The bias and both LoRA factors.
    for name in case.prunable:  # Frozen by LoRA, so not randomized above.
        weight = _cases.variable(layer, name)
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    masks, _ = _cases.prune_randomly(layer, case, rng)

    folded = {}
    for name, mask in masks.items():
        effective = ops.convert_to_numpy(getattr(layer, name))
        assert np.all(effective[mask == 0] != 0.0), name
        folded[name] = effective * mask
        np.testing.assert_array_equal(
            ops.convert_to_numpy(layer.masked_weight(name)), folded[name]
        )
    x = case.inputs(rng)
    stock = _cases.stock_holding(case, layer, folded)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer(x)), ops.convert_to_numpy(stock(x))
    )


# No regrowth during training.


@_cases.OPTIMIZERS
@cases
def test_pruned_weights_never_grow_back(case, optimizer):
    rng = np.random.default_rng(3)
    layer = case.masked(**case.kwargs)
    model = keras.Sequential([case.keras_input(), layer])
    _cases.randomize_weights(layer, rng)
    x = case.inputs(rng, batch=4)
    y = rng.normal(size=model(x).shape).astype("float32")

    def stored():
        return {
            n: ops.convert_to_numpy(layer.prunable_variable(n)) for n in case.prunable
        }

    def fit():
        model.fit(x, y, batch_size=2, shuffle=False, verbose=0)  # 2 steps.

    # Pruned before training: the optimizer has no slots yet.
    masks, _ = _cases.prune_randomly(layer, case, rng)
    model.compile(optimizer=_cases.optimizer(optimizer), loss="mse")
    before = stored()
    fit()
    _cases.assert_pruned_entries_stayed_zero(layer, masks, before)

    # Pruned further after training, when the slots of the entries about to
    # be pruned hold nonzero moments: `set_masks` zeroes them too.
    slots = {
        n: _cases.slots(model.optimizer, layer.prunable_variable(n)) for n in masks
    }
    more = {n: _cases.prune_half_of_the_rest(mask, rng) for n, mask in masks.items()}
    slots_before = {n: [ops.convert_to_numpy(s) for s in slots[n]] for n in masks}
    # Every one of them, unless not every kept entry trains (see `Case`).
    trained = np.all if case.trains_every_kept_entry else np.any
    for name, mask in more.items():
        newly_pruned = (masks[name] == 1) & (mask == 0)
        assert np.any(newly_pruned), name
        for slot in slots_before[name]:
            assert trained(slot[newly_pruned] != 0.0), name
    keras_lth.set_masks(model, {f"{layer.name}/{n}": m for n, m in more.items()})
    for name, mask in more.items():
        for slot, slot_before in zip(slots[name], slots_before[name]):
            np.testing.assert_array_equal(
                ops.convert_to_numpy(slot), slot_before * mask
            )
        assert np.all(
            ops.convert_to_numpy(layer.prunable_variable(name))[mask == 0] == 0.0
        )
    before = stored()
    fit()
    _cases.assert_pruned_entries_stayed_zero(layer, more, before)
    for name, mask in more.items():
        for slot in slots[name]:
            assert np.all(ops.convert_to_numpy(slot)[mask == 0] == 0.0), name

    # The stored weights are the effective ones.
    stock = _cases.stock_holding(case, layer)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer(x)), ops.convert_to_numpy(stock(x))
    )


# Saving: the mixin saves every variable, masks included.


@cases
def test_config_round_trip(case):
    _cases.check_config_round_trip(case)


@cases
def test_keras_file_round_trip_without_custom_objects(case, tmp_path):
    rng = np.random.default_rng(4)
    model = keras.Sequential([case.keras_input(), case.masked(**case.kwargs)])
    layer = model.layers[0]
    _cases.randomize_weights(layer, rng)
    masks, _ = _cases.prune_randomly(layer, case, rng)
    x = case.inputs(rng)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)

    loaded_layer = loaded.layers[0]
    assert type(loaded_layer) is case.masked
    assert loaded_layer.get_config() == layer.get_config()
    assert [v.name for v in loaded_layer.variables] == [v.name for v in layer.variables]
    for original, restored in zip(layer.variables, loaded_layer.variables):
        assert restored.trainable == original.trainable
        np.testing.assert_array_equal(
            ops.convert_to_numpy(restored), ops.convert_to_numpy(original)
        )
    for name, mask in masks.items():
        loaded_mask = loaded_layer.mask_variable(name)
        assert not loaded_mask.trainable
        np.testing.assert_array_equal(ops.convert_to_numpy(loaded_mask), mask)
        loaded_weight = ops.convert_to_numpy(loaded_layer.prunable_variable(name))
        assert np.all(loaded_weight[mask == 0] == 0.0), name
        assert np.all(loaded_weight[mask == 1] != 0.0), name
    np.testing.assert_array_equal(
        ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x))
    )


def test_own_variables_include_the_masks():
    rng = np.random.default_rng(7)
    case = _cases.BY_NAME["SeparableConv2D"]
    layer = _built_randomized(case, rng)
    _cases.prune_randomly(layer, case, rng)

    store = {}
    layer.save_own_variables(store)
    assert len(store) == len(layer.variables) == 5

    restored = _cases.build(case)
    restored.load_own_variables(store)
    for original, copy in zip(layer.variables, restored.variables):
        assert copy.name == original.name
        np.testing.assert_array_equal(
            ops.convert_to_numpy(copy), ops.convert_to_numpy(original)
        )


def test_loading_own_variables_zeroes_pruned_entries():
    # A store written while the weights were stale (nonzero at pruned entries,
    # as after assigning a mask variable directly) loads with them zeroed.
    rng = np.random.default_rng(8)
    layer = _built_randomized(_cases.BY_NAME["Dense"], rng)
    kernel = ops.convert_to_numpy(layer.kernel)
    mask = _cases.random_mask((4, 3), rng)
    layer.kernel_mask.assign(mask)
    store = {}
    layer.save_own_variables(store)
    np.testing.assert_array_equal(ops.convert_to_numpy(store["0"]), kernel)

    restored = _built_dense()
    restored.load_own_variables(store)
    np.testing.assert_array_equal(ops.convert_to_numpy(restored.kernel_mask), mask)
    np.testing.assert_array_equal(ops.convert_to_numpy(restored.kernel), kernel * mask)
    assert np.all(ops.convert_to_numpy(restored.kernel)[mask == 0] == 0.0)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(restored.bias), ops.convert_to_numpy(layer.bias)
    )


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
        mask = _cases.random_mask(tuple(layer.kernel_mask.shape), rng)
        layer.set_mask("kernel", mask)
        masks.append((index, mask))
    path = tmp_path / "masked.weights.h5"
    model.save_weights(path)

    restored = build()
    restored.load_weights(path)
    assert len(restored.variables) == len(model.variables)
    for original, copy in zip(model.variables, restored.variables):
        assert copy.name == original.name
        np.testing.assert_array_equal(
            ops.convert_to_numpy(copy), ops.convert_to_numpy(original)
        )
    for index, mask in masks:
        restored_layer = restored.layers[index]
        np.testing.assert_array_equal(
            ops.convert_to_numpy(restored_layer.mask_variable("kernel")), mask
        )
        kernel = ops.convert_to_numpy(restored_layer.prunable_variable("kernel"))
        assert np.all(kernel[mask == 0] == 0.0)
        assert np.all(kernel[mask == 1] != 0.0)


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
            ops.convert_to_numpy(layer.mask_variable("kernel")),
            np.ones(layer.kernel.shape),
        )
    x = np.random.default_rng(3).normal(size=(2, 5, 5, 2)).astype("float32")
    np.testing.assert_array_equal(
        ops.convert_to_numpy(masked(x)), ops.convert_to_numpy(stock(x))
    )


@backends.not_on("tensorflow", "tf.distribute works there (test_distribute.py)")
def test_a_tf_distribute_scope_on_another_backend_is_refused():
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        with pytest.raises(ValueError, match="KERAS_BACKEND=tensorflow") as error:
            MaskedDense(3, name="refused").build((2, 4))
    assert f"'{backends.BACKEND}' backend" in str(error.value)
    assert "MirroredStrategy" in str(error.value)
    MaskedDense(3).build((2, 4))  # Outside the scope: fine.
