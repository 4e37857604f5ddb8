"""Turning a model prunable and back, and reading and writing its masks.

`mask_model` swaps the masked twins of `keras_lth.layers` into a Sequential
or Functional model; `strip_masks` bakes the masks into stock layers again.
In between, every prunable weight tensor is keyed `"<layer>/<weight>"` (for
example `"dense/kernel"`): `get_masks`, `set_masks` and
`get_prunable_weights` read and write dicts of numpy arrays under those keys,
which the pure functions of `keras_lth.pruning` take and return.
"""

import keras
import numpy as np
from keras import ops

# `clone_model` accepts a `clone_function` for exactly these two kinds of
# model; Keras exposes no public name for the functional class.
from keras.src.models.functional import Functional

from keras_lth.layers import MASKED_TWINS
from keras_lth.layers import MaskedLayer
from keras_lth.layers import stock_class
from keras_lth.layers.base import multiply_by_mask

__all__ = [
    "get_masks",
    "get_prunable_weights",
    "mask_model",
    "prunable_layers",
    "prunable_tensors",
    "require_prunable_tensors",
    "set_masks",
    "sparsity",
    "strip_masks",
]


def mask_model(model, *, layers=None):
    """Returns a prunable copy of a Sequential or Functional model.

    Every supported stock layer (see `keras_lth.layers.MASKED_TWINS`),
    including those inside nested Sequential or Functional models, is replaced
    by its masked twin. Layer names are kept and all weights are copied, so the
    copy computes exactly what `model` computes; its masks start at all ones.
    The copy is not compiled.

    Args:
        model: A `keras.Sequential` or Functional `keras.Model`. Subclassed
            models cannot be cloned: build them from `keras_lth.layers`
            directly.
        layers: Which supported layers become prunable. `None` (the default)
            selects all of them. Otherwise a layer name, a layer class, a list
            mixing names and classes, or a predicate `layer -> bool`.

    Returns:
        The prunable copy.

    Example:

    >>> model = keras.Sequential([keras.Input((784,)),
    ...                           keras.layers.Dense(300, activation="relu"),
    ...                           keras.layers.Dense(10)])
    >>> masked = mask_model(model)
    >>> sorted(sparsity(masked)["layers"])
    ['dense/kernel', 'dense_1/kernel']
    """
    _check_cloneable(model, "mask_model")
    select = _selector(layers)

    def clone(layer):
        twin = MASKED_TWINS.get(type(layer))
        if twin is not None and select(layer):
            return twin.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    masked = keras.models.clone_model(model, clone_function=clone, recursive=True)
    _copy_weights(model, masked)
    if not list(prunable_layers(masked)):
        raise ValueError(
            f"`mask_model` found no layer to make prunable in model "
            f"'{model.name}' with layers={layers!r}. Supported layers: "
            f"{sorted(cls.__name__ for cls in MASKED_TWINS)}"
        )
    return masked


def strip_masks(model):
    """Returns an ordinary Keras model with every mask baked into its weight.

    Each masked layer becomes its stock Keras layer, holding `weight * mask`:
    pruned entries are exactly `0.0` and the outputs equal the masked model's.
    Use it before exporting or deploying a ticket.

    Args:
        model: A Sequential or Functional model with masked layers.

    Returns:
        An uncompiled copy made of stock Keras layers only.
    """
    _check_cloneable(model, "strip_masks")

    def clone(layer):
        cls = stock_class(type(layer)) if isinstance(layer, MaskedLayer) else None
        return (cls or layer.__class__).from_config(layer.get_config())

    plain = keras.models.clone_model(model, clone_function=clone, recursive=True)
    _copy_weights(model, plain, bake_masks=True)
    return plain


def sparsity(model):
    """Reports the fraction of prunable weights that are pruned.

    Args:
        model: A model (or layer) containing masked layers.

    Returns:
        A dict `{"global": float, "layers": {"<layer>/<weight>": float}}`:
        the pruned fraction over all prunable weights, and per weight tensor.
    """
    masks = get_masks(model)
    if not masks:
        raise ValueError(
            f"Model '{model.name}' has no masked layers. "
            "Make it prunable first with `keras_lth.mask_model(model)`."
        )
    pruned = {key: float(np.sum(mask == 0)) for key, mask in masks.items()}
    total = sum(mask.size for mask in masks.values())
    return {
        "global": sum(pruned.values()) / total,
        "layers": {key: pruned[key] / masks[key].size for key in masks},
    }


def prunable_layers(model):
    """Yields the masked layers of `model`, nested models included, in order."""
    for layer in _walk(model):
        if isinstance(layer, MaskedLayer):
            yield layer


def prunable_tensors(model):
    """Returns `{"<layer>/<weight>": (layer, weight_name)}` for a model.

    Args:
        model: A model (or layer) containing masked layers.

    Returns:
        A dict in the order of `prunable_layers`, empty if there is none.

    Raises:
        ValueError: If two masked layers share a name (the keys would clash).
    """
    tensors = {}
    for layer in prunable_layers(model):
        for name in layer.prunable_weight_names:
            key = f"{layer.name}/{name}"
            if key in tensors:
                raise ValueError(
                    f"Two masked layers are named '{layer.name}'. Layer names "
                    "must be unique across the model and its nested models, "
                    "since pruning rates and results are keyed by them."
                )
            tensors[key] = (layer, name)
    return tensors


