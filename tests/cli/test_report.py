"""Tests for `keras-lth report` (`keras_lth/cli/report.py`)."""

import subprocess
import sys

import pytest

from keras_lth.cli.report import comparison_table
from keras_lth.results import load_results
from keras_lth.results import results_table
from tests.cli._helpers import assert_one_error_line
from tests.cli._helpers import env
from tests.cli._helpers import run_main


def test_report_reprints_the_tables_and_redraws_the_plot(finished):
    run_dir = finished[0]
    (run_dir / "ticket_curve.png").unlink()
    code, out, err = run_main(["report", run_dir])
    assert code == 0, err
    for name in ("results.json", "results_reinit.json", "results_random.json"):
        assert results_table(load_results(run_dir / name)) in out
    assert "== Control: random reinit, branches off IMP" in out
    assert "== Control: random pruning, branches off IMP" in out
    controls = {
        "random reinit": load_results(run_dir / "results_reinit.json"),
        "random pruning": load_results(run_dir / "results_random.json"),
    }
    imp = load_results(run_dir / "results.json")
    assert comparison_table(imp, controls) in out
    assert (run_dir / "ticket_curve.png").read_bytes()[:4] == b"\x89PNG"
    for folder in ("levels/", "branches/", "tensorboard/", "checkpoints/"):
        assert f"  {folder} " in out


def _row(round_index, remaining, accuracy, epoch):
    return {
        "round": round_index,
        "weights_remaining": remaining,
        "best_epoch": epoch,
        "best_step": 10 * epoch,
        "best": {"val_loss": 0.5, "val_accuracy": 0.8},
        "test": {"accuracy": accuracy, "loss": 0.4},
    }


def test_the_comparison_sets_the_ticket_beside_the_controls_at_each_level():
    imp = [_row(0, 1.0, 0.95, 9), _row(1, 0.8, 0.96, 7), _row(2, 0.64, 0.97, 5)]
    reinit = [_row(0, 1.0, 0.94, 9), _row(2, 0.64, 0.90, 12)]
    table = comparison_table(imp, {"random reinit": reinit})
    lines = table.splitlines()
    assert lines[0] == (
        "== The ticket vs. the controls: test_accuracy @ early-stopping epoch =="
    )
    assert lines[1].split() == ["round", "remaining", "IMP", "random", "reinit"]
    # Only the levels the control branched off; round 1 is IMP's alone.
    assert [line.split() for line in lines[3:]] == [
        ["0", "100.00%", "0.9500", "@", "9", "0.9400", "@", "9"],
        ["2", "64.00%", "0.9700", "@", "5", "0.9000", "@", "12"],
    ]


def test_the_plot_shows_the_controls_at_their_levels(finished, monkeypatch):
    pytest.importorskip("matplotlib")
    from keras_lth import plotting

    drawn = []
    monkeypatch.setattr(
        plotting, "plot_results", lambda *a, **kw: drawn.append((a, kw))
    )
    run_dir = finished[0]
    code, _, err = run_main(["report", run_dir])
    assert code == 0, err
    ((args, kwargs),) = drawn
    assert args == (load_results(run_dir / "results.json"),)
    assert kwargs["controls"] == {
        "random reinit": load_results(run_dir / "results_reinit.json"),
        "random pruning": load_results(run_dir / "results_random.json"),
    }
    assert kwargs["path"] == run_dir / "ticket_curve.png"
    # Drawn for real, the default metric is the test accuracy.
    assert plotting.default_metric(args[0]) == "test_accuracy"


def test_report_of_a_folder_that_is_no_run(tmp_path):
    code, _, err = run_main(["report", tmp_path])
    assert_one_error_line(code, err, "run.json")


def test_report_of_a_corrupt_results_file(tmp_path, finished):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_bytes((finished[0] / "run.json").read_bytes())
    (run_dir / "results.json").write_text("[{")
    code, out, err = run_main(["report", run_dir, "--no-plot"])
    assert_one_error_line(code, err, str(run_dir / "results.json"))


_REPORT = """
import sys
from keras_lth.cli import main
code = main(["report", "--no-plot", sys.argv[1]])
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"keras", "tensorflow"})
print("imported:", heavy)
sys.exit(code)
"""


def test_report_imports_no_keras(finished):
    completed = subprocess.run(
        [sys.executable, "-c", _REPORT, str(finished[0])],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
    )
    assert completed.returncode == 0, completed.stderr
    assert "== IMP" in completed.stdout
    assert completed.stdout.strip().endswith("imported: []")
