"""Tests for `keras-lth run` (`keras_lth/cli/run.py`).

Most tests call `main(argv)` in this process on scikit-learn's digits with
tiny settings (2 rounds of 1 epoch, 3 steps per epoch); the ones marked slow
start a real process (exit codes, stderr, a SIGKILL mid-run).
"""

import errno
import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_lth
from keras_lth import branches
from keras_lth import get_masks
from keras_lth.cli._settings import CONTROLS
from keras_lth.results import load_results
from keras_lth.results import results_table
from tests.cli._helpers import CHECKPOINT
from tests.cli._helpers import LEVEL_NAMES
from tests.cli._helpers import LEVELS
from tests.cli._helpers import NATIVE_LOG_PREFIXES
from tests.cli._helpers import TINY
from tests.cli._helpers import assert_one_error_line
from tests.cli._helpers import env
from tests.cli._helpers import interrupt_after
from tests.cli._helpers import our_stderr_lines
from tests.cli._helpers import run_main
from tests.cli._helpers import script
from tests.cli._helpers import snapshot

#: The stages and branches of the `finished` run, as their folders name them.
STAGES = ["imp", *(f"{c}/{level}" for c in CONTROLS for level in LEVEL_NAMES)]

# ----------------------------------------------------------------------- run


def test_run_writes_every_promised_file(finished):
    run_dir, code, _, err = finished
    assert code == 0, err
    for name in (
        "run.json",
        "results.json",
        "results.csv",
        "results_reinit.json",
        "results_reinit.csv",
        "results_random.json",
        "results_random.csv",
        "ticket.keras",
    ):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "test_metrics.json").exists()  # In the rows now.
    assert (run_dir / "ticket_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for level in LEVEL_NAMES:
        assert (run_dir / "levels" / level / "masks.npz").is_file()
        assert (run_dir / "levels" / level / "level.json").is_file()
    for stage in STAGES:
        assert (run_dir / "checkpoints" / stage / CHECKPOINT.name).is_file()
    assert not (run_dir / "ticket.tflite").exists()  # --no-export
    assert (run_dir / ".lock").is_file()  # Empty: the lock is the open file's.
    assert not list(run_dir.rglob(".*.tmp*"))  # Every atomic write finished.

    saved = json.loads((run_dir / "run.json").read_text())
    assert saved["version"] == 2
    assert saved["settings"] == {
        "model": "lenet_300_100",
        "dataset": "digits",
        "data_path": None,
        "batch_size": 512,
        "rounds": 2,
        "epochs_per_round": 1,
        "prune_rate": 0.2,
        "layer_rates": {"output": 0.1},
        "strategy": "layerwise",
        "granularity": "weight",
        "refill": False,
        "rewind": "init",
        "monitor": "val_accuracy",  # On digits; val_loss on the other data.
        "controls": ["reinit", "random"],
        "control_levels": [100.0, 80.2],
        "seed": 0,
    }
    assert [s["results"] for s in saved["stages"]] == [
        "results.json",
        "results_reinit.json",
        "results_random.json",
    ]
    assert saved["data"]["train"] == 1297

    # The ticket is the last round's masked model: 80% of fc1 and fc2, 90% of
    # the output layer, which is what the results' last row says.
    ticket = keras.models.load_model(run_dir / "ticket.keras")
    rows = load_results(run_dir / "results.json")
    masks = get_masks(ticket)
    assert {k: round(float(m.mean()), 3) for k, m in masks.items()} == {
        "fc1/kernel": 0.8,
        "fc2/kernel": 0.8,
        "output/kernel": 0.9,
    }
    kept = sum(float(m.sum()) for m in masks.values())
    total = sum(m.size for m in masks.values())
    assert kept / total == pytest.approx(rows[-1]["weights_remaining"])
    # Test metrics at each round's early-stopping epoch, in the rows.
    for row in rows:
        assert row["monitor"] == "val_accuracy"
        assert sorted(row["test"]) == ["accuracy", "loss"]
        assert 0.0 <= row["test"]["accuracy"] <= 1.0


def test_the_controls_are_branches_off_the_imp_levels(finished):
    run_dir = finished[0]
    imp = load_results(run_dir / "results.json")
    found = branches.read_branches(run_dir)
    assert sorted(found) == ["random", "reinit"]
    for control, rows in found.items():
        # One row per level, each of one round of training at its level.
        assert [row["round"] for row in rows] == [0, 1]
        assert [row["level"] for row in rows] == LEVEL_NAMES
        for row, ticket_row in zip(rows, imp, strict=True):
            assert row["weights_remaining"] == pytest.approx(
                ticket_row["weights_remaining"]
            )
            assert row["epochs"] == 1 and "accuracy" in row["test"]
            assert row["monitor"] == "val_accuracy"  # As IMP's.
        assert load_results(run_dir / f"results_{control}.json") == rows
    level = LEVEL_NAMES[1]
    ticket_masks = branches.load_masks(run_dir / "levels" / level / "masks.npz")
    reinit = branches.load_masks(run_dir / "branches/reinit" / level / "masks.npz")
    random = branches.load_masks(run_dir / "branches/random" / level / "masks.npz")
    for key, mask in ticket_masks.items():
        np.testing.assert_array_equal(reinit[key], mask)  # The ticket's masks.
        assert random[key].sum() == mask.sum()  # As many weights per tensor,
        assert (random[key] != mask).any()  # but others.


@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None,
    reason="keras.callbacks.TensorBoard needs TensorFlow",
)
def test_the_run_writes_epoch_curves_for_tensorboard(finished):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    run_dir = finished[0]
    for stage in STAGES:
        for run in ("train", "validation", "sparsity/train", "sparsity/validation"):
            folder = run_dir / "tensorboard" / stage / run
            events = list(folder.glob("events.out.tfevents*"))
            assert events and all(e.stat().st_size > 0 for e in events), folder

    def tags(folder):
        found = event_accumulator.EventAccumulator(str(folder))
        found.Reload()
        return {tag: len(found.Tensors(tag)) for tag in found.Tags()["tensors"]}

    board = run_dir / "tensorboard"
    branch = board / "reinit" / LEVEL_NAMES[1]
    # One point per epoch: IMP's 2 rounds of 1 epoch, the branch's 1 epoch.
    assert tags(board / "imp" / "train")["epoch_loss"] == 2
    assert tags(board / "imp" / "validation")["epoch_loss"] == 2
    assert tags(branch / "train")["epoch_loss"] == 1
    assert "epoch_accuracy" in tags(branch / "validation")
    # The masks' summaries are in their own folder.
    assert "sparsity/global" in tags(board / "imp" / "sparsity" / "train")
    assert "epoch_loss" not in tags(board / "imp" / "sparsity" / "train")


