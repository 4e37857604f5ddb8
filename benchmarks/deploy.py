"""Deploying LeNet-300-100 tickets to LiteRT, with test accuracy in every row.

Trainings: LeNet-300-100 (Gaussian Glorot init, 28x28x1 images through a
`Flatten`) on the full MNIST (`../shared/data/mnist-full`: 55,000 train /
5,000 validation / the official 10,000 test images), Adam 1.2e-3, batch 60,
all from the same initial weights (`--seed`), with one budget: 12 epochs of
917 steps per round (`--epochs-per-round`), keeping the weights of the epoch
of least validation loss. Two at a time (`--workers`, one thread each):

* `imp`: unstructured IMP at the paper's rates (20% of the hidden layers, 10%
  of the output layer per round, rewind to init), 15 rounds (`--rounds`; the
  last at 4.4% of the weights). Its round 0 is the dense network.
* `block4`, `block16`: the same with `block=(1, 4)` and `block=(1, 16)`.
* `unit_<H1>x<H2>`: IMP of whole hidden units (`granularity="unit"`), for
  each shape of `--unit-shapes` (default 64,32 and 48,24): per-layer rates
  whose exact counts reach it in the steps that take fc1 there at about 20%
  a step (7 and 8); the output layer keeps its 10 units. `refill_<shape>`:
  the same with `refill=True` (Chen et al. 2022).
* `control_<shape>`: a dense network of the shrunk unit ticket's exact shape,
  trained from scratch for one round (Liu et al. 2019).

Rows: one LiteRT file each, written by `keras_lth.export_litert` (checked
against its Keras model on 32 test images): dense (float32; int8), the
unstructured ticket (sparse float32; int8) and the same after
`keras_lth.shrink`, the 1x4 block ticket (float32), the 1x16 block ticket
(int8), then per shape the unit ticket and the refilled one after `shrink`,
and the control (float32; int8). int8 is full-integer, calibrated on 500
training images. Columns: test accuracy of the file (and of its Keras
model); bytes; median `invoke` time at batch 1, 1 thread, every file timed
interleaved in one loop by `benchmarks/litert.py`'s `time_and_score`, beside
a call floor; Keras `predict_on_batch` on CPU at batch 1 and 256,
interleaved. Ratios are to the dense model of the same precision. The
targets of issue 19 are checked under the table. Not yet covered: Conv-4 and
ResNet-20, the issue's other two networks.

Resumable: each training lives in `<output>/train/<name>/` (a `LotteryTicket`
checkpoint, then its kept models and `done.json`), each file and its report
in `<output>/litert/`; what exists is skipped. Writes `results.json`,
`table.md` and `deploy.png` (accuracy against latency and size) there.

    python benchmarks/deploy.py            # runs/deploy, about 45 minutes
    python benchmarks/deploy.py --quick    # runs/deploy_quick, on ../mnist
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

from _deploy_report import check_targets
from _deploy_report import plot
from _deploy_report import report_lines
from litert import export_floor
from litert import time_and_score

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
HIDDEN = (300, 100)
CALIBRATION = 500  # int8 calibration images (100 left an output clipped).
MODES = {
    "full": dict(
        data=str(DATA / "mnist-full"), train=None, epochs=12, rounds=15,
        unit_shapes=[[64, 32], [48, 24]], unit_steps=None, runs=3000,
        keras_runs=300, workers=2, output="runs/deploy",
    ),
    "quick": dict(
        data=str(DATA / "mnist"), train=2000, epochs=1, rounds=3,
        unit_shapes=[[64, 32]], unit_steps=2, runs=50, keras_runs=20,
        workers=1, output="runs/deploy_quick",
    ),
}  # fmt: skip
#: What the trainings depend on: an output folder holds one of each.
TRAINING_KEYS = ("data", "train", "epochs", "rounds", "unit_shapes", "unit_steps")
STRUCTURED = {
    "unit": "unit IMP, shrunk",
    "refill": "unit IMP + refill, shrunk",
    "control": "dense from scratch (control)",
}


@dataclasses.dataclass
class Row:
    """One LiteRT file; `time_and_score` sets the last two fields."""

    label: str
    model: str  # A key of `load_models`.
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


def rows_of(settings):
    rows = [
        Row("dense", "dense", None, False),
        Row("dense", "dense", "int8", False),
        Row("IMP unstructured", "imp", None, True),
        Row("IMP unstructured", "imp", "int8", True),
        Row("IMP unstructured, shrunk", "imp_shrunk", None, True),
        Row("block-IMP 1x4", "block4", None, True),
        Row("block-IMP 1x16", "block16", "int8", True),
    ]
    for tag in tags(settings):
        for kind, label in STRUCTURED.items():
            rows += [Row(label, f"{kind}_{tag}", q, False) for q in (None, "int8")]
    return rows


# ------------------------------------------------------------- settings


def _count(minimum):
    def parse(text):
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}: {text}")
        return int(text)

    return parse


def _shape(text):
    shape = [int(n) for n in text.split(",") if n.isdigit()]
    if len(shape) != 2 or not all(0 < n <= h for n, h in zip(shape, HIDDEN)):
        raise argparse.ArgumentTypeError(f"expected H1,H2 up to 300,100: {text}")
    return shape


def parse_args(argv=None):
    """The run's settings: the mode's, with the options given on top."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="a smoke run on ../mnist")
    add("--output", help="output folder (default runs/deploy)")
    add("--data-path", dest="data", help="MNIST folder (default: per mode)")
    add("--epochs-per-round", dest="epochs", type=_count(1), help="default 12")
    add("--rounds", type=_count(2), help="IMP rounds (default 15: 4.4%% left)")
    add("--unit-shapes", nargs="+", type=_shape, help="default 64,32 48,24")
    add("--unit-steps", type=_count(1), help="default: fc1 about 20%% a step")
    add("--workers", type=_count(1), help="trainings at a time (default 2)")
    add("--runs", type=_count(1), help="timed invokes per file (default 3000)")
    add("--seed", type=_count(0), default=0)
    args = vars(parser.parse_args(argv))
    settings = MODES["quick" if args.pop("quick") else "full"]
    settings = {**settings, **{k: v for k, v in args.items() if v is not None}}
    if os.environ.setdefault("KERAS_BACKEND", "tensorflow") != "tensorflow":
        parser.error("LiteRT export needs KERAS_BACKEND=tensorflow.")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        for shape in settings["unit_shapes"]:
            unit_rates(shape, settings)
    except ValueError as e:
        parser.error(str(e))
    return settings


