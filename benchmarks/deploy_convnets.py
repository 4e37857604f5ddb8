"""Deploying Conv-4 and ResNet-20 tickets to LiteRT, with test accuracy in every row.

The convnet part of issue 19's deploy benchmark (`deploy.py` does
LeNet-300-100), on a reduced budget that fits two CPU cores in about 40
minutes: Conv-4 and ResNet-20 (`keras_lth.models`, 28x28x1 inputs, Gaussian
Glorot init; ResNet-20 with 1x1-convolution shortcuts and BatchNorm momentum
0.9) on MNIST (`../shared/data/mnist-full`: 55,000 train / 5,000 validation /
the official 10,000 test images), trained on the **first 8,000 training
images only** (`--train`), Adam 1e-3, batch 60, 3 epochs per round
(`--epochs-per-round`), keeping the weights of the epoch of least validation
loss (on the 5,000 validation images). Every training has this budget and
starts from the same seed (`--seed`). Two at a time (`--workers`, one
thread each):

* `unit_<net>`: unit IMP (`LotteryTicket(granularity="unit")`, rewind to
  init), 3 pruning steps (`--steps`) of 25% of the live units of every hidden
  layer of Conv-4 (64 -> 27 filters, 256 -> 108 units) and 33% of the
  filters of every convolution of ResNet-20 (16/32/64 -> 5/10/19). The
  residual stream's channels, which every block's `Add` sums, are pruned
  together in the stem, the blocks' second convolutions and the shortcuts
  (`keras_lth.coupling`), so the stream narrows too. A unit is its kernel
  column with its bias and BatchNorm scale and offset, which `LotteryTicket`
  holds at zero once the column is pruned
  (`keras_lth.unit_holding.hold_pruned_units`), so a pruned filter outputs
  zero and `shrink` removes it. Its round 0 is the dense network.
* `control_<net>`: a dense network of the shrunk ticket's exact shape,
  trained from scratch for one round (Liu et al. 2019).
* `imp_<net>` (`--unstructured`, off by default): unstructured IMP, the same
  steps, each layer pruned to the weights it keeps in the shrunk ticket.
* `block4_<net>`, `block16_<net>` (`--blocks`, off by default): the same
  with `block=(1, 4)` (exported in float32) and `block=(1, 16)` (int8), the
  blocks of LiteRT's sparse FULLY_CONNECTED kernels. LiteRT has no sparse
  convolution kernel on x86 (XNNPACK's is off with AVX), so only the
  Dense layers can run sparse.

Rows per network: one LiteRT file each, written by `keras_lth.export_litert`
(checked against its Keras model on 32 test images): dense, the unit ticket
after `keras_lth.shrink`, the control (and the unstructured ticket), each in
float32 and full-integer int8 (calibrated on 500 training images). Columns
as `deploy.py`'s: test accuracy of the file on the 10,000 test images (and of
its Keras model); bytes; median `invoke` time at batch 1, 1 thread, every
file timed interleaved by `litert.py`'s `time_and_score`; Keras
`predict_on_batch` on CPU at batch 1 and 256. Ratios are to the dense model of
the same precision. Issue 19's convnet targets are checked under the tables.
The steps both deploy scripts share are in `_deploy_common.py`.

Resumable: each training lives in `<output>/train/<name>/`, each file in
`<output>/litert/<net>/`; what exists is skipped. Writes `results.json`,
`table.md` and `deploy_convnets.png` there (one plot per network, stacked;
each also alone in `deploy_convnets_<net>.png`).

Time: one epoch (8,000 training images, then the 5,000 validation ones)
took 33 s of CPU for Conv-4 and 31 s for ResNet-20 on one thread
(2026-12-05, the two side by side on a busy machine: 90 s of wall time), so
the 15 epochs of each network take about 9 minutes on an idle core, 25 on a
busy one; exporting, scoring and timing 12 files adds 5 to 10 minutes.

    python benchmarks/deploy_convnets.py            # runs/deploy_convnets
    python benchmarks/deploy_convnets.py --quick    # on ../mnist, 2-3 minutes
"""

import functools
import math
import pathlib
import sys
import time

