"""Atomic writes: the old file survives any failure during a write."""

import os

import keras
import numpy as np
import pytest

import keras_lth as lth
from keras_lth.saving import atomic_write
from keras_lth.saving import atomic_write_text


def test_atomic_write_replaces_the_file(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert os.listdir(tmp_path) == ["out.txt"]  # No temporary file left.


def test_failed_write_leaves_the_old_file_and_no_debris(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write_text(path, "good")

    def explode(f):
        f.write(b"half of a fi")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(path, explode)
    assert path.read_text() == "good"
    assert os.listdir(tmp_path) == ["out.txt"]


# `Unsaveable()` below is never built, on purpose: saving fails before weights.
@pytest.mark.filterwarnings("ignore:You are saving a model that has not yet been built")
def test_save_model_is_atomic_and_loads(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    masked = lth.mask_model(model)
    path = tmp_path / "ticket.keras"
    lth.save_model(masked, path)
    loaded = keras.models.load_model(path)
    x = np.ones((1, 3), "float32")
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), masked.predict(x, verbose=0)
    )

    class Unsaveable(keras.Model):
        def get_config(self):
            raise RuntimeError("cannot serialize")

    with pytest.raises(RuntimeError, match="cannot serialize"):
        lth.save_model(Unsaveable(), path)
    assert keras.models.load_model(path) is not None  # The old file is intact.
    assert sorted(os.listdir(tmp_path)) == ["ticket.keras"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_written_files_get_the_umask_permissions_not_private(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "results.json"
        atomic_write_text(path, "{}")
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)
    finally:
        os.umask(old)
