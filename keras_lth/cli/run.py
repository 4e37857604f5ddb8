"""`keras-lth run`: IMP and the paper's controls, written into one run directory.

A run is a list of stages (`_settings.Stage`), each with its own results
file: `imp`, one `LotteryTicket` fit that also saves the levels the controls
branch off (`keras_lth.branches.save_level`), then each control, trained
once from every level (`keras_lth.branches.run_branches`). As in open_lth, a
stage or a branch whose results file exists is finished and skipped; an
unfinished one keeps a checkpoint in `checkpoints/imp/` or
`checkpoints/<control>/<level>/`, so `--resume` continues it from its last
epoch. The run holds the run directory's lock while it writes there
(`_run_dir.RunDirLock`), and writes every file atomically
(`keras_lth.saving`).
"""

import datetime
import json
import logging
import math
import pathlib
import platform
import sys

import keras

import keras_lth
from keras_lth import datasets
from keras_lth import models
from keras_lth.branches import level_rounds
from keras_lth.branches import read_branches
from keras_lth.branches import run_branches
from keras_lth.branches import save_level
from keras_lth.callbacks import LotteryTicket
from keras_lth.callbacks.checkpoint import CHECKPOINT_NAME
from keras_lth.callbacks.rewind_state import check_step_rewind
from keras_lth.cli._common import UsageError
from keras_lth.cli._common import describe
from keras_lth.cli._common import has_module
from keras_lth.cli._export import export_choice
from keras_lth.cli._export import export_ticket
from keras_lth.cli._run_dir import RUN_FILE
from keras_lth.cli._run_dir import RUN_FILE_VERSION
from keras_lth.cli._run_dir import TICKET_FILE
from keras_lth.cli._run_dir import RunDirLock
from keras_lth.cli._run_dir import create_run_dir
from keras_lth.cli._run_dir import is_occupied
from keras_lth.cli._run_dir import read_run_file
from keras_lth.cli._run_dir import refuse_if_in_use
from keras_lth.cli._run_dir import refuse_if_occupied
from keras_lth.cli._settings import DEFAULT_CONTROL_LEVELS
from keras_lth.cli._settings import DEFAULT_CONTROLS
from keras_lth.cli._settings import DEFAULT_EPOCHS_PER_ROUND
from keras_lth.cli._settings import DEFAULT_MODEL
from keras_lth.cli._settings import DEFAULT_ROUNDS
from keras_lth.cli._settings import DEFAULT_SEED
from keras_lth.cli._settings import SETTING_FLAGS
from keras_lth.cli._settings import default_monitor
from keras_lth.cli._settings import parse_control_levels
from keras_lth.cli._settings import parse_controls
from keras_lth.cli._settings import parse_layer_rates
from keras_lth.cli._settings import show_setting
from keras_lth.cli._settings import stages
from keras_lth.cli.report import print_report
from keras_lth.masking import prunable_layers
from keras_lth.pruning import GLOBAL_STRATEGIES
from keras_lth.results import save_results_csv
from keras_lth.results import save_results_json
from keras_lth.rewind import Rewind
from keras_lth.saving import atomic_write_text
from keras_lth.saving import save_model

__all__ = ["run"]


def run(args):
    """Runs `keras-lth run` with parsed `args`; returns the exit code.

    Returns:
        0, or 1 if the LiteRT export of the finished run failed, or 130 if
        interrupted (the run can be resumed).

    Raises:
        UsageError: For bad settings, unreadable data, or a run directory
            that exists, is in use, or cannot be written.
    """
    run_dir = _run_dir_path(args)
    lock = RunDirLock(run_dir)
    try:
        return _run(args, run_dir, lock)
    finally:
        lock.release()