import _deploy_common as common
import _deploy_convnets_models as nets
from _deploy_common import Row
from _deploy_common import log
from _deploy_report import format_table
from _deploy_report import plot
from litert import export_floor
from litert import time_and_score

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LEARNING_RATE = 1e-3
MODES = {
    "full": dict(
        data=str(DATA / "mnist-full"), train=8000, epochs=3, steps=3,
        rates={"conv4": 0.25, "resnet20": 0.33}, networks=["conv4", "resnet20"],
        unstructured=False, blocks=False, runs=500, keras_runs=90, workers=2,
        output="runs/deploy_convnets",
    ),
    "quick": dict(
        data=str(DATA / "mnist"), train=300, epochs=1, steps=1,
        rates={"conv4": 0.5, "resnet20": 0.5}, networks=["conv4", "resnet20"],
        unstructured=False, blocks=False, runs=20, keras_runs=6, workers=1,
        output="runs/deploy_convnets_quick",
    ),
}  # fmt: skip
#: What the trainings depend on: an output folder holds one of each.
TRAINING_KEYS = ("data", "train", "epochs", "steps", "rates", "seed")
LABELS = {
    "dense": "dense",
    "unit": "unit IMP, shrunk",
    "control": "dense from scratch (control)",
    "imp": "IMP unstructured",
    "block4": "block-IMP 1x4",
    "block16": "block-IMP 1x16",
}
#: The block of each block kind, and the precision its file is exported in.
BLOCKS = {"block4": ((1, 4), None), "block16": ((1, 16), "int8")}


def rows_of(network, settings):
    kinds = ["dense", "unit", "control"] + ["imp"] * settings["unstructured"]
    rows = [
        Row(f"{network.title} {LABELS[kind]}", kind, q, kind == "imp")
        for kind in kinds
        for q in (None, "int8")
    ]
    for kind in BLOCKS if settings["blocks"] else ():
        rows.append(Row(f"{network.title} {LABELS[kind]}", kind, BLOCKS[kind][1], True))
    return rows


# ------------------------------------------------------------- settings


def parse_args(argv=None):
    """The run's settings: the mode's, with the options given on top."""
    parser = common.settings_parser(__doc__.split("\n")[0], MODES)
    count, add = common.int_at_least, parser.add_argument
    add("--train", type=count(60), help="training images used (default 8000)")
    add("--steps", type=count(1), help="unit IMP pruning steps (default 3)")
    add("--networks", nargs="+", choices=list(nets.NETWORKS), help="default both")
    add("--unstructured", action="store_true", default=None, help="add IMP rows")
    add("--blocks", action="store_true", default=None, help="add block-IMP rows")
    return common.settings_of(parser, MODES, argv)


def unit_widths(width, rate, steps):
    """Live units after `steps` of `LotteryTicket`'s exact unit counts.

    >>> unit_widths(64, 0.25, 3)
    27
    """
    for _ in range(steps):
        width -= math.floor(rate * width + 0.5)
    return width


# ------------------------------------------------------------ trainings


def trainings(settings):
    """The training names, unit runs first; each control after its unit run."""
    kinds = ["unit", "control"] + ["imp"] * settings["unstructured"]
    kinds += list(BLOCKS) * bool(settings["blocks"])
    return [f"{kind}_{net}" for kind in kinds for net in settings["networks"]]


def after(name):
    """The training that must be done before `name`: its network's unit run."""
    kind, _, net = name.partition("_")
    return None if kind == "unit" else f"unit_{net}"


def shrunk_ticket(output, network):
    """`(unit ticket, the same shrunk, its ShrinkReport)` of `network`."""
    import keras_lth as lth

    ticket = common.load_kept(output, f"unit_{network.name}")
    small, report = lth.shrink(ticket, return_report=True)
    return ticket, small, report


def plan(name, settings, output):
    """The `common.Plan` of a training: rounds, kept rounds, options, model."""
    kind, _, net = name.partition("_")
    network, seed, steps = nets.NETWORKS[net], settings["seed"], settings["steps"]
    if kind == "control":
        small = shrunk_ticket(output, network)[1]
        return common.Plan(
            1, (0,), {}, make=lambda: _compiled(nets.dense_like(small, seed))
        )
    model = nets.build(network, seed)
    if kind == "unit":
        rates = {layer.name: 0.0 for layer in nets.kernel_layers(model)}
        rates.update(dict.fromkeys(network.pruned, settings["rates"][net]))
        keep, options = (0, steps), {"granularity": "unit", "layer_rates": rates}
    else:  # Unstructured: each layer to the kernel weights of the shrunk ticket.
        small = shrunk_ticket(output, network)[1]
        sizes = {k.name: k.kernel.shape for k in nets.kernel_layers(small)}
        rates = {}
        for layer in nets.kernel_layers(model):
            left = math.prod(sizes[layer.name]) / math.prod(layer.kernel.shape)
            rates[layer.name] = min(0.99, 1 - left ** (1 / steps))
        keep, options = (steps,), {"layer_rates": rates}
        options["block"] = BLOCKS[kind][0] if kind in BLOCKS else None
    return common.Plan(steps + 1, keep, options, make=lambda: _compiled(model))


