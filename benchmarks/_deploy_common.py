"""The steps `benchmarks/deploy.py` and `benchmarks/deploy_convnets.py` share.

Both benchmarks train tickets with `keras_lth.LotteryTicket`, then write one
LiteRT file per row and measure it. What differs between them (the networks,
the trainings, the rows, the targets) stays in each script and comes in here
as arguments; the steps themselves are these:

* settings: `settings_parser` and `settings_of` (a mode's settings with the
  options given on top), `start_run` (an output folder holds the trainings
  of one set of settings);
* trainings: `train` runs (or resumes) one training that a script's `Plan`
  describes, in `<output>/train/<name>/`, and `run_trainings` runs them all,
  `workers` at a time; `done` and `load_kept` read what they left;
* measuring: `Row` (one LiteRT file), `describe`, `export` (both for
  every row: `export_rows`) and `time_keras`, then `finish_run` writes
  `table.md` and `results.json`.
"""

import argparse
import dataclasses
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable

__all__ = [
    "BATCH",
    "CALIBRATION",
    "Plan",
    "Row",
    "describe",
    "done",
    "environment",
    "export",
    "export_rows",
    "finish_run",
    "int_at_least",
    "load_kept",
    "load_splits",
    "log",
    "one_thread",
    "records",
    "run_trainings",
    "settings_of",
    "settings_parser",
    "start_run",
    "time_keras",
    "train",
]

BATCH = 60  # Training batch size, as the paper's LeNet.
CALIBRATION = 500  # int8 calibration images (100 left an output clipped).


# ------------------------------------------------------------- settings


def int_at_least(minimum):
    """An `argparse` type: an int >= `minimum`."""

    def parse(text):
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}: {text}")
        return int(text)

    return parse


def settings_parser(description, modes):
    """The options both scripts have; each adds its own.

    Args:
        description: The script's one-line description.
        modes: `{"full": settings, "quick": settings}`; the help gives the
            full mode's defaults.
    """
    full = modes["full"]
    parser = argparse.ArgumentParser(description=description)
    add = parser.add_argument
    add("--quick", action="store_true", help="a smoke run on ../mnist")
    add("--output", help=f"output folder (default {full['output']})")
    add("--data-path", dest="data", help="MNIST folder (default: per mode)")
    epochs = f"default {full['epochs']}"
    add("--epochs-per-round", dest="epochs", type=int_at_least(1), help=epochs)
    workers = f"trainings at a time (default {full['workers']})"
    add("--workers", type=int_at_least(1), help=workers)
    runs = f"timed invokes per file (default {full['runs']})"
    add("--runs", type=int_at_least(1), help=runs)
    add("--seed", type=int_at_least(0), default=0)
    return parser


def settings_of(parser, modes, argv=None):
    """The run's settings: the mode's, with the options given on top.

    Also sets `KERAS_BACKEND` to TensorFlow (LiteRT export needs it) and
    quiets TensorFlow's C++ log.
    """
    args = vars(parser.parse_args(argv))
    settings = modes["quick" if args.pop("quick") else "full"]
    settings = {**settings, **{k: v for k, v in args.items() if v is not None}}
    if os.environ.setdefault("KERAS_BACKEND", "tensorflow") != "tensorflow":
        parser.error("LiteRT export needs KERAS_BACKEND=tensorflow.")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return settings


def log(text):
    """Prints `text` with the minutes since the run began (workers too)."""
    began = float(os.environ.setdefault("DEPLOY_BEGAN", str(time.time())))
    print(f"{text} ({(time.time() - began) / 60:.1f} min)", flush=True)


