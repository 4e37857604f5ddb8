"""Reading and writing a prunable model's masks and weights.

`mask_model` makes a model prunable and `strip_masks` bakes the masks into
the weights (both from `keras_lth.conversion`, re-exported here). In
between, every prunable weight tensor is keyed `"<layer>/<weight>"` (for
example `"dense/kernel"`, or its path from the model where two masked layers
share a name; see `prunable_tensors`):
`get_masks`, `set_masks` and `get_prunable_weights` read and write dicts of
numpy arrays under those keys, which the pure functions of
`keras_lth.pruning` take and return. With `restore_weights` (a rewind) and
`pruned_nonzero` (a check), they are what IMP in a custom training loop
needs: see `examples/custom_loop.py`.
"""

import keras
import numpy as np
from keras import ops

from keras_lth.conversion import mask_model
from keras_lth.conversion import strip_masks
from keras_lth.layer_tree import DENSE_WEIGHT_SUFFIXES
from keras_lth.layer_tree import dense_weights
from keras_lth.layer_tree import prunable_layers
from keras_lth.layer_tree import prunable_tensors
from keras_lth.layer_tree import require_prunable_tensors
from keras_lth.optimizer_slots import check_optimizer
from keras_lth.optimizer_slots import mask_keras_slots
from keras_lth.optimizer_slots import mask_torch_state

__all__ = [
    "DENSE_WEIGHT_SUFFIXES",
    "get_masks",
    "get_prunable_weights",
    "mask_model",
    "prunable_layers",
    "prunable_tensors",
    "pruned_nonzero",
    "require_prunable_tensors",
    "restore_weights",
    "set_masks",
    "sparsity",
    "strip_masks",
]


def sparsity(model):
    """Reports the fraction of prunable weights that are pruned.

    Args:
        model: A model (or layer) containing masked layers.

    Returns:
        A dict with
        * `"global"`: the pruned fraction over all prunable weights;
        * `"layers"`: `{"<layer>/<weight>": pruned fraction}` per prunable
          weight tensor;
        * `"dense"`: `{path: size}` of the kernels and embedding tables (see
          `DENSE_WEIGHT_SUFFIXES`) that are not prunable, such as the layers
          inside other layers that `mask_model` cannot reach, by path from
          the model's layers down (`"mha/query/kernel"`);
        * `"dense_fraction"`: the fraction of all kernel and embedding
          weights, prunable or not, that stay dense.

    Example:

    >>> model = keras_lth.mask_model(keras.Sequential(
    ...     [keras.Input((4,)), keras.layers.Dense(2, name="out")]))
    >>> keras_lth.set_masks(model, {"out/kernel": [[1, 0], [1, 0], [1, 1], [0, 0]]})
    >>> report = keras_lth.sparsity(model)
    >>> report["global"], report["layers"], report["dense"]
    (0.5, {'out/kernel': 0.5}, {})
    """
    masks = get_masks(model)
    if not masks:
        raise ValueError(
            f"Model '{model.name}' has no masked layers. "
            "Make it prunable first with `keras_lth.mask_model(model)`."
        )
    pruned = {key: float(np.sum(mask == 0)) for key, mask in masks.items()}
    total = sum(mask.size for mask in masks.values())
    dense = dense_weights(model)
    dense_total = sum(dense.values())
    return {
        "global": sum(pruned.values()) / total,
        "layers": {key: pruned[key] / masks[key].size for key in masks},
        "dense": dense,
        "dense_fraction": dense_total / (total + dense_total),
    }


def get_masks(model):
    """Returns `{"<layer>/<weight>": mask}` as float32 numpy arrays of 0 and 1.

    The arrays are float32 whatever dtype the mask variables have on the
    backend (bool on JAX), as the pruning functions in `keras_lth.pruning`
    take and return them.

    Example:

    >>> model = keras_lth.mask_model(keras.Sequential(
    ...     [keras.Input((3,)), keras.layers.Dense(2, name="out")]))
    >>> keras_lth.get_masks(model)
    {'out/kernel': array([[1., 1.],
           [1., 1.],
           [1., 1.]], dtype=float32)}
    """
    return {
        key: ops.convert_to_numpy(layer.mask_variable(name)).astype("float32")
        for key, (layer, name) in prunable_tensors(model).items()
    }


def get_prunable_weights(model):
    """Returns `{"<layer>/<weight>": weights}` as numpy arrays.

    The stored weights, whose pruned entries are zero; keyed like `get_masks`.
    """
    return {
        key: ops.convert_to_numpy(layer.prunable_variable(name))
        for key, (layer, name) in prunable_tensors(model).items()
    }


