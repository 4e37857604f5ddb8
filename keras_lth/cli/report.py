"""`keras-lth report`: reprint a run directory's tables, redraw its plot.

Reads only what `keras-lth run` saved (`run.json`, the results files,
`test_metrics.json`); imports no Keras. `print_report` is also what a run
prints when it ends.
"""

import os
import pathlib

from keras_lth import results as results_lib
from keras_lth.cli._common import UsageError
from keras_lth.cli._common import describe
from keras_lth.cli._common import has_module
from keras_lth.cli._common import read_json
from keras_lth.cli._run_dir import EXPORT_REPORT_FILE
from keras_lth.cli._run_dir import PLOT_FILE
from keras_lth.cli._run_dir import RUN_FILE
from keras_lth.cli._run_dir import TEST_FILE
from keras_lth.cli._run_dir import TFLITE_FILE
from keras_lth.cli._run_dir import TICKET_FILE
from keras_lth.cli._run_dir import read_run_file

__all__ = ["print_report", "report"]


def report(args):
    """Runs `keras-lth report RUN_DIR` with parsed `args`; returns 0.

    Raises:
        UsageError: If RUN_DIR is not a run directory or a file in it cannot
            be read.
    """
    print_report(pathlib.Path(args.run_dir), plot=not args.no_plot)
    return 0


def print_report(run_dir, *, plot):
    """Prints the tables of a run directory; redraws its plot if `plot`.

    Args:
        run_dir: A folder written by `keras-lth run`.
        plot: Whether to redraw `ticket_curve.png` (needs matplotlib).

    Raises:
        UsageError: If `run_dir` is not a run directory or a file in it
            cannot be read.
    """
    run_dir = pathlib.Path(run_dir)
    saved = read_run_file(run_dir)
    tests = read_json(run_dir / TEST_FILE) or {}
    finished = {}
    for stage in saved["stages"]:
        path = run_dir / stage["results"]
        title = "IMP" if stage["name"] == "imp" else f"Control: {stage['label']}"
        print(f"== {title} ({path}) ==")
        if not path.exists():
            print("(not finished: continue it with --resume)\n")
            continue
        try:
            rows = results_lib.load_results(path)
        except (OSError, ValueError) as error:
            raise UsageError(f"cannot read {path}: {describe(error)}") from error
        finished[stage["label"]] = rows
        print(results_lib.results_table(rows))
        test = tests.get(stage["name"])
        if test:
            metrics = ", ".join(
                f"{k} {v:.4f}" for k, v in test.items() if k != "weights_remaining"
            )
            print(
                f"test set, the last round's model at its last epoch "
                f"({100 * test['weights_remaining']:.2f}% of weights left): "
                f"{metrics}"
            )
        print()
    if plot:
        _plot(run_dir, saved, finished)
    _print_files(run_dir, saved)


def _plot(run_dir, saved, finished):
    if "IMP" not in finished:
        return
    if not has_module("matplotlib"):
        print("No plot: matplotlib is not installed (pip install matplotlib).")
        return
    from keras_lth.plotting import plot_results

    controls = {label: rows for label, rows in finished.items() if label != "IMP"}
    settings = saved["settings"]
    plot_results(
        finished["IMP"],
        controls=controls or None,
        path=run_dir / PLOT_FILE,
        title=f"Lottery ticket: {settings['model']} on {settings['dataset']}",
    )


def _print_files(run_dir, saved):
    rows = [(RUN_FILE, "the settings (read by keras-lth report and --resume)")]
    for stage in saved["stages"]:
        name = stage["results"]
        csv = name[: -len(".json")] + ".csv"
        what = "IMP" if stage["name"] == "imp" else f"control: {stage['label']}"
        if (run_dir / name).exists():
            rows.append((f"{name}, {csv}", f"{what}, one row per round"))
    described = {
        TEST_FILE: "test-set metrics of each run's final model",
        PLOT_FILE: "the plot: accuracy and early-stopping step vs. weights left",
        TICKET_FILE: "the final ticket (keras.models.load_model reads it)",
        TFLITE_FILE: "the final ticket for LiteRT",
        EXPORT_REPORT_FILE: "the LiteRT export report",
    }
    rows += [(n, what) for n, what in described.items() if (run_dir / n).exists()]
    if (run_dir / "tensorboard").is_dir():
        rows.append(("tensorboard/", f"tensorboard --logdir {run_dir / 'tensorboard'}"))
    if (run_dir / "checkpoints").is_dir():
        rows.append(("checkpoints/", "crash-recovery state (--resume continues it)"))
    width = max(len(name) for name, _ in rows)
    print(f"Run directory {run_dir}{os.sep}:")
    for name, what in rows:
        print(f"  {name.ljust(width)}  {what}")
    print(f"Reprint this with: keras-lth report {run_dir}")
