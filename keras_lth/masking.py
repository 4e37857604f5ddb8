"""Turning a model prunable and back, and reading and writing its masks.

`mask_model` swaps the masked twins of `keras_lth.layers` into a Sequential
or Functional model, and warns about the kernels it cannot make prunable;
`strip_masks` bakes the masks into the weights. In between, every prunable
weight tensor is keyed `"<layer>/<weight>"` (for example `"dense/kernel"`):
`get_masks`, `set_masks` and `get_prunable_weights` read and write dicts of
numpy arrays under those keys, which the pure functions of
`keras_lth.pruning` take and return. With `restore_weights` (a rewind) and
`pruned_nonzero` (a check), they are what IMP in a custom training loop
needs: see `examples/custom_loop.py`.
"""

import warnings

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

#: Weights named so (`kernel`, `recurrent_kernel`, `embeddings`, ...) are
#: expected pruned: `mask_model` and `sparsity` report those left dense.
DENSE_WEIGHT_SUFFIXES = ("kernel", "embeddings")


def mask_model(model, *, layers=None):
    """Returns a prunable copy of a Sequential or Functional model.

    Every supported stock layer (see `keras_lth.layers.MASKED_TWINS`) that is
    a layer of `model` or of a Sequential or Functional model nested in it is
    replaced by its masked twin. Layer names are kept and all weights are
    copied, so the copy computes exactly what `model` computes; its masks
    start at all ones. The copy is not compiled.

    Layers inside other layers (`MultiHeadAttention`'s projections, RNN
    cells, wrappers, custom layers' sublayers) stay dense: one `UserWarning`
    names each such kernel of a selected layer, with its size.

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
    _check_cloneable(
        model,
        "mask_model",
        hint="Build it from the prunable layers in `keras_lth.layers` instead "
        "(`keras_lth.layers.MaskedDense` for `keras.layers.Dense`, ...); the "
        "rest of keras_lth works on it as is.",
    )
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
    _warn_dense(masked, select)
    return masked


def strip_masks(model, *, in_place=False):
    """Bakes every mask into its weight, for export or deployment.

    By default, returns a copy of a Sequential or Functional model in which
    each masked layer becomes its stock layer, holding `weight * mask`. With
    `in_place=True`, the way for a subclassed model (whose layers its code
    fixes), the masks are baked into `model`'s own weights and set to all
    ones, and `model` is returned: its layers stay `keras_lth.layers`
    classes (it saves and loads as before) but mask nothing, and training
    updates every weight. Either way pruned entries are exactly `0.0` and
    the outputs equal the masked model's.

    Args:
        model: A `keras.Model` with masked layers.
        in_place: Whether to change `model` rather than return a copy.

    Returns:
        An uncompiled copy made of stock Keras layers, or `model` itself.

    Raises:
        ValueError: If `model` is subclassed and `in_place` is False, or, with
            `in_place=True`, if a masked layer has LoRA enabled (its low-rank
            update is masked in `call`, so all-ones masks would change it).
    """
    if in_place:
        _check_cloneable(model, "strip_masks", subclassed=True)
        return _strip_in_place(model)
    _check_cloneable(
        model,
        "strip_masks",
        hint="Pass `in_place=True` to bake the masks into its own weights.",
    )

    def clone(layer):
        cls = stock_class(type(layer)) if isinstance(layer, MaskedLayer) else None
        return (cls or layer.__class__).from_config(layer.get_config())

    plain = keras.models.clone_model(model, clone_function=clone, recursive=True)
    _copy_weights(model, plain, bake_masks=True)
    return plain


def _strip_in_place(model):
    layers = list(prunable_layers(model))
    lora = [layer.name for layer in layers if getattr(layer, "lora_enabled", False)]
    if lora:
        raise ValueError(
            f"`strip_masks(in_place=True)` cannot bake the masks of layers "
            f"{lora}: their LoRA update is masked in `call`. Strip a copy."
        )
    for layer in layers:
        layer.apply_masks()
        for name in layer.prunable_weight_names:  # Baked: now mask nothing.
            layer.set_mask(name, np.ones(layer.mask_variable(name).shape))
    return model


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
    """
    masks = get_masks(model)
    if not masks:
        raise ValueError(
            f"Model '{model.name}' has no masked layers. "
            "Make it prunable first with `keras_lth.mask_model(model)`."
        )
    pruned = {key: float(np.sum(mask == 0)) for key, mask in masks.items()}
    total = sum(mask.size for mask in masks.values())
    dense = _dense_weights(model)
    dense_total = sum(dense.values())
    return {
        "global": sum(pruned.values()) / total,
        "layers": {key: pruned[key] / masks[key].size for key in masks},
        "dense": dense,
        "dense_fraction": dense_total / (total + dense_total),
    }


