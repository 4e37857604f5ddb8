"""`keras-lth tune`: search for the best ticket of LeNet-300-100 with keras-tuner.

This module imports keras-tuner only when `run_cli` runs, so that the
`keras-lth` command can add the `tune` arguments without it. The public
names are `keras_lth.tuner.add_cli_arguments` and `keras_lth.tuner.run_cli`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

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
    preset) on scikit-learn's digits, 6 trials over the prune rate (0.2, 0.4)
    and the rewind point (init, end of epoch 1), each trial pruning to 20% of
    the weights with 2 epochs per round.
    """
    from keras_lth.datasets import NAMES

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
        help="comma-separated pruning strategies: layerwise, global, random "
        "(default: layerwise)",
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
        choices=NAMES,
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
        default=1,
        help="0: summary only; 1: trials and rounds (default); 2: every epoch",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Runs `keras-lth tune` with parsed `args`; returns the exit code.

    Prints the best trial's hyperparameters and score, the test accuracy of
    its ticket, and where the ticket was saved (`keras_lth.save_model`).
    Returns 0, or 1 if keras-tuner is missing or no trial completed, or 2
    for settings that do not fit the search being resumed.
    """
    try:
        from keras_lth import tuner as lth_tuner
    except ImportError as e:
        print(f"keras-lth tune: error: {e}", file=sys.stderr)
        return 1
    import keras

    import keras_lth
    from keras_lth import datasets
    from keras_lth.models import get_preset

    try:
        space = {
            "prune_rate": _floats(args.prune_rates, "--prune-rates"),
            "rewind": _rewinds(args.rewinds),
            "strategy": _strings(args.strategies, "--strategies"),
        }
        learning_rates = _floats(args.learning_rates, "--learning-rates")
        if args.max_trials < 1 or args.epochs_per_round < 1 or args.batch_size < 1:
            raise ValueError(
                "--max-trials, --epochs-per-round and --batch-size must be >= 1."
            )
    except ValueError as e:
        print(f"keras-lth tune: error: {e}", file=sys.stderr)
        return 2

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
    except (TypeError, ValueError) as e:
        print(f"keras-lth tune: error: {e}", file=sys.stderr)
        return 2

    settings = {key: getattr(args, key) for key in _SEARCH_KEYS}
    if not args.overwrite:
        previous = _read_json(os.path.join(project, _ARGS_FILE))
        if previous is not None and previous != settings:
            diff = {
                k: (previous.get(k), v)
                for k, v in settings.items()
                if previous.get(k) != v
            }
            print(
                f"keras-lth tune: error: the search in {project} was started "
                f"with other settings (earlier, now): {diff}. Pass --overwrite "
                "to start afresh, or another --project-name.",
                file=sys.stderr,
            )
            return 2

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
    except (ImportError, ValueError) as e:
        print(f"keras-lth tune: error: {e}", file=sys.stderr)
        return 2
    _write_json(os.path.join(project, _ARGS_FILE), settings)
    print(f"Search: {args.tuner}, up to {args.max_trials} trials in {project}")
    print(f"Data: {data.note}")
    start = time.perf_counter()
    search_kwargs = {"verbose": 0} if args.verbose == 0 else {}
    tuner.search(
        *data.train,
        validation_data=data.validation,
        batch_size=args.batch_size,
        **search_kwargs,
    )
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
            "keras-lth tune: error: no trial completed, so there is no ticket.",
            file=sys.stderr,
        )
        return 1

    best = tuner.oracle.get_best_trials(1)[0]
    ticket = lth_tuner.best_ticket(tuner)
    output = args.output or os.path.join(project, "best_ticket.keras")
    keras_lth.save_model(ticket, output)
    plain = keras_lth.strip_masks(ticket)
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
        f"Final ticket: {1.0 - keras_lth.sparsity(ticket)['global']:.2%} of "
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


def _split(text, flag):
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"{flag} needs at least one value. Received: {text!r}")
    return items


def _strings(text, flag):
    return _split(text, flag)


def _floats(text, flag):
    try:
        return [float(item) for item in _split(text, flag)]
    except ValueError as e:
        raise ValueError(f"{flag} expects comma-separated numbers: {e}") from e


def _rewinds(text):
    return [int(item) if item.isdigit() else item for item in _split(text, "--rewinds")]


def _last_line(message):
    lines = [line for line in (message or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def _read_json(path):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_json(path, value):
    from keras_lth.saving import atomic_write_text

    atomic_write_text(path, json.dumps(value, indent=2) + "\n")
