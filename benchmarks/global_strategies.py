"""Global pruning without layer collapse: `global` vs `lamp` (vs `layerwise`).

What it runs
    IMP (`keras_lth.LotteryTicket`, rewind to init, 50% of the survivors
    pruned per round, so rounds keep 100%, 50%, 25%, 12.5% of the prunable
    weights) three times per task from the same initial weights, once per
    strategy:

    * `global`: one magnitude threshold over all prunable tensors;
    * `lamp`: one threshold over LAMP scores (Lee et al., ICLR 2021), which
      no rescaling of a tensor changes;
    * `layerwise`: every tensor at the same rate (the reference; the output
      layer at the same rate too, so all three keep the same total).

    (a) A small transformer classifier: Embedding(400, 32) -> Keras
        MultiHeadAttention (2 heads) -> Dense(128) -> Dense(32) feed-forward
        -> average pooling -> Dense head, on a synthetic bag-of-words task
        (24 tokens of a 400-word Zipf vocabulary; the class is the argmax of
        the summed per-word class affinities, so every word's embedding
        matters). Keras initialises the Embedding uniform in +-0.05, several
        times smaller than the Dense kernels. The MultiHeadAttention's four
        EinsumDense projections are pruned too (`MaskedMultiHeadAttention`).
    (b) LeNet-300-100 (`keras_lth.models`) on the MNIST test set in
        `../shared/data/mnist`, split 8,000 / 1,000 / 1,000 by
        `keras_lth.datasets.load("mnist", path=...)`.

    For each round it prints the weights left in each tensor and the
    validation and test accuracy at the round's early-stopping point
    (minimum validation loss).

Reproduce (from the repository root):

    python benchmarks/global_strategies.py           # a few minutes on CPU
    python benchmarks/global_strategies.py --quick   # a smoke test
    python benchmarks/global_strategies.py --tasks transformer --min-density 0.1
"""

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lth as lth  # noqa: E402
from keras_lth.saving import atomic_write_text  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist"
STRATEGIES = ("global", "lamp", "layerwise")
PRUNE_RATE = 0.5


@dataclasses.dataclass
class Task:
    """A model builder and its data: `(x, y)` train, validation and test."""

    name: str
    build: object
    train: tuple
    validation: tuple
    test: tuple
    learning_rate: float
    batch_size: int
    output_layer: str


def text_task(*, train=6000, held_out=1500, vocab=400, length=24, classes=4):
    """The synthetic bag-of-words task and its small transformer."""
    rng = np.random.default_rng(0)
    affinity = rng.normal(size=(vocab, classes))
    frequency = 1.0 / np.arange(1, vocab + 1) ** 0.8  # Zipf-like.
    words = rng.permutation(vocab)  # Frequency unrelated to the word's id.
    n = train + 2 * held_out
    x = words[rng.choice(vocab, size=(n, length), p=frequency / frequency.sum())]
    scores = affinity[x].sum(axis=1)
    y = np.argmax(scores - scores.mean(axis=0), axis=1)  # Balanced classes.
    x, y = x.astype("int32"), y.astype("int32")
    cut = (train, train + held_out)

    def build():
        inputs = keras.Input((length,), dtype="int32")
        h = keras.layers.Embedding(vocab, 32, name="embedding")(inputs)
        a = keras.layers.MultiHeadAttention(2, 16, name="attention")(h, h)
        h = keras.layers.LayerNormalization()(h + a)
        f = keras.layers.Dense(128, activation="relu", name="ffn_1")(h)
        f = keras.layers.Dense(32, name="ffn_2")(f)
        h = keras.layers.LayerNormalization()(h + f)
        h = keras.layers.GlobalAveragePooling1D()(h)
        return keras.Model(inputs, keras.layers.Dense(classes, name="head")(h))

    return Task(
        "transformer",
        build,
        (x[: cut[0]], y[: cut[0]]),
        (x[cut[0] : cut[1]], y[cut[0] : cut[1]]),
        (x[cut[1] :], y[cut[1] :]),
        learning_rate=2e-3,
        batch_size=128,
        output_layer="head",
    )


def lenet_task(path, quick):
    preset = lth.models.get_preset("lenet_300_100")
    splits = lth.datasets.load("mnist", path=path)
    train = splits.train
    if quick:
        train = (train[0][:2000], train[1][:2000])
    return Task(
        "lenet_300_100",
        lambda: preset.build_model(input_shape=splits.input_shape),
        train,
        splits.validation,
        splits.test,
        learning_rate=preset.learning_rate,
        batch_size=preset.batch_size,
        output_layer="output",
    ), splits.note