def pruned_nonzero(model):
    """Counts the pruned weights that are not stored as exactly zero.

    keras_lth keeps them zero; an optimizer whose slots of pruned entries
    were not zeroed (see `set_masks`), `Model.set_weights` or
    `Variable.assign` can move them. `set_masks(model, {})` re-zeroes them.

    Args:
        model: A model with masked layers.

    Returns:
        `{"<layer>/<weight>": count}` for the tensors where it is not 0:
        an empty dict when every pruned weight is zero.

    Example:

    >>> model = keras_lth.mask_model(keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(2, name="out")]))
    >>> keras_lth.set_masks(model, {"out/kernel": np.eye(2)})
    >>> keras_lth.pruned_nonzero(model)
    {}
    >>> _ = model.layers[0].kernel.assign(np.ones((2, 2)))  # Past the masks.
    >>> keras_lth.pruned_nonzero(model)
    {'out/kernel': 2}
    >>> keras_lth.set_masks(model, {})  # Zeroes them again.
    >>> keras_lth.pruned_nonzero(model)
    {}
    """
    masks, weights = get_masks(model), get_prunable_weights(model)
    counts = {key: int(np.sum(weights[key][masks[key] == 0] != 0)) for key in masks}
    return {key: count for key, count in counts.items() if count}


def set_masks(model, masks, *, optimizer=None):
    """Assigns masks, keyed like `get_masks`, keeping pruned entries at zero.

    Pruned entries of the weights are zeroed, and so are their slots
    (momentum, Adam moments, ...) in `model.optimizer` if it is built, and in
    `optimizer`: with a zero gradient, a zero slot and a zero weight, no
    update can move a pruned weight again. See `keras_lth.layers.MaskedLayer`.

    Args:
        model: A model with masked layers.
        masks: Dict `{"<layer>/<weight>": mask}`; tensors left out keep their
            masks (their pruned entries are re-zeroed all the same).
        optimizer: A custom training loop's optimizer, if not
            `model.optimizer`: a Keras optimizer (built on the model's
            variables, or not yet) or a `torch.optim.Optimizer` over
            `model.parameters()`. With `stateless_apply` on JAX, assign your
            loop's optimizer state to `optimizer.variables` first.

    Raises:
        ValueError: If a key is unknown, a masked layer is not built, or
            `optimizer` trains none of the model's variables or holds
            variables shaped like a prunable weight but not named after one.
        TypeError: If `optimizer` is neither a Keras nor a torch optimizer.

    Example:

    One round of magnitude pruning by hand, with `keras_lth.prune`:

    >>> model = keras_lth.mask_model(keras.Sequential(
    ...     [keras.Input((4,)), keras.layers.Dense(5, name="out")]))
    >>> masks = keras_lth.prune(
    ...     keras_lth.get_prunable_weights(model), keras_lth.get_masks(model), 0.2)
    >>> keras_lth.set_masks(model, masks)
    >>> int(masks["out/kernel"].sum())  # 20 weights, the 4 smallest pruned.
    16
    >>> kernel = keras.ops.convert_to_numpy(model.layers[0].kernel)
    >>> int((kernel == 0).sum())
    4
    """
    check_optimizer(optimizer)
    tensors = prunable_tensors(model)
    unknown = [key for key in masks if key not in tensors]
    if unknown:
        raise ValueError(
            f"No masked weight is keyed {unknown}. Known keys: {list(tensors)}"
        )
    updated = set()
    for key, mask in masks.items():
        layer, name = tensors[key]
        layer.set_mask(name, mask)  # Also zeroes the layer's pruned entries.
        updated.add(id(layer))
    for layer in prunable_layers(model):
        if id(layer) not in updated:
            layer.apply_masks()
    compiled = getattr(model, "optimizer", None)
    if compiled is not None and compiled is not optimizer:
        mask_keras_slots(compiled, model, tensors, strict=False)
    if optimizer is None:
        return
    if isinstance(optimizer, keras.optimizers.Optimizer):
        mask_keras_slots(optimizer, model, tensors, strict=True)
    else:
        mask_torch_state(optimizer, model, tensors)


def restore_weights(model, weights, *, optimizer=None):
    """Sets `model`'s weights from a list, keeping its masks: IMP's rewind.

    `model.set_weights(weights)`, then `set_masks(model, {}, optimizer=...)`
    to zero the pruned entries again. Masks are not weights: a snapshot
    `model.get_weights()` from before pruning keeps the current masks.

    Args:
        model: A model with masked layers.
        weights: A list as `model.get_weights()` returns it.
        optimizer: As for `set_masks`. To rewind the optimizer as well,
            restore its variables (or make a new one) yourself.

    Example:

    >>> model = keras_lth.mask_model(keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(2, name="out")]))
    >>> initial = model.get_weights()  # Before training.
    >>> keras_lth.set_masks(model, {"out/kernel": np.eye(2)})  # After it.
    >>> keras_lth.restore_weights(model, initial)
    >>> kernel = keras.ops.convert_to_numpy(model.layers[0].kernel)
    >>> bool(np.all(kernel == np.eye(2) * initial[0]))  # Initial, masked.
    True
    """
    model.set_weights(weights)
    set_masks(model, {}, optimizer=optimizer)
