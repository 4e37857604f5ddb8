"""Find a winning ticket in a small KerasHub BERT classifier, offline.

Builds `keras_hub.models.BertTextClassifier` on a 2-layer `BertBackbone`
with random weights (no preset, nothing downloaded), masks it in place with
`keras_lth.mask_model(classifier, in_place=True)` (it stays a
`BertTextClassifier`), and runs iterative magnitude pruning with LAMP's
layer-adaptive global ranking inside `model.fit`.

The data is synthetic, made with numpy, so that the example runs offline:
a real text dataset and BERT's tokenizer would both be downloads. Each
sequence is `[CLS]` followed by random filler token ids and three
"keyword" ids, at random places, then padding. There are `--classes`
groups of keywords; two of the three keywords come from the sequence's
class's group and one from another group, so the class is the group that
appears twice. The label depends only on which keyword ids occur, so it is
learnable; chance is `1 / --classes`.

    python examples/kerashub_ticket.py              # 5 rounds of 3 epochs
    python examples/kerashub_ticket.py --quick      # 2 rounds of 1 epoch, tiny
    KERAS_BACKEND=jax python examples/kerashub_ticket.py

On 2 CPU cores the 5 rounds took about 50 s on TensorFlow, 1.5 min on JAX
and 7 min on PyTorch; `--quick` takes seconds past the imports.

It prints the round table, the sparsity of the ticket, then saves it with
`keras_lth.save_model` and loads it back with `keras_lth.load_model` (a
model masked in place needs it), checking that the predictions match. Last,
`keras_lth.strip_masks(model, in_place=True)` gives the layers their stock
classes back, and plain `keras.saving.load_model` reads that file. Writes
`results.json`, `ticket.keras` and `ticket_plain.keras` into `--output`
(default `runs/kerashub_ticket`).
"""

import argparse
import os
import pathlib
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lth as lth  # noqa: E402

PAD, CLS, FIRST_FILLER = 0, 1, 2