def tags(settings):
    return ["x".join(map(str, shape)) for shape in settings["unit_shapes"]]


def unit_rates(shape, settings):
    """`(steps, {layer: rate})` taking fc1 and fc2 to `shape`.

    `unit_steps`, or the steps that take fc1 there at about 20% a step.
    `LotteryTicket` prunes `floor(rate * live + 0.5)` units a step; the rate
    is the one nearest `1 - (goal / width) ** (1 / steps)` on a grid of 1e-4
    with which those exact counts end at the goal.
    """
    steps = settings["unit_steps"] or max(1, round(math.log(shape[0] / 300, 0.8)))
    rates = {}
    for name, width, goal in zip(("fc1", "fc2"), HIDDEN, shape):
        start = round(1 - (goal / width) ** (1 / steps), 4)
        grid = {round(start + d * 1e-4, 4) for d in range(-500, 501)}
        for rate in sorted(grid, key=lambda r: abs(r - start)):
            live = width
            for _ in range(steps):
                live -= math.floor(rate * live + 0.5)
            if 0 <= rate < 1 and live == goal:
                rates[name] = rate
                break
        else:
            raise ValueError(f"no rate takes {name} to {goal} units in {steps} steps")
    return steps, rates


def log(text):
    """Prints `text` with the minutes since the run began (workers too)."""
    began = float(os.environ.setdefault("DEPLOY_BEGAN", str(time.time())))
    print(f"{text} ({(time.time() - began) / 60:.1f} min)", flush=True)


# ------------------------------------------------------------ trainings


def load_splits(settings):
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


def trainings(settings):
    """The training names, longest first; each control after its unit run."""
    found = ["imp", "block4", "block16"]
    for kind in STRUCTURED:
        found += [f"{kind}_{tag}" for tag in reversed(tags(settings))]
    return found


