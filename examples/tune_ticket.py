"""Search for the best lottery ticket with keras-tuner, offline, on digits.

Every trial runs iterative magnitude pruning (`keras_lth.LotteryTicket`) until
the ticket keeps at most `--target` of its weights, and scores the best
validation accuracy of a ticket at or below that target. The search covers
the prune rate and the rewind point, plus two hyperparameters of the model
itself (the hidden width and Adam's learning rate).

    pip install -e ".[data,tuner]"
    python examples/tune_ticket.py                       # 6 random trials
    python examples/tune_ticket.py --tuner hyperband     # budget: epochs/round
    python examples/tune_ticket.py --max-trials 2 --epochs-per-round 1 \\
        --directory /tmp/tune_smoke --overwrite          # smoke test

Run it again without `--overwrite` and finished trials are kept. It writes
the trials to `--directory` (TensorBoard logs in `<directory>/tune_ticket/logs`,
one folder per trial) and the best ticket, masks baked in, to
`<directory>/best_ticket_plain.keras`.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import keras_lth as lth  # noqa: E402
from keras_lth import tuner as lth_tuner  # noqa: E402


def build(hp):
    """The model to prune: any compiled Keras model; `hp` is keras-tuner's."""
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(
                hp.Choice("units", [100, 300]), activation="relu", name="fc1"
            ),
            keras.layers.Dense(10, name="output"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Choice("learning_rate", [1.2e-3, 3e-3])),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model  # TicketHyperModel makes it prunable (keras_lth.mask_model).


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tuner", choices=["random", "bayesian", "hyperband"],
                        default="random")  # fmt: skip
    parser.add_argument("--max-trials", type=int, default=6)
    parser.add_argument("--epochs-per-round", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.2)
    parser.add_argument("--directory", default="runs/tune_ticket")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    data = lth.datasets.load("digits", seed=args.seed)
    hypermodel = lth_tuner.TicketHyperModel(
        build,
        target_weights_remaining=args.target,
        prune_rate=[0.2, 0.4],
        rewind=["init", "epoch:1"],
        epochs_per_round=args.epochs_per_round,
        log_dir=os.path.join(args.directory, "tune_ticket", "logs"),
        seed=args.seed,  # Every trial starts from the same initialization.
    )
    tuner = lth_tuner.make_tuner(
        args.tuner,
        hypermodel,
        max_trials=args.max_trials,
        directory=args.directory,
        project_name="tune_ticket",
        overwrite=args.overwrite,
        seed=args.seed,
        **({"factor": 2} if args.tuner == "hyperband" else {}),
    )
    tuner.search(*data.train, validation_data=data.validation, batch_size=60, verbose=0)

    tuner.results_summary(num_trials=3)
    best = tuner.oracle.get_best_trials(1)[0]
    ticket = lth_tuner.best_ticket(tuner)  # Masked: the trial's final ticket.
    plain = lth.strip_masks(ticket)
    plain.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    _, test_accuracy = plain.evaluate(*data.test, verbose=0)
    output = os.path.join(args.directory, "best_ticket_plain.keras")
    lth.save_model(plain, output)

    print()
    print(f"Best trial {best.trial_id}: {best.hyperparameters.values}")
    print(f"{hypermodel.objective_name} = {best.score:.4f}")
    print(lth.results_table(lth_tuner.load_trial_results(tuner, best.trial_id)))
    print(
        f"Best ticket: {1 - lth.sparsity(ticket)['global']:.1%} of weights "
        f"remaining, test accuracy {test_accuracy:.4f}; saved to {output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