def _run(args, run_dir, lock):
    if not args.verbose:
        # Each branch builds a model, so TensorFlow traces again, as it should.
        logging.getLogger("tensorflow").addFilter(_not_a_retracing_warning)
    saved = _open_run_dir(args, run_dir, lock)
    settings = _settings(args, saved, run_dir)
    export = export_choice(args.export)
    data = _load_data(settings)
    preset = models.get_preset(settings["model"])
    _check_model(settings, data)
    run_stages = stages(settings)

    if saved is None:
        create_run_dir(run_dir, lock)
        _write_run_file(run_dir, settings, data, preset, run_stages, args.argv)
    else:
        print(f"Resuming {run_dir} (settings from {run_dir / RUN_FILE})")
    print(
        f"{settings['model']} on {settings['dataset']} ({data.source}): "
        f"{len(data.train[0]):,} train, {len(data.validation[0]):,} validation, "
        f"{len(data.test[0]):,} test examples."
    )
    if data.note:
        print(data.note)
    for note in _optional_notes(export):
        print(note)

    resume = f"keras-lth run --output {run_dir} --resume"
    export_failed = False
    try:
        for index, stage in enumerate(run_stages):
            header = f"\n== [{index + 1}/{len(run_stages)}] {stage.title}"
            if stage.name != "imp":
                _run_control(stage, header, settings, data, run_dir)
                continue
            model = _run_imp(stage, header, settings, data, run_dir)
            if export["on"]:
                export_failed = not export_ticket(model, run_dir, data, args.verbose)
    except KeyboardInterrupt:
        print(f"\nkeras-lth: interrupted. Continue with: {resume}", file=sys.stderr)
        return 130
    except OSError as error:  # A full disk, say: what was saved resumes.
        raise UsageError(
            f"{describe(error)}; once fixed, continue with: {resume}"
        ) from error
    print()
    print_report(run_dir, plot=True)
    return 1 if export_failed else 0


def _not_a_retracing_warning(record):
    return "triggered tf.function retracing" not in record.getMessage()


def _run_dir_path(args):
    if args.output is not None:
        return pathlib.Path(args.output)
    if args.resume:
        raise UsageError("--resume needs --output RUN_DIR, the run to continue")
    model = args.model or DEFAULT_MODEL
    dataset = args.dataset or ("mnist" if args.data_path else "digits")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("runs") / f"{model}-{dataset}-{stamp}"


def _open_run_dir(args, run_dir, lock):
    """The saved `run.json` of a run to resume (locked), or None for a new run.

    A new run only checks the folder here; `create_run_dir` creates and
    locks it once the settings, the data and the model have been checked.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--output {run_dir} is a file, not a directory")
    occupied = is_occupied(run_dir)
    if occupied:
        refuse_if_in_use(run_dir)
    if not args.resume:
        refuse_if_occupied(run_dir)
        return None
    if not occupied:
        print(f"Nothing to resume in {run_dir}: starting a new run there.")
        return None
    saved = read_run_file(run_dir)
    lock.acquire()
    return saved


def _settings(args, saved, run_dir):
    """The run's settings: the flags given, over run.json or the defaults."""
    given = _given_settings(args)
    if saved is not None:
        settings = dict(saved["settings"])
        differences = []
        for key, value in given.items():
            if key == "layer_rates":
                value = {**settings["layer_rates"], **value}
            if value != settings[key]:
                differences.append(
                    f"{SETTING_FLAGS[key]} {show_setting(key, value)} (the run "
                    f"has {show_setting(key, settings[key])})"
                )
        if differences:
            raise UsageError(
                f"--resume: {'; '.join(differences)} differ from "
                f"{run_dir / RUN_FILE}; leave them out to continue the run as "
                "it was set up, or use another --output"
            )
        return settings

    model = given.get("model", DEFAULT_MODEL)
    preset = models.get_preset(model)
    strategy = given.get("strategy", preset.strategy)
    layer_rates = dict(preset.layer_rates)
    if strategy in GLOBAL_STRATEGIES:
        # One threshold for all layers: only "never prune" (0) rates apply.
        layer_rates = {name: rate for name, rate in layer_rates.items() if rate == 0}
    granularity = given.get("granularity", "weight")
    if granularity == "unit" and "output" in layer_rates:
        # Its units are the classes: `LotteryTicket` keeps them by default.
        layer_rates["output"] = 0.0
    layer_rates.update(given.get("layer_rates", {}))
    dataset = given.get("dataset", "mnist" if "data_path" in given else "digits")
    settings = {
        "model": model,
        "dataset": dataset,
        "data_path": given.get("data_path"),
        "batch_size": given.get("batch_size", preset.batch_size),
        "rounds": given.get("rounds", DEFAULT_ROUNDS),
        "epochs_per_round": given.get("epochs_per_round", DEFAULT_EPOCHS_PER_ROUND),
        "prune_rate": given.get("prune_rate", preset.prune_rate),
        "layer_rates": layer_rates,
        "strategy": strategy,
        "granularity": granularity,
        "refill": given.get("refill", False),
        "rewind": given.get("rewind", "init"),
        "monitor": given.get("monitor", default_monitor(dataset)),
        "controls": given.get("controls", list(DEFAULT_CONTROLS)),
        "control_levels": given.get("control_levels", list(DEFAULT_CONTROL_LEVELS)),
        "seed": given.get("seed", DEFAULT_SEED),
    }
    _check_settings(settings)
    return settings


