"""Zeroing an optimizer's state of pruned weights, and filling it for speed.

Adam's moments, momentum and the like of a pruned entry would move it off
zero on its next update, zero gradient or not. `keras_lth.set_masks` calls
these on `model.optimizer` and on a custom training loop's optimizer.

On PyTorch's CPU builds a square root of an exact zero is slow, and Adam
takes one of every pruned entry's second moment on every step.
`LotteryTicket` therefore fills those entries with 1.0 while `fit` runs
(`fill_square_root_slots`), which changes no update. A loop of your own can
do the same: with `fills = fills_square_root_slots(optimizer)` and
`tensors = keras_lth.masking.prunable_tensors(model)`, call
`fill_square_root_slots(optimizer, model, tensors)` before every
`FILL_EVERY`-th step when `fills`, and `keras_lth.set_masks(model, {},
optimizer=optimizer)` when the loop ends, to leave the slots zero.
"""

import keras

from keras_lth.layer_tree import prunable_tensors
from keras_lth.layers.base import multiply_by_mask

__all__ = [
    "FILL_EVERY",
    "FillSchedule",
    "check_optimizer",
    "fill_square_root_slots",
    "fills_square_root_slots",
    "mask_keras_slots",
    "mask_torch_state",
]


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
    for slot, mask in _pruned_slots(optimizer, model, tensors, strict=strict):
        slot.assign(multiply_by_mask(slot, mask))


# Keras optimizers whose update takes the square root of the slots below
# (without adding epsilon first), and whose update of an entry is zero
# whatever those slots hold there once its gradient and first moment are.
# Exact types: a subclass may use the slots otherwise. (RMSprop adds epsilon
# before its square root.)
_SQRT_SLOTS = {
    keras.optimizers.Adam: ("_velocity", "_velocity_hat"),
    keras.optimizers.AdamW: ("_velocity", "_velocity_hat"),
    keras.optimizers.Nadam: ("_velocity",),
    keras.optimizers.Lamb: ("_velocity",),
}
#: Steps between two fills. A second moment filled with 1.0 decays by
#: `beta_2` a step where the gradient is zero: 0.9 ** 100 is 2.7e-5, far from
#: float32's subnormals (below 1.2e-38), which are slower still than zeros.
FILL_EVERY = 100


def _square_root_slots(optimizer):
    """The suffixes of `optimizer`'s slots to fill, or None."""
    kind = type(getattr(optimizer, "inner_optimizer", optimizer))
    for cls, suffixes in _SQRT_SLOTS.items():
        # On PyTorch, `keras.optimizers.Adam()` makes Keras's own subclass
        # `torch_adam.Adam`: the same update in `torch._foreach_*` ops.
        twin = cls in kind.__bases__ and kind.__module__.startswith(
            "keras.src.backend.torch.optimizers."
        )
        if kind is cls or twin:
            return suffixes
    return None


def fills_square_root_slots(optimizer):
    """Whether `fill_square_root_slots` applies to `optimizer`.

    True on the PyTorch backend for Keras's Adam, AdamW, Nadam and Lamb
    (also inside a `LossScaleOptimizer`). PyTorch's x86 CPU builds take
    square roots with MKL's vector math library, which sends every exact
    zero down a slow scalar path (3-15x slower per element), and a pruned
    weight's second moment is exactly zero: 6% of a training step of a
    half-pruned transformer block (`benchmarks/overhead.py`).
    """
    if keras.backend.backend() != "torch":
        return False
    return _square_root_slots(optimizer) is not None


def fill_square_root_slots(optimizer, model, tensors):
    """Puts 1.0 in the pruned entries of the slots an update takes roots of.

    An entry whose gradient and first moment are zero gets a zero update
    from Adam (and the optimizers of `fills_square_root_slots`) whatever its
    second moment holds, so filling the pruned entries of the second moment
    with 1.0 changes no weight and no other slot: the same training, bit for
    bit, without square roots of exact zeros. The filled value decays on
    every step, so a training loop fills again every `FILL_EVERY` steps;
    `set_masks` zeroes it like any other slot.
    """
    suffixes = _square_root_slots(optimizer)
    if suffixes is None:
        raise ValueError(
            "Expected Keras's Adam, AdamW, Nadam or Lamb, whose updates leave "
            "an entry of zero gradient and first moment where it is whatever "
            f"its second moment holds. Received: {optimizer!r}."
        )
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    for slot, mask in _pruned_slots(inner, model, tensors, strict=False):
        if slot.path.endswith(suffixes):
            value = slot.value
            slot.assign(keras.ops.where(mask > 0, value, keras.ops.ones_like(value)))


class FillSchedule:
    """When a pruning callback fills (`fill_square_root_slots`) during `fit`.

    `LotteryTicket` and `GradualPruning` keep one: `begin` at the start of
    `fit` decides whether the optimizer is filled at all (`active`); then it
    is due before the first batch of each epoch (`epoch_begin`), every
    `FILL_EVERY` batches, and before the batch after a pruning step
    (`pruned`: `set_masks` zeroed the slots); `end` zeroes the filled slots
    again when `fit` ends. `due` reads no model, so a callback asks it before
    touching `Callback.model` (on JAX, reading that syncs the training
    state).
    """

    def __init__(self):
        self.active = False
        self._next = 0  # The batch from which the next fill is due.

    def begin(self, optimizer):
        self.active = fills_square_root_slots(optimizer)
        self._next = 0

    def epoch_begin(self):
        self._next = 0  # Batches count from 0 again.

    def pruned(self, batch):
        self._next = batch

    def due(self, batch):
        return self.active and batch >= self._next

    def fill(self, model, batch):
        """Fills `model.optimizer`'s slots; the next fill is due in
        `FILL_EVERY` batches."""
        tensors = prunable_tensors(model)
        fill_square_root_slots(model.optimizer, model, tensors)
        self._next = batch + FILL_EVERY

    def end(self, model):
        """Zeroes the slots of pruned entries again, as outside `fit`."""
        if self.active:
            tensors = prunable_tensors(model)
            mask_keras_slots(model.optimizer, model, tensors, strict=False)


def _pruned_slots(optimizer, model, tensors, *, strict):
    """Yields `(slot, mask)` for each per-entry slot of a prunable weight."""
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
            yield slot, masks[id(owner)]
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
