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
  layer of Conv-4 (64 -> 27 filters, 256 -> 108 units) and 33% of the inner
  filters of ResNet-20's blocks (16/32/64 -> 5/9/19; the residual stream,
  which every block's `Add` sums, keeps its width). A unit is its kernel
  column with its bias and BatchNorm scale and offset (see
  `_deploy_convnets_models`). Its round 0 is the dense network.
* `control_<net>`: a dense network of the shrunk ticket's exact shape,
  trained from scratch for one round (Liu et al. 2019).
* `imp_<net>` (`--unstructured`, off by default): unstructured IMP, the same
  steps, each layer pruned to the weights it keeps in the shrunk ticket.

Rows per network: one LiteRT file each, written by `keras_lth.export_litert`
(checked against its Keras model on 32 test images): dense, the unit ticket
after `keras_lth.shrink`, the control (and the unstructured ticket), each in
float32 and full-integer int8 (calibrated on 500 training images). Columns
as `deploy.py`'s: test accuracy of the file on the 10,000 test images (and of
its Keras model); bytes; median `invoke` time at batch 1, 1 thread, every
file timed interleaved by `litert.py`'s `time_and_score`; Keras
`predict_on_batch` on CPU at batch 1 and 256. Ratios are to the dense model of
the same precision. Issue 19's convnet targets are checked under the tables.

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

import argparse
import dataclasses
import json
import math
import os
import pathlib
import sys
import time

import _deploy_convnets_models as nets
from _deploy_report import format_table
from _deploy_report import plot
from deploy import Row
from deploy import _one_thread
from deploy import done
from deploy import environment
from deploy import export
from deploy import keras_latency
from deploy import log
from litert import export_floor
from litert import time_and_score

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
BATCH, LEARNING_RATE = 60, 1e-3
MODES = {
    "full": dict(
        data=str(DATA / "mnist-full"), train=8000, epochs=3, steps=3,
        rates={"conv4": 0.25, "resnet20": 0.33}, networks=["conv4", "resnet20"],
        unstructured=False, runs=500, keras_runs=90, workers=2,
        output="runs/deploy_convnets",
    ),
    "quick": dict(
        data=str(DATA / "mnist"), train=300, epochs=1, steps=1,
        rates={"conv4": 0.5, "resnet20": 0.5}, networks=["conv4", "resnet20"],
        unstructured=False, runs=20, keras_runs=6, workers=1,
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
}


def rows_of(network, settings):
    kinds = ["dense", "unit", "control"] + ["imp"] * settings["unstructured"]
    return [
        Row(f"{network.title} {LABELS[kind]}", kind, q, kind == "imp")
        for kind in kinds
        for q in (None, "int8")
    ]


# ------------------------------------------------------------- settings


def _count(minimum):
    def parse(text):
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}: {text}")
        return int(text)

    return parse