def _given_settings(args):
    """The settings given on the command line, normalized as run.json has them."""
    given = {}
    for key in SETTING_FLAGS:
        value = getattr(args, key)
        if value is None:
            continue
        if key == "data_path":
            value = str(pathlib.Path(value).expanduser().resolve())
        elif key == "rewind":
            try:
                value = Rewind.parse(value).value
            except ValueError as error:
                raise UsageError(f"--rewind {value!r}: {describe(error)}") from None
        elif key == "controls":
            value = parse_controls(value)
        elif key == "control_levels":
            value = parse_control_levels(value)
        elif key == "layer_rates":
            value = parse_layer_rates(value)
        given[key] = value
    return given


def _check_settings(settings):
    """Raises `UsageError` for settings `LotteryTicket` would refuse."""
    try:
        _imp_ticket(settings)
    except (ValueError, TypeError) as error:
        raise UsageError(describe(error)) from error


def _imp_ticket(settings, run_dir=None, test_data=None):
    return LotteryTicket(
        settings["rounds"],
        settings["epochs_per_round"],
        prune_rate=settings["prune_rate"],
        strategy=settings["strategy"],
        layer_rates=settings["layer_rates"],
        granularity=settings["granularity"],
        refill=settings["refill"],
        rewind=settings["rewind"],
        monitor=settings["monitor"],
        test_data=test_data,
        seed=settings["seed"],
        verbose=1,
        **({} if run_dir is None else _folders(run_dir, "imp")),
    )


def _folders(run_dir, name):
    """The `LotteryTicket` folders of stage or branch `name` (`reinit/round_...`).

    Its `SparsitySummaries` get a folder of their own, `sparsity/`, beside
    the epoch curves of `keras.callbacks.TensorBoard` (see `_fit`).
    """
    folders = {"checkpoint_dir": str(run_dir / "checkpoints" / name)}
    if has_module("tensorboard"):
        folders["log_dir"] = str(run_dir / "tensorboard" / name / "sparsity")
    return folders


def _load_data(settings):
    name, path = settings["dataset"], settings["data_path"]
    flatten = settings["model"] == "lenet_300_100"
    try:
        # The split's seed stays at 0: runs with other --seed see the same data.
        return datasets.load(name, path=path, flatten=flatten)
    except (ValueError, TypeError, OSError, RuntimeError, ImportError) as error:
        where = f" from {path}" if path else ""
        raise UsageError(
            f"cannot load the {name} data{where}: {describe(error)}"
        ) from error


