"""Lottery tickets for the paper's convnets (Conv-2, Conv-4, Conv-6) on small images.

Frankle & Carbin (2019) prune their VGG-like CIFAR-10 networks at different
rates per layer: the convolutions at 10% per round (15% for Conv-6), the
fully connected layers at 20% and the output layer at 10%. The presets in
`keras_lth.models` hold those rates, and the builders take any image shape,
so the same networks run offline on scikit-learn's 8x8 digits (as 8x8x1
images) or on MNIST (28x28x1, from local IDX files):

    python examples/convnet.py                                # Conv-2, digits
    python examples/convnet.py --model conv4
    python examples/convnet.py --dataset mnist --data-path ../shared/data/mnist
    python examples/convnet.py --rounds 2 --epochs-per-round 1 --max-train 256 \\
        --output /tmp/convnet_smoke                           # seconds

It prints each round, the table, the weights left per layer (the convolutions
shrink more slowly than the dense layers), and the final ticket's test
accuracy, and writes `results.json`, `ticket_curve.png` and `ticket.keras`
into `--output` (default `runs/convnet`).
"""

import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import keras_lth as lth  # noqa: E402

#: ../shared/data/mnist, beside the repository.
DEFAULT_MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared/data/mnist"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["conv2", "conv4", "conv6"], default="conv2")
    parser.add_argument("--dataset", choices=["digits", "mnist"], default="digits")
    parser.add_argument(
        "--data-path",
        default=str(DEFAULT_MNIST),
        help="MNIST IDX folder or .npz, for --dataset mnist (default: "
        "../shared/data/mnist)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs-per-round", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None, help="default: 60")
    parser.add_argument(
        "--max-train",
        type=int,
        default=None,
        help="train on the first N training examples only (quick runs)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/convnet")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    path = None if args.dataset == "digits" else args.data_path
    try:
        # flatten=False: images of shape (height, width, 1) for the convolutions.
        data = lth.datasets.load(args.dataset, path=path, flatten=False)
    except (ValueError, OSError) as err:
        raise SystemExit(f"error: {err} (see --data-path)") from None
    print(data)
    print(data.note)

    preset = lth.models.get_preset(args.model)
    keras.utils.set_random_seed(args.seed)
    model = preset.build_model(input_shape=data.input_shape)
    model.compile(
        optimizer=preset.make_optimizer(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    kwargs = preset.ticket_kwargs()
    print(f"\nPreset {preset.name}: {preset.reference}.")
    print(f"Pruning per round: {kwargs['prune_rate']} except {kwargs['layer_rates']}")
    ticket = lth.LotteryTicket(
        rounds=args.rounds,
        epochs_per_round=args.epochs_per_round,
        seed=args.seed,
        **kwargs,
    )
    x, y = data.train
    model.fit(
        x[: args.max_train],
        y[: args.max_train],
        validation_data=data.validation,
        batch_size=args.batch_size or preset.batch_size,
        epochs=ticket.total_epochs,
        callbacks=[ticket],
        verbose=2,
    )

    output = pathlib.Path(args.output)
    ticket.save_results_json(output / "results.json")
    lth.plot_results(
        ticket.results,
        path=output / "ticket_curve.png",
        title=f"Lottery ticket: {args.model} on {args.dataset}",
    )
    lth.save_model(model, output / "ticket.keras")
    _, test_accuracy = model.evaluate(*data.test, verbose=0)

    print()
    print(ticket.results_table())
    print("\nWeights left per layer in the final ticket:")
    for layer, pruned in lth.sparsity(model)["layers"].items():
        print(f"  {layer:<16} {1.0 - pruned:6.1%}")
    print(f"Test accuracy of the final ticket: {test_accuracy:.4f}")
    print(f"Wrote results.json, ticket_curve.png and ticket.keras to {output}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
