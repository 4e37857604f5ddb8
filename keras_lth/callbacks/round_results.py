"""The results row of a finished IMP round, from its epoch logs and masks.

`LotteryTicket.results` holds one such row per round:

>>> history = [({"val_loss": 0.5}, 10), ({"val_loss": 0.4}, 20)]
>>> masks = {"d/kernel": np.array([1.0, 0.0, 1.0, 1.0])}
>>> row = round_row(0, history, masks, monitor="val_loss", mode="auto",
...                 epochs_per_round=2)
>>> row["best_epoch"], row["best_step"], row["weights_remaining"]
(2, 20, 0.75)
"""

import warnings

import numpy as np

from keras_lth.results import metric_direction

__all__ = [
    "best_epoch_index",
    "monitor_in_logs",
    "plain_logs",
    "round_line",
    "round_row",
]


def plain_logs(logs):
    """The scalar entries of epoch `logs`, as Python floats (JSON-ready)."""
    return {k: float(v) for k, v in logs.items() if np.ndim(v) == 0}


def monitor_in_logs(monitor, logs):
    """`monitor` if `logs` has it; else `"loss"`, with a warning."""
    if monitor in logs:
        return monitor
    warnings.warn(
        f"LotteryTicket: monitor={monitor!r} is not in the logs (available: "
        f"{sorted(logs)}); using 'loss' instead.",
        stacklevel=3,
    )
    return "loss"


def best_epoch_index(history, *, monitor, mode):
    """The index of the round's early-stopping epoch in `history`.

    The first epoch where `monitor` is best (lowest for `mode="min"`,
    highest for `"max"`; `"auto"` asks `keras_lth.results.metric_direction`).
    Epochs that did not log `monitor` are passed over. `LotteryTicket` asks
    at every epoch end whether the newest epoch is it so far, and at the
    round's end which one it was: the one rule for both.
    """
    if mode == "auto":
        mode = metric_direction(monitor)
    values = [logs.get(monitor) for logs, _ in history]
    best = 0
    for i, value in enumerate(values):
        if value is None:
            continue
        if values[best] is None or (
            value > values[best] if mode == "max" else value < values[best]
        ):
            best = i
    return best


def round_row(round_index, history, masks, *, monitor, mode, epochs_per_round):
    """The results row of a round.

    Args:
        round_index: The round, from 0.
        history: `(logs, steps)` per epoch of the round: the epoch's logs and
            the optimizer steps taken in the round up to its end.
        masks: `{key: mask}` the round trained with.
        monitor: The logged metric whose best epoch is the round's
            early-stopping point; it must be in the first epoch's logs.
        mode: `"min"`, `"max"`, or `"auto"` for `keras_lth.results.metric_direction`.
        epochs_per_round: The epochs a round may train.

    Returns:
        A dict: `round`; `weights_remaining` (fraction of prunable weights
        kept); `layers` (that fraction per tensor); `best_epoch` (from 1) and
        `best_step` (steps in the round up to that epoch's end) where
        `monitor` was best; `best` and `final` (the scalar logs of that epoch
        and of the last one); `monitor`; `epochs` (trained) and
        `epochs_skipped` (saved by early-bird). `LotteryTicket(test_data=...)`
        adds `test`: the test metrics of the early-stopping epoch's weights.
    """
    best_index = best_epoch_index(history, monitor=monitor, mode=mode)
    kept = sum(float(np.sum(m)) for m in masks.values())
    total = sum(m.size for m in masks.values())
    best_logs, best_step = history[best_index]
    return {
        "round": round_index,
        "weights_remaining": kept / total,
        "layers": {k: float(np.mean(m)) for k, m in masks.items()},
        "best_epoch": best_index + 1,
        "best_step": int(best_step),
        "best": plain_logs(best_logs),
        "final": plain_logs(history[-1][0]),
        "monitor": monitor,
        "epochs": len(history),
        "epochs_skipped": epochs_per_round - len(history),
    }


def round_line(row, rounds):
    """The line `LotteryTicket(verbose=1)` prints for a finished round."""
    best = row["best"].get(row["monitor"])
    best = f"{best:.4f}" if isinstance(best, float) else best
    return (
        f"LotteryTicket: round {row['round'] + 1}/{rounds}, "
        f"{100 * row['weights_remaining']:.1f}% of weights remaining, "
        f"best {row['monitor']} {best} at epoch {row['best_epoch']} "
        f"(step {row['best_step']})"
    )
