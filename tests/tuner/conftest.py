"""Fixtures of the tuner tests."""

import pytest


@pytest.fixture(scope="session")
def data():
    """scikit-learn's digits, split by `keras_lth.datasets.load`."""
    pytest.importorskip("sklearn")
    import keras_lth

    return keras_lth.datasets.load("digits", seed=0)