def _compiled(model):
    return nets.compile_model(model, LEARNING_RATE)


def train(name, settings, output):
    """Runs (or resumes) one training, then writes its `done.json`."""
    common.train(name, settings, output, plan)


# -------------------------------------------------------------- measuring


def load_models(network, settings, output):
    """`({row model: plain Keras model}, shrink facts)` of one network."""
    import numpy as np

    net = network.name
    ticket, small, report = shrunk_ticket(output, network)
    x = common.load_splits(settings).test[0][:256]
    error = np.abs(ticket.predict(x, verbose=0) - small.predict(x, verbose=0))
    models = {"dense": common.load_kept(output, f"unit_{net}", 0), "unit": small}
    models["control"] = common.load_kept(output, f"control_{net}")
    if settings["unstructured"]:
        models["imp"] = common.load_kept(output, f"imp_{net}")
    for kind in BLOCKS if settings["blocks"] else ():
        models[kind] = common.load_kept(output, f"{kind}_{net}")
    facts = {
        "units": report.units,
        "params": [report.params_before, report.params_after],
        "folded": report.folded,
        "unshrunk": report.unshrunk,
        "max_abs_output_change": float(error.max()),
    }
    return models, facts


def describe(row, model, network, splits):
    """Sets the row's Keras test accuracy, widths and nonzero weights."""
    shape, layers = nets.shape_of(model, network), nets.kernel_layers(model)
    common.describe(row, model, splits, layers=layers, shape=shape, batch_size=500)


def check_targets(rows, title):
    """`[(target, measured, met)]`: issue 19's convnet targets, and the control.

    The shrunk unit ticket within 1 point of dense and >= 2x faster in LiteRT
    (each precision, against dense of that precision) and in Keras at batch
    256 (float32 models); and better than the control of its shape.
    Accuracies are the LiteRT files' on the test set.
    """
    by = {(row.model, row.quantize): row for row in rows}
    targets = []
    for q in (None, "int8"):
        unit, dense, control = by["unit", q], by["dense", q], by["control", q]
        precision = q or "float32"
        points = 100 * (unit.litert_accuracy - dense.litert_accuracy)
        short = "" if points >= -1 else f" (misses by {-1 - points:.2f} points)"
        what = f"{title} shrunk ticket within 1 point of dense ({precision})"
        targets.append((what, f"{points:+.2f} points{short}", points >= -1))
        speed = dense.median_us / unit.median_us
        short = "" if speed >= 2 else f" (misses by {2 - speed:.2f}x)"
        what = f"{title} shrunk ticket >= 2x faster in LiteRT ({precision})"
        targets.append((what, f"{speed:.2f}x{short}", speed >= 2))
        points = 100 * (unit.litert_accuracy - control.litert_accuracy)
        what = (
            f"{title} shrunk ticket beats the dense control of its shape ({precision})"
        )
        targets.append((what, f"{points:+.2f} points", points > 0))
    speed = by["dense", None].keras_us[256] / by["unit", None].keras_us[256]
    short = "" if speed >= 2 else f" (misses by {2 - speed:.2f}x)"
    what = f"{title} shrunk ticket >= 2x faster in Keras, batch 256"
    targets.append((what, f"{speed:.2f}x{short}", speed >= 2))
    for kind, (block, q) in BLOCKS.items():
        if (kind, q) not in by or ("imp", q) not in by:
            continue
        points = 100 * (by[kind, q].litert_accuracy - by["imp", q].litert_accuracy)
        short = "" if points >= -0.5 else f" (misses by {-0.5 - points:.2f} points)"
        what = (
            f"{title} block-IMP {block[0]}x{block[1]} within 0.5 points of "
            f"unstructured IMP ({q or 'float32'})"
        )
        targets.append((what, f"{points:+.2f} points{short}", points >= -0.5))
    return targets


