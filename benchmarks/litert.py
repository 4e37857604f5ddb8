"""Size and speed of 90%-sparse tickets exported to LiteRT with keras_lth.

What it measures
    For each model, six LiteRT files written by `keras_lth.export_litert`
    (each verified against its Keras model before it is written), then, side
    by side in one process, their file sizes and the median time of one
    `invoke` (batch 1, 1 thread, LiteRT's default delegates, so XNNPACK
    where it applies), both as ratios to the dense float file:

    * `dense float`: the trained dense model, `sparse=False`.
    * `dense int8`: the same, `quantize="int8"`.
    * `sparse float`: 90% of every kernel pruned by magnitude (unstructured),
      `sparse=True`: LiteRT stores the weights compressed and expands them
      with DENSIFY ops when the file loads.
    * `sparse int8`: the same ticket, `quantize="int8"`.
    * `block1x4 float`: Dense kernels pruned in blocks of 4 consecutive
      inputs of one output unit (LiteRT's `(1, 4)` block on its `(out, in)`
      weight; a `(4, 1)` patch of the Keras kernel `(in, out)`), 90% of the
      blocks; convolution kernels unstructured. LiteRT runs such
      FULLY_CONNECTED weights on its sparse kernel.
    * `block1x16 int8`: the same with blocks of 16, `quantize="int8"`: the
      block LiteRT's int8 sparse kernel takes.

    When a sparse file does not load or does not match its Keras model under
    the default delegates, `export_litert` falls back to the dense encoding;
    the `encoding` column says so (`dense (fallback)`).

Models, data and tickets
    * `lenet`: LeNet-300-100 on MNIST shapes: Flatten, Dense 300 relu,
      Dense 100 relu, Dense 10.
    * `convnet`: Conv2D 32 (3x3, relu), MaxPool 2, Conv2D 64 (3x3, relu),
      MaxPool 2, Flatten (1,600), Dense 128 relu, Dense 10.

    Both take 28x28x1 images: scikit-learn's bundled 8x8 digits, upscaled 3x
    (nearest neighbour) and padded to 28x28, split 1,437 train / 360 test
    with a fixed seed. Offline, and real enough for int8 calibration and an
    accuracy check. The dense model is trained briefly (`--epochs`, Adam
    1e-3, batch 32); every ticket starts from those trained weights, gets its
    masks from numpy magnitude pruning set with `keras_lth.set_masks` (90% of
    every kernel, the output layer included; biases stay dense), and is then
    fine-tuned with its masks for `--finetune-epochs`. The block masks come
    from a small helper in this file (`block_masks`): blocks ranked by the
    L2 norm of their weights, exactly `floor(0.9 * blocks + 0.5)` of them
    pruned per kernel.

    int8 files are calibrated on 200 training images; every file is verified
    on 32 test images and its accuracy measured on all 360.

How the time is taken
    All the files are loaded once, then timed in rounds: each round times
    10 single invokes of every file in turn, the order reversed every other
    round, so that the machine's noise falls on all alike. The table reports
    the median per file and its ratio to the dense float file's median. The
    time includes the Python call into LiteRT (about a microsecond).

Quantization error
    A second table exports each trained dense model once per `quantize`
    mode and prints the largest |LiteRT - Keras| over the largest |Keras|
    output, on the test images and on random images: the measure that
    `export_litert`'s default verification tolerances are fractions of.

Targets (for 90% sparsity)
    * `sparse float` file <= 0.16x the dense float file.
    * `sparse int8` file <= 0.06x the dense float file (also checked on
      `block1x16 int8`).
    * `block1x4 float` >= 3x faster than dense float.

Reproduce (from the repository root):

    python benchmarks/litert.py            # about a minute
    python benchmarks/litert.py --quick    # smoke run; figures not meaningful

The exit code is 0 whatever the figures, unless `--check` is given.
"""

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time

DEFAULT_RUNS = 2000
QUICK_RUNS = 50
SPARSITY = 0.9
CALIBRATION_IMAGES = 200

