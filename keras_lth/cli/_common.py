"""What the `keras-lth` commands share: the usage error, messages, quiet imports.

Standard library only: the parser imports this module, and `keras-lth --help`
must not import Keras.
"""

import contextlib
import importlib.util
import json
import os
import pathlib
import re
import sys
import tempfile

__all__ = [
    "UsageError",
    "describe",
    "has_module",
    "import_keras",
    "native_logs_filtered",
    "read_json",
]

#: The line absl prints before the first log line of a process that never
#: initialises its logging, as TensorFlow's shared libraries do.
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog()"

#: An absl log line: severity letter, date, time, thread, file:line]. Before
#: absl is initialised the date is 0000 and the time counts from the epoch.
_LOG_LINE = re.compile(r"([IWEF])\d{4} \d+:\d+:\d+\.\d+ +\d+ [^ \]]+:\d+\] ")

#: A line of LiteRT's (TensorFlow Lite's) own logging.
_LITERT_LINE = re.compile(r"(INFO|WARNING|ERROR|VERBOSE): ")

_SEVERITY = {"V": 0, "I": 0, "W": 1, "E": 2, "F": 3}


class UsageError(Exception):
    """A bad command line, option value, input or run directory.

    `keras-lth` prints it as one `keras-lth: error: ...` line and exits 2.
    """


def describe(error):
    """An exception as one line, without Keras' colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    return " ".join(text.split()) or type(error).__name__


def has_module(name):
    """Whether the module `name` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def read_json(path):
    """The JSON in `path`, None if it does not exist.

    Raises:
        UsageError: If the file cannot be read or holds no valid JSON.
    """
    try:
        return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {path}: {describe(error)}") from error


def import_keras(*, show_logs=False):
    """Imports and returns Keras, without TensorFlow's C++ log unless asked.

    Unless `show_logs`, `TF_CPP_MIN_LOG_LEVEL` is set to 3 (errors hidden
    too) when the user has not set it; it must be set before TensorFlow loads.
    That variable does not reach the lines TensorFlow's shared libraries log
    while they load (absl's "All log messages before absl::InitializeLog()"
    and the `I0000 ...` lines after it), so the import runs inside
    `native_logs_filtered`.

    Args:
        show_logs: Leave TensorFlow's logging as it is (`--verbose`).
    """
    if not show_logs:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "keras" in sys.modules:
        import keras

        return keras
    with native_logs_filtered(show_logs=show_logs):
        import keras

    return keras


@contextlib.contextmanager
def native_logs_filtered(*, show_logs=False):
    """Drops native log lines below `TF_CPP_MIN_LOG_LEVEL` from the standard error.

    C++ code (TensorFlow's loading, LiteRT's interpreter) writes to file
    descriptor 2 directly, out of Python's reach. Within this context that
    descriptor goes to a temporary file; on exit everything in it is written
    back to `sys.stderr` except absl's notice and the log lines (absl's
    `I0000 ...`, LiteRT's `INFO: ...`) below the level. Nothing is filtered
    with `show_logs`, at level 0, or when the standard error has no file
    descriptor.

    Args:
        show_logs: Filter nothing (`--verbose`).
    """
    level = _min_log_level()
    saved = None if show_logs or level == 0 else _duplicate_stderr()
    if saved is None:
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [
                line
                for line in text.splitlines(keepends=True)
                if not _is_dropped(line, level)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _duplicate_stderr():
    """A copy of file descriptor 2, or None without a usable one."""
    try:
        sys.stderr.flush()
        return os.dup(2)
    except (OSError, ValueError):
        return None


def _min_log_level():
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def _is_dropped(line, level):
    if line.startswith(_ABSL_NOTICE):
        return True
    match = _LOG_LINE.match(line) or _LITERT_LINE.match(line)
    return match is not None and _SEVERITY[match.group(1)[0]] < level
