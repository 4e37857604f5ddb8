"""The networks of `benchmarks/deploy_convnets.py`: Conv-4 and ResNet-20.

Each `Network` names the layers that unit IMP prunes. A unit is its kernel
column *and* its bias and BatchNorm scale and offset, as in structured
pruning: `LotteryTicket(granularity="unit")` holds those at zero once the
column is pruned (`keras_lth.unit_holding.hold_pruned_units`), so a pruned
filter outputs exactly zero and `keras_lth.shrink` removes it, even where a
`"same"` convolution reads it through zero padding.
"""

import dataclasses

import keras

import keras_lth as lth

__all__ = [
    "NETWORKS",
    "Network",
    "build",
    "compile_model",
    "dense_like",
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
    """

    name: str
    title: str
    pruned: tuple


def _resnet20():
    blocks = [f"stage{s}_block{b}_" for s in (1, 2, 3) for b in (1, 2, 3)]
    shortcuts = [f"stage{s}_block1_shortcut_conv" for s in (2, 3)]
    return Network(
        name="resnet20",
        title="ResNet-20",
        # Every convolution. The stem, each block's conv2 and the shortcuts
        # write into the residual stream, whose channels every block's `Add`
        # ties: `LotteryTicket` prunes them together (`keras_lth.coupling`),
        # so `shrink` narrows the stream too.
        pruned=("conv1", *(f"{b}conv{i}" for b in blocks for i in (1, 2)), *shortcuts),
    )


NETWORKS = {
    "conv4": Network(
        name="conv4",
        title="Conv-4",
        pruned=("conv1", "conv2", "conv3", "conv4", "fc1", "fc2"),
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
    def widths(names):
        return "-".join(str(model.get_layer(name).filters) for name in names)

    stream = widths(["conv1", "stage2_block1_conv2", "stage3_block1_conv2"])
    inner = widths([f"stage{s}_block1_conv1" for s in (1, 2, 3)])
    return f"stream {stream}, inner {inner}"
