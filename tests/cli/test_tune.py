"""Tests for `keras-lth tune` (`keras_lth/cli/tune.py`)."""

import glob
import os
import sys

import keras
import pytest

import keras_lth as lth
from keras_lth.cli import tune as tune_command
from tests.cli._helpers import assert_one_error_line
from tests.cli._helpers import run_main

pytestmark = pytest.mark.filterwarnings(
    # keras-tuner 1.4's oracle lock.
    "ignore:currentThread:DeprecationWarning",
    "ignore:getName:DeprecationWarning",
)


def test_tune_hands_its_arguments_to_run_cli(monkeypatch):
    seen = []

    def run_cli(args):
        seen.append(args.max_trials)
        return 7

    monkeypatch.setattr(tune_command, "run_cli", run_cli)
    assert run_main(["tune", "--max-trials", "3"])[0] == 7
    assert seen == [3]
    code, _, err = run_main(["tune", "--max-trials", "many"])
    assert_one_error_line(code, err, "--max-trials")


def test_tune_without_keras_lth_tuner_is_an_error(monkeypatch, tmp_path):
    pytest.importorskip("keras_tuner")
    monkeypatch.setitem(sys.modules, "keras_lth.tuner", None)  # Not importable.
    code, _, err = run_main(["tune", "--directory", tmp_path])
    assert_one_error_line(code, err, "keras_lth.tuner")
    assert not os.listdir(tmp_path)


def test_without_keras_tuner_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_tuner", None)
    # The parser still has the tune arguments, and the error says what is
    # missing, in one line.
    code, _, err = run_main(["tune", "--directory", tmp_path])
    assert_one_error_line(code, err, 'pip install "keras-lth[tuner]"')
    assert not os.listdir(tmp_path)
    assert "keras-lth[tuner]" in err


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--prune-rates", "0.2,1.5"], "--prune-rates"),
        (["--prune-rates", ","], "--prune-rates"),
        (["--learning-rates", "fast"], "--learning-rates"),
        (["--rewinds", "init,epoch:x"], "epoch:x"),
        (["--strategies", "magnitude"], "magnitude"),
        (["--max-trials", "0"], "--max-trials"),
        (["--batch-size", "0"], "--batch-size"),
        (["--target", "2"], "2"),
        (["--verbose", "3"], "--verbose"),
    ],
)
def test_bad_settings_give_one_error_line_and_exit_2(tmp_path, flags, needle):
    pytest.importorskip("keras_tuner")
    code, _, err = run_main(["tune", "--directory", tmp_path, *flags])
    assert_one_error_line(code, err, needle)
    assert not os.listdir(tmp_path)


def test_ctrl_c_stops_the_search_with_exit_130(tmp_path, monkeypatch):
    lth_tuner = pytest.importorskip("keras_lth.tuner")

    class Interrupted:
        def search(self, *args, **kwargs):
            raise KeyboardInterrupt

    monkeypatch.setattr(lth_tuner, "make_tuner", lambda *args, **kwargs: Interrupted())
    code, _, err = run_main(["tune", "--directory", tmp_path, "--verbose", "0"])
    assert code == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "without --overwrite" in lines[0], err
    assert "Traceback" not in err


def _tune(tmp_path, *extra):
    return run_main(
        [
            "tune",
            "--max-trials", "1",
            "--epochs-per-round", "1",
            "--prune-rates", "0.5",
            "--rewinds", "init,epoch:1",
            "--learning-rates", "0.003",
            "--target", "0.5",
            "--directory", str(tmp_path),
            "--verbose", "0",
            *extra,
        ]
    )  # fmt: skip


@pytest.mark.slow
def test_tune_searches_saves_and_resumes(tmp_path):
    pytest.importorskip("keras_tuner")
    code, out, err = _tune(tmp_path, "--overwrite")
    assert code == 0, err
    project = tmp_path / "keras_lth_tune"
    output = project / "best_ticket.keras"
    assert "1 trial (1 completed, 0 failed)" in out
    assert "Best trial: trial_" in out and "rewind: " in out and "Score " in out
    assert f"plain model) to {output}" in out
    ticket = keras.models.load_model(output)
    assert lth.get_masks(ticket)
    assert 1.0 - lth.sparsity(ticket)["global"] <= 0.5
    assert glob.glob(str(project / "logs" / "*" / "train" / "events.out.tfevents.*"))

    # Resumed with the same settings: the trial is done and does not run again.
    checkpoints = sorted(glob.glob(str(project / "trial_*" / "checkpoint.weights.h5")))
    assert len(checkpoints) == 1
    written = [os.stat(path).st_mtime_ns for path in checkpoints]
    code, out, err = _tune(tmp_path, "--resume")
    assert code == 0, err
    assert "1 trial (1 completed, 0 failed)" in out
    assert [os.stat(path).st_mtime_ns for path in checkpoints] == written
    # Other search settings on the same project are refused, in one line.
    code, _, err = _tune(tmp_path, "--target", "0.4")
    assert_one_error_line(code, err, "other settings", "--overwrite")
