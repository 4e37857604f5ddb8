"""The reference networks of Frankle & Carbin (2019): the model builders.

Builders for the six networks of the paper's Figure 2. With `masked=True`, the
default, they are built from the masked layers of `keras_lth.layers`, ready
for `keras_lth.LotteryTicket`; with `masked=False`, from stock Keras layers.

Every model outputs logits (no softmax) and initializes its kernels with
Gaussian Glorot, `N(0, 2 / (fan_in + fan_out))`, as the paper does ("All/Conv
Weights" and "Initializations are Gaussian Glorot", Figure 2). Layers have
stable names (`"fc1"`, `"conv3"`, `"output"`, ...), which
`keras_lth.models.Preset.layer_rates` and `LotteryTicket(layer_rates=...)`
refer to.

Reference: J. Frankle and M. Carbin, "The Lottery Ticket Hypothesis: Finding
Sparse, Trainable Neural Networks", ICLR 2019 (arXiv:1803.03635v5). "Figure 2"
and "Appendix I" below refer to that paper.
"""

from collections.abc import Sequence

import keras

from keras_lth._checks import check_count
from keras_lth.layers import MaskedConv2D
from keras_lth.layers import MaskedDense

__all__ = ["conv2", "conv4", "conv6", "lenet_300_100", "resnet20", "vgg19"]

# ------------------------------------------------------------------- helpers


def _glorot() -> keras.initializers.Initializer:
    """Gaussian Glorot: `N(0, 2 / (fan_in + fan_out))`, not truncated.

    Keras' `"glorot_normal"` draws from a normal truncated at two standard
    deviations; the paper says "Gaussian Glorot", so the plain normal is used.
    A fresh instance per layer, so that no two layers share a seed.
    """
    return keras.initializers.VarianceScaling(
        scale=1.0, mode="fan_avg", distribution="untruncated_normal"
    )


def _layer_classes(masked):
    if not isinstance(masked, bool):
        raise TypeError(f"Expected `masked` to be True or False. Received: {masked!r}")
    if masked:
        return MaskedDense, MaskedConv2D
    return keras.layers.Dense, keras.layers.Conv2D


def _check_input_shape(input_shape, model_name, *, images):
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if (
        not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or min(shape) < 1
    ):
        raise ValueError(
            f"Expected `input_shape` to be a tuple of positive ints, without the "
            f"batch dimension. Received: input_shape={input_shape!r}"
        )
    if images and len(shape) != 3:
        raise ValueError(
            f"`{model_name}` takes images, channels last: expected `input_shape` "
            f"of the form (height, width, channels), such as (32, 32, 3). "
            f"Received: input_shape={input_shape!r}"
        )
    return shape


# ------------------------------------------------------------------ builders


def lenet_300_100(
    *,
    input_shape: Sequence[int] = (784,),
    num_classes: int = 10,
    masked: bool = True,
) -> keras.Model:
    """LeNet-300-100: fully connected layers of 300, 100 and 10 units.

    The paper's MNIST network (Figure 2, after LeCun et al. 1998): ReLU hidden
    layers `"fc1"` (300) and `"fc2"` (100), and the logits layer `"output"`.
    It has 266,200 weights (the paper's "266K") and 410 biases: 266,610
    parameters with `num_classes=10` and 784 inputs.

    Args:
        input_shape: Shape of one example. `(784,)` (flattened 28x28 MNIST)
            by default; an image shape such as `(28, 28, 1)` adds a
            `Flatten` layer named `"flatten"`.
        num_classes: Number of output logits. Defaults to 10.
        masked: If `True` (the default), the dense layers are
            `keras_lth.layers.MaskedDense`, ready for `LotteryTicket`;
            otherwise stock `keras.layers.Dense`.

    Returns:
        An uncompiled `keras.Sequential` model named `"lenet_300_100"`.

    Example:

    >>> model = lenet_300_100(input_shape=(28, 28, 1))
    >>> [layer.name for layer in model.layers]
    ['flatten', 'fc1', 'fc2', 'output']
    """
    input_shape = _check_input_shape(input_shape, "lenet_300_100", images=False)
    num_classes = check_count(num_classes, "num_classes")
    dense, _ = _layer_classes(masked)
    layers = [keras.Input(input_shape, name="input")]
    if len(input_shape) > 1:
        layers.append(keras.layers.Flatten(name="flatten"))
    layers += [
        dense(300, activation="relu", kernel_initializer=_glorot(), name="fc1"),
        dense(100, activation="relu", kernel_initializer=_glorot(), name="fc2"),
        dense(num_classes, kernel_initializer=_glorot(), name="output"),
    ]
    return keras.Sequential(layers, name="lenet_300_100")