TARGETS = {
    # variant -> (what, comparison, bound)
    "sparse float": ("size", "<=", 0.16),
    "sparse int8": ("size", "<=", 0.06),
    "block1x16 int8": ("size", "<=", 0.06),
    "block1x4 float": ("speedup", ">=", 3.0),
}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One exported file: which ticket, which quantization."""

    name: str
    ticket: str  # "dense", "sparse", "block4" or "block16".
    quantize: str | None


VARIANTS = (
    Variant("dense float", "dense", None),
    Variant("dense int8", "dense", "int8"),
    Variant("sparse float", "sparse", None),
    Variant("sparse int8", "sparse", "int8"),
    Variant("block1x4 float", "block4", None),
    Variant("block1x16 int8", "block16", "int8"),
)


# ------------------------------------------------------------------ CLI


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="File size and invoke time of 90%-sparse tickets exported "
        "to LiteRT, against the dense export, measured side by side.",
    )
    parser.add_argument(
        "--models",
        default="lenet,convnet",
        help="Comma-separated models from ['lenet', 'convnet']. Default: both.",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help=f"Timed invokes per file (default {DEFAULT_RUNS}, {QUICK_RUNS} "
        "with --quick).",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="Epochs of dense training (default 5, 1 with --quick).",
    )
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=None,
        help="Epochs of masked fine-tuning per ticket (default 8, 0 with --quick).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="A short smoke run; its figures are not meaningful.",
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        help="Keep the .tflite files here (default: a temporary folder).",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="Exit with code 1 if a target is missed.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Random seed.")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    if not names or any(name not in ("lenet", "convnet") for name in names):
        parser.error(
            "--models expects a comma-separated list from ['lenet', 'convnet']. "
            f"Received: {args.models!r}"
        )
    args.models = names
    if args.runs is None:
        args.runs = QUICK_RUNS if args.quick else DEFAULT_RUNS
    if args.epochs is None:
        args.epochs = 1 if args.quick else 5
    if args.finetune_epochs is None:
        args.finetune_epochs = 0 if args.quick else 8
    for option in ("runs", "epochs", "finetune_epochs"):
        value = getattr(args, option)
        if value < (1 if option == "runs" else 0):
            parser.error(f"--{option.replace('_', '-')} is too small: {value}")
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow":
        parser.error(
            f"LiteRT export needs the TensorFlow backend; KERAS_BACKEND is "
            f"{backend!r}. Run with KERAS_BACKEND=tensorflow."
        )
    os.environ["KERAS_BACKEND"] = "tensorflow"
    return args


# ---------------------------------------------------- data and tickets


def load_data(seed):
    """sklearn digits as 28x28x1 images in [0, 1]: (x_train, y_train, x, y)."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype("float32") / 16.0
    images = np.kron(images, np.ones((3, 3), "float32"))  # 24x24
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))[..., None]
    labels = digits.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(images))
    images, labels = images[order], labels[order]
    return images[:1437], labels[:1437], images[1437:], labels[1437:]


def build(name):
    import keras

    layers = keras.layers
    if name == "lenet":
        stack = [
            layers.Flatten(),
            layers.Dense(300, activation="relu"),
            layers.Dense(100, activation="relu"),
            layers.Dense(10),
        ]
    else:
        stack = [
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10),
        ]
    return keras.Sequential([keras.Input((28, 28, 1)), *stack], name=name)


def ticket_masks(weights, kind):
    """Masks pruning 90% of every kernel: by magnitude (`"sparse"`), or in
    LiteRT blocks of 1x4 (`"block4"`) or 1x16 (`"block16"`) along the input
    axis of the Dense kernels, by `keras_lth.pruning`. Convolution kernels are
    pruned unstructured: LiteRT has no sparse convolution kernel."""
    import numpy as np

    import keras_lth

    block = None
    if kind != "sparse":
        size = 4 if kind == "block4" else 16
        block = {k: (1, size) if w.ndim == 2 else None for k, w in weights.items()}
    ones = {key: np.ones_like(w) for key, w in weights.items()}
    return keras_lth.pruning.prune_layerwise(weights, ones, SPARSITY, block=block)


