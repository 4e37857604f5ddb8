"""Reading and writing IMP results: one dict per round."""

import csv
import io
import json

from keras_lth.saving import atomic_write_text

__all__ = [
    "early_stop_metrics",
    "load_results",
    "metric_direction",
    "results_table",
    "save_results_csv",
    "save_results_json",
]

#: Parts of a metric's name that mark it as one to maximise.
_MAXIMISED = ("acc", "auc", "precision", "recall")


def metric_direction(name):
    """`"max"` for a metric to maximise, `"min"` for one to minimise.

    Losses (names ending in `loss`) are minimised; accuracy-like names
    (containing `acc`, `auc`, `precision` or `recall`, any case, any prefix
    such as `val_`) are maximised; anything else is minimised. The rule
    behind `LotteryTicket(mode="auto")` and the tuner's default direction.

    >>> metric_direction("val_accuracy"), metric_direction("val_loss")
    ('max', 'min')
    """
    lowered = name.lower()
    if lowered.endswith("loss"):
        return "min"
    return "max" if any(part in lowered for part in _MAXIMISED) else "min"


def early_stop_metrics(row):
    """A row's metrics at its early-stopping epoch, test metrics included.

    The logged metrics of the best epoch (`row["best"]`), then the test
    metrics of `LotteryTicket(test_data=...)` (`row["test"]`) as
    `test_<name>`:

    >>> early_stop_metrics({"best": {"val_loss": 0.3}, "test": {"accuracy": 0.9}})
    {'val_loss': 0.3, 'test_accuracy': 0.9}
    """
    test = {f"test_{name}": value for name, value in row.get("test", {}).items()}
    return {**row["best"], **test}


def results_table(results):
    """Formats IMP results as a plain-text table, one row per round.

    Args:
        results: The list of round dicts in `LotteryTicket.results`.

    Returns:
        The table as a string. Columns: round, weights remaining, the epoch
        and step where the monitored metric was best, then every metric
        logged at that epoch, then its test metrics (`test_<name>`).

    Example:

    >>> rows = [
    ...     {"round": 0, "weights_remaining": 1.0, "best_epoch": 4,
    ...      "best_step": 120, "best": {"val_accuracy": 0.9611}},
    ...     {"round": 1, "weights_remaining": 0.8, "best_epoch": 2,
    ...      "best_step": 60, "best": {"val_accuracy": 0.9667}},
    ... ]
    >>> print(keras_lth.results_table(rows))
    round  remaining  best_epoch  best_step  val_accuracy
    -----  ---------  ----------  ---------  ------------
        0    100.00%           4        120        0.9611
        1     80.00%           2         60        0.9667
    """
    if not results:
        return "(no finished rounds)"
    metrics = _metric_names(results)
    header = ["round", "remaining", "best_epoch", "best_step", *metrics]
    rows = [
        [
            str(row["round"]),
            f"{100 * row['weights_remaining']:.2f}%",
            _format(row["best_epoch"]),
            _format(row["best_step"]),
            *(_format(early_stop_metrics(row).get(name)) for name in metrics),
        ]
        for row in results
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def save_results_json(results, path):
    """Writes the results to `path` as JSON, atomically."""
    atomic_write_text(path, json.dumps(results, indent=2) + "\n")


def save_results_csv(results, path):
    """Writes the results to `path` as CSV, one row per round, atomically.

    Columns: `round`, `weights_remaining`, `best_epoch`, `best_step`, then
    `best_<metric>` and `final_<metric>` for every logged metric, then
    `test_<metric>` for the test metrics at the early-stopping epoch.
    """
    metrics = _metric_names(results, tested=False)
    tested = [m for m in _metric_names(results) if m not in metrics]
    header = ["round", "weights_remaining", "best_epoch", "best_step"]
    header += [f"best_{m}" for m in metrics] + [f"final_{m}" for m in metrics]
    header += tested
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in results:
        writer.writerow(
            [row["round"], row["weights_remaining"], row["best_epoch"]]
            + [row["best_step"]]
            + [row["best"].get(m, "") for m in metrics]
            + [row["final"].get(m, "") for m in metrics]
            + [early_stop_metrics(row).get(m, "") for m in tested]
        )
    atomic_write_text(path, buffer.getvalue())


def load_results(path):
    """Reads results written by `save_results_json`.

    Example:

    >>> rows = [{"round": 0, "weights_remaining": 1.0, "best_epoch": 4,
    ...          "best_step": 120, "best": {"val_loss": 0.12}, "final": {}}]
    >>> keras_lth.save_results_json(rows, "results.json")
    >>> keras_lth.load_results("results.json") == rows
    True
    """
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _metric_names(results, tested=True):
    names = []
    for row in results:
        for name in early_stop_metrics(row) if tested else row["best"]:
            if name not in names:
                names.append(name)
    return names


def _format(value):
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)