def keyword_task(size, *, classes, vocabulary_size, length, rng):
    """`(inputs, labels)`: BERT's three inputs as a dict, and int labels.

    Keyword ids are the top `3 * classes` ids of the vocabulary, 3 per class;
    fillers are drawn from the ids below them. Each sequence has 3 keywords:
    two of its class and one of another class.
    """
    keywords = np.arange(vocabulary_size - 3 * classes, vocabulary_size)
    keywords = keywords.reshape(classes, 3)
    labels = rng.integers(0, classes, size=size)
    tokens = np.zeros((size, length), "int32")
    for i, label in enumerate(labels):
        used = int(rng.integers(length // 2, length + 1))  # The rest is padding.
        tokens[i, 0] = CLS
        tokens[i, 1:used] = rng.integers(FIRST_FILLER, keywords.min(), used - 1)
        other = (label + rng.integers(1, classes)) % classes
        words = [*rng.choice(keywords[label], 2), rng.choice(keywords[other])]
        places = rng.choice(np.arange(1, used), size=3, replace=False)
        tokens[i, places] = words
    inputs = {
        "token_ids": tokens,
        "segment_ids": np.zeros_like(tokens),
        "padding_mask": (tokens != PAD).astype("int32"),
    }
    return inputs, labels.astype("int32")


def bert_classifier(args):
    """A 2-layer BERT with random weights and a classification head."""
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=args.vocabulary_size,
        num_layers=2,
        num_heads=2,
        hidden_dim=64,
        intermediate_dim=128,
        max_sequence_length=args.length,
    )
    return keras_hub.models.BertTextClassifier(
        backbone, num_classes=args.classes, preprocessor=None
    )


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny, in seconds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs-per-round", type=int, default=3)
    parser.add_argument("--prune-rate", type=float, default=0.4)
    parser.add_argument("--train", type=int, default=2000, help="examples")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--vocabulary-size", type=int, default=500)
    parser.add_argument("--length", type=int, default=32, help="tokens")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/kerashub_ticket")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs_per_round, args.train = 2, 1, 128
    return args


def quietly_load(load, path):
    """`load(path, compile=False)`, without one warning of Keras's.

    A KerasHub task compiles itself when it is built, so the model Keras
    rebuilds has an optimizer of its own, unbuilt, which the saved Adam's
    variables do not fit: Keras warns that it skips them. Only predictions
    are needed here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
        return load(path, compile=False)


def predictions(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def check_loaded(how, loaded, expected, x):
    """Exits with an error unless `loaded` predicts `expected` on `x`."""
    difference = float(np.max(np.abs(predictions(loaded, x) - expected)))
    if difference > 1e-4:
        sys.exit(f"error: {how} gave other predictions (max |diff| {difference:.2e})")
    print(
        f"{how}: a {type(loaded).__name__} with the ticket's predictions "
        f"(max |diff| {difference:.1e})"
    )


def zero_kernel_weights(model):
    """Counts the exact zeros in `model`'s kernels and embedding tables."""
    return sum(
        int(np.sum(keras.ops.convert_to_numpy(v) == 0))
        for v in model.weights
        if v.path.endswith(("kernel", "embeddings"))
    )


def main(argv=None):
    args = parse_args(argv)
    try:
        import keras_hub  # noqa: F401
    except ImportError:
        sys.exit("error: this example needs KerasHub: pip install keras-hub")

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    task = dict(
        classes=args.classes,
        vocabulary_size=args.vocabulary_size,
        length=args.length,
        rng=rng,
    )
    train = keyword_task(args.train, **task)
    val = keyword_task(max(args.train // 4, 64), **task)
    test = keyword_task(max(args.train // 4, 64), **task)

    # In place: the classifier keeps its class, and every layer holding a
    # kernel or an embedding table, KerasHub's own ones included, is masked.
    model = lth.mask_model(bert_classifier(args), in_place=True)
    print(f"Masked in place: the model is still a {type(model).__name__}")
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    ticket = lth.LotteryTicket(
        rounds=args.rounds,
        epochs_per_round=args.epochs_per_round,
        prune_rate=args.prune_rate,
        strategy="lamp",
        test_data=test,
        seed=args.seed,
    )
    print(
        f"IMP on {args.classes} keyword classes (chance {1 / args.classes:.2f}): "
        f"{args.rounds} rounds x {args.epochs_per_round} epochs, LAMP, prune "
        f"rate {args.prune_rate}, {len(lth.get_masks(model))} masked tensors"
    )
    model.fit(
        *train,
        validation_data=val,
        batch_size=args.batch_size,
        epochs=ticket.total_epochs,
        callbacks=[ticket],
        # KerasHub's `fit` batches arrays into a dataset of its own, which
        # Keras does not shuffle; the synthetic examples are in random order.
        shuffle=False,
        verbose=2,
    )

    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    lth.save_results_json(ticket.results, output / "results.json")
    report = lth.sparsity(model)
    print()
    print(lth.results_table(ticket.results))
    print()
    print(f"Sparsity of the final ticket: {report['global']:.1%}")
    print(f"Weights left dense (not prunable): {report['dense'] or 'none'}")

    x_test = test[0]
    expected = predictions(model, x_test)
    masks = lth.get_masks(model)
    lth.save_model(model, output / "ticket.keras")
    # Plain Keras would rebuild the stock layers, with nowhere to load the
    # masks into: `keras_lth.load_model` masks them in place first.
    loaded = quietly_load(lth.load_model, output / "ticket.keras")
    loaded_masks = lth.get_masks(loaded)
    if loaded_masks.keys() != masks.keys() or not all(
        np.array_equal(mask, loaded_masks[key]) for key, mask in masks.items()
    ):
        sys.exit("error: the loaded ticket has other masks than the ticket")
    check_loaded("keras_lth.load_model", loaded, expected, x_test)

    # Bake the masks in: the layers get their stock classes back.
    lth.strip_masks(model, in_place=True)
    lth.save_model(model, output / "ticket_plain.keras")
    plain = quietly_load(keras.saving.load_model, output / "ticket_plain.keras")
    pruned = sum(int(np.sum(mask == 0)) for mask in masks.values())
    if lth.get_masks(plain) or zero_kernel_weights(plain) < pruned:
        sys.exit("error: the stripped ticket lost its pruned weights")
    check_loaded("keras.saving.load_model after strip_masks", plain, expected, x_test)
    print(f"Its {pruned:,} pruned weights are exact zeros, with no masks left")
    print(f"Wrote results.json, ticket.keras and ticket_plain.keras to {output}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
