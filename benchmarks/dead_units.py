"""Dead units in the reproduced LeNet-300-100 tickets, and what `shrink` gives.

What it measures
    The masks of the LeNet-300-100 tickets that `benchmarks/reproduce_lenet.py`
    found on the full MNIST (5 seeds, levels 51.3, 21.1, 7.0, 3.6 and 1.9% of
    the weights remaining; saved under `<run>/seed_<s>/levels/*/masks.npz`).
    For each, how many hidden units `keras_lth.shrink` removes (a unit whose
    outgoing weights are all pruned, or whose incoming ones are, as a constant
    folded into the next biases), the shrunk model's parameter count against
    the dense 266,610, and Keras's CPU inference time of the shrunk model
    against the ticket stripped of its masks (`strip_masks`: stock layers at
    the dense size), batch 256, timed interleaved in one process.

    `shrink` decides from which weights are zero, and a trained weight that
    the mask keeps is never exactly zero, so the masks decide alone: the
    weights here are random nonzero values under each mask, not the trained
    ones (which the reproduction does not keep).

    python benchmarks/dead_units.py [--run runs/reproduce_lenet] [--json out]
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
LEVELS = ("51.3", "21.1", "7.0", "3.6", "1.9")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default=str(ROOT / "runs" / "reproduce_lenet"))
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls each")
    return parser.parse_args(argv)


def level_masks(run):
    """`{(seed, level): {key: mask}}` of the run's saved levels."""
    import numpy as np

    found = {}
    for folder in sorted(pathlib.Path(run).glob("seed_*/levels/*")):
        level = folder.name.split("_")[-1].removesuffix("pct")
        if level in LEVELS and (folder / "masks.npz").exists():
            seed = int(folder.parent.parent.name.removeprefix("seed_"))
            with np.load(folder / "masks.npz") as data:
                found[seed, level] = {key: data[key] for key in data.files}
    return found


def lenet():
    import keras

    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(300, activation="relu", name="fc1"),
            keras.layers.Dense(100, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="output"),
        ]
    )


def time_pair(a, b, x, repeats):
    """Median seconds of `a(x)` and `b(x)`, called in turn."""
    times = {id(a): [], id(b): []}
    for model in (a, b):  # Warm up: trace and allocate.
        model(x, training=False)
    for _ in range(repeats):
        for model in (a, b):
            start = time.perf_counter()
            model(x, training=False)
            times[id(model)].append(time.perf_counter() - start)
    return statistics.median(times[id(a)]), statistics.median(times[id(b)])


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    import keras_lth

    masks = level_masks(args.run)
    if not masks:
        sys.exit(f"error: no level masks under {args.run}: run reproduce_lenet.py")
    rng = np.random.default_rng(0)
    x = rng.random((256, 784)).astype("float32")
    rows = []
    print("seed  level  hidden_1  hidden_2  params    params/dense", end="")
    print("  keras b256 shrunk/ticket")
    for (seed, level), level_mask in sorted(
        masks.items(), key=lambda i: (-float(i[0][1]), i[0][0])
    ):
        keras.utils.set_random_seed(seed)
        ticket = keras_lth.mask_model(lenet())
        for layer in ticket.layers:  # Nonzero everywhere the mask keeps.
            layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype("float32"))
            layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32") * 0.1)
        keras_lth.set_masks(ticket, {k: v for k, v in level_mask.items()})
        small, report = keras_lth.shrink(ticket, return_report=True)
        error = float(np.max(np.abs(ticket(x) - small(x))))
        # Against the ticket as it deploys without shrinking: stripped to stock
        # layers, at the dense size (the masked model also masks in `call`).
        plain = keras_lth.strip_masks(ticket)
        dense_seconds, small_seconds = time_pair(plain, small, x, args.repeats)
        units = {
            layer.name: layer.units for layer in small.layers if hasattr(layer, "units")
        }
        row = {
            "seed": seed,
            "level": float(level),
            "hidden_1": units["fc1"],
            "hidden_2": units["fc2"],
            "params": report.params_after,
            "params_dense": report.params_before,
            "folded": report.folded,
            "max_abs_error": error,
            "keras_b256_ratio": small_seconds / dense_seconds,
        }
        rows.append(row)
        print(
            f"{seed:4d}  {level:>5}%  {row['hidden_1']:8d}  {row['hidden_2']:8d}  "
            f"{row['params']:8,d}  {row['params'] / row['params_dense']:12.3f}  "
            f"{row['keras_b256_ratio']:10.2f}x"
        )
    print("\nmean over seeds (hidden_1 / hidden_2 units left, params / dense):")
    for level in LEVELS:
        at = [r for r in rows if r["level"] == float(level)]
        if at:
            params = np.mean([r["params"] for r in at]) / at[0]["params_dense"]
            speed = np.mean([r["keras_b256_ratio"] for r in at])
            print(
                f"  {level:>5}%: {np.mean([r['hidden_1'] for r in at]):6.1f} / "
                f"{np.mean([r['hidden_2'] for r in at]):5.1f} units, "
                f"{params:.3f}x parameters, Keras batch-256 time {speed:.2f}x"
            )
    worst = max(r["max_abs_error"] for r in rows)
    print(f"largest output difference, ticket vs shrunk: {worst:.2e}")
    if args.json:
        from keras_lth.saving import atomic_write_text

        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
