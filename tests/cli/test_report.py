"""Tests for `keras-lth report` (`keras_lth/cli/report.py`)."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from keras_lth.cli.report import comparison_table
from keras_lth.cli.report import deploy_table
from keras_lth.results import load_results
from keras_lth.results import results_table
from tests.cli._helpers import TINY
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


# ------------------------------------------------------------ deploy table


def _can_export():
    import keras

    return (
        keras.backend.backend() == "tensorflow"
        and importlib.util.find_spec("ai_edge_litert") is not None
    )


def test_without_export_the_report_says_how_to_get_the_deploy_table(finished):
    run_dir = finished[0]
    assert not (run_dir / "deploy.json").exists()
    code, out, err = run_main(["report", run_dir, "--no-plot"])
    assert code == 0, err
    assert "No deploy table: the run was not exported to LiteRT" in out
    assert f"keras-lth run --output {run_dir} --resume --export" in out


@pytest.mark.skipif(not _can_export(), reason="needs TensorFlow and ai_edge_litert")
def test_an_exported_run_writes_and_reports_the_deploy_table(tmp_path):
    import keras

    from keras_lth import datasets

    run_dir = tmp_path / "run"
    argv = ["run", *TINY, "--granularity", "unit", "--controls", "none"]
    code, out, err = run_main([*argv, "--export", "--output", run_dir])
    assert code == 0, err
    deploy = json.loads((run_dir / "deploy.json").read_text())
    rows = deploy["rows"]
    assert [(r["name"], r["file"]) for r in rows] == [
        ("dense", None),
        ("ticket", "ticket.tflite"),
        ("shrunk ticket", "ticket_shrunk.tflite"),
    ]
    for row in rows[1:]:
        assert row["file_bytes"] == (run_dir / row["file"]).stat().st_size
    for row in rows:
        assert row["bytes_ratio"] == pytest.approx(
            row["file_bytes"] / rows[0]["file_bytes"]
        )
        assert row["speedup"] == pytest.approx(
            rows[0]["latency_us"] / row["latency_us"]
        )
        assert row["latency_us"] > 0
    # The dense row: the architecture's size, not a trained network's accuracy.
    dense, ticket, shrunk = rows
    assert dense["test_accuracy"] is None and dense["nonzero"] is None
    assert dense["parameters"] == ticket["parameters"] > shrunk["parameters"]
    assert ticket["nonzero"] < ticket["parameters"]
    assert "does not keep round 0's trained weights" in deploy["notes"][0]
    # LiteRT's accuracy is Keras's: the files compute the ticket's outputs.
    x, y = datasets.load("digits", flatten=True).test
    assert deploy["test_samples"] == len(x)
    model = keras.models.load_model(run_dir / "ticket.keras")
    keras_accuracy = np.mean(np.argmax(model.predict(x, verbose=0), -1) == y)
    assert ticket["test_accuracy"] == pytest.approx(keras_accuracy, abs=1 / len(x))
    assert shrunk["test_accuracy"] == pytest.approx(keras_accuracy, abs=1 / len(x))

    code, out, err = run_main(["report", run_dir, "--no-plot"])
    assert code == 0, err
    assert deploy_table(deploy) in out
    assert out.count("== Deploy: the LiteRT files (deploy.json) ==") == 1
    assert "  deploy.json " in out and "  ticket_shrunk.tflite " in out

    # A run exported before deploy.json existed only gets the measurement.
    (run_dir / "deploy.json").unlink()
    code, out, err = run_main(["report", run_dir, "--no-plot"])
    assert "exported before deploy.json existed" in out
    before = (run_dir / "ticket.tflite").stat().st_mtime_ns
    resume = ["run", "--output", run_dir, "--resume", "--export"]
    code, out, err = run_main(resume)
    assert code == 0, err
    assert (run_dir / "deploy.json").exists()
    assert (run_dir / "ticket.tflite").stat().st_mtime_ns == before


def test_the_deploy_table_shows_every_column_and_the_notes():
    deploy = {
        "rows": [
            {
                "name": "dense", "file": None, "parameters": 1000,
                "nonzero": None, "test_accuracy": None, "file_bytes": 4000,
                "bytes_ratio": 1.0, "latency_us": 3.0, "speedup": 1.0,
            },
            {
                "name": "shrunk ticket", "file": "ticket_shrunk.tflite",
                "parameters": 250, "nonzero": 240, "test_accuracy": 0.97,
                "file_bytes": 1000, "bytes_ratio": 0.25, "latency_us": 1.5,
                "speedup": 2.0,
            },
        ],
        "test_samples": 360,
        "notes": ["first note.", "second note."],
    }  # fmt: skip
    lines = deploy_table(deploy).splitlines()
    assert lines[0] == "== Deploy: the LiteRT files (deploy.json) =="
    assert lines[1].split() == [
        "file", "parameters", "nonzero", "test", "acc", "bytes", "size",
        "us/invoke", "speedup",
    ]  # fmt: skip
    assert lines[3].split() == [
        "(dense)", "1,000", "-", "-", "4,000", "1.000x", "3.00", "1.00x",
    ]  # fmt: skip
    assert lines[4].split() == [
        "ticket_shrunk.tflite", "250", "240", "0.9700", "1,000", "0.250x",
        "1.50", "2.00x",
    ]  # fmt: skip
    assert lines[5:] == ["Note: first note.", "Note: second note."]
