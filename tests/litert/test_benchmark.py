"""benchmarks/litert.py: its block tickets are LiteRT's blocks."""

import importlib.util
import pathlib

import numpy as np
import pytest

import keras_lth


def _benchmark_module():
    path = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "litert.py"
    spec = importlib.util.spec_from_file_location("_litert_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind, size", [("block4", 4), ("block16", 16)])
def test_benchmark_ticket_masks_are_litert_blocks(kind, size):
    benchmark = _benchmark_module()
    rng = np.random.default_rng(0)
    weights = {
        "fc/kernel": rng.normal(size=(300, 10)),
        "conv/kernel": rng.normal(size=(3, 3, 2, 4)),
    }
    masks = benchmark.ticket_masks(weights, kind)
    assert keras_lth.pruning.is_block_sparse(masks["fc/kernel"], (1, size))
    blocks = keras_lth.pruning.surviving_blocks(np.ones((300, 10)), (1, size))
    kept = keras_lth.pruning.surviving_blocks(masks["fc/kernel"], (1, size))
    assert kept == blocks - int(np.floor(0.9 * blocks + 0.5))
    # Convolution kernels: unstructured, exactly 90% of 72 weights rounded.
    assert masks["conv/kernel"].sum() == 72 - int(np.floor(0.9 * 72 + 0.5))
