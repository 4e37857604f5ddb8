"""`plot_results`: the ticket-curve figure."""

import os
import sys

import matplotlib
import pytest

from keras_lth._summary_writer import png_size
from keras_lth.plotting import default_metric
from keras_lth.plotting import format_percent
from keras_lth.plotting import plot_results


def run(accuracies, steps=None, monitor="val_loss", rate=0.2):
    """Rows like `LotteryTicket.results`, one per accuracy."""
    steps = steps or [100 - 10 * r for r in range(len(accuracies))]
    return [
        {
            "round": r,
            "weights_remaining": (1 - rate) ** r,
            "layers": {"dense/kernel": (1 - rate) ** r},
            "best_epoch": 3,
            "best_step": steps[r],
            "best": {
                "loss": 0.1,
                "accuracy": acc + 0.01,
                "val_loss": 0.2,
                "val_accuracy": acc,
            },
            "final": {"loss": 0.1, "val_accuracy": acc - 0.01},
            "monitor": monitor,
        }
        for r, acc in enumerate(accuracies)
    ]


def lines(ax):
    """The (x, y) data of each plotted series, in order."""
    return [
        (list(bars.lines[0].get_xdata()), list(bars.lines[0].get_ydata()))
        for bars in ax.containers
    ]


def test_one_run_two_panels_on_a_reversed_log_axis(tmp_path):
    rows = run([0.95, 0.96, 0.955, 0.94])
    backend = matplotlib.get_backend()
    path = tmp_path / "curve.png"
    fig = plot_results(rows, path=path)
    assert matplotlib.get_backend() == backend  # No global switch.

    ax_metric, ax_step = fig.axes
    for ax in (ax_metric, ax_step):
        assert ax.get_xscale() == "log"
        left, right = ax.get_xlim()
        assert left > 100 and right < 100 * 0.8**3  # Reversed: sparser right.
        assert ax.get_xlabel() == "weights remaining (%, log scale)"
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == ["100", "80.0", "64.0", "51.2"]
    assert ax_metric.get_ylabel() == "val_accuracy at early stopping"
    assert ax_metric.get_title() == "Validation accuracy at early stopping"
    assert ax_step.get_ylabel() == "early-stopping step"
    assert "val_accuracy" in fig._suptitle.get_text()
    [(x, y)] = lines(ax_metric)
    assert x == pytest.approx([100, 80, 64, 51.2])
    assert y == pytest.approx([0.95, 0.96, 0.955, 0.94])
    [(_, steps)] = lines(ax_step)
    assert steps == [100, 90, 80, 70]
    assert [t.get_text() for t in ax_metric.get_legend().get_texts()] == ["IMP"]

    png = path.read_bytes()
    assert png_size(png) == (11 * 120, int(4.2 * 120))
    assert [f for f in os.listdir(tmp_path)] == ["curve.png"]  # No temp left.


def test_seeds_give_mean_with_min_max_bars_and_controls_overlay():
    seeds = [run([0.9, 0.92, 0.91]), run([0.94, 0.96, 0.95], steps=[50, 60, 70])]
    reinit = run([0.9, 0.85, 0.7])
    random = [run([0.9, 0.8, 0.6]), run([0.92, 0.82])]  # A shorter seed.
    fig = plot_results(
        seeds,
        controls={"random reinit": reinit, "random pruning": random},
        metric="val_accuracy",
    )
    ax_metric, ax_step = fig.axes
    (_, mean), (_, reinit_y), (random_x, random_y) = lines(ax_metric)
    assert mean == pytest.approx([0.92, 0.94, 0.93])
    assert reinit_y == pytest.approx([0.9, 0.85, 0.7])
    assert random_x == pytest.approx([100, 80, 64])
    assert random_y == pytest.approx([0.91, 0.81, 0.6])
    (_, step_mean), _, _ = lines(ax_step)
    assert step_mean == pytest.approx([75, 75, 75])
    # Error bars from min to max: the seeds' spread, 0.04 at every round.
    bars = ax_metric.containers[0]
    segments = bars.lines[2][0].get_segments()
    assert [s[1][1] - s[0][1] for s in segments] == pytest.approx([0.04] * 3)
    legend = [t.get_text() for t in ax_metric.get_legend().get_texts()]
    assert legend == [
        "IMP (mean of 2, min-max bars)",
        "random reinit",
        "random pruning (mean of 2, min-max bars)",
    ]
    colors = {line.get_color() for line in ax_metric.get_lines()}
    assert len(colors) >= 3


def test_default_metric_follows_the_monitor_split():
    assert default_metric(run([0.9])) == "val_accuracy"
    assert default_metric(run([0.9], monitor="loss")) == "accuracy"
    rows = run([0.9])
    rows[0]["best"] = {"loss": 0.3, "val_loss": 0.4}
    assert default_metric(rows) == "val_loss"
    fig = plot_results(run([0.9, 0.8], monitor="loss"))
    [(_, y)] = lines(fig.axes[0])
    assert y == pytest.approx([0.91, 0.81])  # The training accuracy.


def test_percent_labels_and_many_rounds_are_thinned():
    assert [format_percent(p) for p in (100, 51.27, 21.1, 7.0, 0.4736)] == [
        "100",
        "51.3",
        "21.1",
        "7.0",
        "0.47",
    ]
    fig = plot_results(run([0.9] * 25))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert len(labels) <= 12
    assert labels[0] == "100" and labels[-1] == format_percent(100 * 0.8**24)


def test_bad_input_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match=r"non-empty list .* Received: \[\]"):
        plot_results([])
    with pytest.raises(ValueError, match="`results\\[1\\]` holds no rows"):
        plot_results([run([0.9]), []])
    with pytest.raises(ValueError, match=r"metric='top5'.*Available: \['accuracy'"):
        plot_results(run([0.9]), metric="top5")
    with pytest.raises(ValueError, match=r"lacks \['best_step', 'best'\]"):
        plot_results([{"weights_remaining": 1.0}])
    with pytest.raises(ValueError, match="not a mix"):
        plot_results([run([0.9])[0], run([0.9])])
    with pytest.raises(ValueError, match="controls\\['reinit'\\]"):
        plot_results(run([0.9]), controls={"reinit": []})
    with pytest.raises(ValueError, match="'reinit' results"):
        reinit = run([0.9])
        del reinit[0]["best"]["val_accuracy"]
        plot_results(run([0.9]), controls={"reinit": reinit})
    with pytest.raises(TypeError, match="dict \\{label: results\\}"):
        plot_results(run([0.9]), controls=[run([0.9])])


def test_without_matplotlib_an_import_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"keras-lth\[plot\]"):
        plot_results(run([0.9]))


def test_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    path = tmp_path / "curve.png"
    path.write_bytes(b"old")

    def broken_savefig(self, f, **kwargs):
        f.write(b"half a PNG")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_results(run([0.9]), path=path)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["curve.png"]
    monkeypatch.undo()
    plot_results(run([0.9]), path=path)
    assert path.read_bytes().startswith(b"\x89PNG")
