"""Prune a small network, export it to LiteRT, and run the file.

Trains LeNet-300-100 on scikit-learn's bundled 8x8 digits (offline, a few
seconds), prunes 90% of every kernel by magnitude with `keras_lth.prune`,
fine-tunes the ticket with its masks, then writes it with
`keras_lth.export_litert`: the masks are baked in, the file is converted with
LiteRT's sparsity encoding, checked against the Keras model under LiteRT's
default delegates, timed against the dense export, and only then written.
Finally it loads the file with `ai_edge_litert` and measures its accuracy.

    python examples/deploy_litert.py
    python examples/deploy_litert.py --quantize int8
    python examples/deploy_litert.py --epochs 1 --finetune-epochs 0   # smoke

Needs the TensorFlow backend and `pip install "keras-lth[litert,data]"`.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lth as lth  # noqa: E402
from keras_lth.litert import export_litert  # noqa: E402


def lenet_300_100(input_dim):
    return keras.Sequential(
        [
            keras.Input((input_dim,)),
            keras.layers.Dense(300, activation="relu", name="fc1"),
            keras.layers.Dense(100, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="output"),
        ],
        name="lenet_300_100",
    )


def compile_model(model):
    model.compile(
        optimizer=keras.optimizers.Adam(1.2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def litert_accuracy(path, x, y):
    """Top-1 accuracy of a LiteRT file, one image at a time."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner()
    (input_name,) = runner.get_input_details()
    hits = 0
    for image, label in zip(x, y):
        (logits,) = runner(**{input_name: image[None]}).values()
        hits += int(np.argmax(logits) == label)
    return hits / len(x)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10, help="Dense training.")
    parser.add_argument(
        "--finetune-epochs", type=int, default=5, help="Training with the masks."
    )
    parser.add_argument(
        "--sparsity", type=float, default=0.9, help="Fraction of each kernel pruned."
    )
    parser.add_argument(
        "--quantize",
        choices=["none", "dynamic", "float16", "int8"],
        default="none",
        help="LiteRT quantization (int8 calibrates on 200 training images).",
    )
    parser.add_argument("--output", default="runs/deploy_litert/ticket.tflite")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        parser.error("LiteRT export needs KERAS_BACKEND=tensorflow.")
    if not 0 < args.sparsity < 1:
        parser.error(f"--sparsity must be in (0, 1). Received: {args.sparsity}")
    quantize = None if args.quantize == "none" else args.quantize

    keras.utils.set_random_seed(args.seed)
    splits = lth.datasets.load_digits(seed=args.seed)
    (x, y), (x_test, y_test) = splits.train, splits.test
    model = lth.mask_model(lenet_300_100(x.shape[1]))
    compile_model(model)
    model.fit(x, y, epochs=args.epochs, batch_size=60, verbose=0)
    dense_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]

    # One magnitude-pruning step: `rate` of each kernel's weights go.
    weights = {
        key: keras.ops.convert_to_numpy(
            model.get_layer(key.split("/")[0]).prunable_variable("kernel")
        )
        for key in lth.get_masks(model)
    }
    lth.set_masks(model, lth.prune(weights, lth.get_masks(model), args.sparsity))
    if args.finetune_epochs:
        model.fit(x, y, epochs=args.finetune_epochs, batch_size=60, verbose=0)
    ticket_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    print(
        f"dense accuracy {dense_accuracy:.1%}; ticket with "
        f"{lth.sparsity(model)['global']:.0%} of its weights pruned: "
        f"{ticket_accuracy:.1%}"
    )

    report = export_litert(
        model,
        args.output,
        quantize=quantize,
        representative_data=x[:200] if quantize == "int8" else None,
        sample_inputs=x_test[:32],
    )
    print()
    print(report)
    print()
    accuracy = litert_accuracy(args.output, x_test, y_test)
    print(f"LiteRT file {args.output}: accuracy {accuracy:.1%} on the test set")
    return 0


if __name__ == "__main__":
    sys.exit(main())
