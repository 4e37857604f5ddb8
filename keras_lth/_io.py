"""Atomic file writes: a reader sees the old file or the new one, never half."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def _replacing(path, suffix=""):
    """Yields a temporary path beside `path`, renamed over it on success.

    The temporary file sits in the destination folder, so the final
    `os.replace` is atomic on POSIX and Windows. On any error the temporary
    file is removed and `path` is left as it was.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=folder
    )
    os.close(fd)
    try:
        yield tmp
        # `mkstemp` makes the file private (0600); give it the permissions a
        # plain `open` would, as the user's umask says.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask():
    mask = os.umask(0o022)  # Reading the umask means setting it: put it back.
    os.umask(mask)
    return mask


def atomic_write(path, write):
    """Calls `write(file)` on a temporary file, then renames it to `path`.

    Args:
        path: Destination path.
        write: Function taking a binary file object open for writing.
    """
    with _replacing(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


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
    with _replacing(path, suffix=os.path.splitext(os.fspath(path))[1]) as tmp:
        model.save(tmp, **kwargs)
