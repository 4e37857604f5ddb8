"""The `keras-lth` command: find a winning ticket from the shell.

    keras-lth run                        # LeNet-300-100 on digits, offline
    keras-lth run --dataset mnist --data-path path/to/mnist --rounds 10
    keras-lth run --output runs/lenet --resume    # continue a run that stopped
    keras-lth report runs/lenet                   # reprint it, redraw its plot
    keras-lth tune --max-trials 4                 # search with keras-tuner

`run` (`keras_lth.cli.run`) finds a ticket by iterative magnitude pruning
(IMP) for one of the reference networks of `keras_lth.models`, with the
paper's pruning rates, trains the paper's controls (random reinitialization,
random pruning) as branches off its levels (`keras_lth.branches`), and
writes everything into one run directory. `report`
(`keras_lth.cli.report`) reads that directory back. `tune`
(`keras_lth.cli.tune`) searches hyperparameters with keras-tuner.

This module holds the parser and `main`, and imports no Keras: `--help` is
fast, and `run` and `tune` import Keras only once TensorFlow's logging is
set (see `--verbose`). Also runnable as `python -m keras_lth.cli`.

Exit codes of `main(argv)`:

* 0: success.
* 1: a finished run whose LiteRT export failed, a search in which no trial
  completed, or an unexpected error (a bug): one line naming the exception,
  `--debug` for the traceback.
* 2: an error the user can fix, printed as one `keras-lth: error: ...` line:
  a bad command line, unreadable data, a run directory that exists, is in
  use or cannot be written, a torn checkpoint, a full disk; any `ValueError`,
  `TypeError` or `OSError` the library raises.
* 130: interrupted (Ctrl-C); what finished is saved and `--resume` continues.

`--debug` (before or after the command) prints the traceback instead of the
one line, with the same exit code.
"""

import argparse
import sys
import traceback

from keras_lth.cli import tune as tune_command
from keras_lth.cli._common import UsageError
from keras_lth.cli._common import describe
from keras_lth.cli._common import import_keras
from keras_lth.cli._settings import CONTROLS
from keras_lth.cli._settings import DATASETS
from keras_lth.cli._settings import DEFAULT_CONTROL_LEVELS
from keras_lth.cli._settings import DEFAULT_CONTROLS
from keras_lth.cli._settings import DEFAULT_EPOCHS_PER_ROUND
from keras_lth.cli._settings import DEFAULT_MODEL
from keras_lth.cli._settings import DEFAULT_ROUNDS
from keras_lth.cli._settings import DEFAULT_SEED
from keras_lth.cli._settings import GRANULARITIES
from keras_lth.cli._settings import MODELS
from keras_lth.cli._settings import MONITORS
from keras_lth.pruning import STRATEGIES

__all__ = ["build_parser", "main"]

PROG = "keras-lth"

_RUN_EPILOG = """\
The run directory (--output; default runs/<model>-<dataset>-<time>) gets:
  run.json                       the settings used (read by report and --resume)
  results.json, results.csv      IMP, one row per round, with test metrics
  results_<control>.json, .csv   each control, one row per level
  levels/<level>/                masks.npz and level.json of each IMP round the
                                 controls branch off (<level>: round_03_51.3pct)
  branches/<control>/<level>/    masks.npz and result.json of each branch
  ticket_curve.png               the ticket and the controls vs. weights left:
                                 test accuracy and early-stopping step
  ticket.keras                   the final ticket (keras.models.load_model reads it)
  ticket.tflite                  the final ticket for LiteRT (see --export)
  ticket_shrunk.keras            the ticket without its dead units (keras_lth.shrink)
  ticket_shrunk.tflite           the shrunk ticket for LiteRT
  ticket_export.txt              the LiteRT exports' and the shrinking's reports
  tensorboard/imp/               TensorBoard: loss and accuracy per epoch in
                                 train/, validation/; masks in sparsity/
  tensorboard/<control>/<level>/ the same for each branch
  checkpoints/imp/, checkpoints/<control>/<level>/
                                 crash-recovery state, read by --resume
  .lock                          locked by the run writing here; a second is refused

A control is trained once from each level, for as many epochs as an IMP round,
with the same seed: reinit keeps the ticket's masks and draws new initial
weights; random draws masks of the same size per tensor and keeps the initial
weights. Metrics are at each round's early-stopping epoch (see --monitor).

Settings left out take the model preset's values (see keras_lth.models), except
the defaults shown. An existing run directory is never overwritten: pass
--resume to continue it (finished stages and branches are skipped, an
unfinished one continues from its last epoch) or choose another --output.

examples:
  keras-lth run
  keras-lth run --rounds 2 --epochs-per-round 1 --controls none --output runs/quick
  keras-lth run --rounds 19 --controls reinit,random --control-levels 51.3,7,1.9
  keras-lth run --model conv2 --dataset mnist --data-path path/to/mnist
  keras-lth run --output runs/quick --resume
"""

_DEBUG_HELP = "on an error, print the full traceback instead of one line"


