"""The `keras-lth` command: find a winning ticket from the shell.

    keras-lth run                        # LeNet-300-100 on digits, offline
    keras-lth run --dataset mnist --data-path ../shared/data/mnist --rounds 10
    keras-lth run --output runs/lenet --resume    # continue a run that stopped
    keras-lth report runs/lenet                   # reprint it, redraw its plot

`run` finds a ticket by iterative magnitude pruning (IMP) for one of the
reference networks of `keras_lth.models`, with the paper's pruning rates,
plus control runs (random reinitialization, random pruning), and writes
everything into one run directory. `report` reads that directory back.
`tune` is a hook for `keras_lth.tuner` (see `_tune`).

Also runnable as `python -m keras_lth.cli`. `main(argv)` returns the exit
code: 0 on success, 1 when a finished run could not be exported, 2 for a bad
command line or unreadable data (one `keras-lth: error: ...` line on stderr),
130 when interrupted (the run can be resumed).
"""

import argparse
import importlib
import sys

from keras_lth import _cli_run
from keras_lth import datasets
from keras_lth import models
from keras_lth import pruning
from keras_lth._cli_run import CONTROLS
from keras_lth._cli_run import DEFAULT_CONTROLS
from keras_lth._cli_run import DEFAULT_EPOCHS_PER_ROUND
from keras_lth._cli_run import DEFAULT_MODEL
from keras_lth._cli_run import DEFAULT_ROUNDS
from keras_lth._cli_run import DEFAULT_SEED
from keras_lth._cli_run import UsageError

PROG = "keras-lth"

_RUN_EPILOG = """\
The run directory (--output; default runs/<model>-<dataset>-<time>) gets:
  run.json                      the settings used (read by report and --resume)
  results.json, results.csv     IMP, one row per round
  results_<control>.json, .csv  each control run
  test_metrics.json             test-set metrics of each run's final model
  ticket_curve.png              accuracy and early-stopping step vs. weights left
  ticket.keras                  the final ticket (keras.models.load_model reads it)
  ticket.tflite                 the final ticket for LiteRT (see --export)
  ticket_export.txt             the LiteRT export's report
  tensorboard/<run>/            TensorBoard logs of each run
  checkpoints/<run>/            crash-recovery state, read by --resume

Settings left out take the model preset's values (see keras_lth.models), except
the defaults shown. An existing run directory is never overwritten: pass
--resume to continue it (a finished run is skipped, an unfinished one continues
from its last epoch) or choose another --output.

examples:
  keras-lth run
  keras-lth run --rounds 2 --epochs-per-round 1 --controls none --output runs/quick
  keras-lth run --model conv2 --dataset mnist --data-path ../shared/data/mnist
  keras-lth run --output runs/quick --resume
"""


