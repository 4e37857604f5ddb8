"""The reference networks of Frankle & Carbin (2019), with their training presets.

Builders for the six networks of the paper's Figure 2, ready for
`keras_lth.LotteryTicket` (`masked=True`, the default, builds them from the
masked layers of `keras_lth.layers`), and one `Preset` per network with the
paper's optimizer, batch size, iterations and pruning rates:

>>> preset = get_preset("lenet_300_100")
>>> model = preset.build_model()
>>> model.compile(optimizer=preset.make_optimizer(),
...               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
>>> ticket = keras_lth.LotteryTicket(rounds=8, epochs_per_round=5,
...                                  **preset.ticket_kwargs())

Every model outputs logits (no softmax) and initializes its kernels with
Gaussian Glorot, `N(0, 2 / (fan_in + fan_out))`, as the paper does ("All/Conv
Weights" and "Initializations are Gaussian Glorot", Figure 2). Layers have
stable names (`"fc1"`, `"conv3"`, `"output"`, ...), which `Preset.layer_rates`
and `LotteryTicket(layer_rates=...)` refer to.

Reference: J. Frankle and M. Carbin, "The Lottery Ticket Hypothesis: Finding
Sparse, Trainable Neural Networks", ICLR 2019 (arXiv:1803.03635v5). "Figure 2"
and "Appendix I" below refer to that paper.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence

import keras
from keras import ops

from keras_lth.layers import MaskedConv2D
from keras_lth.layers import MaskedDense
from keras_lth.pruning import STRATEGIES

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


def _check_num_classes(num_classes):
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(
            f"Expected `num_classes` to be an int. Received: {num_classes!r}"
        )
    if num_classes < 1:
        raise ValueError(
            f"Expected `num_classes` >= 1. Received: num_classes={num_classes}"
        )
    return num_classes


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
    """
    input_shape = _check_input_shape(input_shape, "lenet_300_100", images=False)
    num_classes = _check_num_classes(num_classes)
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
    num_classes = _check_num_classes(num_classes)
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


_CONV_DOC = """{title}: the paper's VGG-like CIFAR-10 network (Figure 2).

    {layout}, 3x3 convolutions with `padding="same"` and ReLU, 2x2 max
    pooling after each pair, then fully connected layers of 256 and 256
    units (ReLU) and the logits. Layer names: {names}, `"pool1"`...,
    `"flatten"`, `"fc1"`, `"fc2"`, `"output"`.

    {counts}

    Args:
        input_shape: Image shape, channels last. Defaults to `(32, 32, 3)`
            (CIFAR-10).
        num_classes: Number of output logits. Defaults to 10.
        masked: If `True` (the default), the convolution and dense layers
            are `keras_lth.layers.MaskedConv2D` / `MaskedDense`, ready for
            `LotteryTicket`; otherwise stock Keras layers.

    Returns:
        An uncompiled `keras.Sequential` model named `"{name}"`.
    """


def conv2(
    *,
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    masked: bool = True,
) -> keras.Model:
    return _conv_net("conv2", (64,), input_shape, num_classes, masked)


def conv4(
    *,
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    masked: bool = True,
) -> keras.Model:
    return _conv_net("conv4", (64, 128), input_shape, num_classes, masked)


def conv6(
    *,
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    masked: bool = True,
) -> keras.Model:
    return _conv_net("conv6", (64, 128, 256), input_shape, num_classes, masked)


