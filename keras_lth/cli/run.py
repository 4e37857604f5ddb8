"""`keras-lth run` and `keras-lth report`: the run directory and its stages.

A run is a list of stages, each one `LotteryTicket` fit with its own results
file: `imp`, then the controls. As in open_lth, a stage whose results file
exists is finished and skipped; an unfinished one keeps a checkpoint in
`checkpoints/<stage>/`, so `--resume` continues it from its last epoch.
"""

import dataclasses
import datetime
import importlib.util
import json
import math
import os
import pathlib
import platform
import re
import sys

import keras

import keras_lth
from keras_lth import datasets
from keras_lth import models
from keras_lth import results as results_lib
from keras_lth.callbacks import LotteryTicket
from keras_lth.masking import prunable_layers
from keras_lth.masking import sparsity
from keras_lth.saving import atomic_write_text
from keras_lth.saving import save_model

DEFAULT_MODEL = "lenet_300_100"
DEFAULT_ROUNDS = 8
DEFAULT_EPOCHS_PER_ROUND = 10
DEFAULT_SEED = 0
DEFAULT_CONTROLS = ("reinit",)

#: Control name -> (label in tables and plots, what it changes in IMP).
CONTROLS = {
    "reinit": ("random reinit", {"rewind": "reinit"}),
    "random": ("random pruning", {"strategy": "random"}),
}

#: The settings of a run, as `run.json` holds them, and their flags.
SETTING_FLAGS = {
    "model": "--model",
    "dataset": "--dataset",
    "data_path": "--data-path",
    "batch_size": "--batch-size",
    "rounds": "--rounds",
    "epochs_per_round": "--epochs-per-round",
    "prune_rate": "--prune-rate",
    "layer_rates": "--layer-rate",
    "strategy": "--strategy",
    "rewind": "--rewind",
    "controls": "--controls",
    "seed": "--seed",
}

RUN_FILE = "run.json"
PLOT_FILE = "ticket_curve.png"
TICKET_FILE = "ticket.keras"
TFLITE_FILE = "ticket.tflite"
EXPORT_REPORT_FILE = "ticket_export.txt"
TEST_FILE = "test_metrics.json"
_RUN_FILE_VERSION = 1

#: Samples the LiteRT export is verified on (from the test set).
_EXPORT_SAMPLES = 32


class UsageError(Exception):
    """A bad command line, option value or input: exit code 2, one line."""


@dataclasses.dataclass(frozen=True)
class Stage:
    """One `LotteryTicket` fit of a run: IMP or a control."""

    name: str
    label: str
    changes: dict

    @property
    def results_json(self):
        return "results.json" if self.name == "imp" else f"results_{self.name}.json"

    @property
    def results_csv(self):
        return self.results_json[: -len(".json")] + ".csv"

    @property
    def title(self):
        return "IMP" if self.name == "imp" else f"Control: {self.label}"


def stages(settings):
    """The stages of a run with these settings: IMP, then each control."""
    found = [Stage("imp", "IMP", {})]
    for name in settings["controls"]:
        label, changes = CONTROLS[name]
        found.append(Stage(name, label, changes))
    return found


# --------------------------------------------------------------------- run


def run(args):
    """`keras-lth run`: returns the exit code."""
    run_dir, saved = _open_run_dir(args)
    settings = _settings(args, saved, run_dir)
    export = _export_choice(args.export)
    data = _load_data(settings)
    preset = models.get_preset(settings["model"])
    _check_model(settings, data)
    run_stages = stages(settings)

    if saved is None:
        run_dir.mkdir(parents=True, exist_ok=True)
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

    export_failed = False
    try:
        for index, stage in enumerate(run_stages):
            model = _run_stage(stage, index, len(run_stages), settings, data, run_dir)
            if stage.name == "imp" and export["on"]:
                export_failed = not _export(model, run_dir, data)
    except KeyboardInterrupt:
        print(
            f"\nkeras-lth: interrupted. Continue with: keras-lth run "
            f"--output {run_dir} --resume",
            file=sys.stderr,
        )
        return 130
    print()
    _print_report(run_dir, plot=True)
    return 1 if export_failed else 0


def _open_run_dir(args):
    """The run directory and its saved `run.json` (None for a new run)."""
    if args.output is None:
        if args.resume:
            raise UsageError("--resume needs --output RUN_DIR, the run to continue")
        model = args.model or DEFAULT_MODEL
        dataset = args.dataset or ("mnist" if args.data_path else "digits")
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = pathlib.Path("runs") / f"{model}-{dataset}-{stamp}"
    else:
        run_dir = pathlib.Path(args.output)
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--output {run_dir} is a file, not a directory")
    occupied = run_dir.is_dir() and any(run_dir.iterdir())
    if not args.resume:
        if occupied:
            raise UsageError(
                f"the run directory {run_dir} already exists; use --resume to "
                "continue it, or another --output"
            )
        return run_dir, None
    if not occupied:
        print(f"Nothing to resume in {run_dir}: starting a new run there.")
        return run_dir, None
    return run_dir, read_run_file(run_dir)


