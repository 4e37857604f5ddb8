"""Helpers that the tests of `keras_lth.datasets` share: small fake data sets."""

import collections
import gzip

import numpy as np


def rows(x):
    """A multiset of the rows of `x`, to compare data regardless of order."""
    return collections.Counter(row.tobytes() for row in x.reshape(len(x), -1))


def write_idx(path, array, magic=None):
    """Writes `array` (uint8) as an IDX file, gzipped if `path` ends in .gz."""
    array = np.asarray(array, np.uint8)
    if magic is None:
        magic = 2051 if array.ndim == 3 else 2049
    header = magic.to_bytes(4, "big")
    header += b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def fake_mnist(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.uint8)
    return x, y


def idx_folder(folder, *, test=None, train=None, gz=True):
    suffix = ".gz" if gz else ""
    for prefix, pair in (("t10k", test), ("train", train)):
        if pair is not None:
            write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", pair[0])
            write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", pair[1])
    return folder


def check_pair(pair, n, shape):
    x, y = pair
    assert x.shape == (n, *shape) and y.shape == (n,)
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert 0 <= y.min() and y.max() <= 9


def same_splits(a, b):
    return all(
        np.array_equal(p[0], q[0]) and np.array_equal(p[1], q[1])
        for p, q in zip(
            (a.train, a.validation, a.test), (b.train, b.validation, b.test)
        )
    )
