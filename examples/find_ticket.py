"""Find a winning ticket for LeNet-300-100, offline, in about a minute.

Runs iterative magnitude pruning with rewinding to init (Frankle & Carbin,
2019) on real data: scikit-learn's bundled 8x8 digits by default, or the
official MNIST test set in IDX format (`--data mnist`, split 8,000 / 1,000 /
1,000 with a fixed seed; the 60k training set is not used).

    python examples/find_ticket.py                     # digits, 8 rounds
    python examples/find_ticket.py --data mnist --mnist-dir ../shared/data/mnist

It prints progress per epoch and per round, then the round table, and writes
into `--output` (default `runs/find_ticket`): `results.json`, `results.csv`,
`ticket.keras` (the masked model) and `ticket_plain.keras` (masks baked in,
stock Keras layers only).
"""

import argparse
import gzip
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lth as lth  # noqa: E402


def load_digits_split(seed):
    """scikit-learn's digits: 1,297 train, 250 validation, 250 test."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1297], y[:1297]), (x[1297:1547], y[1297:1547]), (x[1547:], y[1547:])


def load_mnist_split(folder, seed):
    """The MNIST test set's 10k images: 8,000 / 1,000 / 1,000."""
    folder = pathlib.Path(folder)
    images = folder / "t10k-images-idx3-ubyte.gz"
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    for path in (images, labels):
        if not path.exists():
            raise SystemExit(f"error: {path} not found (see --mnist-dir)")
    with gzip.open(images) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(labels) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    x = x.astype("float32") / 255.0
    y = y.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:8000], y[:8000]), (x[8000:9000], y[8000:9000]), (x[9000:], y[9000:])


def lenet_300_100(input_dim):
    """LeNet-300-100 with Glorot init, as in the paper."""
    return keras.Sequential(
        [
            keras.Input((input_dim,)),
            keras.layers.Dense(300, activation="relu", name="fc1"),
            keras.layers.Dense(100, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="output"),
        ],
        name="lenet_300_100",
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=["digits", "mnist"], default="digits")
    parser.add_argument("--mnist-dir", default="../shared/data/mnist")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--epochs-per-round", type=int, default=10)
    parser.add_argument("--prune-rate", type=float, default=0.2)
    parser.add_argument("--rewind", default="init")
    parser.add_argument("--batch-size", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/find_ticket")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    if args.data == "digits":
        train, val, test = load_digits_split(args.seed)
    else:
        train, val, test = load_mnist_split(args.mnist_dir, args.seed)
    rewind = int(args.rewind) if args.rewind.isdigit() else args.rewind

    model = lth.mask_model(lenet_300_100(train[0].shape[1]))
    model.compile(
        optimizer=keras.optimizers.Adam(1.2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    ticket = lth.LotteryTicket(
        rounds=args.rounds,
        epochs_per_round=args.epochs_per_round,
        prune_rate=args.prune_rate,
        rewind=rewind,
        seed=args.seed,
    )
    print(
        f"IMP on {args.data}: {args.rounds} rounds x {args.epochs_per_round} "
        f"epochs, prune rate {args.prune_rate} (output layer "
        f"{args.prune_rate / 2}), rewind={rewind!r}"
    )
    model.fit(
        *train,
        validation_data=val,
        batch_size=args.batch_size,
        epochs=ticket.total_epochs,
        callbacks=[ticket],
        verbose=2,
    )

    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    ticket.save_results_json(output / "results.json")
    ticket.save_results_csv(output / "results.csv")
    lth.save_model(model, output / "ticket.keras")
    plain = lth.strip_masks(model)
    lth.save_model(plain, output / "ticket_plain.keras")
    plain.compile(metrics=["accuracy"], loss=model.loss)
    _, test_accuracy = plain.evaluate(*test, verbose=0)

    print()
    print(ticket.results_table())
    print()
    print(f"Sparsity of the final ticket: {lth.sparsity(model)['global']:.1%}")
    print(f"Test accuracy of the final ticket: {test_accuracy:.4f}")
    print(f"Wrote results.json, results.csv and two .keras files to {output}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
