"""One pruning step of IMP, as pure functions over arrays.

`LotteryTicket` prunes at the end of every round but the last with
`next_masks`: each tensor (or, with `strategy="global"` or `"lamp"`, all of
them together) goes to its cumulative target `pruning.target_count(start,
rate, step)`, counted in weights, in blocks with a block, or in live output
units with `units` (`count_kept`, `keras_lth.structured`), so rounding never
accumulates over rounds. `masks_settled` is the early-bird
test (You et al. 2020). No model is needed:

>>> weights = {"d/kernel": np.arange(1.0, 11.0)}
>>> masks = {"d/kernel": np.ones(10, np.float32)}
>>> kept = count_kept(masks)
>>> mask = next_masks(weights, masks, initial_kept=kept, rates={"d/kernel": 0.2},
...                   step=2, strategy="layerwise", prune_rate=0.2, seed=0)
>>> int(mask["d/kernel"].sum())  # floor(10 * 0.8 ** 2 + 0.5)
6
"""

import numpy as np

from keras_lth import pruning
from keras_lth import structured
from keras_lth._blocks import block_for
from keras_lth._checks import check_fraction

__all__ = [
    "OUTPUT_LAYER_RATE_FACTOR",
    "check_block_option",
    "check_layer_rates",
    "count_kept",
    "default_seed",
    "flat_mask",
    "masks_settled",
    "next_masks",
    "tensor_rates",
]

#: The paper prunes the output layer at half the rate of the hidden layers
#: (for LeNet-300-100: 20% hidden, 10% output). `LotteryTicket` does the same
#: by default for the last prunable layer, unless `layer_rates` names it.
OUTPUT_LAYER_RATE_FACTOR = 0.5


def check_layer_rates(layer_rates, strategy):
    """Returns `layer_rates` as `{layer_name: float in [0, 1)}`.

    `None` gives `{}`. With `strategy="global"` or `"lamp"` one threshold
    prunes every layer, so only `0` (never prune the layer) is accepted.

    Raises:
        TypeError: If `layer_rates` is not a dict of names to numbers.
        ValueError: If a rate lies outside [0, 1), or is not 0 with "global"
            or "lamp".
    """
    if layer_rates is None:
        return {}
    if not isinstance(layer_rates, dict):
        raise TypeError(
            "Expected `layer_rates` to be a dict {layer_name: rate}. "
            f"Received: layer_rates={layer_rates!r}"
        )
    rates = {}
    for name, rate in layer_rates.items():
        if not isinstance(name, str):
            raise TypeError(
                f"Expected layer names as `layer_rates` keys. Received: {name!r}"
            )
        rates[name] = check_fraction(
            rate, f"the rate of layer '{name}' in `layer_rates`", interval="[0, 1)"
        )
        if strategy in pruning.GLOBAL_STRATEGIES and rate != 0:
            raise ValueError(
                f"With strategy={strategy!r} one threshold prunes every layer, "
                "so `layer_rates` can only hold 0 (never prune a layer). "
                f"Received {{'{name}': {rate}}}. Use strategy='layerwise' for "
                "per-layer rates."
            )
    return rates


def check_block_option(block):
    """Returns `block` as `pruning.check_block` does, or a dict of such blocks.

    A dict `{"layer/weight": block or None}` sets the block per tensor; each
    value is checked with `pruning.check_block`.
    """
    if isinstance(block, dict):
        return {
            key: pruning.check_block(value, f"`block` for '{key}'")
            for key, value in block.items()
        }
    return pruning.check_block(block, "block")


def count_kept(masks, block=None, units=None):
    """`{key: what IMP counts in the tensor}`: kept weights, or live blocks.

    With `units` (`{key: unit axes or None}`, see
    `keras_lth.structured.resolve_unit_axes`), the live output units of each
    tensor that has units, and the kept weights of the others.
    """
    if units is not None:
        return {
            key: pruning.count_units(mask)
            if units[key] is None
            else structured.count_live_units(mask, units[key])
            for key, mask in masks.items()
        }
    return {
        key: pruning.count_units(mask, block_for(block, key))
        for key, mask in masks.items()
    }