def network_lines(network, rows, facts, targets):
    units = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in facts["units"].items())
    before, after = facts["params"]
    return [
        f"### {network.title}",
        "",
        format_table(rows),
        "",
        f"`shrink` on the unit ticket: {units or 'nothing'}; parameters "
        f"{before:,} -> {after:,} ({facts['folded']} constant units folded), "
        f"largest output change {facts['max_abs_output_change']:.1e}.",
        "",
        *[
            f"- {what}: {value}: **{'met' if ok else 'missed'}**"
            for what, value, ok in targets
        ],
        *[
            f"- note, {r.label} {r.precision}: {n}"
            for r in rows
            for n in r.report.notes
        ],
        "",
    ]


def header_of(settings, splits, floor_us):
    widths = {
        net: unit_widths(64, settings["rates"][net], settings["steps"])
        for net in settings["networks"]
    }
    return (
        f"{common.environment()}. Data: {(splits.note or splits.source).rstrip('.')}. "
        f"**Reduced budget**: the first {len(splits.train[1]):,} training images, "
        f"{settings['epochs']} epochs per round, the weights of the epoch of least "
        f"validation loss; Adam {LEARNING_RATE:g}, batch {common.BATCH}, seed "
        f"{settings['seed']}, the same for every training. Unit IMP: "
        f"{settings['steps']} steps at {settings['rates']} of the live units "
        f"(a 64-wide layer ends at {widths}), rewind to init. Test accuracy on "
        f"the {len(splits.test[1]):,} test images. LiteRT: batch 1, 1 thread, "
        f"interleaved, call floor {floor_us:.2f} us; Keras columns: "
        "`predict_on_batch` of the float32 Keras model (int8 rows too); "
        "ratios to dense of the same precision (Keras: dense float32)."
    )


def plot_all(every, output):
    """`deploy_convnets.png`: `_deploy_report.plot`'s figure for each network
    (`deploy_convnets_<net>.png`), one above the other."""
    from PIL import Image

    from keras_lth.saving import atomic_write

    images = []
    for network, rows in every:
        path = output / f"deploy_convnets_{network.name}.png"
        plot(rows, path, f"{network.title} on MNIST, deployed to LiteRT")
        images.append(Image.open(path).convert("RGB"))
    width = max(image.width for image in images)
    height = sum(image.height for image in images)
    stacked, top = Image.new("RGB", (width, height), "white"), 0
    for image in images:
        stacked.paste(image, (0, top))
        top += image.height
    atomic_write(output / "deploy_convnets.png", lambda f: stacked.save(f, "PNG"))


def main(argv=None):
    settings = parse_args(argv)
    title = "Deploy benchmark, convnets"
    output = common.start_run(settings, TRAINING_KEYS, title)
    common.run_trainings(settings, output, trainings(settings), train, after)

    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # Retracing warnings: one trace per model.
    splits = common.load_splits(settings)
    every, facts, files = [], {}, []
    for net in settings["networks"]:
        network = nets.NETWORKS[net]
        models, facts[net] = load_models(network, settings, output)
        folder = output / "litert" / net
        folder.mkdir(parents=True, exist_ok=True)
        rows = rows_of(network, settings)
        log(f"{network.title}: exporting {len(rows)} LiteRT files")
        how = functools.partial(describe, network=network, splits=splits)
        common.export_rows(rows, models, splits, folder, how)
        log(f"{network.title}: timing Keras, interleaved")
        common.time_keras(rows, models, splits.test[0], settings["keras_runs"])
        every.append((network, rows))
        files += rows
    log("Scoring and timing every LiteRT file, interleaved")
    data = (None, None, *splits.test)
    floor = export_floor(str(output / "litert"))
    floor_us = time_and_score(files, data, settings["runs"], floor)
    day = time.strftime("%Y-%m-%d")
    lines = [
        f"## Conv-4 and ResNet-20 on MNIST: deployed tickets ({day})",
        "",
        header_of(settings, splits, floor_us),
        "",
    ]
    found = {}
    for network, rows in every:
        targets = check_targets(rows, network.title)
        lines += network_lines(network, rows, facts[network.name], targets)
        records, checks = common.records(rows, targets)
        found[network.name] = {
            "rows": records,
            "targets": checks,
            "shrink": facts[network.name],
        }
    plot_all(every, output)
    results = {"networks": found, "floor_us": floor_us}
    names = trainings(settings)
    common.finish_run(
        output,
        lines,
        results,
        settings=settings,
        names=names,
        plots="deploy_convnets.png",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