def make_tickets(name, data, args):
    """The trained dense model and its three 90%-sparse tickets, masks baked in."""
    import keras

    import keras_lth

    x, y, x_test, y_test = data
    keras.utils.set_random_seed(args.seed)

    def compile_(model):
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    dense = build(name)
    compile_(dense)
    dense.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0)
    tickets = {"dense": dense}
    for kind in ("sparse", "block4", "block16"):
        masked = keras_lth.mask_model(dense)
        keys = list(keras_lth.get_masks(masked))
        weights = {
            key: keras.ops.convert_to_numpy(
                masked.get_layer(key.split("/")[0]).prunable_variable("kernel")
            )
            for key in keys
        }
        keras_lth.set_masks(masked, ticket_masks(weights, kind))
        if args.finetune_epochs:
            compile_(masked)
            masked.fit(x, y, epochs=args.finetune_epochs, batch_size=32, verbose=0)
        sparsity = keras_lth.sparsity(masked)["global"]
        if abs(sparsity - SPARSITY) > 0.005:
            raise RuntimeError(f"{name} {kind}: expected 90% sparsity, got {sparsity}")
        tickets[kind] = keras_lth.strip_masks(masked)
    return tickets


def dense_share(model):
    """The fraction of the model's multiply-adds done in Dense layers."""
    import keras
    import numpy as np

    dense = conv = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            dense += int(np.prod(layer.kernel.shape))
        elif isinstance(layer, keras.layers.Conv2D):
            positions = int(np.prod(layer.output.shape[1:-1]))
            conv += positions * int(np.prod(layer.kernel.shape))
    return dense / (dense + conv)


# ------------------------------------------------------------ measuring


@dataclasses.dataclass
class Row:
    model: str
    variant: Variant
    report: object  # keras_lth.litert.ExportReport
    keras_accuracy: float
    litert_accuracy: float = 0.0
    median_us: float = 0.0


def export_all(name, tickets, data, folder):
    from keras_lth.litert import export_litert

    x, _, x_test, y_test = data
    rows = []
    for variant in VARIANTS:
        model = tickets[variant.ticket]
        report = export_litert(
            model,
            os.path.join(folder, f"{name}_{variant.name.replace(' ', '_')}.tflite"),
            quantize=variant.quantize,
            representative_data=x[:CALIBRATION_IMAGES] if variant.quantize else None,
            sample_inputs=x_test[:32],
            sparse=variant.ticket != "dense",
            latency_runs=0,  # Timed below, all files side by side.
        )
        logits = model.predict(x_test, verbose=0, batch_size=360)
        accuracy = float((logits.argmax(axis=1) == y_test).mean())
        rows.append(Row(name, variant, report, accuracy))
    return rows


def export_floor(folder):
    """A file that does next to nothing: Flatten, then Dense 784 -> 1."""
    import keras

    from keras_lth.litert import export_litert

    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    path = os.path.join(folder, "call_floor.tflite")
    export_litert(model, path, sparse=False, latency_runs=0)
    return path


