"""The paper's controls for a winning ticket, as branches of an IMP level.

Frankle & Carbin (2019) compare a winning ticket (the mask `m` found by IMP,
with the initial weights `θ0`) against two controls that share its
structure or its size:

* `reinit`: the same mask `m` with a new random initialisation `θ'0 ~ Dθ`;
* `random_prune`: a random mask with as many weights per tensor as `m`,
  with the initial weights `θ0`. For a structured ticket (IMP with
  `granularity="unit"`), `random_prune(..., granularity="unit")` keeps as
  many whole units per tensor as `m`, chosen at random: the random
  structured mask of the same shape.

Each control is a branch off one IMP level: take the masks the ticket
trained with at that level, set up a freshly built masked model with one of
these functions, and train it once with a plain `fit`.
"""

import warnings

import numpy as np

from keras_lth._checks import check_count
from keras_lth.callbacks.rewind_state import reinitialize
from keras_lth.callbacks.ticket_options import unit_axes_of
from keras_lth.coupling import coupled_units
from keras_lth.masking import get_masks
from keras_lth.masking import prunable_tensors
from keras_lth.masking import require_prunable_tensors
from keras_lth.masking import set_masks
from keras_lth.pruning import check_masks
from keras_lth.structured import check_granularity
from keras_lth.structured import count_live_units
from keras_lth.structured import is_unit_sparse
from keras_lth.structured import live_units
from keras_lth.structured import prune_units

__all__ = ["random_prune", "reinit"]


def reinit(model, masks, *, seed):
    """Sets the ticket's masks and draws every surviving weight afresh.

    Every prunable weight tensor is drawn again from its layer's initializer
    with a new seed, then `masks` is set (pruned entries become exact zeros).
    Other variables (biases, BatchNormalization statistics) are left as they
    are: pass a freshly built model, so that they are at initialisation.

    Args:
        model: A built model with masked layers, freshly built.
        masks: The ticket's masks, `{tensor key: 0/1 array}` as `get_masks`
            returns them; every prunable tensor of `model` must be named.
        seed: Int seed of the new draw.

    Returns:
        `model`, ready to train with `fit`.

    Example:

    ```python
    control = keras_lth.controls.reinit(
        keras_lth.mask_model(build_model()), ticket_masks, seed=1)
    ```
    """
    seed = check_count(seed, "seed", minimum=0)
    _check_masks(model, masks)
    reinitialize(model, [seed])
    set_masks(model, masks)
    return model


def random_prune(model, masks, *, seed, granularity="weight"):
    """Sets random masks with exactly as many weights per tensor as `masks`.

    The model's own weights are kept (its initialisation `θ0`, for a freshly
    built model); only which weights survive is drawn at random, uniformly
    within each tensor. With `granularity="unit"`, the control of a
    structured ticket: each tensor keeps as many whole output units as in
    `masks` (the units of `LotteryTicket(granularity="unit")`, so a
    ConvTranspose filter or an attention head), chosen uniformly among its
    units; tensors without units keep their count of single weights. Units
    an `Add` ties (`keras_lth.coupling`) that `masks` keeps or prunes
    together, as `LotteryTicket(granularity="unit")` does, are drawn
    together, so that the control shrinks to the ticket's shape.

    Args:
        model: A built model with masked layers.
        masks: The ticket's masks, `{tensor key: 0/1 array}`; every prunable
            tensor of `model` must be named.
        seed: Int seed of the random masks.
        granularity: `"weight"` or `"unit"`, as the ticket was pruned.

    Returns:
        `model`, ready to train with `fit`.

    Raises:
        ValueError: With `granularity="unit"`, if a mask keeps part of a
            unit (it is not a structured ticket's).

    Example:

    ```python
    control = keras_lth.controls.random_prune(
        keras_lth.mask_model(build_model()), ticket_masks, seed=1)
    ```
    """
    seed = check_count(seed, "seed", minimum=0)
    check_granularity(granularity)
    masks = _check_masks(model, masks)
    rng = np.random.default_rng(seed)
    axes = {key: None for key in masks}
    if granularity == "unit":
        with warnings.catch_warnings():  # The ticket warned of them already.
            warnings.simplefilter("ignore")
            axes = unit_axes_of(prunable_tensors(model))
    tied = _pruned_together(model, masks, axes) if granularity == "unit" else {}
    random_masks = {}
    for key, mask in masks.items():
        if key in tied:
            continue
        if axes[key] is None:
            kept = int(np.count_nonzero(mask))
            flat = np.zeros(mask.size, dtype=np.float32)
            flat[rng.choice(mask.size, size=kept, replace=False)] = 1.0
            random_masks[key] = flat.reshape(mask.shape)
        else:
            random_masks[key] = _random_units({key: mask}, axes, rng)[key]
    if tied:
        random_masks.update(_random_units({k: masks[k] for k in tied}, axes, rng, tied))
    set_masks(model, random_masks)
    return model


def _pruned_together(model, masks, axes):
    """The `coupled_units` labels of the tensors whose tied units `masks`
    keeps or prunes together, as `LotteryTicket(coupled=True)` leaves them."""
    with warnings.catch_warnings():  # The ticket warned already.
        warnings.simplefilter("ignore")
        labels = coupled_units(model, axes)
    states = {}
    for key, values in labels.items():
        live = live_units(masks[key], axes[key]).ravel()
        for label, alive in zip(values, live, strict=True):
            states.setdefault(label, set()).add(bool(alive))
    return {
        key: values
        for key, values in labels.items()
        if all(len(states[label]) == 1 for label in values)
    }


def _random_units(masks, axes, rng, coupled=None):
    """Masks keeping as many whole units of each tensor as `masks`, at
    random; units tied in `coupled` are drawn together."""
    rates = {}
    for key, mask in masks.items():
        if not is_unit_sparse(mask, axes[key]):
            raise ValueError(
                f"Expected the mask of '{key}' to keep or prune whole units (axes "
                f"{axes[key]}), as LotteryTicket(granularity='unit') does. "
                "Received a mask that keeps part of a unit: use "
                "granularity='weight'."
            )
        units = int(np.prod([mask.shape[a] for a in axes[key]]))
        rates[key] = 1.0 - count_live_units(mask, axes[key]) / units
    full = {key: np.ones(mask.shape, dtype=np.float32) for key, mask in masks.items()}
    seed = int(rng.integers(2**31))
    # `prune_units`'s "random" drops exactly round(rate * units) live units.
    return prune_units(
        full,
        full,
        rates,
        strategy="random",
        unit_axes={key: axes[key] for key in masks},
        coupled=coupled,
        seed=seed,
    )


def _check_masks(model, masks):
    """The masks as float32 arrays, refusing any that do not fit `model`."""
    if not isinstance(masks, dict):
        raise TypeError(
            "Expected `masks` to be a dict {tensor key: 0/1 array}, as "
            f"`keras_lth.get_masks` returns. Received: {type(masks).__name__}"
        )
    require_prunable_tensors(model)
    current = get_masks(model)
    if set(masks) != set(current):
        raise ValueError(
            "Expected `masks` for exactly the prunable tensors of model "
            f"'{model.name}': {sorted(current)}. Received: {sorted(masks)}"
        )
    return check_masks(current, masks)[1]
