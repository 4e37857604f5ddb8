"""Magnitude pruning as pure functions over arrays.

Every function here takes the trained weights and the current masks, each a
dict that maps a tensor's key (for example `"dense/kernel"`) to an array, and
returns new masks as a dict of float32 numpy arrays of the same shapes. No
model is needed, so the functions can be tested, reused and composed on their
own.

All of them share three guarantees:

* **Exact counts.** A tensor asked to lose a fraction `rate` of its `n`
  surviving weights loses exactly `floor(rate * n + 0.5)` of them (rounded
  half up, unlike Python's `round`).
* **Deterministic ties.** Weights of equal magnitude are pruned in order of
  their flat index (and, for `"global"`, of the tensors' order in the dict).
* **Monotone.** A pruned weight (mask 0) stays pruned.
"""

import numpy as np

STRATEGIES = ("layerwise", "global", "random")


def prune(weights, masks, rate, *, strategy="layerwise", seed=None):
    """Prunes with the named strategy.

    Args:
        weights: Dict mapping a tensor key to its trained weights.
        masks: Dict with the same keys mapping to the current masks (1 keeps a
            weight, 0 prunes it).
        rate: For `"layerwise"` and `"random"`, a float in `[0, 1]` or a dict
            mapping keys to such floats: the fraction of each tensor's
            surviving weights to prune (keys missing from the dict are not
            pruned). For `"global"`, one float: the fraction of all surviving
            weights to prune, below a single magnitude threshold.
        strategy: One of `"layerwise"`, `"global"` or `"random"`.
        seed: Seed of the random generator, for `"random"` only.

    Returns:
        A dict with the new masks.
    """
    if strategy == "layerwise":
        return prune_layerwise(weights, masks, rate)
    if strategy == "global":
        return prune_global(weights, masks, rate)
    if strategy == "random":
        return prune_random(weights, masks, rate, seed=seed)
    raise ValueError(
        f"Expected `strategy` to be one of {STRATEGIES}. "
        f"Received: strategy={strategy!r}"
    )


def prune_layerwise(weights, masks, rate):
    """Prunes each tensor's smallest-magnitude surviving weights.

    Tensor `k` loses `floor(rate[k] * surviving[k] + 0.5)` weights: the ones with
    the smallest `|w|` among those its mask still keeps.

    Args:
        weights: Dict mapping a tensor key to its trained weights.
        masks: Dict with the same keys mapping to the current masks.
        rate: A float in `[0, 1]`, or a dict mapping keys to such floats
            (missing keys are not pruned).

    Returns:
        A dict with the new masks.
    """
    weights, masks = _check_inputs(weights, masks)
    rates = _per_tensor_rates(rate, masks)
    new_masks = {}
    for key, mask in masks.items():
        survivors = np.flatnonzero(mask)
        count = _count(rates[key], survivors.size)
        scores = np.abs(weights[key].ravel()[survivors])
        _check_finite(key, scores)
        order = np.argsort(scores, kind="stable")
        new_masks[key] = _drop(mask, survivors[order[:count]])
    return new_masks


def prune_global(weights, masks, rate):
    """Prunes the smallest-magnitude surviving weights across all tensors.

    One magnitude threshold is shared by every tensor in `masks`: exactly
    `floor(rate * total_surviving + 0.5)` weights are pruned, the smallest `|w|`
    first. To keep a tensor out of the ranking, leave it out of `masks`.

    Args:
        weights: Dict mapping a tensor key to its trained weights.
        masks: Dict with the same keys mapping to the current masks.
        rate: A float in `[0, 1]`: the fraction of all surviving weights to
            prune.

    Returns:
        A dict with the new masks.
    """
    weights, masks = _check_inputs(weights, masks)
    if isinstance(rate, dict):
        raise TypeError(
            "Expected `rate` to be one float for global pruning. "
            f"Received: rate={rate!r} of type {type(rate).__name__}"
        )
    _check_rate(rate, "rate")
    if not masks:
        return {}
    keys = list(masks)
    survivors = [np.flatnonzero(masks[key]) for key in keys]
    scores = []
    for key, alive in zip(keys, survivors):
        scores.append(np.abs(weights[key].ravel()[alive]))
        _check_finite(key, scores[-1])
    owners = np.concatenate(
        [np.full(alive.size, i) for i, alive in enumerate(survivors)]
    ).astype(np.int64)
    flat_scores = np.concatenate(scores) if scores else np.zeros(0)
    flat_index = np.concatenate(survivors) if survivors else np.zeros(0, int)
    count = _count(rate, flat_scores.size)
    pruned = np.argsort(flat_scores, kind="stable")[:count]
    return {
        key: _drop(masks[key], flat_index[pruned[owners[pruned] == i]])
        for i, key in enumerate(keys)
    }


