"""Zeroing an optimizer's state of pruned weights.

Adam's moments, momentum and the like of a pruned entry would move it off
zero on its next update, zero gradient or not. `keras_lth.set_masks` calls
these on `model.optimizer` and on a custom training loop's optimizer.
"""

import keras

from keras_lth.layers.base import multiply_by_mask

__all__ = ["check_optimizer", "mask_keras_slots", "mask_torch_state"]


def check_optimizer(optimizer):
    """Accepts None, a Keras optimizer or a `torch.optim.Optimizer`.

    Raises:
        TypeError: If `optimizer` is anything else.
    """
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


def mask_keras_slots(optimizer, model, tensors, *, strict):
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


def mask_torch_state(optimizer, model, tensors):
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
