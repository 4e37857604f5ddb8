"""`keras-lth tune`: search for the best ticket of LeNet-300-100 with keras-tuner.

`add_cli_arguments` adds the command's flags to a parser and imports nothing
beyond the standard library, so `keras-lth --help` works without Keras or
keras-tuner. `run_cli` imports `keras_lth.tuner` (and so keras-tuner, an
optional dependency) only when the search runs.
"""

import argparse
import dataclasses
import json
import os
import sys
import time

from keras_lth._checks import check_count
from keras_lth._checks import check_fraction
from keras_lth.cli._common import UsageError
from keras_lth.cli._common import describe
from keras_lth.cli._common import has_module
from keras_lth.cli._common import read_json
from keras_lth.cli._settings import DATASETS
from keras_lth.pruning import check_strategy
from keras_lth.rewind import Rewind

__all__ = ["add_cli_arguments", "run_cli"]

#: The settings a resumed search must share with the search it continues.
_SEARCH_KEYS = (
    "data",
    "data_path",
    "tuner",
    "target",
    "prune_rates",
    "rewinds",
    "strategies",
    "learning_rates",
    "epochs_per_round",
    "batch_size",
    "hyperband_factor",
    "seed",
)
_ARGS_FILE = "keras_lth_tune_args.json"


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of `keras-lth tune` to `parser`.

    The defaults run a small search offline: LeNet-300-100 (the paper's
    preset) on scikit-learn's digits, 8 trials over the prune rate (0.2, 0.4),
    the rewind point (init, end of epoch 1) and the learning rate, each trial
    pruning to 20% of the weights with 3 epochs per round.

    Example:

    ```python
    parser = argparse.ArgumentParser(prog="keras-lth tune")
    add_cli_arguments(parser)
    args = parser.parse_args(["--max-trials", "4"])
    ```
    """
    add = parser.add_argument
    add(
        "--tuner",
        choices=("random", "bayesian", "hyperband"),
        default="random",
        help="keras-tuner algorithm (default: random). With hyperband, the "
        "budget is the epochs per round, up to --epochs-per-round.",
    )
    add(
        "--max-trials",
        type=int,
        default=8,
        help="most trials, resumed ones included (default: 8)",
    )
    add(
        "--target",
        type=float,
        default=0.2,
        help="fraction of weights remaining that a ticket must reach; the "
        "score is the best val_accuracy at or below it (default: 0.2)",
    )
    add(
        "--prune-rates",
        default="0.2,0.4",
        help="comma-separated prune rates to search (default: 0.2,0.4)",
    )
    add(
        "--rewinds",
        default="init,epoch:1",
        help="comma-separated rewind points to search: init, reinit, lr, none, "
        "epoch:K or a step count (default: init,epoch:1)",
    )
    add(
        "--strategies",
        default="layerwise",
        help="comma-separated pruning strategies: layerwise, global, lamp, "
        "random (default: layerwise)",
    )
    add(
        "--learning-rates",
        default="0.0012,0.003",
        help="comma-separated Adam learning rates to search (default: "
        "0.0012,0.003; 0.0012 is the paper's)",
    )
    add(
        "--epochs-per-round",
        type=int,
        default=3,
        help="training epochs per IMP round; Hyperband's max_epochs (default: 3)",
    )
    add(
        "--hyperband-factor",
        type=int,
        default=2,
        help="Hyperband's reduction factor (default: 2)",
    )
    add("--batch-size", type=int, default=60, help="batch size (default: 60)")
    add(
        "--data",
        choices=DATASETS,
        default="digits",
        help="dataset (default: digits, bundled with scikit-learn, offline)",
    )
    add(
        "--data-path",
        default=None,
        help="local files for mnist, fashion_mnist or cifar10 (see "
        "keras_lth.datasets); downloaded by keras.datasets if omitted",
    )
    add(
        "--directory",
        default="runs/tune",
        help="keras-tuner directory (default: runs/tune)",
    )
    add(
        "--project-name",
        default="keras_lth_tune",
        help="keras-tuner project, a sub-folder of --directory "
        "(default: keras_lth_tune)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--overwrite",
        dest="overwrite",
        action="store_true",
        help="delete the project's earlier trials and start afresh",
    )
    group.add_argument(
        "--resume",
        dest="overwrite",
        action="store_false",
        help="keep the finished trials and run the rest (default)",
    )
    parser.set_defaults(overwrite=False)
    add(
        "--log-dir",
        default=None,
        help="TensorBoard folder, one sub-folder per trial (default: "
        "<directory>/<project-name>/logs)",
    )
    add("--no-tensorboard", action="store_true", help="write no TensorBoard summaries")
    add(
        "--output",
        default=None,
        help="where to save the best ticket, a masked .keras model (default: "
        "<directory>/<project-name>/best_ticket.keras)",
    )
    add(
        "--seed",
        type=int,
        default=0,
        help="seed of the search, the initialization and the split (default: 0)",
    )
    add(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        nargs="?",
        const=2,
        default=1,
        help="0: summary only; 1: trials and rounds (default); 2 (or "
        "--verbose alone): every epoch, and TensorFlow's own log lines",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Runs `keras-lth tune` with parsed `args`; returns the exit code.

    Prints the best trial's hyperparameters and score, the test accuracy of
    its ticket, and where the ticket was saved (`keras_lth.save_model`).

    Returns:
        0, or 1 if no trial completed, or 130 if interrupted (the same
        command continues the search).

    Raises:
        UsageError: If keras-tuner is missing, or for settings that are
            invalid or do not fit the search being resumed.
    """
    lth_tuner = _import_tuner()
    import keras

    from keras_lth import datasets
    from keras_lth.masking import sparsity
    from keras_lth.masking import strip_masks
    from keras_lth.models import get_preset
    from keras_lth.saving import atomic_write_text
    from keras_lth.saving import save_model

    space, learning_rates = _search_space(args)
    project = os.path.join(args.directory, args.project_name)
    preset = get_preset("lenet_300_100")
    data = None  # Loaded below, once the settings are checked.

    def build(hp):
        rate = hp.Choice("learning_rate", learning_rates)
        model = preset.build_model(
            input_shape=data.input_shape, num_classes=data.num_classes
        )
        model.compile(
            optimizer=dataclasses.replace(preset, learning_rate=rate).make_optimizer(),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return model

    log_dir = None
    if not args.no_tensorboard:
        log_dir = args.log_dir or os.path.join(project, "logs")
    fit_verbose = 2 if args.verbose == 2 else 0

    class _Hypermodel(lth_tuner.TicketHyperModel):
        # keras-tuner's trial tables without a progress bar for every epoch.
        def fit(self, hp, model, *fit_args, **kwargs):
            kwargs["verbose"] = fit_verbose
            return super().fit(hp, model, *fit_args, **kwargs)

    try:
        hypermodel = _Hypermodel(
            build,
            target_weights_remaining=args.target,
            epochs_per_round=args.epochs_per_round,
            log_dir=log_dir,
            seed=args.seed,
            verbose=1 if args.verbose else 0,
            **space,
        )
    except (TypeError, ValueError) as error:
        raise UsageError(describe(error)) from error

    settings = {key: getattr(args, key) for key in _SEARCH_KEYS}
    if not args.overwrite:
        _check_same_search(project, settings)

    keras.utils.set_random_seed(args.seed)
    load_kwargs = {"seed": args.seed, "flatten": True}
    if args.data_path is not None:
        load_kwargs["path"] = args.data_path
    try:
        data = datasets.load(args.data, **load_kwargs)
        tuner = lth_tuner.make_tuner(
            args.tuner,
            hypermodel,
            max_trials=args.max_trials,
            directory=args.directory,
            project_name=args.project_name,
            overwrite=args.overwrite,
            seed=args.seed,
            **({"factor": args.hyperband_factor} if args.tuner == "hyperband" else {}),
        )
    except (ImportError, ValueError) as error:
        raise UsageError(describe(error)) from error
    atomic_write_text(
        os.path.join(project, _ARGS_FILE), json.dumps(settings, indent=2) + "\n"
    )
    print(f"Search: {args.tuner}, up to {args.max_trials} trials in {project}")
    print(f"Data: {data.note}")
    start = time.perf_counter()
    search_kwargs = {"verbose": 0} if args.verbose == 0 else {}
    try:
        tuner.search(
            *data.train,
            validation_data=data.validation,
            batch_size=args.batch_size,
            **search_kwargs,
        )
    except KeyboardInterrupt:
        print(
            "\nkeras-lth: interrupted. The same command without --overwrite "
            f"continues the search in {project} (finished trials are kept).",
            file=sys.stderr,
        )
        return 130
    elapsed = time.perf_counter() - start

    trials = list(tuner.oracle.trials.values())
    done = [t for t in trials if t.status == "COMPLETED"]
    failed = [t for t in trials if t.status in ("FAILED", "INVALID")]
    print()
    print(
        f"{len(trials)} trial{'' if len(trials) == 1 else 's'} ({len(done)} "
        f"completed, {len(failed)} failed); "
        f"this run took {elapsed:.0f} s."
    )
    for trial in failed:
        print(f"Trial {trial.trial_id} failed: {_last_line(trial.message)}")
    if not done:
        print(
            "keras-lth: error: no trial completed, so there is no ticket.",
            file=sys.stderr,
        )
        return 1

    best = tuner.oracle.get_best_trials(1)[0]
    ticket = lth_tuner.best_ticket(tuner)
    output = args.output or os.path.join(project, "best_ticket.keras")
    save_model(ticket, output)
    plain = strip_masks(ticket)
    plain.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    _, test_accuracy = plain.evaluate(*data.test, verbose=0)

    metrics = best.metrics
    print(f"Best trial: trial_{best.trial_id}")
    print("Hyperparameters:")
    for name, value in best.hyperparameters.values.items():
        print(f"  {name}: {value}")
    print(
        f"Score ({hypermodel.objective_name}, best val_accuracy at or below "
        f"{args.target:.1%} of weights remaining): {best.score:.4f}, by round "
        f"{int(metrics.get_last_value('ticket_round'))} with "
        f"{metrics.get_last_value('ticket_weights_remaining'):.2%} of weights "
        f"remaining ({int(metrics.get_last_value('rounds'))} rounds of "
        f"{int(metrics.get_last_value('epochs_per_round'))} epochs)"
    )
    print(
        f"Final ticket: {1.0 - sparsity(ticket)['global']:.2%} of "
        f"weights remaining, test accuracy {test_accuracy:.4f} on "
        f"{len(data.test[0])} {args.data} test examples"
    )
    print(
        f"Saved the best ticket (masked; keras_lth.strip_masks for a plain "
        f"model) to {output}"
    )
    if log_dir is not None:
        print(f"TensorBoard: tensorboard --logdir {log_dir}")
    return 0


def _import_tuner():
    """`keras_lth.tuner`, or a `UsageError` saying what to install."""
    if not has_module("keras_tuner"):
        raise UsageError(
            "'keras-lth tune' needs keras-tuner, which is not installed: "
            'pip install "keras-lth[tuner]"'
        )
    try:
        import keras_lth.tuner as tuner
    except ImportError as error:
        raise UsageError(f"'keras-lth tune' cannot start: {describe(error)}") from error
    return tuner


def _search_space(args):
    """The searched values, checked: `(space, learning_rates)`."""
    try:
        for flag, value in (
            ("--max-trials", args.max_trials),
            ("--epochs-per-round", args.epochs_per_round),
            ("--batch-size", args.batch_size),
        ):
            check_count(value, flag)
        space = {
            "prune_rate": [
                check_fraction(rate, "--prune-rates")
                for rate in _floats(args.prune_rates, "--prune-rates")
            ],
            "rewind": [
                Rewind.parse(item).value for item in _split(args.rewinds, "--rewinds")
            ],
            "strategy": [
                check_strategy(item, name="--strategies")
                for item in _split(args.strategies, "--strategies")
            ],
        }
        learning_rates = _floats(args.learning_rates, "--learning-rates")
    except (TypeError, ValueError) as error:
        raise UsageError(describe(error)) from error
    return space, learning_rates


def _check_same_search(project, settings):
    """Refuses to resume a search that was started with other settings."""
    previous = read_json(os.path.join(project, _ARGS_FILE))
    if previous is None or previous == settings:
        return
    diff = {
        key: (previous.get(key), value)
        for key, value in settings.items()
        if previous.get(key) != value
    }
    raise UsageError(
        f"the search in {project} was started with other settings (earlier, "
        f"now): {diff}. Pass --overwrite to start afresh, or another "
        "--project-name."
    )


def _split(text, flag):
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"{flag} needs at least one value. Received: {text!r}")
    return items


def _floats(text, flag):
    try:
        return [float(item) for item in _split(text, flag)]
    except ValueError as error:
        raise ValueError(f"{flag} expects comma-separated numbers: {error}") from error


def _last_line(message):
    lines = [line for line in (message or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"