def prune_random(weights, masks, rate, *, seed=None):
    """Prunes surviving weights at random: the paper's random-pruning control.

    Each tensor loses as many weights as `prune_layerwise` would take from it,
    chosen uniformly among its survivors.

    Args:
        weights: Dict mapping a tensor key to its weights (only the keys are
            checked; magnitudes play no part).
        masks: Dict with the same keys mapping to the current masks.
        rate: A float in `[0, 1]`, or a dict mapping keys to such floats.
        seed: Seed for `numpy.random.default_rng`; the same seed, masks and
            rates give the same masks.

    Returns:
        A dict with the new masks.
    """
    weights, masks = _check_inputs(weights, masks)
    rates = _per_tensor_rates(rate, masks)
    rng = np.random.default_rng(seed)
    new_masks = {}
    for key, mask in masks.items():
        survivors = np.flatnonzero(mask)
        count = _count(rates[key], survivors.size)
        chosen = rng.choice(survivors, size=count, replace=False)
        new_masks[key] = _drop(mask, chosen)
    return new_masks


def _check_inputs(weights, masks):
    if not isinstance(weights, dict) or not isinstance(masks, dict):
        raise TypeError(
            "Expected `weights` and `masks` to be dicts mapping tensor keys "
            f"to arrays. Received: {type(weights).__name__} and "
            f"{type(masks).__name__}"
        )
    missing = [key for key in masks if key not in weights]
    if missing:
        raise ValueError(
            f"Every key of `masks` needs weights. Missing weights for: {missing}"
        )
    weights = {key: np.asarray(weights[key]) for key in masks}
    masks = {key: np.asarray(mask, dtype=np.float32) for key, mask in masks.items()}
    for key, mask in masks.items():
        if weights[key].shape != mask.shape:
            raise ValueError(
                f"Expected weights and mask of '{key}' to have the same shape. "
                f"Received: {weights[key].shape} and {mask.shape}"
            )
        if not np.all((mask == 0) | (mask == 1)):
            raise ValueError(
                f"Expected the mask of '{key}' to hold only 0 and 1. "
                f"Received values: {np.unique(mask)[:10]}"
            )
    return weights, masks


def _per_tensor_rates(rate, masks):
    if isinstance(rate, dict):
        unknown = [key for key in rate if key not in masks]
        if unknown:
            raise ValueError(
                f"`rate` names tensors that have no mask: {unknown}. "
                f"Known tensors: {list(masks)}"
            )
        rates = {key: rate.get(key, 0.0) for key in masks}
    else:
        rates = {key: rate for key in masks}
    for key, value in rates.items():
        _check_rate(value, f"rate for '{key}'")
    return rates


def _check_rate(rate, what):
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)):
        raise TypeError(
            f"Expected {what} to be a float. Received: {rate!r} "
            f"of type {type(rate).__name__}"
        )
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"Expected {what} to be in [0, 1]. Received: {rate!r}")


def _count(rate, surviving):
    return int(np.floor(rate * surviving + 0.5))


def _check_finite(key, scores):
    if not np.all(np.isfinite(scores)):
        raise ValueError(
            f"Weights of '{key}' hold NaN or infinite values, so they cannot "
            "be ranked by magnitude. Training has probably diverged; lower "
            "the learning rate."
        )


def _drop(mask, flat_indices):
    new = mask.copy()
    new.reshape(-1)[flat_indices] = 0.0
    return new
