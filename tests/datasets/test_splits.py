"""Tests for `keras_lth.datasets.splits`: fixed train / validation / test splits."""

import numpy as np
import pytest

from keras_lth import datasets
from tests.datasets._data import check_pair
from tests.datasets._data import fake_mnist
from tests.datasets._data import idx_folder
from tests.datasets._data import rows
from tests.datasets._data import same_splits


def test_digits_split_sizes_dtypes_and_ranges():
    data = datasets.load_digits()
    check_pair(data.train, 1297, (64,))
    check_pair(data.validation, 250, (64,))
    check_pair(data.test, 250, (64,))
    assert data.input_shape == (64,) and data.num_classes == 10
    assert data.name == "digits" and data.source == "sklearn.datasets.load_digits"
    assert "1,297 train / 250 validation / 250 test with seed 0" in data.note
    assert set(np.unique(data.train[1])) == set(range(10))
    assert data.train[0].max() == 1.0  # 16 / 16.


def test_digits_splits_partition_the_dataset_with_labels_kept():
    from sklearn.datasets import load_digits

    raw = load_digits()
    data = datasets.load_digits(flatten=False)
    assert data.input_shape == (8, 8, 1)
    x = np.concatenate([data.train[0], data.validation[0], data.test[0]])
    y = np.concatenate([data.train[1], data.validation[1], data.test[1]])
    expected = (raw.images / 16.0).astype("float32")
    assert rows(x) == rows(expected)
    label_of = {row.tobytes(): label for row, label in zip(expected, raw.target)}
    assert all(label_of[row.reshape(8, 8).tobytes()] == t for row, t in zip(x, y))


def test_digits_split_is_deterministic_per_seed():
    first, again = datasets.load_digits(seed=3), datasets.load_digits(seed=3)
    assert same_splits(first, again)
    other = datasets.load_digits(seed=4)
    assert not np.array_equal(first.test[0], other.test[0])


def test_digits_sizes_as_counts_or_fractions():
    data = datasets.load_digits(validation=0.1, test=100)
    assert len(data.validation[0]) == 180  # round(0.1 * 1797).
    assert len(data.test[0]) == 100 and len(data.train[0]) == 1797 - 280


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"validation": 1797}, ValueError, "validation"),
        ({"validation": 900, "test": 900}, ValueError, "no training examples"),
        ({"test": -1}, ValueError, "test"),
        ({"test": 1.5}, ValueError, "test"),
        ({"validation": "10"}, ValueError, "validation"),
        ({"seed": -1}, ValueError, r"`seed` >= 0. Received: seed=-1"),
        # A seed that is not an int is a TypeError, as everywhere in keras_lth.
        ({"seed": 1.5}, TypeError, r"`seed` to be an int. Received: seed=1.5"),
    ],
)
def test_digits_rejects_bad_sizes_and_seeds(kwargs, error, match):
    with pytest.raises(error, match=match):
        datasets.load_digits(**kwargs)


def test_mnist_test_set_is_split_8000_1000_1000(mnist_dir):
    data = datasets.load_mnist(mnist_dir)
    check_pair(data.train, 8000, (784,))
    check_pair(data.validation, 1000, (784,))
    check_pair(data.test, 1000, (784,))
    assert str(mnist_dir) in data.source
    assert "official MNIST test set (10,000 examples)" in data.note
    assert "8,000 train / 1,000 validation / 1,000 test" in data.note
    assert "not comparable" in data.note
    for _, y in (data.train, data.validation, data.test):
        assert set(np.unique(y)) == set(range(10))
    assert data.train[0].min() == 0.0 and data.train[0].max() == 1.0


def test_mnist_split_is_deterministic(mnist_dir):
    assert same_splits(datasets.load_mnist(mnist_dir), datasets.load_mnist(mnist_dir))
    other = datasets.load_mnist(mnist_dir, seed=1)
    assert not np.array_equal(other.test[1], datasets.load_mnist(mnist_dir).test[1])


def test_idx_test_set_alone_is_split_with_images_and_labels_paired(tmp_path):
    x, y = fake_mnist(50, seed=0)
    data = datasets.load_mnist(idx_folder(tmp_path, test=(x, y)))
    assert [len(p[0]) for p in (data.train, data.validation, data.test)] == [40, 5, 5]
    label_of = {row.tobytes(): label for row, label in zip(x, y)}
    for images, labels in (data.train, data.validation, data.test):
        pixels = np.round(images * 255).astype(np.uint8).reshape(-1, 28, 28)
        assert [label_of[p.tobytes()] for p in pixels] == labels.tolist()


def test_idx_with_a_training_set_keeps_the_official_test_set(tmp_path):
    train, test = fake_mnist(60, seed=1), fake_mnist(20, seed=2)
    idx_folder(tmp_path, train=train, gz=False)  # Uncompressed files too.
    idx_folder(tmp_path, test=test)
    data = datasets.load_mnist(tmp_path, validation=10, flatten=False)
    assert len(data.train[0]) == 50 and len(data.validation[0]) == 10
    np.testing.assert_array_equal(data.test[0][..., 0] * 255, test[0])
    np.testing.assert_array_equal(data.test[1], test[1])
    both = np.concatenate([data.train[0], data.validation[0]])[..., 0] * 255
    assert rows(np.round(both).astype(np.uint8)) == rows(train[0])
    assert "official training set of 60" in data.note
    with pytest.raises(ValueError, match="official MNIST test set.*test=None"):
        datasets.load_mnist(tmp_path, test=5)


def test_npz_with_only_a_test_set_is_split(tmp_path):
    x, y = fake_mnist(20, 9)
    path = tmp_path / "test_only.npz"
    np.savez(path, x_test=x, y_test=y)
    data = datasets.load_mnist(path)
    assert [len(p[0]) for p in (data.train, data.validation, data.test)] == [16, 2, 2]
    assert "official MNIST test set" in data.note


def test_splits_repr_is_short():
    text = repr(datasets.load_digits())
    assert text.startswith("Splits(name='digits', train=1297, validation=250")
    assert len(text) < 250