def require_prunable_tensors(model):
    """`prunable_tensors(model)`, refusing a model that has none.

    Raises:
        ValueError: If `model` holds no masked layer.
    """
    tensors = prunable_tensors(model)
    if not tensors:
        raise ValueError(
            f"Model '{model.name}' has no prunable layers. Make it prunable "
            "with `keras_lth.mask_model(model)`, or build it from "
            "`keras_lth.layers`."
        )
    return tensors


def get_masks(model):
    """Returns `{"<layer>/<weight>": mask}` as float32 numpy arrays of 0 and 1.

    The arrays are float32 whatever dtype the mask variables have on the
    backend (bool on JAX), as the pruning functions in `keras_lth.pruning`
    take and return them.
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


def set_masks(model, masks):
    """Assigns masks, keyed like `get_masks`, keeping pruned entries at zero.

    Pruned entries of the weights are zeroed, and so are their slots in the
    model's optimizer (momentum, Adam moments, ...), if it has been built:
    with a zero gradient, a zero slot and a zero weight, no update can move
    a pruned weight again. See `keras_lth.layers.MaskedLayer`.

    Args:
        model: A model with masked layers.
        masks: Dict `{"<layer>/<weight>": mask}`; tensors left out keep their
            masks (their pruned entries are re-zeroed all the same).
    """
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
    _mask_optimizer_slots(model, tensors)


def _mask_optimizer_slots(model, tensors):
    """Zeroes the optimizer slots of pruned entries.

    Keras optimizers create a slot for a variable `v` with
    `add_variable_from_reference`, which names it after `v.path` with `/`
    replaced by `_`, plus a suffix (`..._momentum`), looping over the
    variables in order. A slot belongs to the trainable variable with the
    longest such prefix; when several variables share that prefix (layer
    `dense` in model `block` and layer `block_dense`), the n-th slot of a
    name belongs to the n-th of them. Slots of another shape than their
    variable (Adafactor's factored ones) hold no per-entry state.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not getattr(optimizer, "built", False):
        return
    masks = {
        id(layer.prunable_variable(name)): layer.mask_variable(name)
        for layer, name in tensors.values()
    }
    owners = {}  # Sanitized path + "_" -> variables, in order.
    for variable in model.trainable_variables:
        owners.setdefault(variable.path.replace("/", "_") + "_", []).append(variable)
    prefixes = sorted(owners, key=len, reverse=True)
    seen = {}  # Slot name -> how many slots of that name came before.
    for slot in optimizer.variables:
        slot_name = slot.path.split("/")[-1]
        prefix = next((p for p in prefixes if slot_name.startswith(p)), None)
        if prefix is None:
            continue
        index = seen.get(slot_name, 0)
        seen[slot_name] = index + 1
        candidates = owners[prefix]
        owner = candidates[index] if index < len(candidates) else None
        if owner is None or id(owner) not in masks:
            continue
        if tuple(slot.shape) == tuple(owner.shape):
            slot.assign(multiply_by_mask(slot, masks[id(owner)]))


def _walk(layer):
    for child in getattr(layer, "layers", ()):
        yield child
        yield from _walk(child)


def _check_cloneable(model, caller):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`{caller}` expects a `keras.Model`. Received: {model!r} "
            f"of type {type(model).__name__}"
        )
    if not isinstance(model, (keras.Sequential, Functional)):
        raise ValueError(
            f"`{caller}` can only clone Sequential and Functional models. "
            f"Received a subclassed model of type {type(model).__name__}. "
            "Build it from the prunable layers in `keras_lth.layers` instead "
            "(for example `keras_lth.layers.MaskedDense` in place of "
            "`keras.layers.Dense`); the rest of keras_lth works on it as is."
        )


def _selector(layers):
    if layers is None:
        return lambda layer: True
    if callable(layers) and not isinstance(layers, type):
        return layers
    items = layers if isinstance(layers, (list, tuple, set)) else [layers]
    names = {item for item in items if isinstance(item, str)}
    classes = tuple(item for item in items if isinstance(item, type))
    if len(names) + len(classes) != len(items):
        raise TypeError(
            "Expected `layers` to be None, a layer name, a layer class, a list "
            f"of names and classes, or a predicate. Received: {layers!r}"
        )
    return lambda layer: layer.name in names or isinstance(layer, classes)


def _copy_weights(source, target, bake_masks=False):
    """Copies the variables of `source`'s layers into their clones in `target`."""
    for src, dst in zip(_walk(source), _walk(target), strict=True):
        if isinstance(src, keras.layers.InputLayer):
            # Weightless; `clone_model` may rename it after its tensor.
            continue
        if src.name != dst.name:
            raise RuntimeError(
                f"Cloned layer '{dst.name}' does not line up with '{src.name}'."
            )
        if hasattr(src, "layers"):
            continue  # A nested model: its own layers are walked next.
        if not (isinstance(src, MaskedLayer) or isinstance(dst, MaskedLayer)):
            dst.set_weights(src.get_weights())
            continue
        # A masked layer on either side: its variables have unique names.
        dst_vars = {v.name: v for v in dst.weights}
        for variable in src.weights:
            if variable.name not in dst_vars:
                if bake_masks and variable.name.endswith("_mask"):
                    continue
                raise RuntimeError(
                    f"Cloned layer '{dst.name}' has no variable '{variable.name}'."
                )
            value = variable
            if bake_masks and variable.name in src.prunable_weight_names:
                value = multiply_by_mask(variable, src.mask_variable(variable.name))
            # A copy, as `set_weights(get_weights())` makes: on JAX, assigning
            # the variable itself would share its array, and the next jitted
            # step of either model donates (deletes) it under the other.
            dst_vars[variable.name].assign(ops.convert_to_numpy(value))