def test_run_prints_progress_then_the_tables_of_its_json(finished):
    run_dir, _, out, _ = finished
    assert "Epoch 1/2" in out  # Keras' line per epoch.
    assert "LotteryTicket: round 2/2, 80.2% of weights remaining" in out
    assert "The controls branch off rounds 0 (100.0%), 1 (80.2%)." in out
    reinit = out.index("[2/3] Control: random reinit")
    random = out.index("[3/3] Control: random pruning")
    assert out.index("round 2/2") < reinit < random
    assert out.index("branch 2/2: reinit at round_01_80.2pct") < random
    assert out.index("branch 2/2: random at round_01_80.2pct") > random
    for name in ("results.json", "results_reinit.json", "results_random.json"):
        rows = load_results(run_dir / name)
        assert [row["round"] for row in rows] == [0, 1]
        assert results_table(rows) in out
    csv = (run_dir / "results.csv").read_text().splitlines()
    assert len(csv) == 3 and csv[0].startswith("round,weights_remaining")
    assert csv[0].endswith("test_accuracy,test_loss")
    rows = load_results(run_dir / "results.json")
    assert [float(line.split(",")[1]) for line in csv[1:]] == [
        row["weights_remaining"] for row in rows
    ]
    assert "The ticket vs. the controls: test_accuracy" in out
    assert f"keras-lth report {run_dir}" in out


def test_run_refuses_an_existing_run_directory(finished):
    run_dir = finished[0]
    before = snapshot(run_dir)
    code, out, err = run_main(["run", *TINY, "--no-export", "--output", run_dir])
    assert_one_error_line(code, err, str(run_dir), "--resume", "--output")
    assert "Epoch" not in out
    assert snapshot(run_dir) == before


