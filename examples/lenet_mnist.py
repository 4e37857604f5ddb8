"""LeNet-300-100 on MNIST, step by step: the paper's first experiment.

Frankle & Carbin (2019) find winning tickets for LeNet-300-100 on MNIST by
iterative magnitude pruning (IMP): train, prune 20% of each hidden layer's
surviving weights (10% of the output layer's), rewind the survivors to their
initial values, repeat. Their control keeps each round's mask but draws the
surviving weights at random: the ticket should stay accurate longer as it
gets sparser. This script runs both with the library's parts, one step at a
time:

1. `keras_lth.datasets.load("mnist", path=...)`: MNIST from local IDX files.
2. `keras_lth.models.get_preset("lenet_300_100")`: the network, its optimizer
   (Adam 1.2e-3), batch size (60) and pruning rates, from the paper.
3. `keras_lth.LotteryTicket(..., test_data=...)` in `model.fit`: each round's
   row holds the test accuracy at its early-stopping epoch.
4. The control, as a branch of each round (level) of that run:
   `keras_lth.controls.reinit` sets `ticket.masks_at(r)` on a freshly built
   network and draws its weights afresh, and it trains once, like a round.
5. `keras_lth.strip_masks`, the test set, and `keras_lth.plot_results`.

    python examples/lenet_mnist.py                  # ../shared/data/mnist
    python examples/lenet_mnist.py --data-path ~/data/mnist --rounds 10
    python examples/lenet_mnist.py --rounds 2 --epochs-per-round 1 \\
        --max-train 600 --output /tmp/lenet_smoke   # a smoke test, seconds

`--data-path` is a folder of IDX files (or an .npz file in the layout of
`keras.datasets`). With only the official 10,000-image test set there, as in
`../shared/data/mnist`, it is split 8,000 / 1,000 / 1,000 and the script says
so: the numbers are then not comparable with the paper's, which trains on
55,000 images for 50,000 iterations. The defaults here train 6 rounds of 5
epochs, then 6 control branches of 5 epochs. From the shell:
`keras-lth run --dataset mnist --data-path ../shared/data/mnist`.

It writes into `--output` (default `runs/lenet_mnist`): `results.json` and
`results_reinit.json` (one row per round), `ticket_curve.png` and
`ticket.keras` (the final ticket, masks baked in).
"""

import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import keras_lth as lth  # noqa: E402

#: ../shared/data/mnist, beside the repository.
DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data-path",
        default=str(DEFAULT_DATA),
        help="folder of MNIST IDX files, or an .npz (default: ../shared/data/mnist)",
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--epochs-per-round", type=int, default=5)
    parser.add_argument(
        "--max-train",
        type=int,
        default=None,
        help="train on the first N training examples only (quick runs)",
    )
    parser.add_argument(
        "--no-control", action="store_true", help="skip the random-reinit control"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/lenet_mnist")
    return parser.parse_args(argv)


def build(preset, data, seed):
    """A freshly built LeNet-300-100 (784 -> 300-100-10), compiled."""
    keras.utils.set_random_seed(seed)  # The same initial weights each time.
    model = preset.build_model(input_shape=data.input_shape)
    model.compile(
        optimizer=preset.make_optimizer(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def train(model, ticket, data, args, batch_size):
    """`model.fit` with the `LotteryTicket` callback; returns its rows."""
    x, y = data.train
    model.fit(
        x[: args.max_train],
        y[: args.max_train],
        validation_data=data.validation,
        batch_size=batch_size,
        epochs=ticket.total_epochs,
        callbacks=[ticket],
        verbose=2,
    )
    return ticket.results


def main(argv=None):
    args = parse_args(argv)

    # 1. The data, split with a fixed seed.
    try:
        data = lth.datasets.load("mnist", path=args.data_path)
    except (ValueError, OSError) as err:
        raise SystemExit(f"error: {err} (see --data-path)") from None
    print(data)
    print(data.note)

    # 2. The network and the paper's settings for it.
    preset = lth.models.get_preset("lenet_300_100")
    print(f"\nPreset {preset.name}: {preset.reference}.")

    # 3. IMP, rewinding to the initial weights.
    print(f"\n== IMP: {args.rounds} rounds x {args.epochs_per_round} epochs ==")
    model = build(preset, data, args.seed)
    ticket = lth.LotteryTicket(
        rounds=args.rounds,
        epochs_per_round=args.epochs_per_round,
        rewind="init",
        test_data=data.test,  # Each row gets the test metrics at early stopping.
        seed=args.seed,
        **preset.ticket_kwargs(),  # 20% per round, the output layer 10%.
    )
    runs = {"IMP": train(model, ticket, data, args, preset.batch_size)}

    # 4. The control, branched off each round: the same mask, new weights.
    if not args.no_control:
        print("\n== Control: random reinitialization of each round's mask ==")
        reinit = []
        for r in range(args.rounds):
            control = build(preset, data, args.seed)  # As the ticket started.
            new_seed = 1000 * args.seed + r + 1  # Other weights at every round.
            lth.controls.reinit(control, ticket.masks_at(r), seed=new_seed)
            once = lth.LotteryTicket(1, args.epochs_per_round, test_data=data.test)
            (row,) = train(control, once, data, args, preset.batch_size)
            reinit.append({**row, "round": r})
        runs["random reinit"] = reinit

    # 5. The results, the final ticket on the test set, the plot.
    output = pathlib.Path(args.output)
    for name, results in runs.items():
        print(f"\n{name}:\n{lth.results_table(results)}")
        stem = "results" if name == "IMP" else "results_reinit"
        lth.save_results_json(results, output / f"{stem}.json")
    plain = lth.strip_masks(model)  # Stock Keras layers, pruned weights at 0.
    plain.compile(loss=model.loss, metrics=["accuracy"])
    _, test_accuracy = plain.evaluate(*data.test, verbose=0)
    lth.save_model(plain, output / "ticket.keras")
    controls = {k: v for k, v in runs.items() if k != "IMP"}
    lth.plot_results(
        runs["IMP"], controls=controls or None, path=output / "ticket_curve.png"
    )

    left = 1.0 - lth.sparsity(model)["global"]
    print(f"\nFinal ticket: {left:.1%} of the weights left, per layer:")
    for layer, pruned in lth.sparsity(model)["layers"].items():
        print(f"  {layer:<16} {1.0 - pruned:.1%} left")
    print(f"Test accuracy of the final ticket: {test_accuracy:.4f}")
    print(f"Wrote results, ticket_curve.png and ticket.keras to {output}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
