"""`keras-lth report`: reprint a run directory's tables, redraw its plot.

Reads only what `keras-lth run` saved (`run.json` and the results files:
IMP's rows, and each control's rows, one per level it branched off; with
`--export`, `deploy.json`); imports no Keras. `print_report` is also what a
run prints when it ends.
"""

import json
import os
import pathlib

from keras_lth import results as results_lib
from keras_lth.cli._common import UsageError
from keras_lth.cli._common import describe
from keras_lth.cli._common import has_module
from keras_lth.cli._run_dir import DEPLOY_FILE
from keras_lth.cli._run_dir import EXPORT_REPORT_FILE
from keras_lth.cli._run_dir import PLOT_FILE
from keras_lth.cli._run_dir import RUN_FILE
from keras_lth.cli._run_dir import SHRUNK_FILE
from keras_lth.cli._run_dir import SHRUNK_TFLITE_FILE
from keras_lth.cli._run_dir import TFLITE_FILE
from keras_lth.cli._run_dir import TICKET_FILE
from keras_lth.cli._run_dir import read_run_file
from keras_lth.plotting import default_metric

__all__ = ["comparison_table", "deploy_table", "print_report", "report"]


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

    IMP's table (one row per round), each control's (one row per level it
    branched off), then `comparison_table`: the ticket against the controls
    at those levels, then the deploy table of an exported run
    (`deploy_table`).

    Args:
        run_dir: A folder written by `keras-lth run`.
        plot: Whether to redraw `ticket_curve.png` (needs matplotlib).

    Raises:
        UsageError: If `run_dir` is not a run directory or a file in it
            cannot be read.
    """
    run_dir = pathlib.Path(run_dir)
    saved = read_run_file(run_dir)
    finished = {}
    for stage in saved["stages"]:
        path = run_dir / stage["results"]
        if stage["name"] == "imp":
            print(f"== IMP ({path}) ==")
        else:
            print(f"== Control: {stage['label']}, branches off IMP ({path}) ==")
        if not path.exists():
            print("(not finished: continue it with --resume)\n")
            continue
        try:
            rows = results_lib.load_results(path)
        except (OSError, ValueError) as error:
            raise UsageError(f"cannot read {path}: {describe(error)}") from error
        finished[stage["label"]] = rows
        print(results_lib.results_table(rows))
        print()
    imp = finished.pop("IMP", None)
    controls = {label: rows for label, rows in finished.items() if rows}
    if imp and controls:
        print(comparison_table(imp, controls))
        print()
    if plot and imp:
        _plot(run_dir, saved, imp, controls)
    _print_deploy(run_dir)
    _print_files(run_dir, saved)


def deploy_table(deploy):
    """The deploy table of `deploy.json`: one line per LiteRT file.

    Args:
        deploy: The contents of `deploy.json` (see
            `keras_lth.cli._export.measure_deploy`).

    Returns:
        A plain-text table: the file, its parameters and nonzero ones, its
        test accuracy in LiteRT, its size and latency, each also as a ratio
        to the first row; then the table's notes.
    """
    header = ["file", "parameters", "nonzero", "test acc", "bytes", "size"]
    header += ["us/invoke", "speedup"]
    lines = []
    for row in deploy["rows"]:
        accuracy = row["test_accuracy"]
        lines.append(
            [
                row["file"] or f"({row['name']})",
                f"{row['parameters']:,}",
                "-" if row["nonzero"] is None else f"{row['nonzero']:,}",
                "-" if accuracy is None else f"{accuracy:.4f}",
                f"{row['file_bytes']:,}",
                f"{row['bytes_ratio']:.3f}x",
                f"{row['latency_us']:.2f}",
                f"{row['speedup']:.2f}x",
            ]
        )
    widths = [
        max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)
    ]
    text = [
        f"== Deploy: the LiteRT files ({DEPLOY_FILE}) ==",
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths))
        ),
        "  ".join("-" * w for w in widths),
    ]
    for line in lines:
        text.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths))
            )
        )
    text += [f"Note: {note}" for note in deploy.get("notes", [])]
    return "\n".join(text)


def _print_deploy(run_dir):
    path = run_dir / DEPLOY_FILE
    resume = f"keras-lth run --output {run_dir} --resume --export"
    if path.exists():
        try:
            deploy = json.loads(path.read_text(encoding="utf-8"))
            table = deploy_table(deploy)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UsageError(f"cannot read {path}: {describe(error)}") from error
        print(table)
    elif (run_dir / TFLITE_FILE).exists():
        print(
            f"No deploy table: the ticket was exported before {DEPLOY_FILE} "
            f"existed. `{resume}` measures it."
        )
    elif (run_dir / TICKET_FILE).exists():
        print(
            "No deploy table: the run was not exported to LiteRT (--export was "
            f"off). `{resume}` exports the ticket and writes {DEPLOY_FILE} "
            "(TensorFlow backend, pip install ai-edge-litert)."
        )
    else:
        return
    print()


def comparison_table(imp, controls):
    """The ticket against the controls, at the levels they branched off.

    Args:
        imp: IMP's results rows, one per round.
        controls: `{label: rows}`, each control's rows (their `round` is the
            IMP round they branched off).

    Returns:
        A plain-text table, one line per level: the round, the weights
        remaining, then for IMP and each control the metric `plot_results`
        plots by default (the test accuracy when the rows have it) and the
        early-stopping epoch, as `0.9655 @ 12`.
    """
    metric = default_metric(imp)
    by_round = {row["round"]: row for row in imp}
    rounds = sorted({row["round"] for rows in controls.values() for row in rows})
    runs = {"IMP": by_round} | {
        label: {row["round"]: row for row in rows} for label, rows in controls.items()
    }
    header = ["round", "remaining", *runs]
    lines = [
        [
            str(r),
            f"{100 * by_round[r]['weights_remaining']:.2f}%" if r in by_round else "",
            *(_cell(rows.get(r), metric) for rows in runs.values()),
        ]
        for r in rounds
    ]
    widths = [
        max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)
    ]
    text = [
        f"== The ticket vs. the controls: {metric} @ early-stopping epoch ==",
        "  ".join(h.rjust(w) for h, w in zip(header, widths)),
        "  ".join("-" * w for w in widths),
        *("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines),
    ]
    return "\n".join(text)


def _cell(row, metric):
    if row is None:
        return "-"
    value = results_lib.early_stop_metrics(row).get(metric)
    shown = "-" if value is None else f"{value:.4f}"
    return f"{shown} @ {row['best_epoch']}"


def _plot(run_dir, saved, imp, controls):
    if not has_module("matplotlib"):
        print("No plot: matplotlib is not installed (pip install matplotlib).")
        return
    from keras_lth.plotting import plot_results

    settings = saved["settings"]
    plot_results(
        imp,
        controls=controls or None,
        path=run_dir / PLOT_FILE,
        title=f"Lottery ticket: {settings['model']} on {settings['dataset']}",
    )


def _print_files(run_dir, saved):
    rows = [(RUN_FILE, "the settings (read by keras-lth report and --resume)")]
    for stage in saved["stages"]:
        name = stage["results"]
        csv = name[: -len(".json")] + ".csv"
        what = (
            "IMP, one row per round"
            if stage["name"] == "imp"
            else f"control: {stage['label']}, one row per level"
        )
        if (run_dir / name).exists():
            rows.append((f"{name}, {csv}", what))
    described = {
        PLOT_FILE: "the plot: the ticket and the controls vs. weights left",
        TICKET_FILE: "the final ticket (keras.models.load_model reads it)",
        TFLITE_FILE: "the final ticket for LiteRT",
        SHRUNK_FILE: "the ticket with its dead units removed (keras_lth.shrink)",
        SHRUNK_TFLITE_FILE: "the shrunk ticket for LiteRT",
        EXPORT_REPORT_FILE: "the LiteRT export report",
        DEPLOY_FILE: "the deploy table: size, LiteRT accuracy and latency",
        "levels": "the IMP rounds the controls branch off: masks, row",
        "branches": "<control>/<level>/: each branch's masks and row",
        "tensorboard": f"tensorboard --logdir {run_dir / 'tensorboard'}",
        "checkpoints": "crash-recovery state (--resume continues it)",
    }
    for name, what in described.items():
        path = run_dir / name
        if path.is_dir():
            rows.append((f"{name}/", what))
        elif path.exists():
            rows.append((name, what))
    width = max(len(name) for name, _ in rows)
    print(f"Run directory {run_dir}{os.sep}:")
    for name, what in rows:
        print(f"  {name.ljust(width)}  {what}")
    print(f"Reprint this with: keras-lth report {run_dir}")