def test_resume_skips_finished_stages(finished):
    run_dir = finished[0]
    before = snapshot(run_dir)
    code, out, err = run_main(["run", "--output", run_dir, "--resume", "--no-export"])
    assert code == 0, err
    assert out.count("finished earlier") == 3
    assert "Epoch" not in out
    after = snapshot(run_dir)
    del before["ticket_curve.png"], after["ticket_curve.png"]  # Redrawn.
    assert after == before
    assert results_table(load_results(run_dir / "results.json")) in out


def test_resume_refuses_settings_that_differ_from_run_json(finished):
    run_dir = finished[0]
    before = snapshot(run_dir)
    code, _, err = run_main(
        ["run", "--output", run_dir, "--resume", "--rounds", "3", "--seed", "0"]
    )
    assert_one_error_line(code, err, "--rounds 3", "the run has 2", "run.json")
    assert "--seed" not in err  # Same as the run's: not a difference.
    assert snapshot(run_dir) == before


def test_resume_continues_an_interrupted_stage(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    argv = ["run", "--rounds", "2", "--epochs-per-round", "2", "--batch-size", "512"]
    argv += ["--controls", "none", "--no-export", "--output", run_dir]
    interrupt_after(monkeypatch, 3)  # As Ctrl-C after the third epoch.
    code, _, err = run_main(argv)
    assert code == 130
    assert f"--output {run_dir} --resume" in err
    assert len(err.strip().splitlines()) == 1  # One line says how to resume.
    assert not (run_dir / "results.json").exists()
    assert (run_dir / CHECKPOINT).is_file()

    monkeypatch.undo()
    code, out, err = run_main(["run", "--output", run_dir, "--resume", "--no-export"])
    assert code == 0, err
    assert "Continuing from the checkpoint" in out
    assert "Epoch 4/4" in out
    assert "Epoch 1/4" not in out and "Epoch 3/4" not in out
    rows = load_results(run_dir / "results.json")
    assert [row["round"] for row in rows] == [0, 1]
    assert rows[1]["weights_remaining"] == pytest.approx(0.802, abs=1e-3)


def test_resume_checks_the_control_levels_of_run_json(finished):
    run_dir = finished[0]
    before = snapshot(run_dir)
    argv = ["run", "--output", run_dir, "--resume", "--no-export"]
    code, _, err = run_main([*argv, "--control-levels", "51.3"])
    assert_one_error_line(
        code, err, "--control-levels 51.3 (the run has 100.0,80.2)", "run.json"
    )
    assert snapshot(run_dir) == before
    # The same levels, spelt otherwise: the run as it was, finished.
    code, out, err = run_main([*argv, "--control-levels", "80.2%, 100"])
    assert code == 0, err
    assert out.count("finished earlier") == 3 and "Epoch" not in out


@pytest.mark.parametrize(
    "epoch_ends, skipped",
    [(6, 0), (7, 1)],
    ids=["after-a-branch-trained", "inside-a-branch"],
)
def test_resume_continues_the_branches(tmp_path, monkeypatch, epoch_ends, skipped):
    # IMP trains 2 rounds of 2 epochs (4 epoch ends), then the reinit branch
    # off round 0 (5, 6) and off round 1 (7, 8). Interrupted after 6, the
    # first branch has trained but has no result yet; after 7, it is done
    # and the second is half-way.
    run_dir = tmp_path / "run"
    argv = ["run", "--rounds", "2", "--epochs-per-round", "2", "--batch-size", "512"]
    argv += [*LEVELS, "--controls", "reinit", "--no-export", "--output", run_dir]
    interrupt_after(monkeypatch, epoch_ends)
    code, out, err = run_main(argv)
    assert code == 130, err
    assert f"--output {run_dir} --resume" in err
    assert (run_dir / "results.json").is_file()
    assert not (run_dir / "results_reinit.json").exists()
    done = branches.read_branches(run_dir).get("reinit", [])
    assert len(done) == skipped
    before = snapshot(run_dir / "branches")

    monkeypatch.undo()
    code, out, err = run_main(["run", "--output", run_dir, "--resume", "--no-export"])
    assert code == 0, err
    imp, control = out.split("[2/2] Control: random reinit")
    assert "finished earlier" in imp and "Epoch" not in imp
    if skipped:
        assert "1 branch finished earlier, skipped." in control
        assert "branch 1/1: reinit at round_01_80.2pct" in control
        assert "Epoch 2/2" in control and "Epoch 1/2" not in control
    else:
        assert "branch 1/2: reinit at round_00_100.0pct" in control
        assert control.count("Epoch 1/2") == 1  # The second branch's only.
    assert "Continuing from the checkpoint" in control
    assert "round_00_100.0pct/lottery_ticket_state.npz" in control or skipped
    rows = load_results(run_dir / "results_reinit.json")
    assert [row["round"] for row in rows] == [0, 1]
    assert [row["epochs"] for row in rows] == [2, 2]
    after = snapshot(run_dir / "branches")
    for path, content in before.items():
        if path.endswith("result.json"):
            assert after[path] == content  # A finished branch is left as it is.


def test_no_control_runs_no_branches(tmp_path):
    run_dir = tmp_path / "run"
    argv = ["run", *TINY, "--controls", "none", "--monitor", "val_loss"]
    code, out, err = run_main([*argv, "--no-export", "--output", run_dir])
    assert code == 0, err
    assert "[1/1] IMP" in out and "Control" not in out
    assert "early stop at the best val_loss" in out
    assert not (run_dir / "levels").exists()
    assert not (run_dir / "branches").exists()
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved["settings"]["controls"] == []
    assert saved["settings"]["monitor"] == "val_loss"
    assert [s["name"] for s in saved["stages"]] == ["imp"]
    rows = load_results(run_dir / "results.json")
    assert {row["monitor"] for row in rows} == {"val_loss"}


def test_levels_the_run_does_not_reach_give_no_branch(tmp_path):
    run_dir = tmp_path / "run"
    argv = ["run", *TINY, "--control-levels", "21.1,3.6", "--no-export"]
    code, out, err = run_main([*argv, "--output", run_dir])
    assert code == 0, err
    assert "The controls branch off rounds (none)." in out
    assert "Levels not reached: 21.1%, 3.6% of weights remaining" in out
    assert "the last round has 80.2%" in out
    assert "No level to branch off" in out
    assert load_results(run_dir / "results_reinit.json") == []
    assert "The ticket vs. the controls" not in out
    assert (run_dir / "ticket_curve.png").is_file()  # IMP alone.


# ------------------------------------------------------------------ errors


OUT = "<tmp>/run"  # Replaced by a path under the test's tmp_path.


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["run", "--bogus", "--output", OUT], "--bogus"),
        (["run", "--rounds", "0", "--output", OUT], "--rounds"),
        (["run", "--model", "lenet5", "--output", OUT], "lenet5"),
        (["run", "--strategy", "magnitude", "--output", OUT], "magnitude"),
        (["run", "--prune-rate", "1.5", "--output", OUT], "prune_rate"),
        (
            ["run", "--epochs-per-round", "2", "--rewind", "epoch:9", "--output", OUT],
            "epoch:9",
        ),
        (["run", "--rewind", "epoch:x", "--output", OUT], "epoch:x"),
        (["run", "--rewind", "100000", "--output", OUT], "falls after round 0"),
        (["run", "--controls", "reinit,shuffle", "--output", OUT], "shuffle"),
        (["run", "--controls", "none,reinit", "--output", OUT], "none"),
        (["run", "--control-levels", "abc", "--output", OUT], "--control-levels"),
        (["run", "--control-levels", "51.3,x", "--output", OUT], "(0, 100]"),
        (["run", "--control-levels", "0", "--output", OUT], "(0, 100]"),
        (["run", "--control-levels", "150", "--output", OUT], "'150'"),
        (["run", "--control-levels", "-5", "--output", OUT], "'-5'"),
        (["run", "--control-levels", "nan", "--output", OUT], "'nan'"),
        (["run", "--control-levels", "", "--output", OUT], "--control-levels"),
        (["run", "--control-levels", "7,,3", "--output", OUT], "'7,,3'"),
        (["run", "--layer-rate", "fc1", "--output", OUT], "LAYER=RATE"),
        (["run", "--layer-rate", "fc9=0.1", "--output", OUT], "fc9"),
        (["run", "--rewind", "reinit", "--output", OUT], "reinit_each_round"),
        (["run", "--monitor", "accuracy", "--output", OUT], "--monitor"),
        (["run", "--resume"], "--output"),
        ([], "choose a command"),
    ],
)
def test_bad_options_give_one_error_line_and_exit_2(tmp_path, argv, needle):
    run_dir = tmp_path / "run"
    code, _, err = run_main([run_dir if arg == OUT else arg for arg in argv])
    assert_one_error_line(code, err, needle)
    assert not run_dir.exists()


