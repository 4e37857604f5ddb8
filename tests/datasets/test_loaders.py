"""Tests for `keras_lth.datasets.loaders`: the loaders and `load(name)`."""

import sys

import keras
import numpy as np
import pytest

from keras_lth import datasets
from tests.datasets._data import fake_mnist
from tests.datasets._data import same_splits


def test_digits_without_scikit_learn_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"keras-lth\[data\]"):
        datasets.load_digits()


def test_keras_datasets_path_uses_the_official_split(monkeypatch):
    train, test = fake_mnist(6000, 12), fake_mnist(100, 13)
    monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda: (train, test))
    data = datasets.load_mnist()
    assert data.source == "keras.datasets.mnist"
    assert len(data.train[0]) == 1000 and len(data.validation[0]) == 5000
    np.testing.assert_array_equal(data.test[1], test[1])


def test_load_dispatches_and_rejects_unknown_names(tmp_path):
    assert same_splits(datasets.load("digits", seed=2), datasets.load_digits(seed=2))
    with pytest.raises(ValueError, match="'imagenet'.*digits, mnist, fashion_mnist"):
        datasets.load("imagenet")
    with pytest.raises(ValueError, match="takes no `path`"):
        datasets.load("digits", path=tmp_path)
    with pytest.raises(TypeError, match="flatten"):
        datasets.load("digits", flatten="yes")
