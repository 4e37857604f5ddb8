"""Tests for `keras_lth.models.architectures`: the paper's reference networks."""

import math

import keras
import numpy as np
import pytest

import keras_lth
from keras_lth import models
from keras_lth.masking import prunable_layers
from tests.models._helpers import kernel_sizes


def _trainable_count(model):
    # `count_params` would include the masks, which are non-trainable weights.
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _forward(model, batch=2):
    x = np.random.default_rng(0).random((batch, *model.input_shape[1:]))
    y = keras.ops.convert_to_numpy(model(x.astype("float32"), training=False))
    assert y.shape == (batch, 10)
    assert np.all(np.isfinite(y))
    return y


def test_lenet_300_100_layers_and_the_papers_weight_count():
    model = models.lenet_300_100()
    assert model.name == "lenet_300_100"
    assert model.input_shape == (None, 784)
    kernels = kernel_sizes(model)
    assert kernels == {"fc1": 784 * 300, "fc2": 300 * 100, "output": 100 * 10}
    # Figure 2: "266K" weights; with the 410 biases, 266,610 parameters.
    assert sum(kernels.values()) == 266_200
    assert _trainable_count(model) == 266_610
    _forward(model)


def test_lenet_300_100_flattens_image_inputs_and_builds_stock_layers():
    model = models.lenet_300_100(input_shape=(28, 28, 1), masked=False)
    assert [layer.name for layer in model.layers] == [
        "flatten",
        "fc1",
        "fc2",
        "output",
    ]
    assert not list(prunable_layers(model))
    assert model.count_params() == 266_610  # No masks in a stock model.
    _forward(model)


@pytest.mark.parametrize(
    "builder, num_convs, conv_weights, all_weights",
    [
        # Figure 2: "4.3M / 38K", "2.4M / 260K", and "1.1M" convolution weights
        # for Conv-6 (whose "1.7M" total the described layers do not add up to).
        (models.conv2, 2, 38_592, 4_300_992),
        (models.conv4, 4, 259_776, 2_425_024),
        (models.conv6, 6, 1_144_512, 2_261_184),
    ],
)
def test_conv_nets_layers_and_weight_counts(
    builder, num_convs, conv_weights, all_weights
):
    model = builder()
    convs = [f"conv{i}" for i in range(1, num_convs + 1)]
    kernels = kernel_sizes(model)
    assert list(kernels) == [*convs, "fc1", "fc2", "output"]
    assert sum(kernels[name] for name in convs) == conv_weights
    assert sum(kernels.values()) == all_weights
    assert kernels["fc2"] == 256 * 256 and kernels["output"] == 256 * 10
    pools = [layer.name for layer in model.layers if "pool" in layer.name]
    assert pools == [f"pool{i}" for i in range(1, num_convs // 2 + 1)]
    _forward(model)


def test_vgg19_layers_and_the_papers_weight_counts():
    model = models.vgg19()
    kernels = kernel_sizes(model)
    convs = [f"conv{i}" for i in range(1, 17)]
    assert list(kernels) == [*convs, "output"]
    # Section 4: the first two convolutions have 1,728 and 36,864
    # parameters, the last 2.35 million; Figure 2: 20.0M in all.
    assert kernels["conv1"] == 1_728 and kernels["conv2"] == 36_864
    assert kernels["conv16"] == 2_359_296
    assert sum(kernels[name] for name in convs) == 20_018_880
    assert kernels["output"] == 5_120  # Appendix I.2: "the 5120 parameters".
    names = {layer.name for layer in model.layers}
    assert {f"bn{i}" for i in range(1, 17)} <= names
    assert {"pool1", "pool2", "pool3", "pool4", "avg_pool"} <= names
    _forward(model)


def test_resnet20_layers_and_the_papers_weight_counts():
    model = models.resnet20()
    kernels = kernel_sizes(model)
    shortcuts = ["stage2_block1_shortcut_conv", "stage3_block1_shortcut_conv"]
    assert set(shortcuts) <= set(kernels)
    assert list(kernels)[0] == "conv1" and list(kernels)[-1] == "output"
    blocks = [
        f"stage{s}_block{b}_conv{c}"
        for s in (1, 2, 3)
        for b in (1, 2, 3)
        for c in (1, 2)
    ]
    assert set(kernels) == {"conv1", *blocks, *shortcuts, "output"}
    # 1 + 18 convolutions + the output layer: 20 layers. Appendix I.3: 2,560
    # shortcut and 640 output parameters; Section 4: 271,000 in all.
    assert sum(kernels[name] for name in shortcuts) == 2_560
    assert kernels["output"] == 640
    assert sum(kernels[name] for name in ["conv1", *blocks]) == 267_696
    assert sum(kernels.values()) == 270_896
    _forward(model)


def test_stock_builds_keep_the_names_so_mask_model_gives_the_same_layers():
    for builder in (models.lenet_300_100, models.resnet20):
        plain = builder(masked=False)
        assert not list(prunable_layers(plain))
        masked = keras_lth.mask_model(plain)
        assert list(kernel_sizes(masked)) == list(kernel_sizes(builder()))


def test_kernels_are_untruncated_gaussian_glorot():
    kernel = keras.ops.convert_to_numpy(models.lenet_300_100().get_layer("fc1").kernel)
    std = math.sqrt(2.0 / (784 + 300))
    assert abs(kernel.mean()) < 5 * std / math.sqrt(kernel.size)  # 5 std errors.
    assert kernel.std() == pytest.approx(std, rel=0.01)
    # Keras' "glorot_normal" cuts at 2 std; a Gaussian has ~1.2% of its
    # 235,200 draws beyond 2.5 std.
    assert np.mean(np.abs(kernel) > 2.5 * std) > 0.008


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: models.conv2(input_shape=(784,)), ValueError, "height, width"),
        (lambda: models.lenet_300_100(input_shape=(0,)), ValueError, "positive"),
        (lambda: models.vgg19(input_shape="32x32"), ValueError, "input_shape"),
        (lambda: models.resnet20(num_classes=0), ValueError, "num_classes"),
        (lambda: models.conv4(num_classes="10"), TypeError, "num_classes"),
        (lambda: models.conv6(masked="yes"), TypeError, "masked"),
    ],
)
def test_builders_reject_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_num_classes_sets_the_output_layer():
    model = models.conv2(input_shape=(28, 28, 1), num_classes=3)
    assert model.output_shape == (None, 3)
    assert kernel_sizes(model)["output"] == 256 * 3
