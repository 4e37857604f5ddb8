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
