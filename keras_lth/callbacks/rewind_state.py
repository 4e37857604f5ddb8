"""The rewind point of IMP: taking it, restoring it, and drawing survivors afresh.

A snapshot is `{"model": [...], "optimizer": [...]}`: numpy copies of every
model variable but the masks (`model_state`), and of the optimizer's
variables, its iteration count included. `LotteryTicket` takes one at the
rewind point of round 0 and, after each pruning step, `restore_snapshot`
puts back what the `keras_lth.rewind.Rewind` kind asks for.

Example:

```python
snapshot = take_snapshot(model)
model.fit(x, y, epochs=2)
keras_lth.set_masks(model, new_masks)
restore_snapshot(model, snapshot, Rewind.parse("init"), seed=[0, 1])
```
"""

import numpy as np
from keras import ops

from keras_lth._compat import sync_backend_state
from keras_lth.masking import prunable_layers
from keras_lth.masking import prunable_tensors
from keras_lth.masking import set_masks

__all__ = [
    "check_step_rewind",
    "model_state",
    "reinitialize",
    "restore_snapshot",
    "snapshot_shapes",
    "take_snapshot",
]


def model_state(model):
    """Every variable of `model` but the masks, in a stable order."""
    masks = {
        id(layer.mask_variable(name))
        for layer in prunable_layers(model)
        for name in layer.prunable_weight_names
    }
    return [v for v in model.variables if id(v) not in masks]


def take_snapshot(model, *, sync=False):
    """Copies `model`'s state (masks excepted) and its optimizer's variables.

    Args:
        model: A compiled model whose optimizer is built.
        sync: Whether to write the JAX trainer's live state back first, as
            needed between the batches of an epoch.

    Returns:
        Dict `{"model": [arrays], "optimizer": [arrays]}`.
    """
    if sync:
        sync_backend_state(model)
    return {
        "model": [ops.convert_to_numpy(v) for v in model_state(model)],
        "optimizer": [ops.convert_to_numpy(v) for v in model.optimizer.variables],
    }


def snapshot_shapes(model):
    """The shapes a snapshot of `model` has: `{"model": [...], "optimizer": [...]}`."""
    return {
        "model": [tuple(v.shape) for v in model_state(model)],
        "optimizer": [tuple(v.shape) for v in model.optimizer.variables],
    }


def restore_snapshot(model, snapshot, rewind, *, seed):
    """Rewinds `model` to `snapshot` as `rewind` says, keeping its masks.

    * `init`, `step`, `epoch`: the model state and the optimizer go back;
    * `reinit_each_round`: the same, then the prunable weights are drawn afresh
      (`reinitialize`);
    * `lr`: only the optimizer goes back (its step included, so the
      learning-rate schedule restarts); the weights keep their values;
    * `none`: nothing changes.

    Pruned entries of the weights and of the optimizer's slots are zero
    afterwards, as `keras_lth.set_masks` leaves them.

    Args:
        model: The model, holding the new masks.
        snapshot: A `take_snapshot` of the same model.
        rewind: A `keras_lth.rewind.Rewind`.
        seed: Seed for `reinit_each_round`: a list of ints (the run's seed and round).
    """
    if rewind.kind == "none":
        return  # Fine-tuning: training goes on from the pruned weights.
    if rewind.kind != "lr":
        _assign(model_state(model), snapshot["model"])
    if rewind.kind == "reinit_each_round":
        reinitialize(model, seed)
    _assign(model.optimizer.variables, snapshot["optimizer"])
    set_masks(model, {})


def reinitialize(model, seed):
    """Draws every prunable weight tensor afresh from its layer's initializer.

    Each tensor gets its own seed, from `seed` and the tensor's position, so
    the draw is reproducible and differs between tensors and between calls
    with another `seed` (`LotteryTicket` passes `[run seed, round]`).
    Initializers without a seed (zeros, ones, ...) are used as they are. The
    masks are not applied: call `keras_lth.set_masks(model, {})` after.

    Args:
        model: A model with masked layers.
        seed: A list of ints.
    """
    for i, (layer, name) in enumerate(prunable_tensors(model).values()):
        variable = layer.prunable_variable(name)
        initializer = _reseeded(layer.initializer_for(name), [*seed, i])
        variable.assign(initializer(variable.shape, dtype=variable.dtype))


def check_step_rewind(
    rewind, *, steps_per_epoch, epochs_per_round, steps_per_execution=1
):
    """Refuses a step rewind point (`rewind=k`) that training never reaches.

    Args:
        rewind: A `keras_lth.rewind.Rewind`; only `kind="step"` is checked.
        steps_per_epoch: The `steps` of `fit`'s params, or None if unknown.
        epochs_per_round: The epochs of round 0.
        steps_per_execution: The model's; callbacks run between such runs.

    Raises:
        ValueError: If `k` falls after round 0, or between two callback calls.
    """
    if rewind.kind != "step":
        return
    if steps_per_epoch is not None and rewind.at > steps_per_epoch * epochs_per_round:
        raise ValueError(
            f"The rewind point rewind={rewind.value!r} falls after round 0 "
            f"ends: round 0 runs {steps_per_epoch * epochs_per_round} steps "
            f"({epochs_per_round} epochs of {steps_per_epoch} steps)."
        )
    per_execution = int(steps_per_execution or 1)
    if rewind.at % per_execution:
        raise ValueError(
            f"rewind={rewind.value!r} is not a multiple of the model's "
            f"steps_per_execution={per_execution}, so training never stops "
            "there. Choose a multiple of it."
        )


def _reseeded(initializer, seed):
    config = initializer.get_config()
    if "seed" not in config:
        return initializer  # Deterministic initializers (zeros, ones, ...).
    config["seed"] = int(np.random.default_rng(seed).integers(2**31))
    return initializer.__class__.from_config(config)


def _assign(variables, values):
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)
