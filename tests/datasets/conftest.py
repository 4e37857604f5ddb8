"""Fixtures of the `keras_lth.datasets` tests."""

import pathlib

import pytest

# ../shared beside the project root, as in CI.
MNIST_DIR = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


@pytest.fixture
def mnist_dir():
    """The folder of the official MNIST test set, or a skip."""
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST test set not found in {MNIST_DIR}")
    return MNIST_DIR