conv2.__doc__ = _CONV_DOC.format(
    title="Conv-2",
    name="conv2",
    layout="Convolutions 64, 64, pool",
    names='`"conv1"`, `"conv2"`',
    counts=(
        'On 32x32x3 inputs: 38,592 convolution weights (the paper\'s "38K") '
        'and 4,300,992 weights in all (the paper\'s "4.3M").'
    ),
)
conv4.__doc__ = _CONV_DOC.format(
    title="Conv-4",
    name="conv4",
    layout="Convolutions 64, 64, pool, 128, 128, pool",
    names='`"conv1"` to `"conv4"`',
    counts=(
        "On 32x32x3 inputs: 259,776 convolution weights (the paper's "
        '"260K") and 2,425,024 weights in all (the paper\'s "2.4M").'
    ),
)
conv6.__doc__ = _CONV_DOC.format(
    title="Conv-6",
    name="conv6",
    layout="Convolutions 64, 64, pool, 128, 128, pool, 256, 256, pool",
    names='`"conv1"` to `"conv6"`',
    counts=(
        "On 32x32x3 inputs: 1,144,512 convolution weights (the paper's "
        '"1.1M") and 2,261,184 weights in all. Figure 2 of the paper gives '
        '"1.7M" in all, which the architecture it describes does not add up '
        "to (4x4x256 inputs to a 256-unit layer alone are 1,048,576 weights); "
        "this builder follows the described architecture."
    ),
)

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
    """
    input_shape = _check_input_shape(input_shape, "vgg19", images=True)
    num_classes = _check_num_classes(num_classes)
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
    """
    input_shape = _check_input_shape(input_shape, "resnet20", images=True)
    num_classes = _check_num_classes(num_classes)
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


# ------------------------------------------------------------ LR schedule