def prunable_layers(model):
    """Yields the masked layers of `model`, at any depth, each once, in order.

    Masked layers inside nested models and inside other layers (the blocks of
    a subclassed model, `TimeDistributed`, ...) are included.
    """
    for _, layer, _ in _layer_tree(model):
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
    """
    _check_optimizer(optimizer)
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
        _mask_keras_slots(compiled, model, tensors, strict=False)
    if optimizer is None:
        return
    if isinstance(optimizer, keras.optimizers.Optimizer):
        _mask_keras_slots(optimizer, model, tensors, strict=True)
    else:
        _mask_torch_state(optimizer, model, tensors)


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
    """
    model.set_weights(weights)
    set_masks(model, {}, optimizer=optimizer)


def _check_optimizer(optimizer):
    if optimizer is None or isinstance(optimizer, keras.optimizers.Optimizer):
        return
    if hasattr(optimizer, "param_groups") and hasattr(optimizer, "state"):
        return  # A `torch.optim.Optimizer`, duck-typed: torch is not imported.
    raise TypeError(
        "Expected `optimizer` to be a `keras.optimizers.Optimizer` or a "
        f"`torch.optim.Optimizer`. Received: {optimizer!r} of type "
        f"{type(optimizer).__name__}. Functional optimizer states (optax) "
        "are values your loop owns: zero their entries where the mask is 0."
    )


def _mask_keras_slots(optimizer, model, tensors, *, strict):
    """Zeroes a Keras optimizer's slots of pruned entries.

    `add_variable_from_reference` names the slot of a variable `v` after
    `v.path` with `/` replaced by `_`, plus a suffix (`..._momentum`), in the
    order of the variables. A slot belongs to the variable with the longest
    such prefix; when several share it (layer `dense` in model `block` and
    layer `block_dense`), the n-th slot of a name belongs to the n-th of
    them. Slots shaped unlike their variable (Adafactor's) hold no per-entry
    state. `strict` refuses what cannot be matched.
    """
    if not optimizer.built:
        return  # No slots yet: `build` makes them zero.
    model_variables = {id(v) for v in model.trainable_variables}
    # The variables `build` was given, in order (Keras keeps no public list).
    built_for = getattr(optimizer, "_trainable_variables", None)
    built_for = model.trainable_variables if built_for is None else built_for
    if strict and not any(id(v) in model_variables for v in built_for):
        raise ValueError(
            f"The optimizer {optimizer.name!r} was built for other variables "
            f"than those of model '{model.name}': its slots cannot be matched."
        )
    masks = {
        id(layer.prunable_variable(name)): layer.mask_variable(name)
        for layer, name in tensors.values()
    }
    owners = {}  # Sanitized path + "_" -> variables, in order.
    for variable in built_for:
        owners.setdefault(variable.path.replace("/", "_") + "_", []).append(variable)
    prefixes = sorted(owners, key=len, reverse=True)
    shapes = {tuple(mask.shape) for mask in masks.values()}
    seen = {}  # Slot name -> how many slots of that name came before.
    unmatched = []
    for slot in optimizer.variables:
        slot_name = slot.path.split("/")[-1]
        prefix = next((p for p in prefixes if slot_name.startswith(p)), None)
        if prefix is None:
            if tuple(slot.shape) in shapes:
                unmatched.append(slot.path)
            continue
        index = seen.get(slot_name, 0)
        seen[slot_name] = index + 1
        candidates = owners[prefix]
        owner = candidates[index] if index < len(candidates) else None
        if owner is None or id(owner) not in masks:
            continue
        if tuple(slot.shape) == tuple(owner.shape):
            slot.assign(multiply_by_mask(slot, masks[id(owner)]))
    if strict and unmatched:
        raise ValueError(
            f"The optimizer {optimizer.name!r} holds variables {unmatched} "
            "shaped like prunable weights but not named after one, so keras_lth "
            "cannot tell whose slots they are. Make slots with "
            "`add_variable_from_reference`, as Keras's optimizers do."
        )


