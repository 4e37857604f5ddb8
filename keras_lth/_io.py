"""Atomic file writes: a reader sees the old file or the new one, never half."""

import os
import tempfile


def atomic_write(path, write):
    """Calls `write(file)` on a temporary file, then renames it to `path`.

    The temporary file sits in the destination folder, so the final
    `os.replace` is atomic on POSIX and Windows. On any error the temporary
    file is removed and `path` is left as it was.

    Args:
        path: Destination path.
        write: Function taking a binary file object open for writing.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def save_model(model, path, **kwargs):
    """Saves `model` like `model.save(path)`, but atomically.

    Keras writes a `.keras` file in place, so a crash mid-save would leave a
    torn file where the previous good one was. This saves into a temporary
    file beside `path`, then renames it over `path`.

    Args:
        model: The Keras model to save.
        path: Destination, ending in `.keras` (or `.h5`).
        **kwargs: Passed on to `model.save`.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=folder
    )
    os.close(fd)
    try:
        model.save(tmp, **kwargs)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
