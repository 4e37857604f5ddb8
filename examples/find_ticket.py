"""Find a winning ticket for LeNet-300-100, offline, in about a minute.

Runs iterative magnitude pruning with rewinding to init (Frankle & Carbin,
2019) on real data from `keras_lth.datasets`: scikit-learn's bundled 8x8
digits by default (1,297 / 250 / 250), or MNIST from IDX files (`--data
mnist`). With only the official test set in `--mnist-dir` (as in
`../shared/data/mnist`), its 10,000 images are split 8,000 / 1,000 / 1,000
with a fixed seed; with the training set there too, 5,000 validation images
are drawn from it and the official test set is the test set.

    python examples/find_ticket.py                     # digits, 8 rounds
    python examples/find_ticket.py --data mnist --mnist-dir ../shared/data/mnist

It prints progress per epoch and per round, then the round table, and writes
into `--output` (default `runs/find_ticket`): `results.json`, `results.csv`,
`ticket.keras` (the masked model) and `ticket_plain.keras` (masks baked in,
stock Keras layers only).
"""

import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import keras_lth as lth  # noqa: E402


def load_data(args):
    """`(train, validation, test)` pairs of `(x, y)`, images flattened."""
    try:
        if args.data == "digits":
            data = lth.datasets.load("digits", seed=args.seed)
        else:
            data = lth.datasets.load("mnist", path=args.mnist_dir, seed=args.seed)
    except (ValueError, OSError) as err:
        raise SystemExit(f"error: {err} (see --mnist-dir)") from None
    return data.train, data.validation, data.test


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
    train, val, test = load_data(args)
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
