"""Why a shrunk ResNet-20 runs no faster in int8: one residual block, by width.

`benchmarks/deploy_convnets.py` found the ResNet-20 unit ticket, whose inner
convolutions were shrunk from 16/32/64 to 5/10/19 channels, 1.74x faster than
the dense network in LiteRT float32 but 1.01x in int8. This times the
smallest piece that shows it: one stage-1 residual block (28x28x16 input,
3x3 "same" convolution 16 -> `inner` with ReLU, 3x3 convolution back to 16,
residual `Add`), converted to LiteRT float32 and full-integer int8, for each
inner width of `--widths`, every file timed interleaved (batch 1, 1 thread,
XNNPACK, median of `--runs` invokes).

    python benchmarks/int8_narrow_conv.py                 # widths 16 8 5 4
    python benchmarks/int8_narrow_conv.py --runs 20       # a quick look
"""

import argparse
import contextlib
import io
import os
import statistics
import sys
import time

SHAPE = (28, 28, 16)


def block(keras, inner):
    x = keras.Input(SHAPE)
    h = keras.layers.Conv2D(inner, 3, padding="same", activation="relu")(x)
    y = keras.layers.Conv2D(SHAPE[-1], 3, padding="same")(h)
    return keras.Model(x, keras.layers.Add()([x, y]))


def convert(tf, np, model, int8):
    """The LiteRT file of `model`, without the converter's lines on stdout."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)

        def representative():
            for _ in range(50):
                yield [rng.random((1, *SHAPE), dtype="float32")]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 8, 5, 4])
    parser.add_argument("--runs", type=int, default=400, help="timed invokes each")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(1).random((1, *SHAPE), dtype="float32")
    runners = {}
    for inner in args.widths:
        model = block(keras, inner)
        for precision in ("float32", "int8"):
            runner = Interpreter(
                model_content=convert(tf, np, model, precision == "int8"),
                num_threads=1,
            )
            runner.allocate_tensors()
            runner.set_tensor(runner.get_input_details()[0]["index"], x)
            for _ in range(20):  # Warm up.
                runner.invoke()
            runners[inner, precision] = runner
    times = {key: [] for key in runners}
    for _ in range(args.runs):  # Interleaved: every file once per pass.
        for key, runner in runners.items():
            start = time.perf_counter()
            runner.invoke()
            times[key].append(time.perf_counter() - start)
    median = {key: 1e6 * statistics.median(t) for key, t in times.items()}
    first = args.widths[0]
    print(f"One residual block, 28x28x16, inner width {first} -> each; us per invoke")
    print("inner  float32 us  vs first  int8 us  vs first")
    for inner in args.widths:
        f, q = median[inner, "float32"], median[inner, "int8"]
        print(
            f"{inner:5d}  {f:10.1f}  {median[first, 'float32'] / f:7.2f}x"
            f"  {q:7.1f}  {median[first, 'int8'] / q:7.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