def _conv_net(name, filters, input_shape, num_classes, masked):
    """Conv-2/4/6: pairs of 3x3 convolutions, each pair followed by a pool."""
    input_shape = _check_input_shape(input_shape, name, images=True)
    num_classes = check_count(num_classes, "num_classes")
    dense, conv = _layer_classes(masked)
    layers = [keras.Input(input_shape, name="input")]
    index = 0
    for stage, width in enumerate(filters, start=1):
        for _ in range(2):
            index += 1
            layers.append(
                conv(
                    width,
                    3,
                    padding="same",
                    activation="relu",
                    kernel_initializer=_glorot(),
                    name=f"conv{index}",
                )
            )
        layers.append(keras.layers.MaxPooling2D(2, name=f"pool{stage}"))
    layers += [
        keras.layers.Flatten(name="flatten"),
        dense(256, activation="relu", kernel_initializer=_glorot(), name="fc1"),
        dense(256, activation="relu", kernel_initializer=_glorot(), name="fc2"),
        dense(num_classes, kernel_initializer=_glorot(), name="output"),
    ]
    return keras.Sequential(layers, name=name)


def conv2(
    *,
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    masked: bool = True,
) -> keras.Model:
    """Conv-2: the paper's VGG-like CIFAR-10 network (Figure 2).

    Conv-2, Conv-4 (`conv4`) and Conv-6 (`conv6`) share one design, of one,
    two and three stages: each stage is two 3x3 convolutions with
    `padding="same"` and ReLU, then 2x2 max pooling; then fully connected
    layers of 256 and 256 units (ReLU) and the logits. Layer names:
    `"conv1"`, `"conv2"`, ..., `"pool1"`, ..., `"flatten"`, `"fc1"`, `"fc2"`,
    `"output"`. Conv-2's one stage has 64 filters: convolutions 64, 64, pool.

    On 32x32x3 inputs: 38,592 convolution weights (the paper's "38K") and 4,300,992
    weights in all (the paper's "4.3M").

    Args:
        input_shape: Image shape, channels last. Defaults to `(32, 32, 3)`
            (CIFAR-10).
        num_classes: Number of output logits. Defaults to 10.
        masked: If `True` (the default), the convolution and dense layers
            are `keras_lth.layers.MaskedConv2D` / `MaskedDense`, ready for
            `LotteryTicket`; otherwise stock Keras layers.

    Returns:
        An uncompiled `keras.Sequential` model named `"conv2"`.

    Example:

    >>> model = conv2(input_shape=(28, 28, 1), num_classes=5)
    >>> model.output_shape
    (None, 5)
    """
    return _conv_net("conv2", (64,), input_shape, num_classes, masked)


def conv4(
    *,
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    masked: bool = True,
) -> keras.Model:
    """Conv-4: the paper's VGG-like CIFAR-10 network (Figure 2).

    `conv2`'s design (see there for the layers, their names and the
    arguments) with two stages: convolutions 64, 64, pool, 128, 128, pool
    (`"conv1"` to `"conv4"`, `"pool1"`, `"pool2"`).

    On 32x32x3 inputs: 259,776 convolution weights (the paper's "260K") and
    2,425,024 weights in all (the paper's "2.4M").

    Returns:
        An uncompiled `keras.Sequential` model named `"conv4"`.

    Example:

    >>> model = conv4(input_shape=(28, 28, 1), num_classes=5)
    >>> model.output_shape
    (None, 5)
    """
    return _conv_net("conv4", (64, 128), input_shape, num_classes, masked)