def environment():
    """The versions and CPUs the run measured on, as one line."""
    from importlib.metadata import version

    import keras

    return (
        f"Keras {keras.__version__}, backend {keras.backend.backend()}, TensorFlow "
        f"{version('tensorflow')}, ai-edge-litert {version('ai-edge-litert')}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )


def start_run(settings, keys, title):
    """Starts the clock and returns the output folder, made if needed.

    Exits if the folder holds trainings of other settings (`keys` are those
    the trainings depend on, saved in `settings.json`).
    """
    from keras_lth.saving import atomic_write_text

    os.environ["DEPLOY_BEGAN"] = str(time.time())
    output = pathlib.Path(settings["output"])
    output.mkdir(parents=True, exist_ok=True)
    wanted = {key: settings[key] for key in keys}
    saved = output / "settings.json"
    if saved.exists() and json.loads(saved.read_text()) != wanted:
        sys.exit(f"error: {output} holds a run with other settings: {saved}")
    atomic_write_text(saved, json.dumps(wanted))
    print(f"{title}: {environment()}\n{json.dumps(settings)}", flush=True)
    return output


# ------------------------------------------------------------ trainings


def load_splits(settings):
    """MNIST as 28x28x1 images, the training set cut to `settings["train"]`."""
    import keras_lth as lth

    splits = lth.datasets.load_mnist(settings["data"], flatten=False)
    if settings["train"]:
        x, y = splits.train
        n = settings["train"]
        splits = dataclasses.replace(splits, train=(x[:n], y[:n]))
    return splits


def done(output, name):
    """The `done.json` of a finished training, else None."""
    path = pathlib.Path(output) / "train" / name / "done.json"
    return json.loads(path.read_text()) if path.exists() else None


def load_kept(output, name, index=-1):
    """The plain Keras model of a finished training's kept round `index`."""
    import keras

    kept = list(done(output, name)["kept"].values())
    return keras.saving.load_model(pathlib.Path(output) / "train" / name / kept[index])


@dataclasses.dataclass(frozen=True)
class Plan:
    """One training, as a script plans it for `train`.

    Attributes:
        rounds: `LotteryTicket` rounds (1: one training, nothing pruned).
        keep: The rounds whose epochs are saved; `done.json` names the
            file of each one's epoch of least validation loss.
        options: More `LotteryTicket` keyword arguments (`granularity`,
            `layer_rates`, `block`...).
        make: Returns the compiled, masked model; called once the data is
            loaded, so it sets its own seed.
        note: Appended to the first log line.
        test_data: Whether the ticket scores the test set each round; the
            log then shows that accuracy, else the validation accuracy of
            the round's best epoch.
        summary: Optional `path of the last kept model -> (fields, note)`:
            more fields of `done.json` and the end of the last log line.
    """

    rounds: int
    keep: tuple
    options: dict
    make: Callable
    note: str = ""
    test_data: bool = False
    summary: Callable | None = None


def train(name, settings, output, plan):
    """Runs (or resumes) one training, then writes its `done.json`.

    Batches of `BATCH` from `lth.datasets.ShuffledBatches` (resumed at the
    checkpoint's epoch), `settings["epochs"]` epochs per round, every epoch
    of the kept rounds saved (masks stripped) before the ticket prunes.

    Args:
        name: The training's name, its folder under `<output>/train/`.
        settings: The run's settings (`data`, `train`, `epochs`, `seed`).
        output: The output folder.
        plan: `plan(name, settings, output) -> Plan`.
    """
    import keras

    import keras_lth as lth
    from keras_lth.callbacks import checkpoint
    from keras_lth.saving import atomic_write_text

    if done(output, name):
        return
    folder, began = pathlib.Path(output) / "train" / name, time.perf_counter()
    task = plan(name, settings, output)
    rounds, keep = task.rounds, task.keep
    epochs, seed = settings["epochs"], settings["seed"]
    splits = load_splits(settings)
    model = task.make()
    state = folder / "imp" / checkpoint.CHECKPOINT_NAME
    start = checkpoint.read_state(state)[1].epochs_done if state.exists() else 0
    options = dict(seed=seed, verbose=0, **task.options)
    if task.test_data:
        options["test_data"] = splits.test
    ticket = lth.LotteryTicket(rounds, epochs, checkpoint_dir=folder / "imp", **options)

    def line(row):
        if task.test_data:
            accuracy = f"test acc {100 * row['test']['accuracy']:.2f}%"
        else:
            accuracy = f"val acc {100 * row['best']['val_accuracy']:.2f}%"
        return (
            f"{name}: round {row['round'] + 1}/{rounds}, "
            f"{100 * row['weights_remaining']:.1f}% of weights left, "
            f"{accuracy} (epoch {row['best_epoch']})"
        )

    class Recorder(keras.callbacks.Callback):
        """Keeps every epoch of the kept rounds (it runs before the ticket
        prunes and rewinds) and logs each round."""

        def on_epoch_end(self, epoch, logs=None):
            r, e = divmod(epoch, epochs)
            if r in keep:
                path = folder / f"round_{r:02d}_epoch_{e + 1:02d}.keras"
                lth.save_model(lth.strip_masks(self.model), path)

        def on_epoch_begin(self, epoch, logs=None):
            if ticket.results and epoch % epochs == 0 and epoch > start:
                log("  " + line(ticket.results[-1]))

    resumed = f", resumed at epoch {start}" if start else ""
    log(f"{name}: training {rounds} round(s) x {epochs} epochs{task.note}{resumed}")
    steps = math.ceil(len(splits.train[1]) / BATCH)
    model.fit(
        lth.datasets.ShuffledBatches(
            *splits.train, batch_size=BATCH, seed=seed, start_step=start * steps
        ),
        steps_per_epoch=steps,
        epochs=ticket.total_epochs,
        validation_data=splits.validation,
        validation_batch_size=1000,
        callbacks=[Recorder(), ticket],
        shuffle=False,
        verbose=0,
    )
    best = {r: ticket.results[r]["best_epoch"] for r in keep}
    kept = {r: f"round_{r:02d}_epoch_{e:02d}.keras" for r, e in best.items()}
    fields, note = {}, ""
    if task.summary is not None:
        fields, note = task.summary(folder / kept[keep[-1]])
    result = {
        "rounds": ticket.results,
        "kept": kept,
        **fields,
        "minutes": (time.perf_counter() - began) / 60,
    }
    atomic_write_text(folder / "done.json", json.dumps(result, indent=1))
    log(f"{line(ticket.results[-1])}; done{note}")


def one_thread():
    """Limits TensorFlow to one thread (a worker process's initializer)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def run_trainings(settings, output, names, train_one, after):
    """Runs the trainings not done yet, `workers` at a time, in order.

    Args:
        settings: The run's settings (`workers`).
        output: The output folder.
        names: The training names, in the order to start them.
        train_one: `train_one(name, settings, output)`, a module-level
            function (worker processes are spawned and receive it pickled).
        after: `after(name)`: the training that must be done before `name`
            starts, or None.
    """
    waiting = [name for name in names if not done(output, name)]
    if settings["workers"] == 1 or len(waiting) <= 1:
        for name in waiting:
            train_one(name, settings, output)
        return
    import concurrent.futures as cf
    import multiprocessing

    def ready(name):
        first = after(name)
        return first is None or done(output, first)

    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(
        settings["workers"], mp_context=context, initializer=one_thread
    ) as pool:
        running = set()
        while waiting or running:
            for name in [name for name in waiting if ready(name)]:
                running.add(pool.submit(train_one, name, settings, str(output)))
                waiting.remove(name)
            finished, running = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                future.result()  # A failed training fails the run.


# -------------------------------------------------------------- measuring


@dataclasses.dataclass
class Row:
    """One LiteRT file; `time_and_score` sets the last two fields."""

    label: str
    model: str  # A key of the script's `load_models`.
    quantize: str | None
    sparse: bool  # Whether LiteRT's sparse encoding is asked for.
    shape: str = ""
    weights: int = 0  # Nonzero kernel entries of the Keras model.
    keras_accuracy: float = 0.0
    keras_us: dict = dataclasses.field(default_factory=dict)
    report: object = None
    litert_accuracy: float = 0.0
    median_us: float = 0.0

    @property
    def precision(self):
        return self.quantize or "float32"


def describe(row, model, splits, *, layers, shape, batch_size):
    """Sets the row's Keras test accuracy, shape and nonzero weights.

    Args:
        row: The `Row`.
        model: Its plain Keras model.
        splits: The data; the test split is scored.
        layers: The layers whose kernels count as the row's weights.
        shape: The widths to show, as a string.
        batch_size: `predict`'s batch size.
    """
    import keras
    import numpy as np

    x, y = splits.test
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    row.keras_accuracy = float(np.mean(logits.argmax(axis=1) == y))
    row.shape = shape
    kernels = [keras.ops.convert_to_numpy(layer.kernel) for layer in layers]
    row.weights = int(sum(np.count_nonzero(kernel) for kernel in kernels))


def export(row, model, splits, folder):
    """Writes the row's LiteRT file, or reuses the one written from the same
    weights; `row.report` is its `ExportReport`, as a namespace."""
    import numpy as np

    from keras_lth import export_litert
    from keras_lth.saving import atomic_write_text

    slug = f"{row.model}_{row.precision}"
    path, meta = folder / f"{slug}.tflite", folder / f"{slug}.json"
    checksum = float(sum(np.abs(w).sum() for w in model.get_weights()))
    saved = json.loads(meta.read_text()) if meta.exists() else {}
    if not (path.exists() and np.isclose(saved.get("checksum", -1), checksum)):
        report = export_litert(
            model,
            path,
            quantize=row.quantize,
            representative_data=splits.train[0][:CALIBRATION] if row.quantize else None,
            sample_inputs=splits.test[0][:32],
            sparse=row.sparse,
            latency_runs=0,  # Timed later, every file in one loop.
        )
        saved = {**dataclasses.asdict(report), "checksum": checksum}
        atomic_write_text(meta, json.dumps(saved, indent=1))
    row.report = types.SimpleNamespace(**{**saved, "path": str(path)})


def export_rows(rows, models, splits, folder, describe):
    """Describes each row, then writes (or reuses) its LiteRT file.

    Args:
        rows: The `Row`s.
        models: `{row.model: plain Keras model}`.
        splits: The data (calibration images, test images).
        folder: Where the files go.
        describe: `describe(row, model)`: sets the row's Keras accuracy,
            shape and weights.
    """
    for row in rows:
        describe(row, models[row.model])
        export(row, models[row.model], splits, folder)


def time_keras(rows, models, x, runs):
    """Sets each row's `keras_us`: `{batch: median us}` of `predict_on_batch`.

    Every model is timed at batch 1 (`runs` calls) and 256 (a third as
    many, at least 10), in blocks of 10 calls, the models interleaved.
    """
    keys, medians = list(models), {key: {} for key in models}
    for batch, count in ((1, runs), (256, max(10, runs // 3))):
        inputs, times = x[:batch], {key: [] for key in keys}
        for key in keys:
            models[key].predict_on_batch(inputs)  # Traces the function.
        for index in range(-(-count // 10)):
            for key in keys if index % 2 == 0 else keys[::-1]:
                call = models[key].predict_on_batch
                for _ in range(10):
                    begin = time.perf_counter()
                    call(inputs)
                    times[key].append(time.perf_counter() - begin)
        for key in keys:
            medians[key][batch] = statistics.median(times[key]) * 1e6
    for row in rows:
        row.keras_us = medians[row.model]


# --------------------------------------------------------------- writing


def records(rows, targets):
    """`(rows, targets)` as JSON-ready dicts."""
    found = [{**dataclasses.asdict(r), "report": vars(r.report)} for r in rows]
    checks = [dict(zip(("target", "measured", "met"), t)) for t in targets]
    return found, checks


def finish_run(output, lines, results, *, settings, names, plots):
    """Prints and writes `table.md`, then writes `results.json`.

    Args:
        output: The output folder.
        lines: The report's lines.
        results: The script's own fields of `results.json`; the settings
            and environment come before them, the trainings' `done.json`
            and the run's wall time after.
        settings: The run's settings.
        names: The training names.
        plots: The plots' file names, for the last log line.
    """
    from keras_lth.saving import atomic_write_text

    report = "\n".join(lines)
    print("\n" + report, flush=True)
    atomic_write_text(output / "table.md", report + "\n")
    results = {
        "settings": settings,
        "environment": environment(),
        **results,
        "trainings": {name: done(output, name) for name in names},
        "wall_minutes_this_run": (time.time() - float(os.environ["DEPLOY_BEGAN"])) / 60,
    }
    atomic_write_text(output / "results.json", json.dumps(results, indent=1))
    log(f"Wrote {output}/results.json, table.md and {plots}")
