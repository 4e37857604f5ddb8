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


def _record_fsyncs(monkeypatch):
    """Records what `os.fsync` was called on: 'file' or 'folder'."""
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append("folder" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_writes_fsync_the_file_then_the_folder(tmp_path, monkeypatch):
    synced = _record_fsyncs(monkeypatch)
    atomic_write_text(tmp_path / "results.json", "{}")
    assert synced == ["file", "folder"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_save_model_fsyncs_the_file_then_the_folder(tmp_path, monkeypatch):
    model = lth.mask_model(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    synced = _record_fsyncs(monkeypatch)
    lth.save_model(model, tmp_path / "ticket.keras")
    assert synced[-2:] == ["file", "folder"]
    assert os.listdir(tmp_path) == ["ticket.keras"]


def test_writes_never_touch_the_process_umask(tmp_path, monkeypatch):
    def umask(mask):
        raise AssertionError("os.umask changes the umask of every thread")

    monkeypatch.setattr(os, "umask", umask)
    atomic_write_text(tmp_path / "a.txt", "x")
    lth.save_model(
        lth.mask_model(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])),
        tmp_path / "ticket.keras",
    )
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "ticket.keras"]