def read_run_file(run_dir):
    """The contents of `RUN_DIR/run.json`, checked."""
    path = pathlib.Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise UsageError(
            f"{run_dir} is not a keras-lth run directory: it has no {RUN_FILE}"
        )
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {path}: {error}") from error
    if (
        not isinstance(saved, dict)
        or saved.get("version") != _RUN_FILE_VERSION
        or set(saved.get("settings", {})) != set(SETTING_FLAGS)
    ):
        raise UsageError(
            f"{path} is not a run.json written by this version of keras-lth "
            f"(expected version {_RUN_FILE_VERSION} with the settings "
            f"{sorted(SETTING_FLAGS)})"
        )
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
                    f"{SETTING_FLAGS[key]} {_show(key, value)} (the run has "
                    f"{_show(key, settings[key])})"
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
            value = int(value) if re.fullmatch(r"\d+", value) else value
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
            raise UsageError(_describe(error)) from error


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
        if _has_module("tensorboard"):
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
            f"cannot load the {name} data{where}: {_describe(error)}"
        ) from error


def _check_model(settings, data):
    """Builds the model once, to refuse what would fail later, before training."""
    try:
        model = _build_model(settings, data)
    except (ValueError, TypeError) as error:
        raise UsageError(
            f"--model {settings['model']} does not fit {settings['dataset']} "
            f"(inputs of shape {data.input_shape}): {_describe(error)}"
        ) from error
    names = {layer.name for layer in prunable_layers(model)}
    unknown = sorted(set(settings["layer_rates"]) - names)
    if unknown:
        raise UsageError(
            f"--layer-rate names layers that {settings['model']} does not have: "
            f"{', '.join(unknown)}; its prunable layers: {', '.join(sorted(names))}"
        )
    rewind = settings["rewind"]
    if isinstance(rewind, int):
        steps = math.ceil(len(data.train[0]) / settings["batch_size"])
        if rewind > steps * settings["epochs_per_round"]:
            raise UsageError(
                f"--rewind {rewind} falls after round 0 ends: it runs "
                f"{steps * settings['epochs_per_round']} steps "
                f"({settings['epochs_per_round']} epochs of {steps})"
            )


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
        "version": _RUN_FILE_VERSION,
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
    checkpoint = pathlib.Path(ticket.checkpoint_dir) / "lottery_ticket_state.npz"
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
    tests = _read_json(run_dir / TEST_FILE) or {}
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
    if not _has_module("keras_lth.export"):
        missing.append("keras_lth.export is not installed")
    elif not _has_module("ai_edge_litert"):
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


def _export(model, run_dir, data):
    """Exports the final ticket to LiteRT. Returns False if that failed."""
    tflite, text = run_dir / TFLITE_FILE, run_dir / EXPORT_REPORT_FILE
    print("\n== LiteRT export of the final ticket ==", flush=True)
    if tflite.exists() and text.exists():
        print(f"Done earlier: {tflite}, skipped.")
        return True
    try:
        from keras_lth.export import export_litert

        if model is None:
            model = keras.models.load_model(run_dir / TICKET_FILE)
        report = export_litert(
            model, tflite, representative_data=data.test[0][:_EXPORT_SAMPLES]
        )
    except Exception as error:  # An export problem must not lose the run.
        print(f"keras-lth: LiteRT export failed: {_describe(error)}", file=sys.stderr)
        return False
    atomic_write_text(text, f"{report}\n")
    print(report, flush=True)
    return True


# ------------------------------------------------------------------ report


def report(args):
    """`keras-lth report RUN_DIR`: returns the exit code."""
    _print_report(pathlib.Path(args.run_dir), plot=not args.no_plot)
    return 0


def _print_report(run_dir, *, plot):
    """Prints the tables of a run directory; redraws its plot if `plot`."""
    saved = read_run_file(run_dir)
    tests = _read_json(run_dir / TEST_FILE) or {}
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
            raise UsageError(f"cannot read {path}: {error}") from error
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
    if not _has_module("matplotlib"):
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


# ----------------------------------------------------------------- helpers


def _optional_notes(export):
    notes = []
    if not _has_module("tensorboard"):
        notes.append(
            "No TensorBoard logs: the tensorboard package is not installed "
            "(pip install tensorboard)."
        )
    if export["note"]:
        notes.append(export["note"])
    return notes


def _has_module(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _read_json(path):
    try:
        return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {path}: {error}") from error


def _show(key, value):
    if key == "layer_rates":
        return ",".join(f"{k}={v}" for k, v in value.items()) or "(none)"
    if key == "controls":
        return ",".join(value) or "none"
    return str(value)


def _describe(error):
    """An exception as one line, without Keras' colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    return " ".join(text.split()) or type(error).__name__