def test_an_unreadable_data_path_gives_one_error_line_and_exit_2(tmp_path):
    missing = tmp_path / "no_such_folder"
    argv = ["run", "--dataset", "mnist", "--data-path", missing]
    code, _, err = run_main([*argv, "--output", tmp_path / "a"])
    assert_one_error_line(code, err, "mnist", str(missing))

    corrupt = tmp_path / "mnist.npz"
    corrupt.write_bytes(b"not a zip file")
    code, _, err = run_main(["run", "--data-path", corrupt, "--output", tmp_path / "b"])
    assert_one_error_line(code, err, str(corrupt))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_an_unwritable_output_gives_one_error_line_and_exit_2():
    code, out, err = run_main(["run", *TINY, "--no-export", "--output", "/proc/x"])
    assert_one_error_line(code, err, "cannot create the run directory /proc/x")
    assert "Epoch" not in out
    assert not os.path.exists("/proc/x")


def test_a_full_disk_gives_one_error_line_and_the_run_resumes(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    replace = os.replace
    checkpoints = []

    def replace_on_a_full_disk(src, dst, **kwargs):
        if str(dst).endswith(CHECKPOINT.name):
            checkpoints.append(dst)
            if len(checkpoints) == 2:  # The second epoch's checkpoint.
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replace_on_a_full_disk)
    argv = ["run", *TINY, "--controls", "none", "--no-export", "--output", run_dir]
    code, out, err = run_main(argv)
    assert_one_error_line(code, err, "No space left on device", str(CHECKPOINT.name))
    assert f"--output {run_dir} --resume" in err
    assert "Epoch 2/2" in out
    assert not (run_dir / "results.json").exists()
    assert not list(run_dir.rglob(".*.tmp*"))  # No temporary file left.

    monkeypatch.undo()
    code, out, err = run_main(["run", "--output", run_dir, "--resume", "--no-export"])
    assert code == 0, err
    assert "Continuing from the checkpoint" in out
    assert [row["round"] for row in load_results(run_dir / "results.json")] == [0, 1]


