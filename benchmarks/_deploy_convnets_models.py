"""The networks of `benchmarks/deploy_convnets.py`: Conv-4 and ResNet-20.

Each `Network` names the layers that unit IMP prunes, and how their units are
cut out exactly. `LotteryTicket(granularity="unit")` masks kernels only: a
pruned filter keeps its bias (Conv-4) or its BatchNorm offset (ResNet-20), so
it outputs a constant, which `keras_lth.shrink` cannot remove when a `"same"`
convolution reads it (zero padding makes the constant's effect vary at the
borders). Here a unit is its kernel column *and* its bias and BatchNorm scale
and offset, as in structured pruning: `keep_units_whole` adds a constraint
that zeroes them while training, so a pruned filter outputs exactly zero, and
`cut_zero_channels` zeroes the kernel rows reading such a channel (exact: the
channel, and the padding, are zero) before `shrink` removes them.
"""

import dataclasses

import keras
import numpy as np

import keras_lth as lth

__all__ = [
    "NETWORKS",
    "Network",
    "build",
    "compile_model",
    "cut_zero_channels",
    "dense_like",
    "keep_units_whole",
    "kernel_layers",
    "shape_of",
]

BN_MOMENTUM = 0.9  # Keras's 0.99 leaves ResNet-20's statistics stale here.


@dataclasses.dataclass(frozen=True)
class Network:
    """A network of the benchmark.

    Attributes:
        name: The builder's name in `keras_lth.models`.
        title: The name in tables.
        pruned: The layers whose output units unit IMP prunes.
        batch_norm: `{pruned layer: the BatchNormalization right after it}`.
        reads: `{pruned convolution: the convolution reading its output}`,
            through element-wise layers and pooling only.
    """

    name: str
    title: str
    pruned: tuple
    batch_norm: dict
    reads: dict


def _resnet20():
    blocks = [f"stage{s}_block{b}_" for s in (1, 2, 3) for b in (1, 2, 3)]
    return Network(
        name="resnet20",
        title="ResNet-20",
        # The residual stream's channels are summed by every block's `Add`,
        # so only the inner channel of each block can go: its first conv.
        pruned=tuple(f"{b}conv1" for b in blocks),
        batch_norm={f"{b}conv1": f"{b}bn1" for b in blocks},
        reads={f"{b}conv1": f"{b}conv2" for b in blocks},
    )


NETWORKS = {
    "conv4": Network(
        name="conv4",
        title="Conv-4",
        pruned=("conv1", "conv2", "conv3", "conv4", "fc1", "fc2"),
        batch_norm={},
        reads={"conv1": "conv2", "conv2": "conv3", "conv3": "conv4"},
    ),
    "resnet20": _resnet20(),
}


def compile_model(model, learning_rate):
    """Compiles `model` with Adam, logits cross-entropy and accuracy."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _with_momentum(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM  # Read by `call` and `get_config`.
    return model


def build(network, seed):
    """The masked network on 28x28x1 images, from `seed`'s initial weights."""
    keras.utils.set_random_seed(seed)
    builder = getattr(lth.models, network.name)
    return _with_momentum(builder(input_shape=(28, 28, 1)))


def dense_like(model, seed):
    """A masked network of `model`'s exact shape, freshly initialized."""
    keras.utils.set_random_seed(seed)
    return _with_momentum(lth.mask_model(keras.models.clone_model(model)))


class _LiveUnits:
    """A constraint: zeroes the entries of units whose kernel is pruned."""

    def __init__(self, mask):
        self.mask = mask

    def __call__(self, value):
        mask = keras.ops.cast(self.mask, value.dtype)  # Masks may be bool.
        rows = keras.ops.reshape(mask, (-1, mask.shape[-1]))
        live = keras.ops.any(keras.ops.not_equal(rows, 0), axis=0)
        return value * keras.ops.cast(live, value.dtype)


def keep_units_whole(model, network):
    """Makes a pruned unit's bias and BatchNorm scale and offset zero.

    Sets a constraint (applied by the optimizer after each step) on those
    variables of `network.pruned`, reading the layer's `kernel_mask`.
    """
    for name in network.pruned:
        layer = model.get_layer(name)
        constraint = _LiveUnits(layer.kernel_mask)
        variables = [layer.bias] if layer.use_bias else []
        if name in network.batch_norm:
            norm = model.get_layer(network.batch_norm[name])
            variables += [norm.gamma, norm.beta]
        for variable in variables:
            variable.constraint = constraint


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable)


def cut_zero_channels(model, network):
    """Zeroes, in place, the kernel rows reading channels that are zero.

    A channel of a pruned convolution is zero when its kernel column and
    bias are, and, with a BatchNorm after it, that layer's scale and offset.
    Zeroing the reading rows changes no output, and lets `shrink` remove
    the channel through the reader's zero padding.

    Returns:
        `{pruned layer: channels cut}`.
    """
    cut = {}
    for name, reader_name in network.reads.items():
        layer = model.get_layer(name)
        kernel = _numpy(layer.kernel)
        zero = ~np.any(kernel.reshape(-1, kernel.shape[-1]), axis=0)
        if layer.use_bias:
            zero &= _numpy(layer.bias) == 0
        if name in network.batch_norm:
            norm = model.get_layer(network.batch_norm[name])
            zero &= (_numpy(norm.gamma) == 0) & (_numpy(norm.beta) == 0)
        reader = model.get_layer(reader_name)
        rows = _numpy(reader.kernel)
        rows[..., zero, :] = 0
        reader.kernel.assign(rows)
        cut[name] = int(zero.sum())
    return cut


def kernel_layers(model):
    """The Conv2D and Dense layers of `model`, in order."""
    kinds = (keras.layers.Conv2D, keras.layers.Dense)
    return [layer for layer in model.layers if isinstance(layer, kinds)]


def shape_of(model, network):
    """The widths that pruning changes, as a short string."""
    if network.name == "conv4":
        widths = [
            getattr(layer, "filters", None) or layer.units
            for layer in kernel_layers(model)
        ]
        return "-".join(map(str, widths))
    inner = [model.get_layer(name).filters for name in network.pruned]
    return "inner " + "-".join(map(str, inner))
