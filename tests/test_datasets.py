"""Tests for `keras_lth.datasets`: fixed splits from bundled or local data."""

import collections
import gzip
import pathlib
import sys

import keras
import numpy as np
import pytest

from keras_lth import datasets

# ../shared beside the project root, as in CI.
MNIST_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def _rows(x):
    """A multiset of the rows of `x`, to compare data regardless of order."""
    return collections.Counter(row.tobytes() for row in x.reshape(len(x), -1))


def _write_idx(path, array, magic=None):
    """Writes `array` (uint8) as an IDX file, gzipped if `path` ends in .gz."""
    array = np.asarray(array, np.uint8)
    if magic is None:
        magic = 2051 if array.ndim == 3 else 2049
    header = magic.to_bytes(4, "big")
    header += b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def _fake_mnist(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.uint8)
    return x, y


def _idx_folder(folder, *, test=None, train=None, gz=True):
    suffix = ".gz" if gz else ""
    for prefix, pair in (("t10k", test), ("train", train)):
        if pair is not None:
            _write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", pair[0])
            _write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", pair[1])
    return folder


def _check_pair(pair, n, shape):
    x, y = pair
    assert x.shape == (n, *shape) and y.shape == (n,)
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert 0 <= y.min() and y.max() <= 9


def _same_splits(a, b):
    return all(
        np.array_equal(p[0], q[0]) and np.array_equal(p[1], q[1])
        for p, q in zip(
            (a.train, a.validation, a.test), (b.train, b.validation, b.test)
        )
    )


# ------------------------------------------------------------------- digits


def test_digits_split_sizes_dtypes_and_ranges():
    data = datasets.load_digits()
    _check_pair(data.train, 1297, (64,))
    _check_pair(data.validation, 250, (64,))
    _check_pair(data.test, 250, (64,))
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
    assert _rows(x) == _rows(expected)
    label_of = {row.tobytes(): label for row, label in zip(expected, raw.target)}
    assert all(label_of[row.reshape(8, 8).tobytes()] == t for row, t in zip(x, y))


def test_digits_split_is_deterministic_per_seed():
    first, again = datasets.load_digits(seed=3), datasets.load_digits(seed=3)
    assert _same_splits(first, again)
    other = datasets.load_digits(seed=4)
    assert not np.array_equal(first.test[0], other.test[0])


