"""Tests for the run directory and its lock (`keras_lth/cli/_run_dir.py`)."""

import os
import signal
import subprocess
import sys

import pytest

from keras_lth import datasets
from keras_lth.cli import _run_dir
from keras_lth.cli._common import UsageError
from keras_lth.cli._run_dir import RunDirLock
from keras_lth.cli._run_dir import create_run_dir
from keras_lth.cli._run_dir import is_occupied
from keras_lth.cli._run_dir import refuse_if_in_use
from tests.cli._helpers import TINY
from tests.cli._helpers import assert_one_error_line
from tests.cli._helpers import env
from tests.cli._helpers import our_stderr_lines
from tests.cli._helpers import run_main
from tests.cli._helpers import snapshot

pytestmark = pytest.mark.skipif(_run_dir.fcntl is None, reason="needs fcntl.flock")


def test_a_second_lock_is_refused_until_the_first_is_released(tmp_path):
    first, second = RunDirLock(tmp_path), RunDirLock(tmp_path)
    with first:
        assert first.held
        with pytest.raises(UsageError, match="in use by another keras-lth run"):
            second.acquire()
        assert not second.held
        with pytest.raises(UsageError, match="in use"):
            refuse_if_in_use(tmp_path)
    with second:
        assert second.held
    refuse_if_in_use(tmp_path)  # Free again: no error.
    assert (tmp_path / ".lock").is_file()  # Kept: see RunDirLock.


def test_looking_creates_no_lock_file(tmp_path):
    refuse_if_in_use(tmp_path)
    assert not (tmp_path / ".lock").exists()


def test_a_lock_file_alone_is_an_empty_run_directory(tmp_path):
    (tmp_path / ".lock").touch()  # Left by a run killed before run.json.
    assert not is_occupied(tmp_path)
    lock = RunDirLock(tmp_path)
    create_run_dir(tmp_path, lock)
    assert lock.held
    lock.release()
    (tmp_path / "run.json").touch()
    assert is_occupied(tmp_path)
    with pytest.raises(UsageError, match="already exists"):
        create_run_dir(tmp_path, lock)
    lock.release()


def test_a_run_directory_in_use_is_refused(finished):
    run_dir = finished[0]
    before = snapshot(run_dir)
    with RunDirLock(run_dir):
        for argv in (["--resume"], TINY):
            code, out, err = run_main(
                ["run", "--no-export", *argv, "--output", run_dir]
            )
            assert_one_error_line(code, err, str(run_dir), "in use")
            assert "Epoch" not in out
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("finish", [False, True], ids=["running", "finished"])
def test_a_run_that_took_the_folder_meanwhile_wins(tmp_path, monkeypatch, finish):
    run_dir = tmp_path / "run"
    other = RunDirLock(run_dir)
    load = datasets.load

    def load_while_another_run_starts(*args, **kwargs):
        data = load(*args, **kwargs)
        run_dir.mkdir()  # The other run, started on the same --output.
        other.acquire()
        (run_dir / "run.json").write_text('{"the other run": true}')
        if finish:
            other.release()
        return data

    monkeypatch.setattr(datasets, "load", load_while_another_run_starts)
    argv = ["run", *TINY, "--controls", "none", "--no-export", "--output", run_dir]
    code, out, err = run_main(argv)
    other.release()
    refusal = "already exists" if finish else "in use"
    assert_one_error_line(code, err, str(run_dir), refusal)
    assert "Epoch" not in out
    assert (run_dir / "run.json").read_text() == '{"the other run": true}'
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "run.json"]


#: Takes the lock of the run directory `sys.argv[1]` as `keras-lth run`
#: does, says so, and holds it until killed.
_HOLDER = """
import sys, time
from keras_lth.cli._run_dir import RunDirLock
RunDirLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_a_lock_left_by_a_killed_run_does_not_block_resume(finished):
    run_dir = finished[0]
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        argv = ["run", "--output", run_dir, "--resume", "--no-export"]
        code, _, err = run_main(argv)
        assert_one_error_line(code, err, "in use")
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=60)
        holder.stdout.close()
    assert holder.returncode == -signal.SIGKILL
    assert (run_dir / ".lock").is_file()  # Left behind, but no longer locked.
    code, out, err = run_main(argv)
    assert code == 0, err
    assert out.count("finished earlier") == 3


@pytest.mark.slow
def test_of_two_runs_started_together_on_one_output_one_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "keras_lth.cli", "run", *TINY]
    argv += ["--controls", "none", "--no-export", "--output", str(run_dir)]
    runs = [
        subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 2], outputs
    refused = outputs[[run.returncode for run in runs].index(2)]
    lines = our_stderr_lines(refused[1])
    assert len(lines) == 1 and lines[0].startswith("keras-lth: error: "), lines
    assert str(run_dir) in lines[0]
    assert "in use" in lines[0] or "already exists" in lines[0]
    assert "Epoch" not in refused[0]
