"""What a ticket-search trial scores, and how many IMP rounds it needs.

A trial runs IMP and gets `LotteryTicket.results`, one row per round. Its
score is the best value of the objective's metric at a round's
early-stopping point (`row["best"][metric]`), among the rounds that keep at
most the target fraction of weights: `score_results`. With `rounds=None`, a
trial runs just enough rounds to reach the target, `rounds_for_target`, so
only its last round is at or below the target and its score is that of its
final ticket.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_lth._checks import check_choice
from keras_lth._checks import check_fraction
from keras_lth.callbacks.imp_step import count_kept
from keras_lth.callbacks.imp_step import tensor_rates
from keras_lth.callbacks.lottery_ticket import LotteryTicket
from keras_lth.masking import get_masks
from keras_lth.masking import require_prunable_tensors
from keras_lth.pruning import GLOBAL_STRATEGIES
from keras_lth.pruning import target_count

__all__ = ["DIRECTIONS", "check_target", "rounds_for_target", "score_results"]

#: The directions of an objective.
DIRECTIONS = ("max", "min")

_MAX_STEPS = 10_000
_TOLERANCE = 1e-12


def check_target(value):
    """`target_weights_remaining` as a float in (0, 1]."""
    return check_fraction(value, "target_weights_remaining", interval="(0, 1]")


def score_results(
    results: list[dict],
    *,
    target_weights_remaining: float,
    metric: str = "val_accuracy",
    direction: str = "max",
) -> dict | None:
    """Scores IMP results as `TicketHyperModel` does.

    Among the rows with `weights_remaining <= target_weights_remaining`, the
    best `row["best"][metric]` (the metric at the round's early-stopping
    point): the max if `direction="max"`, else the min. A tie goes to the
    sparser ticket.

    Args:
        results: `LotteryTicket.results`, or rows read back with
            `keras_lth.load_results`.
        target_weights_remaining: The target fraction of weights left.
        metric: The metric. Defaults to `"val_accuracy"`.
        direction: `"max"` or `"min"`. Defaults to `"max"`.

    Returns:
        `{"score": ..., "round": ..., "weights_remaining": ...}` of the
        winning row, or None if no row reaches the target.

    Raises:
        ValueError: If a row at or below the target lacks `metric`.

    Example:

    >>> rows = [{"round": 0, "weights_remaining": 1.0, "best": {"acc": 0.9}},
    ...         {"round": 1, "weights_remaining": 0.5, "best": {"acc": 0.8}}]
    >>> score_results(rows, target_weights_remaining=0.5, metric="acc")
    {'score': 0.8, 'round': 1, 'weights_remaining': 0.5}
    """
    target = check_target(target_weights_remaining)
    check_choice(direction, "direction", DIRECTIONS)
    eligible = [r for r in results if r["weights_remaining"] <= target + _TOLERANCE]
    if not eligible:
        return None
    for row in eligible:
        if metric not in row["best"]:
            raise ValueError(
                f"The objective's metric {metric!r} was not logged in round "
                f"{row['round']}. Logged: {sorted(row['best'])}. Compile the "
                "model with that metric (metrics=['accuracy'] for "
                "'val_accuracy') and pass validation data to `search`."
            )
    sign = 1.0 if direction == "max" else -1.0
    best = max(
        eligible,
        key=lambda r: (sign * float(r["best"][metric]), -r["weights_remaining"]),
    )
    return {
        "score": float(best["best"][metric]),
        "round": int(best["round"]),
        "weights_remaining": float(best["weights_remaining"]),
    }


def rounds_for_target(
    model: keras.Model,
    target_weights_remaining: float,
    *,
    prune_rate: float = 0.2,
    strategy: str = "layerwise",
    layer_rates: dict | None = None,
    block=None,
    min_density: float = 0.0,
    limit: int = _MAX_STEPS,
) -> int | None:
    """The fewest IMP rounds whose last ticket keeps at most the target.

    Follows `LotteryTicket`'s exact counts for `model`'s prunable tensors:
    each tensor keeps `floor(n * (1 - rate) ** s + 0.5)` after `s` pruning
    steps, at its own rate (the output layer at half `prune_rate` unless
    `layer_rates` names it), or one count across the tensors with
    `strategy="global"` or `"lamp"`, where the total never falls below the
    tensors' floors (`min_density`, and one weight per tensor for `"lamp"`).
    For a uniform rate it is `ceil(log(target) / log(1 - prune_rate)) + 1`;
    the half-rate output layer can add one. With `block`, blocks are counted,
    and the fraction of weights is estimated from them.

    Args:
        model: A masked model (its current masks are the start).
        target_weights_remaining: Target fraction of prunable weights left.
        prune_rate, strategy, layer_rates, block, min_density: As for
            `LotteryTicket`.
        limit: Most pruning steps to try. Defaults to 10,000.

    Returns:
        `steps + 1` (round 0 trains the dense network), or None if the
        target is out of reach (every layer's rate is 0, or over `limit`).

    Example:

    >>> import keras_lth
    >>> model = keras_lth.mask_model(keras.Sequential(
    ...     [keras.Input((64,)), keras.layers.Dense(300), keras.layers.Dense(10)]))
    >>> rounds_for_target(model, 0.2, prune_rate=0.2, strategy="global")
    9
    """
    target = check_target(target_weights_remaining)
    # The settings are checked as the trial's LotteryTicket checks them.
    ticket = LotteryTicket(
        1,
        1,
        prune_rate=prune_rate,
        strategy=strategy,
        layer_rates=layer_rates,
        block=block,
        min_density=min_density,
        seed=0,
        verbose=0,
    )
    tensors = require_prunable_tensors(model)
    rates = tensor_rates(
        tensors,
        prune_rate=ticket.prune_rate,
        layer_rates=ticket.layer_rates,
        strategy=ticket.strategy,
    )
    masks = get_masks(model)
    total = sum(m.size for m in masks.values())
    weights = {k: float(np.sum(m)) for k, m in masks.items()}
    units = count_kept(masks, ticket.block)
    whole = count_kept({k: np.ones(m.shape) for k, m in masks.items()}, ticket.block)
    # What each tensor keeps at least with "global" and "lamp".
    least = int(ticket.strategy == "lamp")
    floors = {
        k: min(max(int(np.floor(ticket.min_density * whole[k] + 0.5)), least), units[k])
        for k in masks
    }

    rate = ticket.prune_rate

    def kept(step):
        if ticket.strategy in GLOBAL_STRATEGIES:
            included = [k for k in masks if rates[k] > 0]
            start = sum(units[k] for k in included)
            fewest = sum(floors[k] for k in included)
            left = max(target_count(start, rate, step), fewest) / start if start else 1
            return sum(weights[k] * (left if rates[k] > 0 else 1.0) for k in masks)
        return sum(
            weights[k]
            * (target_count(units[k], rates[k], step) / units[k] if units[k] else 0)
            for k in masks
        )

    # Tensors at rate 0 are never pruned: what they hold is the floor.
    floor = sum(weights[k] for k in masks if rates[k] == 0) / total
    if floor > target + _TOLERANCE:
        return None
    for step in range(limit + 1):
        if kept(step) / total <= target + _TOLERANCE:
            return step + 1
    return None
