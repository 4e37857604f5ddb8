"""Why a shrunk ResNet-20 runs no faster in int8: one residual block, by width.

`benchmarks/deploy_convnets.py` finds the ResNet-20 unit ticket, shrunk from
16/32/64 to 5/10/19 channels (residual stream and inner convolutions), 3.6x
faster than the dense network in LiteRT float32 but 1.05x in int8. This
times the smallest piece that shows it: one stage-1 residual block (3x3
"same" convolution `stream` -> `inner` with ReLU, 3x3 convolution back to
`stream`, residual `Add`, on 28x28 images), converted to LiteRT float32 and
full-integer int8, for each width of `--widths`: first with only the inner
convolution narrowed (stream 16), then with the stream narrowed too. Every
file is timed interleaved (batch 1, 1 thread, XNNPACK, median of `--runs`
invokes).

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

SIDE, STREAM = 28, 16


def block(keras, stream, inner):
    x = keras.Input((SIDE, SIDE, stream))
    h = keras.layers.Conv2D(inner, 3, padding="same", activation="relu")(x)
    y = keras.layers.Conv2D(stream, 3, padding="same")(h)
    return keras.Model(x, keras.layers.Add()([x, y]))


def convert(tf, np, model, int8):
    """The LiteRT file of `model`, without the converter's lines on stdout."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)

        def representative():
            for _ in range(50):
                yield [rng.random((1, *model.input_shape[1:]), dtype="float32")]

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
    runners = {}
    narrowed = [(STREAM, w) for w in args.widths] + [(w, w) for w in args.widths]
    shapes = list(dict.fromkeys([(STREAM, STREAM), *narrowed]))
    for stream, inner in shapes:
        model = block(keras, stream, inner)
        x = np.random.default_rng(1).random((1, SIDE, SIDE, stream), dtype="float32")
        for precision in ("float32", "int8"):
            runner = Interpreter(
                model_content=convert(tf, np, model, precision == "int8"),
                num_threads=1,
            )
            runner.allocate_tensors()
            runner.set_tensor(runner.get_input_details()[0]["index"], x)
            for _ in range(20):  # Warm up.
                runner.invoke()
            runners[stream, inner, precision] = runner
    times = {key: [] for key in runners}
    for _ in range(args.runs):  # Interleaved: every file once per pass.
        for key, runner in runners.items():
            start = time.perf_counter()
            runner.invoke()
            times[key].append(time.perf_counter() - start)
    median = {key: 1e6 * statistics.median(t) for key, t in times.items()}
    base_f, base_q = median[STREAM, STREAM, "float32"], median[STREAM, STREAM, "int8"]
    print(f"One residual block on {SIDE}x{SIDE} images; us per invoke, and speedup")
    print(f"over stream {STREAM}, inner {STREAM}")
    print("stream  inner  float32 us  speedup  int8 us  speedup")
    for stream, inner in shapes:
        f, q = median[stream, inner, "float32"], median[stream, inner, "int8"]
        print(
            f"{stream:6d}  {inner:5d}  {f:10.1f}  {base_f / f:6.2f}x"
            f"  {q:7.1f}  {base_q / q:6.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
