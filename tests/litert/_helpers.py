"""Shared pieces of the LiteRT tests: tiny models, tickets and a plain runner."""

import importlib.util
import os

import keras
import numpy as np
import pytest

import keras_lth

TENSORFLOW = keras.backend.backend() == "tensorflow"
HAS_LITERT = importlib.util.find_spec("ai_edge_litert") is not None
needs_litert = pytest.mark.skipif(
    not (TENSORFLOW and HAS_LITERT),
    reason="LiteRT export runs on the TensorFlow backend only, with ai_edge_litert",
)

# Few timed invokes: the tests check the fields, not the speed.
FAST = {"latency_runs": 20}


def tiny_model(inputs=64, hidden=64, outputs=8):
    # 64 x 64 = 4,096 weights: above the 1,024 below which LiteRT leaves a
    # tensor in float under "dynamic" quantization.
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(hidden, activation="relu", name="hidden"),
            keras.layers.Dense(outputs, name="logits"),
        ],
        name="tiny",
    )


def block_mask(kernel, keep, block):
    """Keeps the `keep` fraction of (block, 1) patches of a Dense kernel.

    LiteRT's `(1, block)` blocks (see `keras_lth.pruning`).
    """
    rows, cols = kernel.shape
    count = -(-rows // block)
    padded = np.zeros((count * block, cols), kernel.dtype)
    padded[:rows] = np.abs(kernel)
    scores = padded.reshape(count, block, cols).sum(axis=1)
    kept = scores >= np.quantile(scores, 1 - keep)
    return np.repeat(kept, block, axis=0)[:rows].astype("float32")


def ticket(rate=0.9, block=None, **shape):
    """A masked tiny model with `rate` of every kernel pruned by magnitude."""
    model = keras_lth.mask_model(tiny_model(**shape))
    weights = {
        key: keras.ops.convert_to_numpy(model.get_layer(key.split("/")[0]).kernel)
        for key in keras_lth.get_masks(model)
    }
    if block is None:
        masks = keras_lth.prune(weights, keras_lth.get_masks(model), rate)
    else:
        masks = {key: block_mask(w, 1 - rate, block) for key, w in weights.items()}
    keras_lth.set_masks(model, masks)
    return model


def random_inputs(count=40, features=64, seed=0):
    return np.random.default_rng(seed).random((count, features), dtype=np.float32)


def run_file(path, x):
    """Runs a LiteRT file on each row of `x`, independently of keras_lth."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    runner = interpreter.get_signature_runner()
    (name,) = runner.get_input_details()
    (output,) = runner.get_output_details()
    rows = [runner(**{name: row[None]})[output] for row in x]
    return np.concatenate(rows)


def keras_outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def listing(folder):
    return sorted(os.listdir(folder))