def conv6(
    *,
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    masked: bool = True,
) -> keras.Model:
    """Conv-6: the paper's VGG-like CIFAR-10 network (Figure 2).

    `conv2`'s design (see there for the layers, their names and the
    arguments) with three stages: convolutions 64, 64, pool, 128, 128, pool,
    256, 256, pool (`"conv1"` to `"conv6"`, `"pool1"` to `"pool3"`).

    On 32x32x3 inputs: 1,144,512 convolution weights (the paper's "1.1M") and
    2,261,184 weights in all. Figure 2 of the paper gives "1.7M" in all, which the
    architecture it describes does not add up to (4x4x256 inputs to a 256-unit layer
    alone are 1,048,576 weights); this builder follows the described architecture.

    Returns:
        An uncompiled `keras.Sequential` model named `"conv6"`.

    Example:

    >>> model = conv6(input_shape=(28, 28, 1), num_classes=5)
    >>> model.output_shape
    (None, 5)
    """
    return _conv_net("conv6", (64, 128, 256), input_shape, num_classes, masked)


#: VGG-19 for CIFAR-10 (Liu et al. 2019): filters, or "M" for a max pool.
_VGG19_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M")
_VGG19_PLAN += (512, 512, 512, 512, "M", 512, 512, 512, 512)


def vgg19(
    *,
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    masked: bool = True,
) -> keras.Model:
    """VGG-19 for CIFAR-10, with batch normalization, as in the paper.

    The variant of Liu et al. (2019) that the paper uses (Figure 2 and
    Appendix I.2): five groups of 3x3 convolutions (2x64, 2x128, 4x256,
    4x512, 4x512), the first four followed by 2x2 max pooling and the last by
    average pooling, then one dense layer to the logits. Each convolution
    (`"conv1"` to `"conv16"`, without bias) is followed by
    `BatchNormalization` (`"bn1"`...) and ReLU (`"relu1"`...); pools are
    `"pool1"` to `"pool4"` and `"avg_pool"`, the logits layer `"output"`.

    On 32x32x3 inputs it has 20,018,880 convolution weights (the paper's
    "20.0M"; the first two convolutions hold 1,728 and 36,864, the last
    2,359,296, as the paper says) and 5,120 output weights.

    Args:
        input_shape: Image shape, channels last. Defaults to `(32, 32, 3)`.
        num_classes: Number of output logits. Defaults to 10.
        masked: If `True` (the default), convolution and dense layers are
            masked, ready for `LotteryTicket`; otherwise stock Keras layers.

    Returns:
        An uncompiled `keras.Sequential` model named `"vgg19"`.

    Example:

    >>> model = vgg19(masked=False)
    >>> tuple(model.get_layer("conv16").kernel.shape)
    (3, 3, 512, 512)
    """
    input_shape = _check_input_shape(input_shape, "vgg19", images=True)
    num_classes = check_count(num_classes, "num_classes")
    dense, conv = _layer_classes(masked)
    layers = [keras.Input(input_shape, name="input")]
    index = pool = 0
    for spec in _VGG19_PLAN:
        if spec == "M":
            pool += 1
            layers.append(keras.layers.MaxPooling2D(2, name=f"pool{pool}"))
            continue
        index += 1
        layers += [
            conv(
                spec,
                3,
                padding="same",
                use_bias=False,
                kernel_initializer=_glorot(),
                name=f"conv{index}",
            ),
            keras.layers.BatchNormalization(name=f"bn{index}"),
            keras.layers.Activation("relu", name=f"relu{index}"),
        ]
    layers += [
        keras.layers.GlobalAveragePooling2D(name="avg_pool"),
        dense(num_classes, kernel_initializer=_glorot(), name="output"),
    ]
    return keras.Sequential(layers, name="vgg19")