@keras.saving.register_keras_serializable(package="keras_lth")
class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup, then a step decay at fixed steps.

    The schedule of the paper's VGG-19 and Resnet-18 runs (Section 4 and
    Appendix I), for a step `t` counted from 0:

    ```
    lr(t) = initial_learning_rate
            * decay ** (number of boundaries b with t >= b)
            * min(1, t / warmup_steps)        # 1 when warmup_steps == 0
    ```

    `LotteryTicket` restores the optimizer's iteration count at each rewind,
    so every round runs the whole schedule again.

    Args:
        initial_learning_rate: Learning rate after warmup, before any decay.
        boundaries: Increasing optimizer steps at which the rate is
            multiplied by `decay`.
        decay: Factor applied at each boundary. Defaults to 0.1.
        warmup_steps: Steps of linear warmup from 0. Defaults to 0 (none).

    Example:

    >>> schedule = WarmupStepDecay(0.1, boundaries=[20_000, 25_000])
    >>> float(schedule(25_000))  # 0.1 * 0.1 ** 2
    0.001...
    """

    def __init__(
        self,
        initial_learning_rate: float,
        boundaries: Sequence[int] = (),
        decay: float = 0.1,
        warmup_steps: int = 0,
    ):
        super().__init__()
        boundaries = [int(b) for b in boundaries]
        if any(b < 0 for b in boundaries) or boundaries != sorted(boundaries):
            raise ValueError(
                "Expected `boundaries` to be increasing steps >= 0. "
                f"Received: boundaries={boundaries}"
            )
        if warmup_steps < 0:
            raise ValueError(
                f"Expected `warmup_steps` >= 0. Received: warmup_steps={warmup_steps}"
            )
        self.initial_learning_rate = float(initial_learning_rate)
        self.boundaries = boundaries
        self.decay = float(decay)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr = ops.cast(self.initial_learning_rate, "float32")
        for boundary in self.boundaries:
            lr = ops.where(step >= boundary, lr * self.decay, lr)
        if self.warmup_steps:
            lr = lr * ops.minimum(1.0, step / self.warmup_steps)
        return lr

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "boundaries": list(self.boundaries),
            "decay": self.decay,
            "warmup_steps": self.warmup_steps,
        }


# ------------------------------------------------------------------ presets

_OPTIMIZERS = ("adam", "sgd")


@dataclasses.dataclass(frozen=True)
class Preset:
    """A reference network with the paper's training and pruning settings.

    Get one with `get_preset(name)`; change a field with
    `dataclasses.replace(preset, learning_rate=0.01)`.

    Attributes:
        name: The preset's name, as listed by `available()`.
        build: The model builder, such as `lenet_300_100`.
        optimizer: `"adam"` or `"sgd"`.
        learning_rate: Initial learning rate (after warmup, if any).
        batch_size: Examples per optimizer step.
        iterations: Optimizer steps per training run (per IMP round).
        strategy: Pruning strategy for `LotteryTicket`: `"layerwise"` or
            `"global"`.
        prune_rate: Fraction of the surviving weights pruned per round.
        layer_rates: Read-only `{layer_name: rate}` overriding `prune_rate`
            (with `"global"`, only `0`: layers kept out of pruning).
        momentum: SGD momentum. 0 for Adam.
        weight_decay: Weight decay passed to the Keras optimizer. 0 if none.
        lr_boundaries: Steps at which the learning rate is multiplied by
            `lr_decay`.
        lr_decay: Factor of each learning-rate drop.
        warmup_steps: Steps of linear learning-rate warmup from 0.
        dataset: The dataset the paper trains it on (`keras_lth.datasets`).
        reference: Where in the paper the settings come from.
    """

    name: str
    build: Callable[..., keras.Model]
    optimizer: str
    learning_rate: float
    batch_size: int
    iterations: int
    strategy: str
    prune_rate: float
    # Left out of the hash: a mapping is not hashable.
    layer_rates: Mapping[str, float] = dataclasses.field(
        default_factory=dict, hash=False
    )
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_boundaries: tuple[int, ...] = ()
    lr_decay: float = 0.1
    warmup_steps: int = 0
    dataset: str = ""
    reference: str = ""

    def __post_init__(self):
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"Expected `optimizer` to be one of {_OPTIMIZERS}. "
                f"Received: optimizer={self.optimizer!r}"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"Expected `strategy` to be one of {STRATEGIES}. "
                f"Received: strategy={self.strategy!r}"
            )
        # Read-only, so that a preset from `get_preset` cannot be changed
        # in place for everyone else.
        object.__setattr__(
            self, "layer_rates", types.MappingProxyType(dict(self.layer_rates))
        )
        object.__setattr__(self, "lr_boundaries", tuple(self.lr_boundaries))

    def build_model(self, **kwargs) -> keras.Model:
        """Builds the network: `self.build(**kwargs)`.

        Args:
            **kwargs: Passed to the builder: `input_shape`, `num_classes`,
                `masked`.

        Returns:
            A new, uncompiled model.
        """
        return self.build(**kwargs)

    def learning_rate_schedule(self) -> float | WarmupStepDecay:
        """The learning rate: a float, or a `WarmupStepDecay` if it changes."""
        if not self.lr_boundaries and not self.warmup_steps:
            return self.learning_rate
        return WarmupStepDecay(
            self.learning_rate,
            boundaries=self.lr_boundaries,
            decay=self.lr_decay,
            warmup_steps=self.warmup_steps,
        )

    def make_optimizer(self) -> keras.optimizers.Optimizer:
        """Returns a new Keras optimizer with the preset's settings.

        A fresh instance on every call, since a Keras optimizer belongs to
        one model. Weight decay is Keras' (`w -= lr * weight_decay * w` at
        each step, decoupled from the gradient), which for SGD with momentum
        differs slightly from the L2 term of the paper's implementation.
        """
        learning_rate = self.learning_rate_schedule()
        weight_decay = self.weight_decay or None
        if self.optimizer == "adam":
            return keras.optimizers.Adam(learning_rate, weight_decay=weight_decay)
        return keras.optimizers.SGD(
            learning_rate, momentum=self.momentum, weight_decay=weight_decay
        )

    def ticket_kwargs(self) -> dict:
        """Keyword arguments for `keras_lth.LotteryTicket`.

        Returns:
            `{"prune_rate": ..., "strategy": ..., "layer_rates": {...}}`, with
            `layer_rates` keyed by the names of the layers `build` creates.

        Example:

        ```python
        ticket = keras_lth.LotteryTicket(rounds=8, epochs_per_round=5,
                                         **preset.ticket_kwargs())
        ```
        """
        return {
            "prune_rate": self.prune_rate,
            "strategy": self.strategy,
            "layer_rates": dict(self.layer_rates),
        }

    def epochs(self, num_train_examples: int) -> int:
        """Epochs that cover `iterations` steps at `batch_size`.

        `ceil(iterations / steps_per_epoch)`, with
        `steps_per_epoch = ceil(num_train_examples / batch_size)` (as
        `model.fit` counts them). Use it for `epochs_per_round`.

        Args:
            num_train_examples: Size of the training set.

        Returns:
            The number of epochs, at least 1.
        """
        if isinstance(num_train_examples, bool) or not isinstance(
            num_train_examples, int
        ):
            raise TypeError(
                "Expected `num_train_examples` to be an int. "
                f"Received: {num_train_examples!r}"
            )
        if num_train_examples < 1:
            raise ValueError(
                "Expected `num_train_examples` >= 1. "
                f"Received: num_train_examples={num_train_examples}"
            )
        steps_per_epoch = math.ceil(num_train_examples / self.batch_size)
        return max(1, math.ceil(self.iterations / steps_per_epoch))


# Conv-2/4/6: the convolutions and the output layer have their own rates; the
# hidden dense layers ("fc1", "fc2") are pruned at `prune_rate`.
def _conv_rates(num_convs, conv_rate):
    rates = {f"conv{i}": conv_rate for i in range(1, num_convs + 1)}
    rates["output"] = 0.1
    return rates


# VGG-19 on CIFAR-10 with the paper's batch size 64: 703 steps per epoch on
# 45,000 training examples, 160 epochs = 112,480 iterations (Appendix I.2).
_VGG_STEPS_PER_EPOCH = 703

_VGG19 = dict(
    name="vgg19",
    build=vgg19,
    optimizer="sgd",
    learning_rate=0.1,
    batch_size=64,
    iterations=160 * _VGG_STEPS_PER_EPOCH,
    strategy="global",
    prune_rate=0.2,
    layer_rates={"output": 0.0},
    momentum=0.9,
    weight_decay=1e-4,
    lr_boundaries=(80 * _VGG_STEPS_PER_EPOCH, 120 * _VGG_STEPS_PER_EPOCH),
    dataset="cifar10",
    reference=(
        "Figure 2; Section 4; Appendix I.2: batch 64, 160 epochs (112,480 "
        "iterations), SGD momentum 0.9, lr 0.1 divided by 10 after 80 and 120 "
        "epochs, weight decay 1e-4, convolutions pruned globally at 20%, the "
        "5,120 output weights not pruned"
    ),
)

_RESNET20 = dict(
    name="resnet20",
    build=resnet20,
    optimizer="sgd",
    learning_rate=0.1,
    batch_size=128,
    iterations=30_000,
    strategy="global",
    prune_rate=0.2,
    layer_rates={
        "stage2_block1_shortcut_conv": 0.0,
        "stage3_block1_shortcut_conv": 0.0,
        "output": 0.0,
    },
    momentum=0.9,
    weight_decay=1e-4,
    lr_boundaries=(20_000, 25_000),
    dataset="cifar10",
    reference=(
        'Figure 2 ("Resnet-18"); Section 4; Appendix I.3: batch 128, 30,000 '
        "iterations, SGD momentum 0.9, lr 0.1 divided by 10 at 20,000 and "
        "25,000 iterations, weight decay 1e-4, convolutions pruned globally at "
        "20%, the 2,560 shortcut weights and 640 output weights not pruned"
    ),
)

_PRESET_LIST = (
    Preset(
        name="lenet_300_100",
        build=lenet_300_100,
        optimizer="adam",
        learning_rate=1.2e-3,
        batch_size=60,
        iterations=50_000,
        strategy="layerwise",
        prune_rate=0.2,
        layer_rates={"output": 0.1},
        dataset="mnist",
        reference=(
            "Figure 2 and Section 2: Adam 1.2e-3, 50K iterations, batch 60, "
            "fc layers pruned at 20% per round, the output layer at half that"
        ),
    ),
    Preset(
        name="conv2",
        build=conv2,
        optimizer="adam",
        learning_rate=2e-4,
        batch_size=60,
        iterations=20_000,
        strategy="layerwise",
        prune_rate=0.2,
        layer_rates=_conv_rates(2, 0.1),
        dataset="cifar10",
        reference=(
            "Figure 2: Adam 2e-4, 20K iterations, batch 60, conv 10% fc 20%; "
            "output layer 10% as in Appendix H.2"
        ),
    ),
    Preset(
        name="conv4",
        build=conv4,
        optimizer="adam",
        learning_rate=3e-4,
        batch_size=60,
        iterations=25_000,
        strategy="layerwise",
        prune_rate=0.2,
        layer_rates=_conv_rates(4, 0.1),
        dataset="cifar10",
        reference=(
            "Figure 2: Adam 3e-4, 25K iterations, batch 60, conv 10% fc 20%; "
            "output layer 10% as in Appendix H.2"
        ),
    ),
    Preset(
        name="conv6",
        build=conv6,
        optimizer="adam",
        learning_rate=3e-4,
        batch_size=60,
        iterations=30_000,
        strategy="layerwise",
        prune_rate=0.2,
        layer_rates=_conv_rates(6, 0.15),
        dataset="cifar10",
        reference=(
            "Figure 2: Adam 3e-4, 30K iterations, batch 60, conv 15% fc 20%; "
            "output layer 10% as in Appendix H.2"
        ),
    ),
    Preset(**_VGG19),
    Preset(
        **{
            **_VGG19,
            "name": "vgg19_warmup",
            "warmup_steps": 10_000,
            "reference": (
                "Section 4 and Appendix I.5: as vgg19, with linear warmup of "
                "the learning rate from 0 to 0.1 over k = 10,000 iterations, "
                "with which the paper finds winning tickets at lr 0.1"
            ),
        }
    ),
    Preset(**_RESNET20),
    Preset(
        **{
            **_RESNET20,
            "name": "resnet20_warmup",
            "learning_rate": 0.03,
            "warmup_steps": 20_000,
            "reference": (
                "Section 4 and Appendix I.5: as resnet20, with lr 0.03 reached "
                "by linear warmup over k = 20,000 iterations, with which the "
                "paper finds winning tickets (at lr 0.1 it finds none); the "
                "warmup ends where the first drop, at 20,000, begins"
            ),
        }
    ),
)

#: Read-only `{name: Preset}` of every preset.
PRESETS: Mapping[str, Preset] = types.MappingProxyType(
    {preset.name: preset for preset in _PRESET_LIST}
)


def available() -> list[str]:
    """Returns the names of the presets, sorted."""
    return sorted(PRESETS)


def get_preset(name: str) -> Preset:
    """Returns the preset of a reference network, with the paper's settings.

    | preset            | optimizer            | batch | steps   | pruned per round   |
    | ----------------- | -------------------- | ----- | ------- | ------------------ |
    | `lenet_300_100`   | Adam 1.2e-3          | 60    | 50,000  | fc 20%, out 10%    |
    | `conv2`           | Adam 2e-4            | 60    | 20,000  | conv 10%, fc 20%   |
    | `conv4`           | Adam 3e-4            | 60    | 25,000  | conv 10%, fc 20%   |
    | `conv6`           | Adam 3e-4            | 60    | 30,000  | conv 15%, fc 20%   |
    | `vgg19`           | SGD 0.1              | 64    | 112,480 | global 20%         |
    | `vgg19_warmup`    | SGD 0.1, warmup 10k  | 64    | 112,480 | global 20%         |
    | `resnet20`        | SGD 0.1              | 128   | 30,000  | global 20%         |
    | `resnet20_warmup` | SGD 0.03, warmup 20k | 128   | 30,000  | global 20%         |

    All from Frankle & Carbin (2019), Figure 2 and Appendices H-I; each
    preset's `reference` says where. Conv-2/4/6 prune their output layer at
    10%. The SGD presets use momentum 0.9 and
    weight decay 1e-4, divide the learning rate by 10 twice
    (`lr_boundaries`), and prune the convolutions globally, keeping the
    output layer (and ResNet's shortcut convolutions) dense, as the paper
    does.

    Args:
        name: One of `available()`.

    Returns:
        The `Preset`.
    """
    if name not in PRESETS:
        raise ValueError(
            f"Unknown preset {name!r}. Expected one of: {', '.join(available())}"
        )
    return PRESETS[name]
