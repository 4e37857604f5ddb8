"""Smoke tests of `benchmarks/global_strategies.py`: its `--quick` mode runs
both tasks and prints and writes what it promises."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "global_strategies.py"
MNIST = ROOT.parent / "shared" / "data" / "mnist"
STRATEGIES = ("global", "lamp", "layerwise")
pytestmark = pytest.mark.slow  # Subprocesses that import TensorFlow and train.


def run_script(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )


def test_quick_mode_compares_the_strategies_on_both_tasks(tmp_path):
    if not (MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST test set not found in {MNIST}")
    path = tmp_path / "rows.json"
    completed = run_script("--json", str(path))
    assert completed.returncode == 0, completed.stderr[-4000:]
    out = completed.stdout
    header = "| remaining | strategy | embedding | query | key | value | "
    assert header + "attention_output | ffn_1 | ffn_2 | head |" in out
    assert "| remaining | strategy | fc1 | fc2 | output |" in out
    assert "Not prunable" not in out  # The attention projections are masked.
    every = json.loads(path.read_text())
    assert set(every) == {"transformer", "lenet_300_100"}
    for runs in every.values():
        assert set(runs) == set(STRATEGIES)
        for r in range(2):  # --quick: 2 rounds, at 100% and 50%.
            rows = [runs[strategy][r] for strategy in STRATEGIES]
            remaining = {row["weights_remaining"] for row in rows}
            assert len({round(value, 6) for value in remaining}) == 1
            assert abs(rows[0]["weights_remaining"] - 0.5**r) < 0.01
            for row in rows:
                assert 0.0 <= row["test"]["accuracy"] <= 1.0
        lamp = runs["lamp"][1]["layers"]
        assert all(0 < left < 1 for left in lamp.values())
        assert all(left == 0.5 for left in runs["layerwise"][1]["layers"].values())


def test_without_mnist_it_runs_the_transformer_and_says_so(tmp_path):
    completed = run_script("--data-path", str(tmp_path / "missing"))
    assert completed.returncode == 0, completed.stderr[-4000:]
    out = completed.stdout
    assert "skipping LeNet-300-100 on MNIST" in out
    assert "| remaining | strategy | embedding |" in out
    assert "| remaining | strategy | fc1 |" not in out