def test_digits_sizes_as_counts_or_fractions():
    data = datasets.load_digits(validation=0.1, test=100)
    assert len(data.validation[0]) == 180  # round(0.1 * 1797).
    assert len(data.test[0]) == 100 and len(data.train[0]) == 1797 - 280


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"validation": 1797}, "validation"),
        ({"validation": 900, "test": 900}, "no training examples"),
        ({"test": -1}, "test"),
        ({"test": 1.5}, "test"),
        ({"validation": "10"}, "validation"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_digits_rejects_bad_sizes_and_seeds(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.load_digits(**kwargs)


def test_digits_without_scikit_learn_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"keras-lth\[data\]"):
        datasets.load_digits()


# ---------------------------------------------------- MNIST test set (real)


@pytest.fixture
def mnist_dir():
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST test set not found in {MNIST_DIR}")
    return MNIST_DIR


def test_mnist_test_set_is_split_8000_1000_1000(mnist_dir):
    data = datasets.load_mnist(mnist_dir)
    _check_pair(data.train, 8000, (784,))
    _check_pair(data.validation, 1000, (784,))
    _check_pair(data.test, 1000, (784,))
    assert str(mnist_dir) in data.source
    assert "official MNIST test set (10,000 examples)" in data.note
    assert "8,000 train / 1,000 validation / 1,000 test" in data.note
    assert "not comparable" in data.note
    for _, y in (data.train, data.validation, data.test):
        assert set(np.unique(y)) == set(range(10))
    assert data.train[0].min() == 0.0 and data.train[0].max() == 1.0


def test_mnist_splits_hold_all_10k_test_images(mnist_dir, mnist_test_set):
    x_ref, y_ref = mnist_test_set  # Read independently, in tests/conftest.py.
    data = datasets.load("mnist", path=mnist_dir, flatten=False)
    assert data.input_shape == (28, 28, 1)
    x = np.concatenate([data.train[0], data.validation[0], data.test[0]])
    y = np.concatenate([data.train[1], data.validation[1], data.test[1]])
    assert _rows(x) == _rows(x_ref.astype("float32"))
    assert collections.Counter(y.tolist()) == collections.Counter(y_ref.tolist())


def test_mnist_split_is_deterministic(mnist_dir):
    assert _same_splits(datasets.load_mnist(mnist_dir), datasets.load_mnist(mnist_dir))
    other = datasets.load_mnist(mnist_dir, seed=1)
    assert not np.array_equal(other.test[1], datasets.load_mnist(mnist_dir).test[1])


# ------------------------------------------------------ IDX files (written)


def test_idx_test_set_alone_is_split_with_images_and_labels_paired(tmp_path):
    x, y = _fake_mnist(50, seed=0)
    data = datasets.load_mnist(_idx_folder(tmp_path, test=(x, y)))
    assert [len(p[0]) for p in (data.train, data.validation, data.test)] == [40, 5, 5]
    label_of = {row.tobytes(): label for row, label in zip(x, y)}
    for images, labels in (data.train, data.validation, data.test):
        pixels = np.round(images * 255).astype(np.uint8).reshape(-1, 28, 28)
        assert [label_of[p.tobytes()] for p in pixels] == labels.tolist()


def test_idx_with_a_training_set_keeps_the_official_test_set(tmp_path):
    train, test = _fake_mnist(60, seed=1), _fake_mnist(20, seed=2)
    _idx_folder(tmp_path, train=train, gz=False)  # Uncompressed files too.
    _idx_folder(tmp_path, test=test)
    data = datasets.load_mnist(tmp_path, validation=10, flatten=False)
    assert len(data.train[0]) == 50 and len(data.validation[0]) == 10
    np.testing.assert_array_equal(data.test[0][..., 0] * 255, test[0])
    np.testing.assert_array_equal(data.test[1], test[1])
    both = np.concatenate([data.train[0], data.validation[0]])[..., 0] * 255
    assert _rows(np.round(both).astype(np.uint8)) == _rows(train[0])
    assert "official training set of 60" in data.note
    with pytest.raises(ValueError, match="official MNIST test set.*test=None"):
        datasets.load_mnist(tmp_path, test=5)


def test_fashion_mnist_reads_the_same_idx_layout(tmp_path):
    x, y = _fake_mnist(30, seed=3)
    folder = _idx_folder(tmp_path, test=(x, y))
    data = datasets.load("fashion_mnist", path=folder, validation=3, test=3)
    assert data.name == "fashion_mnist" and len(data.train[0]) == 24
    assert "Fashion-MNIST" in data.note


def _corrupt_folder(tmp_path, corrupt):
    """A t10k folder whose images file is replaced by `corrupt(images_path)`."""
    x, y = _fake_mnist(10, seed=4)
    _idx_folder(tmp_path, test=(x, y))
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    corrupt(images, x, y)
    return images


@pytest.mark.parametrize(
    "corrupt, match",
    [
        # The labels written where the images should be: wrong magic number.
        (lambda p, x, y: _write_idx(p, y), "magic number is 2049, expected 2051"),
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
        (lambda p, x, y: _write_idx(p, x[:9]), "holds 9 images but .* 10 labels"),
        # 8x8 images are not MNIST.
        (lambda p, x, y: _write_idx(p, x[:, :8, :8]), "8x8 pixels. Expected 28x28"),
    ],
)
def test_corrupt_idx_file_is_a_value_error_naming_the_file(tmp_path, corrupt, match):
    images = _corrupt_folder(tmp_path, corrupt)
    with pytest.raises(ValueError, match=match) as info:
        datasets.load_mnist(tmp_path)
    assert str(images) in str(info.value)


def test_labels_out_of_range_are_rejected(tmp_path):
    x, y = _fake_mnist(10, seed=5)
    _idx_folder(tmp_path, test=(x, np.full(10, 12, np.uint8)))
    with pytest.raises(ValueError, match="not integers from 0 to 9"):
        datasets.load_mnist(tmp_path)


def test_missing_idx_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="No MNIST IDX files.*t10k-images-idx3"):
        datasets.load_mnist(tmp_path)
    x, _ = _fake_mnist(10, seed=6)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", x)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        datasets.load_mnist(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        datasets.load_mnist(tmp_path / "nowhere")