def test_a_torn_checkpoint_on_resume_gives_one_error_line(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    argv = ["run", "--rounds", "2", "--epochs-per-round", "2", "--batch-size", "512"]
    argv += ["--controls", "none", "--no-export", "--output", run_dir]
    interrupt_after(monkeypatch, 1)
    assert run_main(argv)[0] == 130
    monkeypatch.undo()
    checkpoint = run_dir / CHECKPOINT
    content = checkpoint.read_bytes()
    checkpoint.write_bytes(content[: len(content) // 2])  # As a torn write.

    code, _, err = run_main(["run", "--output", run_dir, "--resume", "--no-export"])
    assert_one_error_line(code, err, str(checkpoint))
    assert not (run_dir / "results.json").exists()


# ------------------------------------------------------------------ export


def _can_export():
    return (
        keras.backend.backend() == "tensorflow"
        and importlib.util.find_spec("ai_edge_litert") is not None
    )


@pytest.mark.skipif(not _can_export(), reason="needs ai_edge_litert")
def test_export_writes_the_ticket_as_litert(tmp_path):
    run_dir = tmp_path / "run"
    code, out, err = run_main(
        ["run", *TINY, "--controls", "none", "--export", "--output", run_dir]
    )
    assert code == 0, err
    assert (run_dir / "ticket.tflite").stat().st_size > 0
    report = (run_dir / "ticket_export.txt").read_text()
    assert report.startswith("LiteRT export: ")
    assert report.strip() in out
    # The shrunk ticket: a plain model, smaller, with the ticket's outputs.
    assert "== The ticket shrunk (keras_lth.shrink) ==" in report
    ticket = keras.saving.load_model(run_dir / "ticket.keras")
    small = keras.saving.load_model(run_dir / "ticket_shrunk.keras")
    assert (run_dir / "ticket_shrunk.tflite").stat().st_size > 0
    assert small.count_params() <= keras_lth.strip_masks(ticket).count_params()
    x = np.random.default_rng(0).random((4, *ticket.input_shape[1:])).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(small(x)),
        keras.ops.convert_to_numpy(ticket(x)),
        atol=1e-5,
    )


# ------------------------------------------------------ real processes (slow)


@pytest.mark.slow
def test_the_keras_lth_script_exits_2_with_one_error_line(tmp_path):
    path = script()
    if path is None:
        pytest.skip("the keras-lth script is not installed (pip install -e .)")
    missing = tmp_path / "missing"
    completed = subprocess.run(
        [path, "run", "--data-path", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
        cwd=tmp_path,
    )
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    lines = our_stderr_lines(completed.stderr)
    assert len(lines) == 1 and lines[0].startswith("keras-lth: error: "), lines
    assert f"cannot load the mnist data from {missing}" in lines[0]
    assert completed.stdout == ""
    assert not list(tmp_path.iterdir())  # No run directory was made.
    assert completed.stderr.strip() == lines[0]  # No TensorFlow log either.


@pytest.mark.slow
def test_a_run_prints_no_tensorflow_log_lines_unless_verbose(tmp_path):
    argv = [sys.executable, "-m", "keras_lth.cli", "run", *TINY, "--controls", "none"]
    quiet = subprocess.run(
        [*argv, "--output", str(tmp_path / "quiet")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env(TF_CPP_MIN_LOG_LEVEL=None),  # The user did not set it.
        cwd=tmp_path,
    )
    assert quiet.returncode == 0, quiet.stderr[-4000:]
    assert "Epoch 2/2" in quiet.stdout
    logged = [
        line
        for line in quiet.stderr.splitlines()
        if line.startswith((*NATIVE_LOG_PREFIXES, "INFO: "))
    ]
    assert logged == []

    verbose = subprocess.run(
        [*argv, "--no-export", "--verbose", "--output", str(tmp_path / "verbose")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env(TF_CPP_MIN_LOG_LEVEL=None),
        cwd=tmp_path,
    )
    assert verbose.returncode == 0, verbose.stderr[-4000:]
    if keras.backend.backend() == "tensorflow":
        assert any(line.startswith("I0000") for line in verbose.stderr.splitlines())


#: A `keras-lth run` that kills itself with SIGKILL right after the epoch end
#: number `sys.argv[1]` (counted over all stages), once that epoch's
#: checkpoint is written.
_KILLED_RUN = """
import os, signal, sys
from keras_lth import cli
from keras_lth.callbacks import LotteryTicket

original, kill_after, calls = LotteryTicket.on_epoch_end, int(sys.argv[1]), []

def on_epoch_end(self, epoch, logs=None):
    original(self, epoch, logs)
    calls.append(epoch)
    if len(calls) == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)

LotteryTicket.on_epoch_end = on_epoch_end
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_resume_skips_the_finished_stage_and_continues_a_killed_branch(tmp_path):
    run_dir = tmp_path / "run"
    argv = ["run", "--rounds", "2", "--epochs-per-round", "2", "--batch-size", "512"]
    argv += [*LEVELS, "--controls", "reinit", "--no-export", "--output", str(run_dir)]
    # IMP runs 4 epochs, then the reinit branch off round 0: killed after
    # its first epoch.
    completed = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, "5", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=env(),
        cwd=tmp_path,
    )
    assert completed.returncode == -signal.SIGKILL, completed.stderr[-4000:]
    assert "branch 1/2: reinit at round_00_100.0pct" in completed.stdout
    assert (run_dir / "results.json").is_file()
    assert not (run_dir / "results_reinit.json").exists()
    imp_files = {
        name: (run_dir / name).read_bytes()
        for name in ("results.json", "results.csv", "ticket.keras")
    }

    # The killed process's lock died with it.
    code, out, err = run_main(["run", "--output", run_dir, "--resume", "--no-export"])
    assert code == 0, err
    imp, control = out.split("[2/2] Control: random reinit")
    assert "finished earlier" in imp and "Epoch" not in imp
    first, second = control.split("branch 2/2")
    assert "Continuing from the checkpoint" in first
    assert "Epoch 2/2" in first and "Epoch 1/2" not in first
    assert "Epoch 1/2" in second and "Epoch 2/2" in second
    rows = load_results(run_dir / "results_reinit.json")
    assert [row["round"] for row in rows] == [0, 1]
    assert {n: (run_dir / n).read_bytes() for n in imp_files} == imp_files
    assert pathlib.Path(run_dir / ".lock").is_file()
