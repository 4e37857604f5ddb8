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
targets of issue 19 are checked under the table. Conv-4 and ResNet-20, the
issue's other two networks: `deploy_convnets.py`. The steps both scripts
share are in `_deploy_common.py`.

Resumable: each training lives in `<output>/train/<name>/` (a `LotteryTicket`
checkpoint, then its kept models and `done.json`), each file and its report
in `<output>/litert/`; what exists is skipped. Writes `results.json`,
`table.md` and `deploy.png` (accuracy against latency and size) there.

    python benchmarks/deploy.py            # runs/deploy, about 45 minutes
    python benchmarks/deploy.py --quick    # runs/deploy_quick, on ../mnist
"""

import argparse
import functools
import math
import pathlib
import sys

import _deploy_common as common
from _deploy_common import Row
from _deploy_common import done
from _deploy_common import log
from _deploy_report import check_targets
from _deploy_report import plot
from _deploy_report import report_lines
from litert import export_floor
from litert import time_and_score

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
HIDDEN = (300, 100)
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
TRAINING_KEYS = (
    "data", "train", "epochs", "rounds", "unit_shapes", "unit_steps", "seed",
)  # fmt: skip
STRUCTURED = {
    "unit": "unit IMP, shrunk",
    "refill": "unit IMP + refill, shrunk",
    "control": "dense from scratch (control)",
}


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


def _shape(text):
    shape = [int(n) for n in text.split(",") if n.isdigit()]
    if len(shape) != 2 or not all(0 < n <= h for n, h in zip(shape, HIDDEN)):
        raise argparse.ArgumentTypeError(f"expected H1,H2 up to 300,100: {text}")
    return shape


def parse_args(argv=None):
    """The run's settings: the mode's, with the options given on top."""
    parser = common.settings_parser(__doc__.split("\n")[0], MODES)
    count, add = common.int_at_least, parser.add_argument
    add("--rounds", type=count(2), help="IMP rounds (default 15: 4.4%% left)")
    add("--unit-shapes", nargs="+", type=_shape, help="default 64,32 48,24")
    add("--unit-steps", type=count(1), help="default: fc1 about 20%% a step")
    settings = common.settings_of(parser, MODES, argv)
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


# ------------------------------------------------------------ trainings


def trainings(settings):
    """The training names, longest first; each control after its unit run."""
    found = ["imp", "block4", "block16"]
    for kind in STRUCTURED:
        found += [f"{kind}_{tag}" for tag in reversed(tags(settings))]
    return found


def after(name):
    """The training that must be done before `name`: a control's unit run."""
    kind, _, tag = name.partition("_")
    return f"unit_{tag}" if kind == "control" else None


def plan(name, settings, output):
    """The `common.Plan` of a training: rounds, kept rounds, options, widths."""
    kind, _, tag = name.partition("_")
    rounds, seed, widths = settings["rounds"], settings["seed"], HIDDEN
    if kind == "control":
        widths = tuple(done(output, f"unit_{tag}")["shape"])
        rounds, keep, options = 1, (0,), {}
    elif kind in ("unit", "refill"):
        steps, rates = unit_rates([int(n) for n in tag.split("x")], settings)
        rounds, keep = steps + 1, (steps,)
        options = {"granularity": "unit", "layer_rates": rates}
        options["refill"] = kind == "refill"
    else:
        keep = (0, rounds - 1) if kind == "imp" else (rounds - 1,)
        options = {"prune_rate": 0.2, "layer_rates": {"output": 0.1}}
        options["block"] = {"block4": (1, 4), "block16": (1, 16)}.get(kind)
    return common.Plan(
        rounds,
        keep,
        options,
        make=lambda: build(widths, seed),
        note=f", {widths}",
        test_data=True,
        summary=_shrunk_widths,
    )


def _shrunk_widths(path):
    """`done.json`'s `shape`: the hidden widths of the model at `path`, shrunk."""
    import keras

    import keras_lth as lth

    small = lth.shrink(keras.saving.load_model(path))
    shape = [layer.units for layer in dense_layers(small)[:-1]]
    return {"shape": shape}, f", shrunk hidden widths {shape}"


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
    common.train(name, settings, output, plan)


# -------------------------------------------------------------- measuring


def load_models(settings, output):
    """`{model key: plain Keras model}` of the rows, and the IMP shrink report."""
    import keras_lth as lth

    models = {name: common.load_kept(output, name) for name in trainings(settings)}
    models["dense"] = common.load_kept(output, "imp", 0)
    models["imp_shrunk"], report = lth.shrink(models["imp"], return_report=True)
    for name in trainings(settings):
        if name.startswith(("unit", "refill")):
            models[name] = lth.shrink(models[name])
    return models, report


def describe(row, model, splits):
    """Sets the row's Keras test accuracy, layer widths and nonzero weights."""
    dense = dense_layers(model)
    shape = "-".join(str(n) for n in [784] + [layer.units for layer in dense])
    common.describe(row, model, splits, layers=dense, shape=shape, batch_size=1000)


# --------------------------------------------------------------- reporting


def main(argv=None):
    settings = parse_args(argv)
    output = common.start_run(settings, TRAINING_KEYS, "Deploy benchmark")
    common.run_trainings(settings, output, trainings(settings), train, after)

    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # Retracing warnings: one trace per model.
    splits = common.load_splits(settings)
    models, shrunk = load_models(settings, output)
    folder = output / "litert"
    folder.mkdir(exist_ok=True)
    rows = rows_of(settings)
    log(f"Exporting {len(rows)} LiteRT files (each checked against Keras)")
    how = functools.partial(describe, splits=splits)
    common.export_rows(rows, models, splits, folder, how)
    log("Timing Keras, then the LiteRT files, interleaved")
    common.time_keras(rows, models, splits.test[0], settings["keras_runs"])
    data = (None, None, *splits.test)
    floor_us = time_and_score(rows, data, settings["runs"], export_floor(str(folder)))
    targets = check_targets(rows)
    steps = {
        tag: unit_rates(shape, settings)
        for tag, shape in zip(tags(settings), settings["unit_shapes"])
    }
    header = (
        f"{common.environment()}. Data: {(splits.note or splits.source).rstrip('.')}. "
        f"Budget: {settings['epochs']} epochs per round, the weights of the epoch "
        f"of least validation loss; Adam 1.2e-3, batch {common.BATCH}, "
        f"seed {settings['seed']}. Unit IMP (steps, rates) per shape: {steps}."
    )
    lines = report_lines(
        rows, header=header, floor_us=floor_us, targets=targets, shrunk=shrunk
    )
    plot(rows, output / "deploy.png", "LeNet-300-100 on MNIST, deployed to LiteRT")
    found, checks = common.records(rows, targets)
    results = {
        "rows": found,
        "targets": checks,
        "floor_us": floor_us,
        "imp_shrink": {"units": shrunk.units, "params": shrunk.params_after},
    }
    names = trainings(settings)
    common.finish_run(
        output, lines, results, settings=settings, names=names, plots="deploy.png"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