def _mask_torch_state(optimizer, model, tensors):
    """Zeroes a `torch.optim.Optimizer`'s state of pruned entries.

    Keyed by parameter: a Keras variable's `value` on the torch backend.
    """
    params = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if not any(id(getattr(v, "value", None)) in params for v in model.variables):
        raise ValueError(
            f"The torch optimizer trains none of model '{model.name}''s "
            "variables, so its state cannot be matched. On the torch backend, "
            "give it `model.parameters()`."
        )
    for layer, name in tensors.values():
        param = layer.prunable_variable(name).value
        mask = layer.mask_variable(name).value
        for value in optimizer.state.get(param, {}).values():
            if getattr(value, "shape", None) == param.shape:
                value.mul_(mask.to(value.dtype))


def _layer_tree(model):
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


def _dense_weights(model, select=None):
    """`{path: size}` of the kernels and embeddings left dense in `model`.

    With `select`, of the layers it holds for, or that such a layer holds.
    """
    seen = {
        id(layer.prunable_variable(name))
        for layer in prunable_layers(model)
        for name in layer.prunable_weight_names
    }
    found = {}
    owners = [("", model, ())] + list(_layer_tree(model))
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


def _warn_dense(model, select):
    dense = _dense_weights(model, select)
    if not dense:
        return
    prunable = sum(
        int(np.prod(layer.prunable_variable(name).shape))
        for layer in prunable_layers(model)
        for name in layer.prunable_weight_names
    )
    left = sum(dense.values())
    total = prunable + left
    listed = ", ".join(f"'{path}' ({size:,})" for path, size in dense.items())
    warnings.warn(
        f"`mask_model` could not make {len(dense)} weight tensors of model "
        f"'{model.name}' prunable: {listed}. They stay dense: {left:,} of "
        f"its {total:,} kernel and embedding weights ({left / total:.1%}). "
        "Only layers of `keras_lth.layers.MASKED_TWINS` directly in the model "
        "or its nested Sequential/Functional models become prunable, not "
        "those inside other layers (MultiHeadAttention, RNN cells, wrappers, "
        "custom layers). `keras_lth.sparsity(model)['dense']` lists these.",
        UserWarning,
        stacklevel=3,
    )


def _walk(layer):
    for child in getattr(layer, "layers", ()):
        yield child
        yield from _walk(child)


def _check_cloneable(model, caller, *, hint="", subclassed=False):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`{caller}` expects a `keras.Model`. Received: {model!r} "
            f"of type {type(model).__name__}"
        )
    if not subclassed and not isinstance(model, (keras.Sequential, Functional)):
        raise ValueError(
            f"`{caller}` can only clone Sequential and Functional models. "
            f"Received a subclassed model of type {type(model).__name__}. " + hint
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
            # `variables`: `weights` leave out the masks of masked sublayers.
            for s, d in zip(src.variables, dst.variables, strict=True):
                d.assign(ops.convert_to_numpy(s))
            continue
        # A masked layer on either side: its variables have unique names.
        dst_vars = {v.name: v for v in dst.variables}
        for variable in src.variables:
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
