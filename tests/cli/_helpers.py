"""Helpers of the `keras-lth` command's tests."""

import contextlib
import hashlib
import io
import os
import pathlib
import shutil
import sys

from keras_lth import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]

#: A tiny run on scikit-learn's digits: 2 rounds of 1 epoch, 3 steps each.
TINY = ["--rounds", "2", "--epochs-per-round", "1", "--batch-size", "512"]
CHECKPOINT = pathlib.Path("checkpoints", "imp", "lottery_ticket_state.npz")

#: The levels of a 2-round run, so that the controls branch off both rounds.
LEVELS = ["--control-levels", "100,80.2"]
#: The level folders of such a run (`keras_lth.branches.level_name`).
LEVEL_NAMES = ["round_00_100.0pct", "round_01_80.2pct"]

#: How TensorFlow's and LiteRT's native log lines start.
NATIVE_LOG_PREFIXES = ("I0000", "W0000", "E0000", "WARNING: All log messages")


def run_main(argv):
    """`cli.main(argv)` with its stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def snapshot(folder):
    """`{relative path: (sha256, mtime_ns)}` of every file under `folder`."""
    return {
        str(path.relative_to(folder)): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mtime_ns,
        )
        for path in sorted(pathlib.Path(folder).rglob("*"))
        if path.is_file()
    }


def assert_one_error_line(code, err, *needles, exit_code=2):
    assert code == exit_code
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("keras-lth: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def env(**changes):
    """The environment of a child process: this checkout first on the path.

    A value of None removes the variable.
    """
    base = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def our_stderr_lines(stderr):
    """stderr without TensorFlow's start-up logging (printed at import)."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip()
        and not line.startswith(("I0000", "W0000", "WARNING: All log messages"))
        and "cpu_feature_guard" not in line
        and not line.startswith("To enable the following instructions")
    ]


def script(name="keras-lth"):
    """The path of an installed console script beside this Python, or None."""
    return shutil.which(name, path=str(pathlib.Path(sys.executable).parent))


def interrupt_after(monkeypatch, epochs):
    """Makes the run raise KeyboardInterrupt after `epochs` epoch ends.

    The epoch ends are counted over IMP and every branch. Each epoch's
    checkpoint is saved first, as when Ctrl-C comes between epochs.
    """
    from keras_lth.callbacks import LotteryTicket

    original = LotteryTicket.on_epoch_end
    calls = []

    def on_epoch_end(self, epoch, logs=None):
        original(self, epoch, logs)  # Saves the checkpoint.
        calls.append(epoch)
        if len(calls) == epochs:
            raise KeyboardInterrupt

    monkeypatch.setattr(LotteryTicket, "on_epoch_end", on_epoch_end)
