"""Smoke test: `benchmarks/overhead.py --quick` runs and prints its table."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "overhead.py"
pytestmark = pytest.mark.slow  # A subprocess that imports TensorFlow.

ROW = re.compile(r"^(lenet|conv4)\s.*?\s(\d+\.\d+)x\s.*\b(PASS|FAIL)$")


def test_overhead_quick_prints_a_table_with_a_ratio_per_row():
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=SCRIPT.parents[1],
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    out = completed.stdout
    assert "plain ms/step" in out
    assert "masked ms/step" in out
    assert "median ratio" in out
    rows = [m for m in map(ROW.match, out.splitlines()) if m]
    assert {m.group(1) for m in rows} == {"lenet", "conv4"}, out
    assert len(rows) == 4, out  # Two masked variants per model.
    for row in rows:
        assert float(row.group(2)) > 0


def test_overhead_rejects_an_unsupported_backend():
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--backend", "jax"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "jax" in completed.stderr
    assert "tensorflow" in completed.stderr
