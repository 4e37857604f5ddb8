"""`plot_results`: the ticket curve, drawn like the paper's figures.

matplotlib is imported only when a figure is drawn (`pip install
"keras-lth[plot]"`); figures render with Agg and never touch `pyplot`.
"""

import io
import math

from keras_lth.results import early_stop_metrics
from keras_lth.saving import atomic_write

__all__ = ["default_metric", "figure_to_png", "format_percent", "plot_results"]

#: Substrings that make a logged metric name accuracy-like.
_ACCURACY_WORDS = ("accuracy", "acc")

#: Most percent labels on the x axis; with more rounds, every k-th is shown.
_MAX_X_LABELS = 12

_REQUIRED_KEYS = ("weights_remaining", "best_step", "best")


def plot_results(
    results,
    *,
    controls=None,
    path=None,
    metric=None,
    label="IMP",
    title=None,
    figsize=(11.0, 4.2),
    dpi=120,
):
    """Plots IMP results as in Frankle & Carbin (2019): the ticket curve.

    Two panels, each against the percentage of prunable weights remaining on
    a log scale, reversed so that sparser networks are to the right as in
    the paper:

    1. `metric` at each round's early-stopping point (the row's `best`
       metrics: where the monitored quantity was best).
    2. The early-stopping step (`best_step`): optimizer steps into the round
       at that point.

    Several seeds of one experiment are drawn as their mean per round with
    error bars from the minimum to the maximum. `controls` are overlaid the
    same way, each with its own marker and colour.

    Args:
        results: The rows of one run (`LotteryTicket.results`, or
            `keras_lth.load_results(path)`), or a list of such lists, one
            per seed. Rows are matched across seeds by their position.
        controls: Optional dict `{label: results}` of runs to overlay, each
            given like `results` (one run or several seeds), for example
            `{"random reinit": reinit_results, "random pruning": random}`.
        path: Optional file to save the figure to as a PNG, atomically.
        metric: Name of the metric to plot from each row's `best` metrics,
            or `test_<name>` from its `test` metrics. Defaults to
            `"test_accuracy"` when the rows have it, else to the
            accuracy-like metric of the monitored split: with
            `monitor="val_loss"` that is `"val_accuracy"`; with `"loss"`,
            `"accuracy"`. Without an accuracy-like metric, the monitor.
        label: Legend label of `results`. Defaults to `"IMP"`.
        title: Figure title. Defaults to one naming the metric.
        figsize: Figure size in inches, `(width, height)`.
        dpi: Resolution of the saved PNG.

    Returns:
        The `matplotlib.figure.Figure`. It is not attached to `pyplot`, so
        no window opens and no global state changes; it renders with Agg,
        and notebooks display it.

    Raises:
        ImportError: If matplotlib is not installed.
        ValueError: If `results` (or a control) holds no rows or malformed
            rows, or `metric` is not in the rows' `best` metrics.

    Example:

    ```python
    fig = keras_lth.plot_results(
        [ticket_seed0.results, ticket_seed1.results],
        controls={"random reinit": reinit.results},
        path="ticket_curve.png",
    )
    ```
    """
    figure_cls, canvas_cls = _matplotlib()
    from matplotlib.ticker import MaxNLocator

    series = [(label, _runs(results, "results"))]
    if controls is not None:
        if not isinstance(controls, dict):
            raise TypeError(
                "Expected `controls` to be a dict {label: results}. "
                f"Received: {controls!r} of type {type(controls).__name__}"
            )
        for name, control in controls.items():
            series.append((str(name), _runs(control, f"controls[{name!r}]")))
    if metric is None:
        metric = default_metric(series[0][1][0])
    for name, runs in series:
        _check_metric(metric, runs, name)

    fig = figure_cls(figsize=figsize, layout="constrained")
    canvas_cls(fig)
    ax_metric, ax_step = fig.subplots(1, 2)
    styles = _styles()
    all_x = []
    for (name, runs), style in zip(series, styles):
        x, metric_stats, step_stats = _aggregate(runs, metric)
        all_x.extend(x)
        several = len(runs) > 1
        legend = f"{name} (mean of {len(runs)}, min-max bars)" if several else name
        for ax, (mean, low, high) in (
            (ax_metric, metric_stats),
            (ax_step, step_stats),
        ):
            ax.errorbar(
                x,
                mean,
                yerr=[
                    [m - lo for m, lo in zip(mean, low)],
                    [hi - m for m, hi in zip(mean, high)],
                ]
                if several
                else None,
                label=legend,
                capsize=3 if several else 0,
                markersize=5,
                linewidth=1.6,
                **style,
            )

    ticks = _x_ticks(all_x)
    for ax in (ax_metric, ax_step):
        _percent_log_axis(ax, ticks, all_x)
        ax.grid(True, which="major", alpha=0.3)
    ax_step.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_metric.set_ylabel(f"{metric} at early stopping")
    ax_metric.set_title(f"{_pretty(metric)} at early stopping")
    ax_step.set_ylabel("early-stopping step")
    ax_step.set_title("Early-stopping step (optimizer steps into the round)")
    ax_metric.legend(loc="best", fontsize="small")
    fig.suptitle(
        title or f"Lottery ticket: {metric} vs. weights remaining", fontsize="large"
    )

    if path is not None:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    return fig