#: Filters of the three stages of the CIFAR ResNet-20, three blocks each.
_RESNET20_STAGES = (16, 32, 64)
_RESNET20_BLOCKS = 3


def resnet20(
    *,
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    masked: bool = True,
) -> keras.Model:
    """The CIFAR-10 ResNet-20 of He et al. (2016): what the paper calls Resnet-18.

    Frankle & Carbin name it "Resnet-18" but describe 20 layers (Figure 2 and
    Appendix I.3): a 3x3 convolution with 16 filters, three stages of three
    residual blocks with 16, 32 and 64 filters, global average pooling and a
    dense logits layer. Each block is conv-BN-ReLU-conv-BN, plus the
    shortcut, then ReLU. The first block of stages 2 and 3 halves the
    resolution (stride 2); its shortcut is a 1x1 convolution with stride 2
    and batch normalization (the paper's "2560 parameters used to downsample
    residual connections").

    Layer names: `"conv1"`, `"bn1"`, `"relu1"`; in block `b` of stage `s`,
    `"stage{s}_block{b}_conv1"`, `..._bn1`, `..._relu1`, `..._conv2`,
    `..._bn2`, `..._add`, `..._relu2`, and for the two downsampling blocks
    `"stage{s}_block1_shortcut_conv"` and `..._shortcut_bn`; then
    `"avg_pool"` and `"output"`. Convolutions have no bias.

    On 32x32x3 inputs it has 267,696 weights in its 3x3 convolutions, 2,560
    in the shortcut convolutions and 640 in the output layer: 270,896 (the
    paper's "271,000"; "270K" convolution weights in Figure 2).

    Args:
        input_shape: Image shape, channels last. Defaults to `(32, 32, 3)`.
        num_classes: Number of output logits. Defaults to 10.
        masked: If `True` (the default), convolution and dense layers are
            masked, ready for `LotteryTicket`; otherwise stock Keras layers.

    Returns:
        An uncompiled Functional `keras.Model` named `"resnet20"`.

    Example:

    >>> model = resnet20(input_shape=(8, 8, 3))
    >>> tuple(model.get_layer("stage2_block1_shortcut_conv").kernel.shape)
    (1, 1, 16, 32)
    """
    input_shape = _check_input_shape(input_shape, "resnet20", images=True)
    num_classes = check_count(num_classes, "num_classes")
    dense, conv = _layer_classes(masked)

    def conv_bn(x, filters, kernel_size, strides, prefix, suffix=""):
        x = conv(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            use_bias=False,
            kernel_initializer=_glorot(),
            name=f"{prefix}conv{suffix}",
        )(x)
        return keras.layers.BatchNormalization(name=f"{prefix}bn{suffix}")(x)

    inputs = keras.Input(input_shape, name="input")
    x = conv_bn(inputs, _RESNET20_STAGES[0], 3, 1, "", "1")
    x = keras.layers.Activation("relu", name="relu1")(x)
    for stage, filters in enumerate(_RESNET20_STAGES, start=1):
        for block in range(1, _RESNET20_BLOCKS + 1):
            prefix = f"stage{stage}_block{block}_"
            strides = 2 if stage > 1 and block == 1 else 1
            shortcut = x
            if strides != 1 or x.shape[-1] != filters:
                shortcut = conv_bn(x, filters, 1, strides, prefix + "shortcut_")
            y = conv_bn(x, filters, 3, strides, prefix, "1")
            y = keras.layers.Activation("relu", name=f"{prefix}relu1")(y)
            y = conv_bn(y, filters, 3, 1, prefix, "2")
            y = keras.layers.Add(name=f"{prefix}add")([y, shortcut])
            x = keras.layers.Activation("relu", name=f"{prefix}relu2")(y)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = dense(num_classes, kernel_initializer=_glorot(), name="output")(x)
    return keras.Model(inputs, outputs, name="resnet20")