class _Parser(argparse.ArgumentParser):
    """Reports a usage error as one `keras-lth: error: ...` line (exit 2)."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser():
    """The `keras-lth` argument parser, with its `run`, `report` and `tune`.

    Imports no Keras: the choices come from `keras_lth.cli._settings` and
    `keras_lth.pruning.STRATEGIES`.

    Returns:
        An `argparse.ArgumentParser` whose errors raise `UsageError`.
    """
    parser = _Parser(
        prog=PROG,
        description="Find lottery tickets (Frankle & Carbin, 2019) with Keras 3.",
    )
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(commands)

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
    _add_debug(report)

    tune = commands.add_parser(
        "tune",
        help="search hyperparameters with keras-tuner (needs keras-tuner)",
        description="Search hyperparameters of a ticket with keras-tuner.",
    )
    tune_command.add_cli_arguments(tune)
    _add_debug(tune)
    return parser


def _add_run(commands):
    run = commands.add_parser(
        "run",
        help="find a ticket by IMP, with the paper's controls; write a run directory",
        description=(
            "Find a winning ticket by iterative magnitude pruning (IMP) for a\n"
            "reference network, with the paper's pruning rates, and run the\n"
            "paper's controls as branches off its levels, with the same seed.\n"
            "With no options:\n"
            f"{DEFAULT_MODEL} on scikit-learn's digits (offline), "
            f"{DEFAULT_ROUNDS} rounds of\n{DEFAULT_EPOCHS_PER_ROUND} epochs, "
            "hidden layers pruned 20% and the output layer 10%\n"
            "per round, and the controls "
            f"{' and '.join(CONTROLS[name] for name in DEFAULT_CONTROLS)}\n"
            "at the paper's levels that the run reaches."
        ),
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = run.add_argument_group("model and data")
    model.add_argument(
        "--model",
        choices=MODELS,
        metavar="NAME",
        help="reference network and its training preset: "
        + ", ".join(MODELS)
        + f" (default {DEFAULT_MODEL})",
    )
    model.add_argument(
        "--dataset",
        choices=DATASETS,
        metavar="NAME",
        help=f"{', '.join(DATASETS)} (default digits, or mnist with "
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
        choices=STRATEGIES,
        help="layerwise, global (one threshold; keeps only the preset's 0 "
        "rates), lamp (layer-adaptive global, Lee et al. 2021) or random "
        "(default: the preset's)",
    )
    imp.add_argument(
        "--granularity",
        choices=GRANULARITIES,
        help="what IMP prunes: single weights (default) or whole output "
        "units (Dense columns, filters, attention heads; the output layer's "
        "classes are kept), for a ticket that keras_lth.shrink makes smaller",
    )
    imp.add_argument(
        "--refill",
        action="store_true",
        default=None,
        help="with --granularity unit: keep the units with the most weights "
        "left by unstructured pruning, refilled (Chen et al. 2022)",
    )
    imp.add_argument(
        "--rewind",
        metavar="POINT",
        help="where survivors go back to: init (default), K (after K steps), "
        "epoch:K, reinit_each_round (new random weights every round; not "
        "the paper's control), lr (learning-rate rewinding) or none (fine-tuning)",
    )
    imp.add_argument(
        "--monitor",
        choices=MONITORS,
        help="what marks a round's early-stopping epoch, where its metrics "
        "are taken: the first epoch at the lowest val_loss (the paper's) or "
        "at the highest val_accuracy (default val_loss; val_accuracy on "
        "digits, whose val_loss keeps falling to the last epoch)",
    )
    imp.add_argument(
        "--controls",
        metavar="LIST",
        help="comma-separated controls, each trained once from every level of "
        "--control-levels: "
        + ", ".join(f"{name} ({label})" for name, label in CONTROLS.items())
        + f"; or none (default {','.join(DEFAULT_CONTROLS)})",
    )
    imp.add_argument(
        "--control-levels",
        metavar="LIST",
        help="comma-separated percentages of weights remaining where the "
        "controls branch off IMP: the rounds nearest them (within 10%%) that "
        "the run reaches (default the paper's "
        f"{','.join(map(str, DEFAULT_CONTROL_LEVELS))})",
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
        help="continue the run in --output: skip finished stages and branches, "
        "resume the unfinished one from its checkpoint; settings come from its "
        "run.json",
    )
    output.add_argument(
        "--export",
        action=argparse.BooleanOptionalAction,
        help="write the final ticket as LiteRT (ticket.tflite); default: on "
        "when ai_edge_litert imports and the Keras backend is tensorflow",
    )
    output.add_argument(
        "--verbose",
        action="store_true",
        help="also print TensorFlow's own log lines (hidden unless "
        "TF_CPP_MIN_LOG_LEVEL is set)",
    )
    _add_debug(run)


def _add_debug(parser):
    # SUPPRESS: unless given here, `keras-lth --debug COMMAND` keeps its value.
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP
    )


def main(argv=None) -> int:
    """Runs the `keras-lth` command.

    Args:
        argv: The arguments, without the program name. Defaults to
            `sys.argv[1:]`.

    Returns:
        The exit code (see the module docstring): 0 on success, 1 for a
        failed export, a search without a completed trial or a bug, 2 for
        an error the user can fix, 130 if interrupted.
    """
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    args = None
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exit_:  # --help
            return _exit_code(exit_)
        return _dispatch(args, argv)
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValueError, TypeError, OSError) as error:
        return _report_error(error, 2, debug=getattr(args, "debug", False))
    except Exception as error:  # A bug: one line, unless --debug.
        return _report_error(error, 1, debug=getattr(args, "debug", False))


def _dispatch(args, argv):
    if args.command is None:
        raise UsageError(
            "choose a command: run, report or tune (see 'keras-lth --help')"
        )
    args.argv = argv  # For run.json.
    if args.command == "report":
        from keras_lth.cli.report import report

        return report(args)
    # TensorFlow reads its log level once, as it loads: set it before.
    show_logs = args.verbose if args.command == "run" else args.verbose == 2
    import_keras(show_logs=bool(show_logs))
    if args.command == "run":
        from keras_lth.cli.run import run

        return run(args)
    return int(tune_command.run_cli(args))


def _report_error(error, code, *, debug):
    """Prints `error` as one line (or its traceback with --debug); returns `code`."""
    if debug:
        traceback.print_exception(error)
        return code
    message = describe(error)
    if code != 2:
        message = (
            f"unexpected {type(error).__name__}: {message} (run with --debug "
            "for the traceback)"
        )
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


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