def next_masks(
    weights,
    masks,
    *,
    initial_kept,
    rates,
    step,
    strategy,
    prune_rate,
    seed,
    block=None,
    min_density=0.0,
    units=None,
    coupled=None,
    refill=False,
):
    """The masks of pruning step `step` (1-based), at exact cumulative counts.

    Args:
        weights: `{key: trained weights}` to rank by magnitude.
        masks: `{key: current mask}`; for one-shot pruning, round 0's masks.
        initial_kept: `count_kept` of the masks when training began.
        rates: `{key: rate}` (see `tensor_rates` in
            `keras_lth.callbacks.lottery_ticket`); a rate of 0 never prunes.
        step: How many pruning steps the masks reach.
        strategy: One of `keras_lth.pruning.STRATEGIES`.
        prune_rate: The rate of `"global"`'s and `"lamp"`'s one threshold.
        seed: The run's seed; `"random"` draws with `[seed, step]`.
        block: `None`, a `(rows, cols)` block or a dict of them per key.
        min_density: With `"global"` and `"lamp"`, the fraction of its
            weights (or blocks) each tensor keeps at least; see
            `pruning.prune_global`.
        units: `None` to prune weights (or blocks), or `{key: unit axes or
            None}` to prune whole output units with
            `keras_lth.structured.prune_units` (tensors without units need a
            rate of 0). `initial_kept` must then come from `count_kept` with
            the same `units`.
        coupled: With `units`, optional `{key: label per unit}`: units with
            the same label are pruned together (see
            `keras_lth.structured.prune_units`).
        refill: With `units`, choose the units by refilling (Chen et al.
            2022; see `keras_lth.structured`).

    Returns:
        `{key: new mask}` (with `"global"` and `"lamp"`, for the tensors they
        prune).
    """
    if strategy in pruning.GLOBAL_STRATEGIES:
        included = {k: m for k, m in masks.items() if rates[k] > 0}
        start = sum(initial_kept[k] for k in included)
        target = pruning.target_count(start, prune_rate, step)
        alive = sum(count_kept(included, block, units).values())
        rate = max((alive - target) / alive if alive else 0.0, 0.0)
        if units is not None:
            return structured.prune_units(
                weights,
                included,
                rate,
                strategy=strategy,
                unit_axes={key: units[key] for key in included},
                coupled={k: v for k, v in (coupled or {}).items() if k in included},
                min_density=min_density,
            )
        return pruning.prune(
            weights,
            included,
            rate,
            strategy=strategy,
            block=block,
            min_density=min_density,
        )
    step_rates = {}
    for key, alive in count_kept(masks, block, units).items():
        target = pruning.target_count(initial_kept[key], rates[key], step)
        step_rates[key] = max(alive - target, 0) / alive if alive else 0.0
    if units is not None:
        return structured.prune_units(
            weights,
            masks,
            step_rates,
            strategy=strategy,
            unit_axes=units,
            coupled=coupled,
            refill=refill,
            seed=[seed, step],
        )
    return pruning.prune(
        weights, masks, step_rates, strategy=strategy, seed=[seed, step], block=block
    )


def flat_mask(masks):
    """All `masks` as one flat boolean array, in order."""
    return np.concatenate([m.ravel() for m in masks.values()]) > 0


def masks_settled(window, distance):
    """The early-bird test: has the newest mask in `window` settled?

    True when the normalised Hamming distance (the fraction of entries that
    differ) from `window[-1]` to every earlier mask in `window` is below
    `distance`.

    >>> masks_settled([np.array([1, 1, 0]), np.array([1, 1, 0])], 0.1)
    True
    """
    newest = window[-1]
    return all(np.mean(newest != old) < distance for old in window[:-1])


def tensor_rates(tensors, *, prune_rate, layer_rates, strategy, units=None):
    """The pruning rate of each prunable tensor, as `LotteryTicket` uses it.

    A layer named in `layer_rates` gets its own rate; the last prunable layer
    (the output layer) gets `prune_rate * OUTPUT_LAYER_RATE_FACTOR` unless
    named (not with `"global"` or `"lamp"`); every other layer gets
    `prune_rate`.

    With `units` (whole output units are pruned), the output layer gets 0
    unless named, with every strategy: its output units are the classes,
    and pruning one leaves that class its bias alone. Tensors without units
    get 0.

    Args:
        tensors: `keras_lth.masking.prunable_tensors(model)`.
        prune_rate: The default rate.
        layer_rates: Dict `{layer_name: rate}`.
        strategy: One of `keras_lth.pruning.STRATEGIES`.
        units: `None`, or `{key: unit axes or None}` when pruning units.

    Returns:
        Dict `{tensor key: rate}`.

    Raises:
        ValueError: If `layer_rates` names a layer that is not prunable.
    """
    layer_names = {layer.name for layer, _ in tensors.values()}
    unknown = sorted(set(layer_rates) - layer_names)
    if unknown:
        raise ValueError(
            f"`layer_rates` names layers that are not prunable: {unknown}. "
            f"Prunable layers: {sorted(layer_names)}"
        )
    rates = dict(layer_rates)
    if tensors and (units is not None or strategy not in pruning.GLOBAL_STRATEGIES):
        output_layer = list(tensors.values())[-1][0].name
        factor = 0.0 if units is not None else OUTPUT_LAYER_RATE_FACTOR
        rates.setdefault(output_layer, prune_rate * factor)
    return {
        key: 0.0
        if units is not None and units[key] is None
        else rates.get(layer.name, prune_rate)
        for key, (layer, _) in tensors.items()
    }


def default_seed():
    """The seed of a `LotteryTicket` created with `seed=None`.

    Keras's global seed when one is set (`keras.utils.set_random_seed(s)`
    gives `s`), so that seeding Keras alone makes a run repeat; otherwise
    drawn at random.
    """
    try:  # Keras 3 keeps the seed there and has no public getter for it.
        from keras.src.utils.rng_utils import get_random_seed
    except ImportError:
        seed = None
    else:
        seed = get_random_seed()
    if seed is None:
        return int(np.random.default_rng().integers(2**31))
    return int(seed)
