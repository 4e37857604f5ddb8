"""Smoke test: `benchmarks/compare_methods.py --dry-run` runs every method.

Runs on scikit-learn's bundled digits (`--data digits`), so it needs no
download and never skips; one subprocess, under a minute on 2 CPU cores.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "compare_methods.py"
pytestmark = pytest.mark.slow  # A subprocess that imports TensorFlow and trains.

LABELS = {
    "imp_init": "IMP, rewind to init",
    "imp_late": "IMP, late rewind",
    "lr_rewind": "IMP, LR rewinding",
    "finetune": "IMP, fine-tuning",
    "gradual": "gradual (PolynomialDecay)",
    "one_shot": "one-shot, rewind to init",
    "early_bird": "early-bird IMP",
    "snip": "SNIP at init",
    "synflow": "SynFlow at init",
    "reinit": "control: random reinit",
    "random": "control: random pruning",
}
# A table row: the label, three "acc @weights%" cells, epochs spent, epochs
# run and the wall time.
CELL = r"(\d+\.\d\d) @(\d+\.\d)%"
ROW = re.compile(
    rf"^(?P<label>\S.*?)\s+{CELL}\s+{CELL}\s+{CELL}\s+(\d+)\s+(\d+)\s+(\d+)s$"
)


def _run(*args, timeout=240):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def test_dry_run_prints_the_table_and_writes_json_and_png(tmp_path):
    completed = _run("--dry-run", "--data", "digits", "--output", str(tmp_path))
    assert completed.returncode == 0, completed.stderr[-4000:]
    out = completed.stdout

    header = next(line for line in out.splitlines() if line.startswith("method"))
    for column in ("acc@21%", "acc@7%", "acc@3.6%", "epochs spent", "wall"):
        assert column in header, header
    rows = {}
    for line in out.splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group("label")] = match
    assert set(rows) == set(LABELS.values()), out
    for match in rows.values():
        groups = match.groups()
        accuracies = [float(groups[i]) for i in (1, 3, 5)]
        remaining = [float(groups[i]) for i in (2, 4, 6)]
        assert all(0.0 <= a <= 100.0 for a in accuracies)
        assert remaining == sorted(remaining, reverse=True)  # Sparser to the right.
        assert int(groups[7]) >= 1  # Epochs spent.

    report = json.loads((tmp_path / "results.json").read_text())
    assert set(report["runs"]) == set(LABELS)
    assert [s["method"] for s in report["summary"]] == list(LABELS)
    assert report["mode"] == "dry-run"
    for method, runs in report["runs"].items():
        (run,) = runs  # One seed.
        assert len(run["points"]) == 3, method
        for point in run["points"]:
            assert 0.0 <= point["test_accuracy"] <= 1.0
        assert run["epochs_spent"] <= run["epochs_run"], method
    # Every method starts from the same initial weights and data order, so
    # the dense round 0 of the IMP-style methods is the same network.
    dense = {
        method: runs[0]["rows"][0]["best"]["val_loss"]
        for method, runs in report["runs"].items()
        if method not in ("gradual", "snip", "synflow")
    }
    assert len(set(dense.values())) == 1, dense
    # SNIP, SynFlow and gradual pruning land on the IMP rounds' sparsities.
    planned = report["plan"]["weights_remaining"]
    for method in ("gradual", "snip", "synflow"):
        got = [p["weights_remaining"] for p in report["runs"][method][0]["points"]]
        assert got == pytest.approx(planned, abs=1e-3), method

    png = tmp_path / "compare_methods.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "table.txt").read_text().startswith("method")


def test_missing_mnist_folder_skips_cleanly(tmp_path):
    completed = _run(
        "--dry-run",
        "--mnist-dir",
        str(tmp_path / "absent"),
        "--output",
        str(tmp_path / "out"),
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "skipped" in completed.stdout
    assert "--data digits" in completed.stdout
    assert not (tmp_path / "out").exists()