def time_and_score(rows, data, runs, floor_path):
    """Accuracy of every file on the test set, then interleaved timing.

    Returns the median invoke time of the file at `floor_path`, timed in the
    same loop, in microseconds.
    """
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    _, _, x_test, y_test = data
    interpreters = []
    paths = [row.report.path for row in rows] + [floor_path]
    for path in paths:
        interpreter = Interpreter(model_path=path, num_threads=1)
        (inp,) = interpreter.get_input_details()
        (out,) = interpreter.get_output_details()
        interpreter.resize_tensor_input(inp["index"], (1, 28, 28, 1))
        interpreter.allocate_tensors()
        if path != floor_path:
            hits = 0
            for image, label in zip(x_test, y_test):
                interpreter.set_tensor(inp["index"], image[None])
                interpreter.invoke()
                hits += int(np.argmax(interpreter.get_tensor(out["index"])) == label)
            rows[len(interpreters)].litert_accuracy = hits / len(x_test)
        interpreter.set_tensor(inp["index"], x_test[:1])
        for _ in range(20):
            interpreter.invoke()
        interpreters.append(interpreter)

    times = [[] for _ in paths]
    order = list(range(len(paths)))
    rounds = -(-runs // 10)
    for index in range(rounds):
        for position in order if index % 2 == 0 else reversed(order):
            invoke = interpreters[position].invoke
            for _ in range(min(10, runs - 10 * index)):
                start = time.perf_counter()
                invoke()
                times[position].append(time.perf_counter() - start)
    for row, bucket in zip(rows, times):
        row.median_us = statistics.median(bucket) * 1e6
    return statistics.median(times[-1]) * 1e6


def error_study(name, model, data, folder):
    """How far each quantization takes the dense model's outputs from Keras.

    The dense model is exported once per `quantize` mode (`sparse=False`),
    then run on the 360 test images and on 64 random images (uniform in
    [0, 1), seed 0). Returns one `(name, quantize, test, random)` row per
    mode, with the largest `|LiteRT - Keras|` over the largest `|Keras|`
    output on each input set: the measure `export_litert`'s default
    tolerances are relative to.
    """
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from keras_lth.litert import export_litert

    x, _, x_test, _ = data
    noise = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    rows = []
    for quantize in (None, "float16", "dynamic", "int8"):
        path = os.path.join(folder, f"{name}_study_{quantize}.tflite")
        export_litert(
            model,
            path,
            quantize=quantize,
            representative_data=x[:CALIBRATION_IMAGES] if quantize else None,
            sample_inputs=x_test[:32],
            sparse=False,
            latency_runs=0,
        )
        runner = Interpreter(model_path=path).get_signature_runner()
        (input_name,) = runner.get_input_details()
        relative = []
        for images in (x_test, noise):
            reference = model.predict(images, verbose=0, batch_size=len(images))
            got = np.concatenate(
                [next(iter(runner(**{input_name: i[None]}).values())) for i in images]
            )
            relative.append(np.max(np.abs(got - reference)) / np.max(np.abs(reference)))
        rows.append((name, quantize, *relative))
    return rows


def format_study(rows):
    from keras_lth.litert import RELATIVE_TOLERANCES

    header = (
        f"{'model':<8}{'quantize':<10}{'test images':>13}{'random images':>15}"
        f"{'default tolerance':>19}"
    )
    lines = [
        "max |LiteRT - Keras| / max |Keras|, dense files (int8 calibrated on "
        f"{CALIBRATION_IMAGES} training images):",
        header,
        "-" * len(header),
    ]
    for name, quantize, test, noise in rows:
        lines.append(
            f"{name:<8}{str(quantize):<10}{test:>13.1e}{noise:>15.1e}"
            f"{RELATIVE_TOLERANCES[quantize]:>19g}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------- reporting


def verdict(row, dense):
    target = TARGETS.get(row.variant.name)
    if target is None:
        return "", None
    what, comparison, bound = target
    value = (
        row.report.file_bytes / dense.report.file_bytes
        if what == "size"
        else dense.median_us / row.median_us
    )
    passed = value <= bound if comparison == "<=" else value >= bound
    unit = "size" if what == "size" else "speedup"
    return f"{unit} {comparison} {bound:g}x: {'PASS' if passed else 'FAIL'}", passed


def format_table(rows):
    header = (
        f"{'model':<8}{'variant':<16}{'encoding':<17}{'bytes':>10}{'size':>8}"
        f"{'us/invoke':>11}{'speedup':>9}{'max err':>10}{'acc LiteRT':>11}"
        f"{'(Keras)':>9}  {'kernels':<21}target"
    )
    lines = [header, "-" * len(header)]
    dense = {}
    missed = []
    for row in rows:
        if row.variant.name == "dense float":
            dense[row.model] = row
        base = dense[row.model]
        report = row.report
        if not report.sparse_requested:
            encoding = "dense"
        elif report.sparse_encoded:
            encoding = "sparse"
        else:
            encoding = "dense (fallback)"
        kernels = (
            f"{report.sparse_kernel_ops} sparse, {report.densify_ops} densify"
            if report.sparse_encoded
            else "-"
        )
        target, passed = verdict(row, base)
        if passed is False:
            missed.append(f"{row.model} {row.variant.name}")
        lines.append(
            f"{row.model:<8}{row.variant.name:<16}{encoding:<17}"
            f"{report.file_bytes:>10,}"
            f"{report.file_bytes / base.report.file_bytes:>7.3f}x"
            f"{row.median_us:>11.2f}{base.median_us / row.median_us:>8.2f}x"
            f"{report.max_error:>10.1e}{row.litert_accuracy:>11.1%}"
            f"{row.keras_accuracy:>9.1%}  {kernels:<21}{target}"
        )
    return "\n".join(lines), missed


def format_notes(rows, shares, floor_us):
    lines = [
        "size: file bytes / the dense float file's. us/invoke: median of one",
        "invoke, batch 1, 1 thread, default delegates (XNNPACK); speedup: the",
        "dense float file's median / this file's, timed interleaved. max err:",
        "largest |LiteRT - Keras| on 32 test images (each file is checked",
        "against its own Keras model). acc: top-1 on the 360 test images.",
        "kernels: FULLY_CONNECTED ops on LiteRT's sparse kernels, and DENSIFY",
        "ops that expand a sparse weight to dense when the file loads.",
    ]
    lines.append(
        f"call floor: {floor_us:.2f} us per invoke for a Flatten + Dense 784 -> 1 "
        "file timed in the same loop, a part of every time above that no kernel "
        "removes."
    )
    for name, share in shares.items():
        if share >= 1:
            continue
        lines.append(
            f"{name}: Dense layers do {share:.1%} of the multiply-adds, the only "
            "ones LiteRT's sparse kernels skip: even at no cost they would make "
            f"it at most {1 / (1 - share):.2f}x faster."
        )
    for row in rows:
        for note in row.report.notes:
            lines.append(f"{row.model} {row.variant.name}: {note}")
    return "\n".join(lines)


def _environment():
    import ai_edge_litert
    import keras
    import tensorflow as tf

    litert = getattr(ai_edge_litert, "__version__", None)
    if litert is None:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    return (
        f"Keras {keras.__version__}, TensorFlow {tf.__version__}, "
        f"ai-edge-litert {litert}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs"
    )


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    print("keras_lth LiteRT export: 90%-sparse tickets against the dense export")
    print(_environment())
    data = load_data(args.seed)
    rows = []
    shares = {}
    study = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.output_dir or scratch
        os.makedirs(folder, exist_ok=True)
        for name in args.models:
            print(
                f"Training {name} ({args.epochs} epochs), making tickets "
                f"({args.finetune_epochs} fine-tuning epochs each), exporting...",
                flush=True,
            )
            tickets = make_tickets(name, data, args)
            shares[name] = dense_share(tickets["dense"])
            rows += export_all(name, tickets, data, folder)
            study += error_study(name, tickets["dense"], data, folder)
        floor_path = export_floor(folder)
        print(f"Timing {len(rows)} files, {args.runs} invokes each, interleaved...")
        floor_us = time_and_score(rows, data, args.runs, floor_path)
    table, missed = format_table(rows)
    print()
    print(table)
    print()
    print(format_notes(rows, shares, floor_us))
    print()
    print(format_study(study))
    if args.quick:
        print(
            "\n(--quick: too little training and timing for the figures to mean much.)"
        )
    if args.check and missed:
        print(f"\n--check: targets missed: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
