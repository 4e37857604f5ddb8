"""The baseline keras_lth is measured against: tfmot's pruning wrapper on tf_keras.

What it measures
    The training-step time of LeNet-300-100 (and Conv-4 at 16x16x3, as in
    `benchmarks/overhead.py`) wrapped by tensorflow-model-optimization's
    `prune_low_magnitude` (ConstantSparsity 50%, pruning every 100 steps,
    with its required `UpdatePruningStep` callback), relative to the very
    same plain `tf_keras` model. Both are timed alternately in one process
    (the order reversed every other repetition), and the median of the
    paired ratios is printed, as `overhead.py` does for keras_lth on Keras 3.

Why a process of its own
    Importing tensorflow_model_optimization sets `TF_USE_LEGACY_KERAS=1` for
    the whole process: it only works with the legacy Keras 2 (`tf_keras`).
    keras_lth never imports it, so this script runs it alone; `run_all.py`
    starts it as a subprocess and puts its ratio beside keras_lth's.

Needs the `tfmot` extra: `pip install "keras-lth[tfmot]"`.

Reproduce (from the repository root):

    python benchmarks/tfmot_baseline.py            # about 2 minutes
    python benchmarks/tfmot_baseline.py --quick    # seconds
    python benchmarks/tfmot_baseline.py --json out.json
"""

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BATCH_SIZE = 60
MODELS = {
    # name: (input shape, learning rate, steps per timed fit, quick steps)
    "lenet": ((784,), 1.2e-3, 100, 5),
    "conv4": ((16, 16, 3), 3e-4, 5, 1),
}


def build(name, keras):
    layers = keras.layers
    if name == "lenet":
        return keras.Sequential(
            [
                keras.Input((784,)),
                layers.Dense(300, activation="relu"),
                layers.Dense(100, activation="relu"),
                layers.Dense(10),
            ]
        )
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, padding="same", activation="relu"),
            layers.Conv2D(128, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(256, activation="relu"),
            layers.Dense(256, activation="relu"),
            layers.Dense(10),
        ]
    )


def measure(name, repeats, quick):
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    shape, learning_rate, steps, quick_steps = MODELS[name]
    steps = quick_steps if quick else steps
    rng = tf.random.Generator.from_seed(0)
    x = rng.uniform((BATCH_SIZE * steps, *shape))
    y = rng.uniform((BATCH_SIZE * steps,), maxval=10, dtype=tf.int32)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH_SIZE).cache().repeat()

    plain = build(name, keras)
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=100)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        build(name, keras), pruning_schedule=schedule
    )
    models = {"plain": plain, "tfmot": pruned}
    for model in models.values():
        model.compile(
            keras.optimizers.Adam(learning_rate),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    def callbacks(key):
        if key == "tfmot":
            return [tfmot.sparsity.keras.UpdatePruningStep()]
        return []

    def timed_fit(key):
        model = models[key]
        start = time.perf_counter()
        model.fit(
            data, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=callbacks(key)
        )
        return (time.perf_counter() - start) / steps

    for key in models:  # Warm up: trace and compile the train functions.
        timed_fit(key)
    times = {key: [] for key in models}
    for repeat in range(repeats):
        order = list(models) if repeat % 2 == 0 else list(models)[::-1]
        for key in order:
            times[key].append(timed_fit(key))
    ratios = [t / p for t, p in zip(times["tfmot"], times["plain"])]
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "model": name,
        "steps": steps,
        "repeats": repeats,
        "plain_ms": 1000 * statistics.median(times["plain"]),
        "tfmot_ms": 1000 * statistics.median(times["tfmot"]),
        "ratio": statistics.median(ratios),
        "ratio_q1": q[0],
        "ratio_q3": q[2],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="tfmot prune_low_magnitude vs plain tf_keras step time."
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; expected some of {list(MODELS)}")
    for package in ("tensorflow_model_optimization", "tf_keras"):
        if importlib.util.find_spec(package) is None:
            print(
                f"tfmot_baseline: error: {package} is not installed; "
                'pip install "keras-lth[tfmot]"',
                file=sys.stderr,
            )
            return 2
    repeats = args.repeats or (3 if args.quick else 20)
    rows = [measure(name, repeats, args.quick) for name in names]

    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    versions = f"tfmot {tfmot.__version__}, TensorFlow {tf.__version__}, tf_keras"
    print(f"tfmot prune_low_magnitude (50%) vs plain tf_keras ({versions})")
    print(
        f"{'model':6}  {'plain ms/step':>13}  {'tfmot ms/step':>13}  median ratio (IQR)"
    )
    for r in rows:
        print(
            f"{r['model']:6}  {r['plain_ms']:13.2f}  {r['tfmot_ms']:13.2f}  "
            f"{r['ratio']:.3f}x ({r['ratio_q1']:.3f}-{r['ratio_q3']:.3f})"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"versions": versions, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