def run(task, strategy, *, rounds, epochs, min_density, seed=0):
    """One IMP run: its results rows and the weights `mask_model` left dense."""
    keras.utils.set_random_seed(seed)  # Same initial weights for every strategy.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # The dense MHA kernels: reported below.
        model = lth.mask_model(task.build())
    model.compile(
        optimizer=keras.optimizers.Adam(task.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    # The same rate for every layer, so all three strategies keep the same total.
    layer_rates = {task.output_layer: PRUNE_RATE} if strategy == "layerwise" else {}
    ticket = lth.LotteryTicket(
        rounds,
        epochs,
        prune_rate=PRUNE_RATE,
        strategy=strategy,
        layer_rates=layer_rates,
        min_density=min_density if strategy != "layerwise" else 0.0,
        test_data=task.test,
        seed=seed,
        verbose=0,
    )
    model.fit(
        *task.train,
        validation_data=task.validation,
        batch_size=task.batch_size,
        epochs=ticket.total_epochs,
        callbacks=[ticket],
        verbose=0,
    )
    return ticket.results, lth.sparsity(model)["dense"]


def table(runs):
    """The rows of one task's table, as text lines."""
    keys = list(runs[STRATEGIES[0]][0]["layers"])
    names = [key.split("/")[0] for key in keys]
    lines = [
        "| remaining | strategy | " + " | ".join(names) + " | val acc | test acc |",
        "|---" * (len(keys) + 4) + "|",
    ]
    for r in range(len(runs[STRATEGIES[0]])):
        for strategy in STRATEGIES[:1] if r == 0 else STRATEGIES:
            row = runs[strategy][r]
            left = " | ".join(f"{100 * row['layers'][key]:.1f}%" for key in keys)
            lines.append(
                f"| {100 * row['weights_remaining']:.1f}% | "
                f"{'dense' if r == 0 else strategy} | {left} | "
                f"{row['best']['val_accuracy']:.4f} | "
                f"{row['test']['accuracy']:.4f} |"
            )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test")
    parser.add_argument("--data-path", default=str(DEFAULT_DATA))
    parser.add_argument("--rounds", type=int, help="default 4 (12.5%% left)")
    parser.add_argument("--epochs-per-round", type=int, help="default 4")
    parser.add_argument(
        "--min-density",
        type=float,
        default=0.0,
        help="min_density for global and lamp (default 0)",
    )
    parser.add_argument(
        "--tasks", default="transformer,lenet", help="default transformer,lenet"
    )
    parser.add_argument("--json", help="also write the results rows here")
    args = parser.parse_args(argv)
    names = args.tasks.split(",")
    if not set(names) <= {"transformer", "lenet"} or not names:
        parser.error(f"--tasks: expected transformer and/or lenet, got {args.tasks}")
    try:
        lth.pruning.check_min_density(args.min_density)
    except ValueError as e:
        parser.error(f"--min-density: {e}")
    rounds = args.rounds or (2 if args.quick else 4)
    epochs = args.epochs_per_round or (1 if args.quick else 4)
    start = time.perf_counter()
    tasks, note = [], None
    if "transformer" in names:
        tasks.append(text_task(train=1000, held_out=300) if args.quick else text_task())
    try:
        if "lenet" in names:
            lenet, note = lenet_task(args.data_path, args.quick)
            tasks.append(lenet)
    except (OSError, ValueError) as e:
        print(f"global_strategies: skipping LeNet-300-100 on MNIST: {e}")
    print(
        f"IMP, rewind to init, prune rate {PRUNE_RATE} per round, {rounds} rounds "
        f"x {epochs} epochs, strategies {', '.join(STRATEGIES)}, min_density "
        f"{args.min_density} for global and lamp; running..."
    )
    every = {}
    for task in tasks:
        runs, dense = {}, {}
        for strategy in STRATEGIES:
            runs[strategy], dense = run(
                task,
                strategy,
                rounds=rounds,
                epochs=epochs,
                min_density=args.min_density,
            )
            elapsed = time.perf_counter() - start
            print(f"  {task.name}, {strategy}: done ({elapsed:.0f} s)")
        every[task.name] = runs
        print(f"\n{task.name}" + (f" ({note})" if task.name != "transformer" else ""))
        if dense:
            print(
                f"Not prunable in keras_lth yet, left dense and not counted: "
                f"{sum(dense.values()):,} weights ({', '.join(dense)})."
            )
        print("\n".join(table(runs)))
    print(f"\n{time.perf_counter() - start:.0f} s.")
    if args.json:
        atomic_write_text(args.json, json.dumps(every, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
