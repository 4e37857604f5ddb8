"""The run directory of `keras-lth run`: its files, its `run.json`, its lock.

A run holds an exclusive `fcntl.flock` on `<run_dir>/.lock` while it writes
into the folder, so a second `keras-lth run` into the same folder (a new run
or `--resume`) is refused. The kernel drops the lock when the process ends,
however it ends, so a lock file left by a killed run blocks nothing. A new
run creates its folder, takes the lock and only then checks that the folder
is empty: of two runs started together on one `--output`, one is refused.

Standard library only (`keras-lth report` needs no Keras).
"""

import os
import pathlib

try:
    import fcntl
except ImportError:  # Windows: no flock. Runs there are not locked.
    fcntl = None

from keras_lth.cli._common import UsageError
from keras_lth.cli._common import describe
from keras_lth.cli._common import read_json
from keras_lth.cli._settings import ADDED_SETTINGS
from keras_lth.cli._settings import SETTING_FLAGS

__all__ = [
    "DEPLOY_FILE",
    "EXPORT_REPORT_FILE",
    "LOCK_FILE",
    "PLOT_FILE",
    "RUN_FILE",
    "RUN_FILE_VERSION",
    "SHRUNK_FILE",
    "SHRUNK_TFLITE_FILE",
    "TFLITE_FILE",
    "TICKET_FILE",
    "RunDirLock",
    "create_run_dir",
    "is_occupied",
    "read_run_file",
    "refuse_if_in_use",
    "refuse_if_occupied",
]

RUN_FILE = "run.json"
PLOT_FILE = "ticket_curve.png"
TICKET_FILE = "ticket.keras"
TFLITE_FILE = "ticket.tflite"
SHRUNK_FILE = "ticket_shrunk.keras"
SHRUNK_TFLITE_FILE = "ticket_shrunk.tflite"
EXPORT_REPORT_FILE = "ticket_export.txt"
#: The deploy table of an exported run (`keras-lth report` prints it).
DEPLOY_FILE = "deploy.json"
LOCK_FILE = ".lock"
#: 2: the controls are branches off the IMP levels (`control_levels`).
RUN_FILE_VERSION = 2


def read_run_file(run_dir):
    """The contents of `RUN_DIR/run.json`, checked.

    Settings newer than the file (`ADDED_SETTINGS`) get the value its run
    had.

    Raises:
        UsageError: If the file is missing, unreadable, or not written by
            this version of keras-lth.
    """
    path = pathlib.Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise UsageError(
            f"{run_dir} is not a keras-lth run directory: it has no {RUN_FILE}"
        )
    saved = read_json(path)
    if isinstance(saved, dict) and isinstance(saved.get("settings"), dict):
        saved["settings"] = {**ADDED_SETTINGS, **saved["settings"]}
    if (
        not isinstance(saved, dict)
        or saved.get("version") != RUN_FILE_VERSION
        or set(saved.get("settings", {})) != set(SETTING_FLAGS)
    ):
        raise UsageError(
            f"{path} is not a run.json written by this version of keras-lth "
            f"(expected version {RUN_FILE_VERSION} with the settings "
            f"{sorted(SETTING_FLAGS)})"
        )
    return saved


def is_occupied(run_dir):
    """Whether `run_dir` is a folder holding anything but the lock file."""
    run_dir = pathlib.Path(run_dir)
    return run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir())


def refuse_if_in_use(run_dir):
    """Raises `UsageError` if a running process holds the lock of `run_dir`.

    Only looks: creates no lock file and holds nothing after it returns.
    """
    if fcntl is None:
        return
    try:
        fd = os.open(pathlib.Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return  # No lock file: no run ever locked it.
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _in_use(run_dir) from None
    except OSError:
        return  # Cannot tell; the lock taken before writing decides.
    finally:
        os.close(fd)  # Also releases the shared lock, if taken.


def create_run_dir(run_dir, lock):
    """Creates the folder of a new run and takes its lock.

    Args:
        run_dir: The folder; it may exist, empty.
        lock: The `RunDirLock` of `run_dir`, acquired here; the caller
            releases it.

    Raises:
        UsageError: If the folder cannot be created or locked, another run
            holds it, or it is no longer empty (another run started there).
    """
    run_dir = pathlib.Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"cannot create the run directory {run_dir}: {describe(error)}"
        ) from error
    lock.acquire()
    refuse_if_occupied(run_dir)


def refuse_if_occupied(run_dir):
    """Raises `UsageError` if `run_dir` holds anything: a run is never overwritten."""
    if is_occupied(run_dir):
        raise UsageError(
            f"the run directory {run_dir} already exists; use --resume to "
            "continue it, or another --output"
        )


class RunDirLock:
    """The exclusive lock of a run directory, on its `.lock` file.

    `acquire` never waits: a folder another process holds is refused with a
    `UsageError`. `release` (also on exit of a `with` block) may be called
    when the lock is not held. The lock file stays behind: deleting it would
    let two processes lock two different files of the same name.

    Args:
        run_dir: The run directory, which must exist before `acquire`.

    Example:

    ```python
    with RunDirLock(run_dir).acquire():
        ...  # Write into run_dir.
    ```
    """

    def __init__(self, run_dir):
        self.run_dir = pathlib.Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd = None

    def acquire(self):
        """Takes the lock; returns `self`. Raises `UsageError` if held."""
        if self._fd is not None or fcntl is None:
            return self
        try:
            # Empty: the lock is the open file's, not its content.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise UsageError(
                f"cannot lock the run directory {self.run_dir}: {describe(error)}"
            ) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if isinstance(error, BlockingIOError):
                raise _in_use(self.run_dir) from None
            raise UsageError(
                f"cannot lock the run directory {self.run_dir}: {describe(error)}"
            ) from error
        self._fd = fd
        return self

    def release(self):
        """Releases the lock if this object holds it."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # Closing the file releases the flock.

    @property
    def held(self):
        return self._fd is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()


def _in_use(run_dir):
    return UsageError(
        f"the run directory {run_dir} is in use by another keras-lth run; "
        "wait for it to end, or use another --output"
    )