class _Parser(argparse.ArgumentParser):
    """Reports a usage error as one `keras-lth: error: ...` line (exit 2)."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser():
    """The `keras-lth` argument parser, with its `run`, `report`, `tune`."""
    parser = _Parser(
        prog=PROG,
        description="Find lottery tickets (Frankle & Carbin, 2019) with Keras 3.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="find a ticket by IMP, with control runs; write a run directory",
        description=(
            "Find a winning ticket by iterative magnitude pruning (IMP) for a\n"
            "reference network, with the paper's pruning rates, and run the\n"
            "controls with the same settings and seed. With no options:\n"
            f"{DEFAULT_MODEL} on scikit-learn's digits (offline), "
            f"{DEFAULT_ROUNDS} rounds of\n{DEFAULT_EPOCHS_PER_ROUND} epochs, "
            "hidden layers pruned 20% and the output layer 10%\n"
            "per round, and a random-reinit control."
        ),
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = run.add_argument_group("model and data")
    model.add_argument(
        "--model",
        choices=models.available(),
        metavar="NAME",
        help="reference network and its training preset: "
        + ", ".join(models.available())
        + f" (default {DEFAULT_MODEL})",
    )
    model.add_argument(
        "--dataset",
        choices=datasets.NAMES,
        metavar="NAME",
        help=f"{', '.join(datasets.NAMES)} (default digits, or mnist with "
        "--data-path); mnist, "
        "fashion_mnist and cifar10 download through keras.datasets unless "
        "--data-path is given",
    )
    model.add_argument(
        "--data-path",
        metavar="PATH",
        help="local data: a folder of IDX files (MNIST, Fashion-MNIST) or an "
        ".npz file with x_train, y_train and/or x_test, y_test",
    )
    model.add_argument(
        "--batch-size",
        type=_positive_int,
        metavar="N",
        help="examples per step (default: the preset's, 60 for LeNet)",
    )

    imp = run.add_argument_group("pruning")
    imp.add_argument(
        "--rounds",
        type=_positive_int,
        metavar="N",
        help=f"IMP rounds; N - 1 pruning steps (default {DEFAULT_ROUNDS})",
    )
    imp.add_argument(
        "--epochs-per-round",
        type=_positive_int,
        metavar="N",
        help=f"training epochs per round (default {DEFAULT_EPOCHS_PER_ROUND})",
    )
    imp.add_argument(
        "--prune-rate",
        type=float,
        metavar="RATE",
        help="fraction of the surviving weights pruned per round in the layers "
        "the preset gives no rate of their own (default: the preset's, 0.2)",
    )
    imp.add_argument(
        "--layer-rate",
        action="append",
        dest="layer_rates",
        metavar="LAYER=RATE",
        help="rate of one layer, over the preset's (LeNet: output=0.1); 0 "
        "never prunes it; repeat for several layers",
    )
    imp.add_argument(
        "--strategy",
        choices=pruning.STRATEGIES,
        help="layerwise, global (one threshold; keeps only the preset's 0 "
        "rates) or random (default: the preset's)",
    )
    imp.add_argument(
        "--rewind",
        metavar="POINT",
        help="where survivors go back to: init (default), K (after K steps), "
        "epoch:K, reinit, lr (learning-rate rewinding) or none (fine-tuning)",
    )
    imp.add_argument(
        "--controls",
        metavar="LIST",
        help="comma-separated control runs, each IMP with one change: "
        + ", ".join(
            f"{name} ({key}={value})"
            for name, (_, changes) in CONTROLS.items()
            for key, value in changes.items()
        )
        + f"; or none (default {','.join(DEFAULT_CONTROLS)})",
    )
    imp.add_argument(
        "--seed",
        type=_nonnegative_int,
        metavar="N",
        help=f"seed of the initial weights, the shuffling and the controls "
        f"(default {DEFAULT_SEED}); the data split is fixed",
    )

    output = run.add_argument_group("output")
    output.add_argument(
        "--output",
        metavar="DIR",
        help="run directory (default runs/<model>-<dataset>-<time>)",
    )
    output.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output: skip finished runs, resume the "
        "unfinished one from its checkpoint; settings come from its run.json",
    )
    output.add_argument(
        "--export",
        action=argparse.BooleanOptionalAction,
        help="write the final ticket as LiteRT (ticket.tflite); default: on "
        "when keras_lth.export and ai_edge_litert import and the Keras "
        "backend is tensorflow",
    )
    run.set_defaults(func=_cli_run.run)

    report = commands.add_parser(
        "report",
        help="reprint a run's tables and redraw its plot",
        description="Reprint the tables of a run directory written by "
        "'keras-lth run' and redraw its plot from the saved JSON.",
    )
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.add_argument(
        "--no-plot", action="store_true", help="do not redraw ticket_curve.png"
    )
    report.set_defaults(func=_cli_run.report)

    # Listed here for `keras-lth --help`; `main` dispatches `tune` itself (see
    # `_tune`), before this parser reads the arguments.
    commands.add_parser(
        "tune",
        help="search hyperparameters with keras-tuner (needs keras_lth.tuner)",
        add_help=False,
    )
    return parser


def main(argv=None) -> int:
    """Runs the `keras-lth` command.

    Args:
        argv: The arguments, without the program name. Defaults to
            `sys.argv[1:]`.

    Returns:
        The exit code: 0 on success, 1 if the LiteRT export of a finished
        run failed, 2 for a usage error (bad option, unreadable data,
        an existing run directory), 130 if interrupted.
    """
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    try:
        if argv[:1] == ["tune"]:
            return _tune(argv[1:])
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:  # --help
            return _exit_code(exit_)
        if args.command is None:
            raise UsageError(
                "choose a command: run, report or tune (see 'keras-lth --help')"
            )
        args.argv = argv  # For run.json.
        return args.func(args)
    except UsageError as error:
        message = " ".join(str(error).split())  # One line.
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------- tune hook
#
# `keras-lth tune ...` belongs to `keras_lth.tuner` (keras-tuner search). The
# hook: a module `keras_lth/tuner.py` that defines
#
#     def add_cli_arguments(parser: argparse.ArgumentParser) -> None: ...
#     def run_cli(args: argparse.Namespace) -> int: ...
#
# `main` imports it only when the command is `tune` (so `run` and `report`
# never import keras-tuner), builds a `keras-lth tune` parser, lets the module
# add its arguments, parses the rest of the command line with it, and returns
# what `run_cli(args)` returns as the exit code. Usage errors in that parser
# print one `keras-lth: error:` line and exit 2, as for the other commands.
# The module may raise `keras_lth._cli_run.UsageError(message)` for the same.
# Without the module, `keras-lth tune` is a usage error.

_TUNER_MODULE = "keras_lth.tuner"


def _tune(argv):
    try:
        tuner = importlib.import_module(_TUNER_MODULE)
    except ModuleNotFoundError as error:
        if error.name != _TUNER_MODULE:
            raise UsageError(f"'keras-lth tune' cannot start: {error}") from error
        raise UsageError(
            "'keras-lth tune' needs the keras_lth.tuner module, which this "
            "installation of keras_lth does not have"
        ) from error
    except ImportError as error:
        raise UsageError(f"'keras-lth tune' cannot start: {error}") from error
    parser = _Parser(
        prog=f"{PROG} tune",
        description="Search hyperparameters of a ticket with keras-tuner.",
    )
    tuner.add_cli_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help
        return _exit_code(exit_)
    return int(tuner.run_cli(args))


# ------------------------------------------------------------------ helpers


def _exit_code(exit_):
    code = exit_.code
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _positive_int(text):
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _nonnegative_int(text):
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


if __name__ == "__main__":
    sys.exit(main())