def _check_model(settings, data):
    """Builds the model once, to refuse what would fail later, before training."""
    try:
        model = _build_model(settings, data)
    except (ValueError, TypeError) as error:
        raise UsageError(
            f"--model {settings['model']} does not fit {settings['dataset']} "
            f"(inputs of shape {data.input_shape}): {describe(error)}"
        ) from error
    names = {layer.name for layer in prunable_layers(model)}
    unknown = sorted(set(settings["layer_rates"]) - names)
    if unknown:
        raise UsageError(
            f"--layer-rate names layers that {settings['model']} does not have: "
            f"{', '.join(unknown)}; its prunable layers: {', '.join(sorted(names))}"
        )
    try:  # The check `fit` would make, before any training.
        check_step_rewind(
            Rewind.parse(settings["rewind"]),
            steps_per_epoch=math.ceil(len(data.train[0]) / settings["batch_size"]),
            epochs_per_round=settings["epochs_per_round"],
        )
    except ValueError as error:
        raise UsageError(f"--rewind: {describe(error)}") from error


def _build_model(settings, data):
    preset = models.get_preset(settings["model"])
    # The same initial weights for IMP and every control.
    keras.utils.set_random_seed(settings["seed"])
    model = preset.build_model(
        input_shape=data.input_shape, num_classes=data.num_classes
    )
    model.compile(
        optimizer=preset.make_optimizer(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _write_run_file(run_dir, settings, data, preset, run_stages, argv):
    content = {
        "version": RUN_FILE_VERSION,
        "settings": settings,
        "stages": [
            {"name": s.name, "label": s.label, "results": s.results_json}
            for s in run_stages
        ],
        "training": {
            "optimizer": preset.optimizer,
            "learning_rate": preset.learning_rate,
            "momentum": preset.momentum,
            "weight_decay": preset.weight_decay,
            "lr_boundaries": list(preset.lr_boundaries),
            "warmup_steps": preset.warmup_steps,
            "loss": "sparse categorical crossentropy on logits",
            "test": "each round's weights at its early-stopping epoch",
            "controls": "each trains once off each level, as long as a round",
        },
        "data": {
            "source": data.source,
            "note": data.note,
            "train": len(data.train[0]),
            "validation": len(data.validation[0]),
            "test": len(data.test[0]),
            "input_shape": list(data.input_shape),
            "num_classes": data.num_classes,
        },
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": ["keras-lth", *argv],
        "versions": {
            "keras_lth": keras_lth.__version__,
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "python": platform.python_version(),
        },
    }
    atomic_write_text(run_dir / RUN_FILE, json.dumps(content, indent=2) + "\n")


def _run_imp(stage, header, settings, data, run_dir):
    """Runs IMP, or skips it if its results exist. Returns the final model."""
    done = run_dir / stage.results_json
    if done.exists():
        print(f"{header}: finished earlier ({done}), skipped ==", flush=True)
        return None
    ticket = _imp_ticket(settings, run_dir, data.test)
    epochs = "epoch" if ticket.epochs_per_round == 1 else "epochs"
    print(
        f"{header}: {settings['model']} on {settings['dataset']}, "
        f"{ticket.rounds} rounds x {ticket.epochs_per_round} {epochs}, "
        f"prune rate {ticket.prune_rate} ({ticket.strategy}"
        f"{_layer_rates_text(ticket.layer_rates)}{_unit_text(ticket)}), "
        f"rewind={ticket.rewind!r}, "
        f"early stop at the best {ticket.monitor}, seed {ticket.seed} ==",
        flush=True,
    )
    model = _build_model(settings, data)
    _fit(model, ticket, "imp", settings, data, run_dir)
    save_model(model, run_dir / TICKET_FILE)
    if settings["controls"]:
        _save_levels(ticket, settings["control_levels"], run_dir)
    ticket.save_results_csv(run_dir / stage.results_csv)
    # Last: the results JSON marks the stage finished.
    ticket.save_results_json(done)
    return model


def _save_levels(ticket, control_levels, run_dir):
    """Saves the levels the controls branch off: the rounds nearest the levels."""
    results = ticket.results
    rounds = level_rounds(results, [level / 100 for level in control_levels])
    for round_index in rounds:
        save_level(run_dir, ticket, round_index)
    shown = [_round_text(results[r]) for r in rounds]
    print(f"The controls branch off rounds {', '.join(shown) or '(none)'}.")
    missed = [v for v in control_levels if not level_rounds(results, [v / 100])]
    if missed:
        print(
            f"Levels not reached: {', '.join(f'{v:g}%' for v in missed)} of "
            f"weights remaining (the last round has "
            f"{100 * results[-1]['weights_remaining']:.1f}%); more --rounds "
            "reach them."
        )


def _run_control(stage, header, settings, data, run_dir):
    """Trains the control's missing branches; writes its results files."""
    done = run_dir / stage.results_json
    if done.exists():
        print(f"{header}: finished earlier ({done}), skipped ==", flush=True)
        return
    epochs = settings["epochs_per_round"]
    print(
        f"{header}: {epochs} epoch{'s' if epochs > 1 else ''} from each IMP "
        f"level (seed {settings['seed']}) ==",
        flush=True,
    )
    if str(settings["rewind"]) != "init" and stage.name == "random":
        print(
            f"Note: the random-pruning branches keep the initial weights (θ0), "
            f"not the IMP run's rewind point (--rewind {settings['rewind']})."
        )
    finished = read_branches(run_dir).get(stage.name, [])
    if finished:
        count = len(finished)
        print(f"{count} branch{'es' if count > 1 else ''} finished earlier, skipped.")

    def train(model, name):
        ticket = LotteryTicket(
            1,
            settings["epochs_per_round"],
            monitor=settings["monitor"],
            test_data=data.test,
            seed=settings["seed"],
            verbose=1,
            **_folders(run_dir, name),
        )
        _fit(model, ticket, name, settings, data, run_dir)
        return ticket.results[0]

    found = run_branches(
        run_dir,
        lambda: _build_model(settings, data),
        train,
        controls=(stage.name,),
        seed=settings["seed"],
        log=lambda line: print(line, flush=True),
    )
    rows = found.get(stage.name, [])
    if not rows:
        print("No level to branch off: the IMP run reached none of them.")
    save_results_csv(rows, run_dir / stage.results_csv)
    save_results_json(rows, done)  # Last: marks the stage finished.


def _fit(model, ticket, name, settings, data, run_dir):
    """Trains `model` with `ticket`; TensorBoard's epoch curves if installed."""
    checkpoint = pathlib.Path(ticket.checkpoint_dir) / CHECKPOINT_NAME
    if checkpoint.exists():
        print(f"Continuing from the checkpoint {checkpoint}", flush=True)
    callbacks = [ticket]
    if _has_tensorboard():
        callbacks.append(
            keras.callbacks.TensorBoard(
                log_dir=str(run_dir / "tensorboard" / name),
                update_freq="epoch",
                write_graph=False,
            )
        )
    model.fit(
        *data.train,
        validation_data=data.validation,
        batch_size=settings["batch_size"],
        epochs=ticket.total_epochs,
        callbacks=callbacks,
        verbose=2,
    )


def _has_tensorboard():
    """Whether `keras.callbacks.TensorBoard` can write (it needs TensorFlow)."""
    return has_module("tensorboard") and has_module("tensorflow")


def _round_text(row):
    return f"{row['round']} ({100 * row['weights_remaining']:.1f}%)"


def _unit_text(ticket):
    if ticket.granularity != "unit":
        return ""
    return ", whole units" + (", refilled" if ticket.refill else "")


def _layer_rates_text(layer_rates):
    if not layer_rates:
        return ""
    return ", " + ", ".join(f"{k} {v}" for k, v in layer_rates.items())


def _optional_notes(export):
    notes = []
    if not has_module("tensorboard"):
        notes.append(
            "No TensorBoard logs: the tensorboard package is not installed "
            "(pip install tensorboard)."
        )
    elif not _has_tensorboard():
        notes.append(
            "TensorBoard logs without the loss and accuracy curves: "
            "keras.callbacks.TensorBoard needs TensorFlow (pip install tensorflow)."
        )
    if export["note"]:
        notes.append(export["note"])
    return notes
