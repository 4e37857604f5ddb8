"""Watch a lottery ticket being found in TensorBoard, offline, in seconds.

Runs iterative magnitude pruning (Frankle & Carbin, 2019) on scikit-learn's
bundled 8x8 digits with two TensorBoard callbacks writing to one folder:

* `keras.callbacks.TensorBoard`: the usual `epoch_loss`, `epoch_accuracy`.
* `LotteryTicket(log_dir=...)`, which writes `keras_lth.SparsitySummaries`:
  `sparsity/...` and weight histograms of
  the surviving weights at every epoch, and per finished round the
  `lottery/...` scalars, the ticket curve
  (`lottery_vs_sparsity_permille/...`) and the `lottery/plot` image.

    python examples/tensorboard_walkthrough.py
    tensorboard --logdir runs/tensorboard_walkthrough

For a smoke test, in a few seconds:

    python examples/tensorboard_walkthrough.py --rounds 2 --epochs-per-round 1 \\
        --log-dir /tmp/tb_smoke
"""

import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import keras_lth as lth  # noqa: E402


def build_model(hidden):
    """A small LeNet-style network: two hidden layers, then the output.

    Training without a ticket? Pass `keras_lth.SparsitySummaries(log_dir)`
    as a callback of its own for the same sparsity summaries.
    """
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(hidden, activation="relu", name="fc1"),
            keras.layers.Dense(hidden // 2, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="output"),
        ],
        name="lenet",
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--epochs-per-round", type=int, default=8)
    parser.add_argument("--prune-rate", type=float, default=0.3)
    parser.add_argument("--hidden", type=int, default=128, help="first layer width")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-dir", default="runs/tensorboard_walkthrough")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    splits = lth.datasets.load_digits(seed=args.seed)
    train, validation = splits.train, splits.validation
    model = lth.mask_model(build_model(args.hidden))
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    ticket = lth.LotteryTicket(
        rounds=args.rounds,
        epochs_per_round=args.epochs_per_round,
        prune_rate=args.prune_rate,
        seed=args.seed,
        log_dir=args.log_dir,  # Sparsity, histograms, and each round's results.
    )
    model.fit(
        *train,
        validation_data=validation,
        batch_size=args.batch_size,
        epochs=ticket.total_epochs,
        callbacks=[ticket, keras.callbacks.TensorBoard(args.log_dir)],
        verbose=2,
    )

    print()
    print(ticket.results_table())
    curve = pathlib.Path(args.log_dir) / "ticket_curve.png"
    lth.plot_results(ticket.results, path=curve)
    print()
    print(f"TensorBoard logs in {args.log_dir}/ (runs train/ and validation/),")
    print(f"the ticket curve in {curve}. See them with:")
    print(f"    tensorboard --logdir {args.log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
