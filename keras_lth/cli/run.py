"""`keras-lth run`: IMP and its control runs, written into one run directory.

A run is a list of stages (`_settings.Stage`), each one `LotteryTicket` fit
with its own results file: `imp`, then the controls. As in open_lth, a stage
whose results file exists is finished and skipped; an unfinished one keeps a
checkpoint in `checkpoints/<stage>/`, so `--resume` continues it from its
last epoch. The run holds the run directory's lock while it writes there
(`_run_dir.RunDirLock`), and writes every file atomically
(`keras_lth.saving`).
"""

import datetime
import json
import math
import pathlib
import platform
import sys

import keras

import keras_lth
from keras_lth import datasets
from keras_lth import models
from keras_lth.callbacks import LotteryTicket
from keras_lth.callbacks.checkpoint import CHECKPOINT_NAME
from keras_lth.callbacks.rewind_state import check_step_rewind
from keras_lth.cli._common import UsageError
from keras_lth.cli._common import describe
from keras_lth.cli._common import has_module
from keras_lth.cli._common import native_logs_filtered
from keras_lth.cli._common import read_json
from keras_lth.cli._run_dir import EXPORT_REPORT_FILE
from keras_lth.cli._run_dir import RUN_FILE
from keras_lth.cli._run_dir import RUN_FILE_VERSION
from keras_lth.cli._run_dir import TEST_FILE
from keras_lth.cli._run_dir import TFLITE_FILE
from keras_lth.cli._run_dir import TICKET_FILE
from keras_lth.cli._run_dir import RunDirLock
from keras_lth.cli._run_dir import create_run_dir
from keras_lth.cli._run_dir import is_occupied
from keras_lth.cli._run_dir import read_run_file
from keras_lth.cli._run_dir import refuse_if_in_use
from keras_lth.cli._run_dir import refuse_if_occupied
from keras_lth.cli._settings import CONTROLS
from keras_lth.cli._settings import DEFAULT_CONTROLS
from keras_lth.cli._settings import DEFAULT_EPOCHS_PER_ROUND
from keras_lth.cli._settings import DEFAULT_MODEL
from keras_lth.cli._settings import DEFAULT_ROUNDS
from keras_lth.cli._settings import DEFAULT_SEED
from keras_lth.cli._settings import SETTING_FLAGS
from keras_lth.cli._settings import show_setting
from keras_lth.cli._settings import stages
from keras_lth.cli.report import print_report
from keras_lth.masking import prunable_layers
from keras_lth.masking import sparsity
from keras_lth.rewind import Rewind
from keras_lth.saving import atomic_write_text
from keras_lth.saving import save_model

__all__ = ["run"]

