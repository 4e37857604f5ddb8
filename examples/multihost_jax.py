"""Multi-host iterative magnitude pruning with Keras 3's distribution API on JAX.

One worker process of a data-parallel Lottery Ticket run: Keras 3 on the JAX
backend, `keras.distribution.DataParallel` over every device of every process,
`jax.distributed` for the cluster (gloo collectives on CPU) and `tf.data`
input. It trains a small LeNet-like convnet on scikit-learn's 8x8 digits with
`keras_lth.LotteryTicket` in a plain `model.fit`, then writes what it ended
with (masks, per-round results, a checksum of every weight) to
`--output/process_<i>.json`.

Launching. Start one process per host (or several on one host, as the tests
do on 127.0.0.1), all with the same `--coordinator` address: a `host:port` of
the machine running process 0, reachable from every other host. Give each
process its own `--process-id`, from 0 to N - 1:

    # on host 0 (host0.example.com), the coordinator
    python examples/multihost_jax.py --coordinator host0.example.com:1234 \\
        --num-processes N --process-id 0 --output runs/multihost
    # on host i, for i = 1 .. N-1
    python examples/multihost_jax.py --coordinator host0.example.com:1234 \\
        --num-processes N --process-id i --output runs/multihost

`jax.distributed.initialize` (called through `keras.distribution.initialize`)
blocks until all N processes have joined. With `--num-processes 1` the script
skips the cluster setup and runs the same training on this process's devices,
which is the single-host reference the multi-host run should reproduce.

Input. Every process builds the same *global* `tf.data` pipeline (global
batches of `--batch-size`, unshuffled). `DataParallel` auto-shards it (its
default `auto_shard_dataset=True`): each process re-batches to
`batch_size / N` and keeps its own shard, and Keras assembles the global batch
with `jax.make_array_from_process_local_data`. So `--batch-size` must be
divisible by N. Variables, masks included, are replicated on every device, and
the gradients are all-reduced, so all processes prune to the same masks.
"""

import argparse
import hashlib
import json
import os
import pathlib

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import numpy as np  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument(
        "--coordinator",
        default="127.0.0.1:12345",
        help="host:port of process 0, the same for every process",
    )
    parser.add_argument("--output", required=True, help="folder for the JSON")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs-per-round", type=int, default=2)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="global batch size, divisible by --num-processes",
    )
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 <= args.process_id < args.num_processes:
        parser.error("--process-id must be in [0, --num-processes)")
    if args.batch_size % args.num_processes:
        parser.error("--batch-size must be divisible by --num-processes")
    return args


def initialize_cluster(args):
    """Joins the cluster (if any) and sets a DataParallel distribution."""
    import keras

    if args.num_processes > 1:
        # Cross-process collectives on CPU (the default in recent jax, but
        # explicit here); it must be set before the backend starts.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        # Calls `jax.distributed.initialize(coordinator_address=...,
        # num_processes=..., process_id=...)`.
        keras.distribution.initialize(
            job_addresses=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    assert jax.process_count() == args.num_processes, jax.process_count()
    distribution = keras.distribution.DataParallel(devices=jax.devices())
    keras.distribution.set_distribution(distribution)
    return distribution


def load_digits_split(seed=0):
    """scikit-learn's digits as 8x8x1 images: 1,437 train, 360 validation."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype("float32").reshape(-1, 8, 8, 1)
    y = data.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1437], y[:1437]), (x[1437:], y[1437:])


def global_batches(x, y, batch_size):
    """The global (unsharded) dataset; DataParallel shards it per process."""
    import tensorflow as tf

    # tf.data only: keep TensorFlow off any accelerator JAX should own.
    tf.config.set_visible_devices([], "GPU")

    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    # Not shuffled, remainder dropped: every run sees identical batches, and
    # every global batch splits evenly across the processes.
    return dataset.batch(batch_size, drop_remainder=True)


def build_model():
    """A LeNet-5-like convnet sized for 8x8 digits."""
    import keras

    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv_1"),
            keras.layers.MaxPooling2D(2, name="pool_1"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(48, activation="relu", name="hidden_1"),
            keras.layers.Dense(32, activation="relu", name="hidden_2"),
            keras.layers.Dense(10, name="output"),
        ]
    )


def weight_checksums(model):
    """`{variable path: {"sha256", "sum"}}` for every model variable."""
    from keras import ops

    checksums = {}
    for variable in model.variables:
        value = np.ascontiguousarray(ops.convert_to_numpy(variable))
        checksums[variable.path] = {
            "sha256": hashlib.sha256(value.tobytes()).hexdigest(),
            "sum": float(np.sum(value, dtype=np.float64)),
        }
    return checksums


def run(args):
    distribution = initialize_cluster(args)

    import keras

    import keras_lth

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_val, y_val) = load_digits_split(args.seed)
    # Created under the distribution: every variable is replicated on the
    # mesh. Same seed in every process, so the same initial weights.
    model = keras_lth.mask_model(build_model())
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    ticket = keras_lth.LotteryTicket(
        args.rounds, args.epochs_per_round, verbose=0, seed=args.seed
    )
    model.fit(
        global_batches(x_train, y_train, args.batch_size),
        validation_data=global_batches(x_val, y_val, args.batch_size),
        epochs=ticket.total_epochs,
        shuffle=False,
        callbacks=[ticket],
        verbose=0,
    )
    masks = keras_lth.get_masks(model)
    report = {
        "process_id": jax.process_index(),
        "num_processes": jax.process_count(),
        "devices": [str(d) for d in jax.devices()],
        "local_devices": [str(d) for d in jax.local_devices()],
        "mesh_shape": list(distribution.device_mesh.shape),
        "masks": {
            key: mask.astype(int).ravel().tolist() for key, mask in masks.items()
        },
        "mask_shapes": {key: list(mask.shape) for key, mask in masks.items()},
        "results": ticket.results,
        "weights": weight_checksums(model),
    }
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"process_{args.process_id}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report))
    tmp.replace(path)
    print(f"process {args.process_id}/{args.num_processes}: wrote {path}")
    if args.num_processes > 1:
        # Leave together, so no process tears the coordinator down early.
        jax.distributed.shutdown()


if __name__ == "__main__":
    run(parse_args())
