"""Finding the prunable and the dense weights of a model, at any depth.

Keras lists a model's direct layers only (`model.layers`); the functions here
walk the whole layer tree, through nested models, wrappers, attention layers,
RNN cells and custom layers' sublayers.
"""

import collections

import keras
import numpy as np

from keras_lth.layers import MaskedLayer

__all__ = [
    "DENSE_WEIGHT_SUFFIXES",
    "dense_weights",
    "layer_tree",
    "prunable_layers",
    "prunable_tensors",
    "require_prunable_tensors",
]

#: Weights named so (`kernel`, `recurrent_kernel`, `embeddings`, ...) are
#: expected pruned: `mask_model` and `sparsity` report those left dense.
DENSE_WEIGHT_SUFFIXES = ("kernel", "embeddings")


def prunable_layers(model):
    """Yields the masked layers of `model`, at any depth, each once, in order.

    Masked layers inside nested models and inside other layers (the blocks of
    a subclassed model, `TimeDistributed`, ...) are included.
    """
    for _, layer, _ in layer_tree(model):
        if isinstance(layer, MaskedLayer):
            yield layer


def prunable_tensors(model):
    """Returns `{key: (layer, weight_name)}` for a model's prunable weights.

    A weight's key is `"<layer name>/<weight name>"` (`"dense/kernel"`),
    unless another masked layer in the model has the same name, as the
    `query` projections of two attention layers do: then it is the path from
    the model (`"encoder_0/mha/query/kernel"`).

    Args:
        model: A model (or layer) containing masked layers.

    Returns:
        A dict in the order of `prunable_layers`, empty if there is none.
    """
    masked = [
        (path, layer)
        for path, layer, _ in layer_tree(model)
        if isinstance(layer, MaskedLayer)
    ]
    names = collections.Counter(layer.name for _, layer in masked)
    tensors = {}
    for path, layer in masked:
        prefix = layer.name if names[layer.name] == 1 else path
        for name in layer.prunable_weight_names:
            tensors[f"{prefix}/{name}"] = (layer, name)
    return tensors


def require_prunable_tensors(model):
    """`prunable_tensors(model)`, refusing a model that has none or is unbuilt.

    A model that knows its input shape (`model.build(input_shape)` was
    called) but whose masked layers are not built yet, as a subclassed
    model's are not, is built here from that shape (`build_from_config`).

    Raises:
        ValueError: If `model` holds no masked layer, or its masked layers
            are not built and it does not know its input shape.
    """
    tensors = prunable_tensors(model)
    if not tensors:
        raise ValueError(
            f"Model '{model.name}' has no prunable layers. Make it prunable "
            "with `keras_lth.mask_model(model)`, or build it from "
            "`keras_lth.layers`."
        )

    def unbuilt():
        return list({x.name: 0 for x, _ in tensors.values() if not x.built})

    config = model.get_build_config() if unbuilt() else None
    if config:
        model.build_from_config(config)
    if unbuilt():
        raise ValueError(
            f"Model '{model.name}' is not built: its masked layers {unbuilt()} "
            "have no weights or masks yet. Build it before training: call "
            "`model.build(input_shape)` (for example `model.build((None, "
            "784))`), or run it on one batch (`model(x[:1])`). On TensorFlow, "
            "`fit` builds a subclassed model only when its first step runs, "
            "after callbacks such as `LotteryTicket` have started."
        )
    return tensors


def layer_tree(model):
    """Yields `(path, layer, chain)` below `model`, depth first, each once.

    `path` joins layer names (`"mha/query"`); `chain` lists those layers.
    """
    seen = set()

    def visit(layer, path, chain):
        # Keras has no public walk over sublayers; `model.layers` lists only
        # the direct ones, and only on models.
        for child in layer._flatten_layers(include_self=False, recursive=False):
            if id(child) in seen:
                continue
            seen.add(id(child))
            child_path = f"{path}{child.name}"
            yield child_path, child, (*chain, child)
            yield from visit(child, f"{child_path}/", (*chain, child))

    if isinstance(model, keras.layers.Layer):
        yield from visit(model, "", ())


def dense_weights(model, select=None):
    """`{path: size}` of the kernels and embeddings left dense in `model`.

    With `select`, of the layers it holds for, or that such a layer holds.
    """
    seen = {
        id(layer.prunable_variable(name))
        for layer in prunable_layers(model)
        for name in layer.prunable_weight_names
    }
    found = {}
    owners = [("", model, ())] + list(layer_tree(model))
    for path, layer, chain in owners:
        below = {
            id(weight)
            for child in layer._flatten_layers(include_self=False, recursive=False)
            for weight in child.weights
        }
        if select is not None and not any(select(owner) for owner in chain):
            continue
        for weight in layer.weights:
            if id(weight) in below or id(weight) in seen:
                continue
            seen.add(id(weight))
            if weight.name.endswith(DENSE_WEIGHT_SUFFIXES):
                key = f"{path}/{weight.name}" if path else weight.name
                found[key] = int(np.prod(weight.shape))
    return found