def figure_to_png(fig, dpi=100):
    """Renders a matplotlib figure to PNG bytes.

    Args:
        fig: A `matplotlib.figure.Figure`, such as `plot_results` returns.
        dpi: Resolution of the PNG.

    Returns:
        The PNG file's bytes.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def default_metric(rows):
    """The metric `plot_results` plots by default for one run's rows.

    `"test_accuracy"` when the rows have test metrics with an accuracy (from
    `LotteryTicket(test_data=...)`). Otherwise the accuracy-like metric (name
    containing "acc") of the monitored split: `val_` metrics when the
    monitor starts with `val_`, others otherwise. Falls back to the monitor,
    then to the first metric logged.

    Args:
        rows: The results rows of one run, as in `LotteryTicket.results`.

    Returns:
        The metric's name, a key of the rows' `best` metrics.

    Raises:
        ValueError: If the rows log no metric at all.

    Example:

    >>> default_metric([{"monitor": "val_loss",
    ...                  "best": {"loss": 0.3, "val_loss": 0.4, "val_accuracy": 0.9}}])
    'val_accuracy'
    """
    if "accuracy" in rows[0].get("test", {}):
        return "test_accuracy"
    names = list(rows[0]["best"])
    monitor = rows[0].get("monitor") or ""
    prefix = "val_" if monitor.startswith("val_") else ""
    for name in names:
        split_ok = name.startswith("val_") if prefix else not name.startswith("val_")
        if split_ok and any(w in name for w in _ACCURACY_WORDS):
            return name
    if monitor in names:
        return monitor
    if not names:
        raise ValueError(
            "The results rows hold no metrics in `best`; there is nothing "
            f"to plot. Received the first row: {rows[0]!r}"
        )
    return names[0]


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "`keras_lth.plot_results` needs matplotlib. Install it with "
            '`pip install "keras-lth[plot]"` or `pip install matplotlib`.'
        ) from e
    return Figure, FigureCanvasAgg


def _runs(results, what):
    """Returns a list of runs (lists of rows), checking their shape."""
    if not isinstance(results, (list, tuple)) or not results:
        raise ValueError(
            f"Expected `{what}` to be a non-empty list of results rows (one "
            "run) or of lists of rows (several seeds). "
            f"Received: {_short(results)}"
        )
    if all(isinstance(row, dict) for row in results):
        runs = [list(results)]
    elif all(isinstance(run, (list, tuple)) for run in results):
        runs = [list(run) for run in results]
    else:
        raise ValueError(
            f"Expected `{what}` to hold either results rows (dicts) or lists "
            "of them (one per seed), not a mix. Received items of types "
            f"{sorted({type(item).__name__ for item in results})}"
        )
    for i, run in enumerate(runs):
        where = what if len(runs) == 1 else f"{what}[{i}]"
        if not run:
            raise ValueError(f"`{where}` holds no rows. Received: []")
        for row in run:
            missing = [
                k for k in _REQUIRED_KEYS if not isinstance(row, dict) or k not in row
            ]
            if missing:
                raise ValueError(
                    f"A row of `{where}` lacks {missing}; expected rows like "
                    f"`LotteryTicket.results`. Received: {_short(row)}"
                )
    return runs


def _check_metric(metric, runs, name):
    for run in runs:
        for row in run:
            available = early_stop_metrics(row)
            if metric not in available:
                raise ValueError(
                    f"metric={metric!r} is not in the early-stopping metrics of "
                    f"the '{name}' results (round {row.get('round', '?')}). "
                    f"Available: {sorted(available)}"
                )


def _aggregate(runs, metric):
    """Per round: mean x, and (mean, min, max) of the metric and the step."""
    rounds = max(len(run) for run in runs)
    x, metric_stats, step_stats = [], ([], [], []), ([], [], [])
    for r in range(rounds):
        rows = [run[r] for run in runs if r < len(run)]
        x.append(100.0 * _mean([float(row["weights_remaining"]) for row in rows]))
        for stats, values in (
            (metric_stats, [float(early_stop_metrics(row)[metric]) for row in rows]),
            (step_stats, [float(row["best_step"]) for row in rows]),
        ):
            stats[0].append(_mean(values))
            stats[1].append(min(values))
            stats[2].append(max(values))
    return x, metric_stats, step_stats


def _percent_log_axis(ax, ticks, all_x):
    from matplotlib.ticker import FixedLocator
    from matplotlib.ticker import FuncFormatter
    from matplotlib.ticker import NullFormatter
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log")
    low, high = min(all_x), max(all_x)
    pad = 1.15 if high > low else 1.5
    # Reversed: dense on the left, sparser to the right, as in the paper.
    ax.set_xlim(high * pad, low / pad)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_percent(v)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("weights remaining (%, log scale)")


def _x_ticks(values):
    """At most `_MAX_X_LABELS` of the data's x values, evenly thinned.

    The densest and the sparsest values are always among them.

    Values with the same label (the same percentage in several series) make
    one tick.
    """
    by_label = {}
    for value in sorted(values, reverse=True):
        by_label.setdefault(format_percent(value), value)
    ticks = list(by_label.values())
    if len(ticks) <= _MAX_X_LABELS:
        return ticks
    every = math.ceil(len(ticks) / _MAX_X_LABELS)
    thinned = ticks[::every]
    # Keep the sparsest point labelled, in place of the one before it.
    thinned[-1] = ticks[-1]
    return thinned


def format_percent(value):
    """A weights-remaining percentage as the x-axis labels it.

    One decimal from 1% up, two significant digits below, and `"100"` for
    the dense network.

    >>> [format_percent(p) for p in (100, 51.27, 7.0, 0.4736)]
    ['100', '51.3', '7.0', '0.47']
    """
    if value >= 99.95:
        return "100"
    if value >= 1.0:
        return f"{value:.1f}"
    return f"{value:.2g}"


def _styles():
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    markers = ["o", "s", "^", "D", "v", "P"]
    lines = ["-", "--", "-.", ":", "--", "-."]
    i = 0
    while True:
        yield {
            "color": colors[i % len(colors)],
            "marker": markers[i % len(markers)],
            "linestyle": lines[i % len(lines)],
        }
        i += 1


def _pretty(metric):
    name = metric
    for prefix, words in (("val_", "Validation "), ("test_", "Test ")):
        if name.startswith(prefix):
            return words + name[len(prefix) :].replace("_", " ")
    return name.replace("_", " ").capitalize()


def _mean(values):
    return sum(values) / len(values)


def _short(value, limit=120):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
