"""Tests for `keras_lth.datasets.sources`: IDX files, .npz files, keras.datasets."""

import collections
import gzip

import keras
import numpy as np
import pytest

from keras_lth import datasets
from tests.datasets._data import check_pair
from tests.datasets._data import fake_mnist
from tests.datasets._data import idx_folder
from tests.datasets._data import rows
from tests.datasets._data import write_idx


def test_mnist_splits_hold_all_10k_test_images(mnist_dir, mnist_test_set):
    x_ref, y_ref = mnist_test_set  # Read independently, in tests/conftest.py.
    data = datasets.load("mnist", path=mnist_dir, flatten=False)
    assert data.input_shape == (28, 28, 1)
    x = np.concatenate([data.train[0], data.validation[0], data.test[0]])
    y = np.concatenate([data.train[1], data.validation[1], data.test[1]])
    assert rows(x) == rows(x_ref.astype("float32"))
    assert collections.Counter(y.tolist()) == collections.Counter(y_ref.tolist())


def test_fashion_mnist_reads_the_same_idx_layout(tmp_path):
    x, y = fake_mnist(30, seed=3)
    folder = idx_folder(tmp_path, test=(x, y))
    data = datasets.load("fashion_mnist", path=folder, validation=3, test=3)
    assert data.name == "fashion_mnist" and len(data.train[0]) == 24
    assert "Fashion-MNIST" in data.note


def _corrupt_folder(tmp_path, corrupt):
    """A t10k folder whose images file is replaced by `corrupt(images_path)`."""
    x, y = fake_mnist(10, seed=4)
    idx_folder(tmp_path, test=(x, y))
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    corrupt(images, x, y)
    return images


@pytest.mark.parametrize(
    "corrupt, match",
    [
        # The labels written where the images should be: wrong magic number.
        (lambda p, x, y: write_idx(p, y), "magic number is 2049, expected 2051"),
        # A payload cut short.
        (
            lambda p, x, y: p.write_bytes(
                gzip.compress(gzip.decompress(p.read_bytes())[:-100])
            ),
            "truncated or corrupt: its header promises 10 images of 28x28",
        ),
        # Not gzip data at all.
        (lambda p, x, y: p.write_bytes(b"<html>404</html>"), "Could not read"),
        # A gzip stream cut off mid-way.
        (lambda p, x, y: p.write_bytes(p.read_bytes()[:200]), "Could not read"),
        # An empty file.
        (lambda p, x, y: p.write_bytes(gzip.compress(b"")), "magic number is None"),
        # One image fewer than labels.
        (lambda p, x, y: write_idx(p, x[:9]), "holds 9 images but .* 10 labels"),
        # 8x8 images are not MNIST.
        (lambda p, x, y: write_idx(p, x[:, :8, :8]), "8x8 pixels. Expected 28x28"),
    ],
)
def test_corrupt_idx_file_is_a_value_error_naming_the_file(tmp_path, corrupt, match):
    images = _corrupt_folder(tmp_path, corrupt)
    with pytest.raises(ValueError, match=match) as info:
        datasets.load_mnist(tmp_path)
    assert str(images) in str(info.value)


def test_labels_out_of_range_are_rejected(tmp_path):
    x, y = fake_mnist(10, seed=5)
    idx_folder(tmp_path, test=(x, np.full(10, 12, np.uint8)))
    with pytest.raises(ValueError, match="not integers from 0 to 9"):
        datasets.load_mnist(tmp_path)


def test_missing_idx_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="No MNIST IDX files.*t10k-images-idx3"):
        datasets.load_mnist(tmp_path)
    x, _ = fake_mnist(10, seed=6)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", x)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        datasets.load_mnist(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        datasets.load_mnist(tmp_path / "nowhere")


def test_npz_round_trip_in_the_keras_layout(tmp_path):
    (x_train, y_train), (x_test, y_test) = fake_mnist(40, 7), fake_mnist(12, 8)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    data = datasets.load_mnist(path, validation=0.25)
    assert data.source == str(path)
    assert len(data.train[0]) == 30 and len(data.validation[0]) == 10
    np.testing.assert_allclose(data.test[0] * 255, x_test.reshape(12, -1))
    np.testing.assert_array_equal(data.test[1], y_test)


def test_cifar10_npz_with_keras_shaped_labels(tmp_path):
    rng = np.random.default_rng(10)
    x_train = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    y_train = rng.integers(0, 10, (30, 1)).astype(np.uint8)  # (n, 1) as in keras.
    y_test = rng.integers(0, 10, (10, 1)).astype(np.uint8)
    path = tmp_path / "cifar10.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    data = datasets.load_cifar10(path, validation=5)
    check_pair(data.train, 25, (32, 32, 3))
    check_pair(data.test, 10, (32, 32, 3))
    np.testing.assert_array_equal(data.test[1], y_test[:, 0])
    assert datasets.load(
        "cifar10", path=path, validation=5, flatten=True
    ).input_shape == (3072,)
    with pytest.raises(ValueError, match=r"images of shape \(32, 32, 3\).*\(28, 28"):
        datasets.load_mnist(path)
    with pytest.raises(ValueError, match="an .npz file for CIFAR-10"):
        datasets.load_cifar10(tmp_path)


def test_bad_npz_files_are_value_errors_naming_the_file(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="broken.npz"):
        datasets.load_mnist(broken)
    x, y = fake_mnist(5, 11)
    half = tmp_path / "half.npz"
    np.savez(half, x_test=x)
    with pytest.raises(ValueError, match="half.npz holds x_test but not y_test"):
        datasets.load_mnist(half)
    other = tmp_path / "other.npz"
    np.savez(other, images=x, labels=y)
    with pytest.raises(ValueError, match=r"other.npz holds the arrays \['images'"):
        datasets.load_mnist(other)


def test_keras_datasets_failure_suggests_a_local_path(monkeypatch):
    def offline():
        raise Exception("URL fetch failure on https://...: Name or service not known")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(RuntimeError, match="URL fetch failure") as info:
        datasets.load_cifar10()
    assert "load_cifar10(path=...)" in str(info.value)
    assert ".npz" in str(info.value)