def plan(name, settings, output):
    """`(rounds, kept rounds, LotteryTicket kwargs, hidden widths)` of a task."""
    kind, _, tag = name.partition("_")
    rounds = settings["rounds"]
    paper = {"prune_rate": 0.2, "layer_rates": {"output": 0.1}}
    if kind == "control":
        return 1, (0,), {}, tuple(done(output, f"unit_{tag}")["shape"])
    if kind in ("unit", "refill"):
        steps, rates = unit_rates([int(n) for n in tag.split("x")], settings)
        options = {"layer_rates": rates, "refill": kind == "refill"}
        return steps + 1, (steps,), {"granularity": "unit", **options}, HIDDEN
    block = {"block4": (1, 4), "block16": (1, 16)}.get(kind)
    keep = (0, rounds - 1) if kind == "imp" else (rounds - 1,)
    return rounds, keep, {**paper, "block": block}, HIDDEN


def build(widths, seed):
    """A compiled, masked LeNet with `widths` hidden units."""
    import keras

    import keras_lth as lth

    def dense(units, name, act=None):  # Gaussian Glorot, as the paper's.
        init = keras.initializers.VarianceScaling(1, "fan_avg", "untruncated_normal")
        return keras.layers.Dense(units, act, kernel_initializer=init, name=name)

    keras.utils.set_random_seed(seed)
    hidden = [dense(n, f"fc{i + 1}", "relu") for i, n in enumerate(widths)]
    inputs = [keras.Input((28, 28, 1), name="input"), keras.layers.Flatten()]
    layers = [*inputs, *hidden, dense(10, "output")]
    model = lth.mask_model(keras.Sequential(layers, name="lenet"))
    model.compile(
        optimizer=lth.models.get_preset("lenet_300_100").make_optimizer(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def dense_layers(model):
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def train(name, settings, output):
    """Runs (or resumes) one training, then writes its `done.json`."""
    import keras

    import keras_lth as lth
    from keras_lth.callbacks import checkpoint
    from keras_lth.saving import atomic_write_text

    if done(output, name):
        return
    folder, began = pathlib.Path(output) / "train" / name, time.perf_counter()
    rounds, keep, kwargs, widths = plan(name, settings, output)
    epochs, seed = settings["epochs"], settings["seed"]
    splits = load_splits(settings)
    model = build(widths, seed)
    state = folder / "imp" / checkpoint.CHECKPOINT_NAME
    start = checkpoint.read_state(state)[1].epochs_done if state.exists() else 0
    options = dict(test_data=splits.test, seed=seed, verbose=0, **kwargs)
    ticket = lth.LotteryTicket(rounds, epochs, checkpoint_dir=folder / "imp", **options)

    def line(row):
        return (
            f"{name}: round {row['round'] + 1}/{rounds}, "
            f"{100 * row['weights_remaining']:.1f}% of weights left, test acc "
            f"{100 * row['test']['accuracy']:.2f}% (epoch {row['best_epoch']})"
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
    log(f"{name}: training {rounds} round(s) x {epochs} epochs, {widths}{resumed}")
    steps = math.ceil(len(splits.train[1]) / 60)
    model.fit(
        lth.datasets.ShuffledBatches(
            *splits.train, batch_size=60, seed=seed, start_step=start * steps
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
    small = lth.shrink(keras.saving.load_model(folder / kept[keep[-1]]))
    result = {
        "rounds": ticket.results,
        "kept": kept,
        "shape": [layer.units for layer in dense_layers(small)[:-1]],
        "minutes": (time.perf_counter() - began) / 60,
    }
    atomic_write_text(folder / "done.json", json.dumps(result, indent=1))
    log(f"{line(ticket.results[-1])}; done, shrunk hidden widths {result['shape']}")


def _one_thread():
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def run_trainings(settings, output):
    """Runs the trainings not done yet, `workers` at a time, in order."""
    waiting = [name for name in trainings(settings) if not done(output, name)]
    if settings["workers"] == 1 or len(waiting) <= 1:
        for name in waiting:
            train(name, settings, output)
        return
    import concurrent.futures as cf
    import multiprocessing

    def ready(name):
        kind, _, tag = name.partition("_")
        return kind != "control" or done(output, f"unit_{tag}")

    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(
        settings["workers"], mp_context=context, initializer=_one_thread
    ) as pool:
        running = set()
        while waiting or running:
            for name in [name for name in waiting if ready(name)]:
                running.add(pool.submit(train, name, settings, str(output)))
                waiting.remove(name)
            finished, running = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                future.result()  # A failed training fails the run.


# -------------------------------------------------------------- measuring


def load_models(settings, output):
    """`{model key: plain Keras model}` of the rows, and the IMP shrink report."""
    import keras

    import keras_lth as lth

    def load(name, index=-1):
        kept = list(done(output, name)["kept"].values())
        return keras.saving.load_model(output / "train" / name / kept[index])

    models = {name: load(name) for name in trainings(settings)}
    models["dense"] = load("imp", 0)
    models["imp_shrunk"], report = lth.shrink(models["imp"], return_report=True)
    for name in trainings(settings):
        if name.startswith(("unit", "refill")):
            models[name] = lth.shrink(models[name])
    return models, report


def describe(row, model, splits):
    """Sets the row's Keras test accuracy, layer widths and nonzero weights."""
    import keras
    import numpy as np

    x, y = splits.test
    logits = model.predict(x, batch_size=1000, verbose=0)
    row.keras_accuracy = float(np.mean(logits.argmax(axis=1) == y))
    dense = dense_layers(model)
    row.shape = "-".join(str(n) for n in [784] + [layer.units for layer in dense])
    kernels = [keras.ops.convert_to_numpy(layer.kernel) for layer in dense]
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


def keras_latency(models, x, runs):
    """`{key: {batch: median us}}` of `predict_on_batch`, interleaved."""
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
    return medians


# --------------------------------------------------------------- reporting


def environment():
    from importlib.metadata import version

    import keras

    return (
        f"Keras {keras.__version__}, backend {keras.backend.backend()}, TensorFlow "
        f"{version('tensorflow')}, ai-edge-litert {version('ai-edge-litert')}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )


def main(argv=None):
    settings = parse_args(argv)
    os.environ["DEPLOY_BEGAN"] = str(time.time())
    output = pathlib.Path(settings["output"])
    output.mkdir(parents=True, exist_ok=True)
    wanted = {key: settings[key] for key in (*TRAINING_KEYS, "seed")}
    saved = output / "settings.json"
    if saved.exists() and json.loads(saved.read_text()) != wanted:
        sys.exit(f"error: {output} holds a run with other settings: {saved}")
    from keras_lth.saving import atomic_write_text

    atomic_write_text(saved, json.dumps(wanted))
    print(f"Deploy benchmark: {environment()}\n{json.dumps(settings)}", flush=True)
    run_trainings(settings, output)

    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # Retracing warnings: one trace per model.
    splits = load_splits(settings)
    models, shrunk = load_models(settings, output)
    folder = output / "litert"
    folder.mkdir(exist_ok=True)
    rows = rows_of(settings)
    log(f"Exporting {len(rows)} LiteRT files (each checked against Keras)")
    for row in rows:
        describe(row, models[row.model], splits)
        export(row, models[row.model], splits, folder)
    log("Timing Keras, then the LiteRT files, interleaved")
    keras_us = keras_latency(models, splits.test[0], settings["keras_runs"])
    for row in rows:
        row.keras_us = keras_us[row.model]
    data = (None, None, *splits.test)
    floor_us = time_and_score(rows, data, settings["runs"], export_floor(str(folder)))
    targets = check_targets(rows)
    steps = {
        tag: unit_rates(shape, settings)
        for tag, shape in zip(tags(settings), settings["unit_shapes"])
    }
    header = (
        f"{environment()}. Data: {(splits.note or splits.source).rstrip('.')}. "
        f"Budget: {settings['epochs']} epochs per round, the weights of the epoch "
        f"of least validation loss; Adam 1.2e-3, batch 60, seed {settings['seed']}. "
        f"Unit IMP (steps, rates) per shape: {steps}."
    )
    lines = report_lines(
        rows, header=header, floor_us=floor_us, targets=targets, shrunk=shrunk
    )
    report = "\n".join(lines)
    print("\n" + report)
    atomic_write_text(output / "table.md", report + "\n")
    plot(rows, output / "deploy.png", "LeNet-300-100 on MNIST, deployed to LiteRT")
    results = {
        "settings": settings,
        "environment": environment(),
        "rows": [{**dataclasses.asdict(r), "report": vars(r.report)} for r in rows],
        "targets": [dict(zip(("target", "measured", "met"), t)) for t in targets],
        "floor_us": floor_us,
        "imp_shrink": {"units": shrunk.units, "params": shrunk.params_after},
        "trainings": {name: done(output, name) for name in trainings(settings)},
        "wall_minutes_this_run": (time.time() - float(os.environ["DEPLOY_BEGAN"])) / 60,
    }
    atomic_write_text(output / "results.json", json.dumps(results, indent=1))
    log(f"Wrote {output}/results.json, table.md and deploy.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