#: Samples the LiteRT export is verified on (from the test set).
_EXPORT_SAMPLES = 32


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
    saved = _open_run_dir(args, run_dir, lock)
    settings = _settings(args, saved, run_dir)
    export = _export_choice(args.export)
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
            model = _run_stage(stage, index, len(run_stages), settings, data, run_dir)
            if stage.name == "imp" and export["on"]:
                export_failed = not _export(model, run_dir, data, args.verbose)
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
    if strategy == "global":
        # One threshold for all layers: only "never prune" (0) rates apply.
        layer_rates = {name: rate for name, rate in layer_rates.items() if rate == 0}
    layer_rates.update(given.get("layer_rates", {}))
    settings = {
        "model": model,
        "dataset": given.get("dataset", "mnist" if "data_path" in given else "digits"),
        "data_path": given.get("data_path"),
        "batch_size": given.get("batch_size", preset.batch_size),
        "rounds": given.get("rounds", DEFAULT_ROUNDS),
        "epochs_per_round": given.get("epochs_per_round", DEFAULT_EPOCHS_PER_ROUND),
        "prune_rate": given.get("prune_rate", preset.prune_rate),
        "layer_rates": layer_rates,
        "strategy": strategy,
        "rewind": given.get("rewind", "init"),
        "controls": given.get("controls", list(DEFAULT_CONTROLS)),
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
            value = _parse_controls(value)
        elif key == "layer_rates":
            value = _parse_layer_rates(value)
        given[key] = value
    return given


def _parse_controls(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    choices = [*CONTROLS, "none"]
    unknown = [name for name in names if name not in choices]
    if not names or unknown:
        raise UsageError(
            f"--controls {text!r}: expected a comma-separated list of "
            f"{', '.join(choices)}"
        )
    if "none" in names:
        if len(names) > 1:
            raise UsageError(f"--controls {text!r}: 'none' cannot be combined")
        return []
    return list(dict.fromkeys(names))  # Unique, in order.


def _parse_layer_rates(items):
    rates = {}
    for item in items:
        name, sep, rate = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            rates[name.strip()] = float(rate)
        except ValueError:
            raise UsageError(
                f"--layer-rate {item!r}: expected LAYER=RATE, such as output=0.1"
            ) from None
    return rates


def _check_settings(settings):
    """Raises `UsageError` for settings `LotteryTicket` would refuse."""
    for stage in stages(settings):
        clash = all(settings[key] == value for key, value in stage.changes.items())
        if stage.name != "imp" and clash:
            changes = ", ".join(f"{k}={v!r}" for k, v in stage.changes.items())
            raise UsageError(
                f"--controls {stage.name} would repeat the IMP run, which "
                f"already has {changes}; choose another control or none"
            )
        try:
            _make_ticket(stage, settings)
        except (ValueError, TypeError) as error:
            raise UsageError(describe(error)) from error


def _make_ticket(stage, settings, run_dir=None):
    options = {
        "prune_rate": settings["prune_rate"],
        "strategy": settings["strategy"],
        "layer_rates": settings["layer_rates"],
        "rewind": settings["rewind"],
        **stage.changes,
    }
    if run_dir is not None:
        options["checkpoint_dir"] = str(run_dir / "checkpoints" / stage.name)
        if has_module("tensorboard"):
            options["log_dir"] = str(run_dir / "tensorboard" / stage.name)
    return LotteryTicket(
        settings["rounds"],
        settings["epochs_per_round"],
        seed=settings["seed"],
        verbose=1,
        **options,
    )


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
            {
                "name": s.name,
                "label": s.label,
                "changes": s.changes,
                "results": s.results_json,
            }
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
            "monitor": "val_loss",
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


def _run_stage(stage, index, count, settings, data, run_dir):
    """Runs one stage, or skips it if its results exist. Returns the model."""
    done = run_dir / stage.results_json
    header = f"\n== [{index + 1}/{count}] {stage.title}"
    if done.exists():
        print(f"{header}: finished earlier ({done}), skipped ==", flush=True)
        return None
    ticket = _make_ticket(stage, settings, run_dir)
    epochs = "epoch" if ticket.epochs_per_round == 1 else "epochs"
    print(
        f"{header}: {settings['model']} on {settings['dataset']}, "
        f"{ticket.rounds} rounds x {ticket.epochs_per_round} {epochs}, "
        f"prune rate {ticket.prune_rate} ({ticket.strategy}"
        f"{_layer_rates_text(ticket.layer_rates)}), rewind={ticket.rewind!r}, "
        f"seed {ticket.seed} ==",
        flush=True,
    )
    checkpoint = pathlib.Path(ticket.checkpoint_dir) / CHECKPOINT_NAME
    if checkpoint.exists():
        print(f"Continuing from the checkpoint {checkpoint}", flush=True)
    model = _build_model(settings, data)
    model.fit(
        *data.train,
        validation_data=data.validation,
        batch_size=settings["batch_size"],
        epochs=ticket.total_epochs,
        callbacks=[ticket],
        verbose=2,
    )
    test = model.evaluate(
        *data.test, batch_size=settings["batch_size"], verbose=0, return_dict=True
    )
    tests = read_json(run_dir / TEST_FILE) or {}
    tests[stage.name] = {
        **{k: float(v) for k, v in test.items()},
        "weights_remaining": 1.0 - sparsity(model)["global"],
    }
    atomic_write_text(run_dir / TEST_FILE, json.dumps(tests, indent=2) + "\n")
    if stage.name == "imp":
        save_model(model, run_dir / TICKET_FILE)
    ticket.save_results_csv(run_dir / stage.results_csv)
    # Last: the results JSON marks the stage finished.
    ticket.save_results_json(done)
    return model


def _layer_rates_text(layer_rates):
    if not layer_rates:
        return ""
    return ", " + ", ".join(f"{k} {v}" for k, v in layer_rates.items())


# ------------------------------------------------------------------ export


def _export_choice(requested):
    """`{"on": bool, "note": str or None}`; a `UsageError` if --export can't."""
    if requested is False:
        return {"on": False, "note": None}
    missing = []
    backend = keras.backend.backend()
    if backend != "tensorflow":
        missing.append(f"the Keras backend is {backend}, not tensorflow")
    if not has_module("ai_edge_litert"):
        missing.append("ai_edge_litert is not installed (pip install ai-edge-litert)")
    if missing and requested:
        raise UsageError(f"--export: {'; '.join(missing)}")
    if missing:
        return {
            "on": False,
            "note": f"LiteRT export off: {'; '.join(missing)} (--no-export hides "
            "this note).",
        }
    return {"on": True, "note": None}


def _export(model, run_dir, data, show_logs):
    """Exports the final ticket to LiteRT. Returns False if that failed."""
    tflite, text = run_dir / TFLITE_FILE, run_dir / EXPORT_REPORT_FILE
    print("\n== LiteRT export of the final ticket ==", flush=True)
    if tflite.exists() and text.exists():
        print(f"Done earlier: {tflite}, skipped.")
        return True
    try:
        if model is None:
            model = keras.models.load_model(run_dir / TICKET_FILE)
        with native_logs_filtered(show_logs=show_logs):  # LiteRT's INFO lines.
            report = keras_lth.export_litert(
                model, tflite, representative_data=data.test[0][:_EXPORT_SAMPLES]
            )
    except Exception as error:  # An export problem must not lose the run.
        print(f"keras-lth: LiteRT export failed: {describe(error)}", file=sys.stderr)
        return False
    atomic_write_text(text, f"{report}\n")
    print(report, flush=True)
    return True


def _optional_notes(export):
    notes = []
    if not has_module("tensorboard"):
        notes.append(
            "No TensorBoard logs: the tensorboard package is not installed "
            "(pip install tensorboard)."
        )
    if export["note"]:
        notes.append(export["note"])
    return notes