def parse_args(argv=None):
    """The run's settings: the mode's, with the options given on top."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="a smoke run on ../mnist")
    add("--output", help="output folder (default runs/deploy_convnets)")
    add("--data-path", dest="data", help="MNIST folder (default: per mode)")
    add("--train", type=_count(60), help="training images used (default 8000)")
    add("--epochs-per-round", dest="epochs", type=_count(1), help="default 3")
    add("--steps", type=_count(1), help="unit IMP pruning steps (default 3)")
    add("--networks", nargs="+", choices=list(nets.NETWORKS), help="default both")
    add("--unstructured", action="store_true", default=None, help="add IMP rows")
    add("--workers", type=_count(1), help="trainings at a time (default 2)")
    add("--runs", type=_count(1), help="timed invokes per file (default 500)")
    add("--seed", type=_count(0), default=0)
    args = vars(parser.parse_args(argv))
    settings = MODES["quick" if args.pop("quick") else "full"]
    settings = {**settings, **{k: v for k, v in args.items() if v is not None}}
    if os.environ.setdefault("KERAS_BACKEND", "tensorflow") != "tensorflow":
        parser.error("LiteRT export needs KERAS_BACKEND=tensorflow.")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return settings


def unit_widths(width, rate, steps):
    """Live units after `steps` of `LotteryTicket`'s exact unit counts.

    >>> unit_widths(64, 0.25, 3)
    27
    """
    for _ in range(steps):
        width -= math.floor(rate * width + 0.5)
    return width


# ------------------------------------------------------------ trainings


def load_splits(settings):
    import keras_lth as lth

    splits = lth.datasets.load_mnist(settings["data"], flatten=False)
    x, y = splits.train
    n = settings["train"]
    return dataclasses.replace(splits, train=(x[:n], y[:n]))


def trainings(settings):
    """The training names, unit runs first; each control after its unit run."""
    kinds = ["unit", "control"] + ["imp"] * settings["unstructured"]
    return [f"{kind}_{net}" for kind in kinds for net in settings["networks"]]


def load_kept(output, name, index=-1):
    import keras

    kept = list(done(output, name)["kept"].values())
    return keras.saving.load_model(output / "train" / name / kept[index])


def shrunk_ticket(output, network):
    """`(shrunk unit ticket, its ShrinkReport, channels cut, shrink alone)`.

    `shrink alone` is the `ShrinkReport` of `shrink` on the ticket as
    trained, without `cut_zero_channels`: what `shrink` removes by itself.
    """
    import warnings

    import keras_lth as lth

    ticket = load_kept(output, f"unit_{network.name}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, alone = lth.shrink(ticket, return_report=True)
    cut = nets.cut_zero_channels(ticket, network)
    small, report = lth.shrink(ticket, return_report=True)
    return small, report, cut, alone


def plan(name, settings, output):
    """`(rounds, kept rounds, LotteryTicket kwargs, model builder)` of a task."""
    kind, _, net = name.partition("_")
    network, seed, steps = nets.NETWORKS[net], settings["seed"], settings["steps"]
    if kind == "control":
        small = shrunk_ticket(pathlib.Path(output), network)[0]
        return 1, (0,), {}, lambda: nets.dense_like(small, seed)
    model = nets.build(network, seed)
    prunable = {layer.name for layer in nets.kernel_layers(model)}
    if kind == "unit":
        rates = {layer: 0.0 for layer in prunable}
        rates.update(dict.fromkeys(network.pruned, settings["rates"][net]))
        kwargs = {"granularity": "unit", "layer_rates": rates}
        return steps + 1, (0, steps), kwargs, lambda: model
    # Unstructured: each layer to the kernel weights of the shrunk ticket.
    small = shrunk_ticket(pathlib.Path(output), network)[0]
    sizes = {layer.name: layer.kernel.shape for layer in nets.kernel_layers(small)}
    rates = {}
    for layer in nets.kernel_layers(model):
        left = math.prod(sizes[layer.name]) / math.prod(layer.kernel.shape)
        rates[layer.name] = min(0.99, 1 - left ** (1 / steps))
    return steps + 1, (steps,), {"layer_rates": rates}, lambda: model


def train(name, settings, output):
    """Runs (or resumes) one training, then writes its `done.json`."""
    import keras

    import keras_lth as lth
    from keras_lth.callbacks import checkpoint
    from keras_lth.saving import atomic_write_text

    if done(output, name):
        return
    folder, began = pathlib.Path(output) / "train" / name, time.perf_counter()
    rounds, keep, kwargs, make = plan(name, settings, output)
    network = nets.NETWORKS[name.partition("_")[2]]
    epochs, seed = settings["epochs"], settings["seed"]
    splits = load_splits(settings)
    model = nets.compile_model(make(), LEARNING_RATE)
    if name.startswith("unit"):
        nets.keep_units_whole(model, network)
    state = folder / "imp" / checkpoint.CHECKPOINT_NAME
    start = checkpoint.read_state(state)[1].epochs_done if state.exists() else 0
    options = dict(seed=seed, verbose=0, **kwargs)
    ticket = lth.LotteryTicket(rounds, epochs, checkpoint_dir=folder / "imp", **options)

    def line(row):
        best = row["best"]
        return (
            f"{name}: round {row['round'] + 1}/{rounds}, "
            f"{100 * row['weights_remaining']:.1f}% of weights left, val acc "
            f"{100 * best['val_accuracy']:.2f}% (epoch {row['best_epoch']})"
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
    log(f"{name}: training {rounds} round(s) x {epochs} epochs{resumed}")
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
    result = {
        "rounds": ticket.results,
        "kept": kept,
        "minutes": (time.perf_counter() - began) / 60,
    }
    atomic_write_text(folder / "done.json", json.dumps(result, indent=1))
    log(f"{line(ticket.results[-1])}; done")


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
        kind, _, net = name.partition("_")
        return kind == "unit" or done(output, f"unit_{net}")

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


def load_models(network, settings, output):
    """`({row model: plain Keras model}, shrink facts)` of one network."""
    import numpy as np

    net = network.name
    small, report, cut, alone = shrunk_ticket(output, network)
    ticket = load_kept(output, f"unit_{net}")
    x = load_splits(settings).test[0][:256]
    error = np.abs(ticket.predict(x, verbose=0) - small.predict(x, verbose=0))
    models = {"dense": load_kept(output, f"unit_{net}", 0), "unit": small}
    models["control"] = load_kept(output, f"control_{net}")
    if settings["unstructured"]:
        models["imp"] = load_kept(output, f"imp_{net}")
    facts = {
        "units": report.units,
        "params": [report.params_before, report.params_after],
        "folded": report.folded,
        "unshrunk": report.unshrunk,
        "zero_channels_cut": cut,
        "shrink_alone_units": alone.units,
        "max_abs_output_change": float(error.max()),
    }
    return models, facts


def describe(row, model, network, splits):
    """Sets the row's Keras test accuracy, widths and nonzero weights."""
    import keras
    import numpy as np

    x, y = splits.test
    logits = model.predict(x, batch_size=500, verbose=0)
    row.keras_accuracy = float(np.mean(logits.argmax(axis=1) == y))
    row.shape = nets.shape_of(model, network)
    kernels = [keras.ops.convert_to_numpy(k.kernel) for k in nets.kernel_layers(model)]
    row.weights = int(sum(np.count_nonzero(kernel) for kernel in kernels))


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
    return targets