# --------------------------------------------------------------------- .npz


def test_npz_round_trip_in_the_keras_layout(tmp_path):
    (x_train, y_train), (x_test, y_test) = _fake_mnist(40, 7), _fake_mnist(12, 8)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    data = datasets.load_mnist(path, validation=0.25)
    assert data.source == str(path)
    assert len(data.train[0]) == 30 and len(data.validation[0]) == 10
    np.testing.assert_allclose(data.test[0] * 255, x_test.reshape(12, -1))
    np.testing.assert_array_equal(data.test[1], y_test)


def test_npz_with_only_a_test_set_is_split(tmp_path):
    x, y = _fake_mnist(20, 9)
    path = tmp_path / "test_only.npz"
    np.savez(path, x_test=x, y_test=y)
    data = datasets.load_mnist(path)
    assert [len(p[0]) for p in (data.train, data.validation, data.test)] == [16, 2, 2]
    assert "official MNIST test set" in data.note


def test_cifar10_npz_with_keras_shaped_labels(tmp_path):
    rng = np.random.default_rng(10)
    x_train = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    y_train = rng.integers(0, 10, (30, 1)).astype(np.uint8)  # (n, 1) as in keras.
    y_test = rng.integers(0, 10, (10, 1)).astype(np.uint8)
    path = tmp_path / "cifar10.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    data = datasets.load_cifar10(path, validation=5)
    _check_pair(data.train, 25, (32, 32, 3))
    _check_pair(data.test, 10, (32, 32, 3))
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
    x, y = _fake_mnist(5, 11)
    half = tmp_path / "half.npz"
    np.savez(half, x_test=x)
    with pytest.raises(ValueError, match="half.npz holds x_test but not y_test"):
        datasets.load_mnist(half)
    other = tmp_path / "other.npz"
    np.savez(other, images=x, labels=y)
    with pytest.raises(ValueError, match=r"other.npz holds the arrays \['images'"):
        datasets.load_mnist(other)


# ---------------------------------------------------- keras.datasets, load()


def test_keras_datasets_path_uses_the_official_split(monkeypatch):
    train, test = _fake_mnist(6000, 12), _fake_mnist(100, 13)
    monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda: (train, test))
    data = datasets.load_mnist()
    assert data.source == "keras.datasets.mnist"
    assert len(data.train[0]) == 1000 and len(data.validation[0]) == 5000
    np.testing.assert_array_equal(data.test[1], test[1])


def test_keras_datasets_failure_suggests_a_local_path(monkeypatch):
    def offline():
        raise Exception("URL fetch failure on https://...: Name or service not known")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(RuntimeError, match="URL fetch failure") as info:
        datasets.load_cifar10()
    assert "load_cifar10(path=...)" in str(info.value)
    assert ".npz" in str(info.value)


def test_load_dispatches_and_rejects_unknown_names(tmp_path):
    assert _same_splits(datasets.load("digits", seed=2), datasets.load_digits(seed=2))
    with pytest.raises(ValueError, match="'imagenet'.*digits, mnist, fashion_mnist"):
        datasets.load("imagenet")
    with pytest.raises(ValueError, match="takes no `path`"):
        datasets.load("digits", path=tmp_path)
    with pytest.raises(TypeError, match="flatten"):
        datasets.load("digits", flatten="yes")


def test_splits_repr_is_short():
    text = repr(datasets.load_digits())
    assert text.startswith("Splits(name='digits', train=1297, validation=250")
    assert len(text) < 250