def network_lines(network, rows, facts, targets):
    cut = sum(facts["zero_channels_cut"].values())
    alone = ", ".join(
        f"{k} {a} -> {b}" for k, (a, b) in facts["shrink_alone_units"].items()
    )
    units = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in facts["units"].items())
    before, after = facts["params"]
    return [
        f"### {network.title}",
        "",
        format_table(rows),
        "",
        f"`shrink` on the unit ticket: {units or 'nothing'}; parameters "
        f"{before:,} -> {after:,} ({facts['folded']} constant units folded), "
        f"largest output change {facts['max_abs_output_change']:.1e}. Before it, "
        f"`cut_zero_channels` zeroed the kernel rows reading {cut} zero channels of "
        f"convolutions read through zero padding; `shrink` alone removes: "
        f"{alone or 'nothing'}.",
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
        f"{environment()}. Data: {(splits.note or splits.source).rstrip('.')}. "
        f"**Reduced budget**: the first {len(splits.train[1]):,} training images, "
        f"{settings['epochs']} epochs per round, the weights of the epoch of least "
        f"validation loss; Adam {LEARNING_RATE:g}, batch {BATCH}, seed "
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
    os.environ["DEPLOY_BEGAN"] = str(time.time())
    output = pathlib.Path(settings["output"])
    output.mkdir(parents=True, exist_ok=True)
    wanted = {key: settings[key] for key in TRAINING_KEYS}
    saved = output / "settings.json"
    if saved.exists() and json.loads(saved.read_text()) != wanted:
        sys.exit(f"error: {output} holds a run with other settings: {saved}")
    from keras_lth.saving import atomic_write_text

    atomic_write_text(saved, json.dumps(wanted))
    print(f"Deploy benchmark, convnets: {environment()}\n{json.dumps(settings)}")
    run_trainings(settings, output)

    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # Retracing warnings: one trace per model.
    splits = load_splits(settings)
    every, facts, files = [], {}, []
    for net in settings["networks"]:
        network = nets.NETWORKS[net]
        models, facts[net] = load_models(network, settings, output)
        folder = output / "litert" / net
        folder.mkdir(parents=True, exist_ok=True)
        rows = rows_of(network, settings)
        log(f"{network.title}: exporting {len(rows)} LiteRT files")
        for row in rows:
            describe(row, models[row.model], network, splits)
            export(row, models[row.model], splits, folder)
        log(f"{network.title}: timing Keras, interleaved")
        keras_us = keras_latency(models, splits.test[0], settings["keras_runs"])
        for row in rows:
            row.keras_us = keras_us[row.model]
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
    targets = {}
    for network, rows in every:
        targets[network.name] = check_targets(rows, network.title)
        lines += network_lines(
            network, rows, facts[network.name], targets[network.name]
        )
    report = "\n".join(lines)
    print("\n" + report, flush=True)
    atomic_write_text(output / "table.md", report + "\n")
    plot_all(every, output)
    results = {
        "settings": settings,
        "environment": environment(),
        "networks": {
            network.name: {
                "rows": [
                    {**dataclasses.asdict(r), "report": vars(r.report)} for r in rows
                ],
                "targets": [
                    dict(zip(("target", "measured", "met"), t))
                    for t in targets[network.name]
                ],
                "shrink": facts[network.name],
            }
            for network, rows in every
        },
        "floor_us": floor_us,
        "trainings": {name: done(output, name) for name in trainings(settings)},
        "wall_minutes_this_run": (time.time() - float(os.environ["DEPLOY_BEGAN"])) / 60,
    }
    atomic_write_text(output / "results.json", json.dumps(results, indent=1))
    log(f"Wrote {output}/results.json, table.md and deploy_convnets.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
