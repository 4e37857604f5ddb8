"""Smoke tests of `benchmarks/deploy.py`: its `--quick` mode trains, exports,
times and writes what it promises, and a second run reuses all of it."""

import json
import math

import pytest

from tests._deploy_helpers import MNIST
from tests._deploy_helpers import check_rows
from tests._deploy_helpers import import_script
from tests._deploy_helpers import run_quick
from tests.test_benchmarks_smoke import run_benchmark

MODELS = [
    "dense", "dense", "imp", "imp", "imp_shrunk", "block4", "block16",
    "unit_64x32", "unit_64x32", "refill_64x32", "refill_64x32",
    "control_64x32", "control_64x32",
]  # fmt: skip


def run_script(*args):
    return run_quick("deploy.py", *args, timeout=600)


@pytest.fixture
def deploy(monkeypatch):
    return import_script(monkeypatch, "deploy")


@pytest.mark.parametrize("shape, steps", [((64, 32), 7), ((48, 24), 8), ((5, 3), 2)])
def test_unit_rates_reach_the_shape_with_exact_counts(deploy, shape, steps):
    settings = {"unit_steps": 2 if shape == (5, 3) else None}
    got_steps, rates = deploy.unit_rates(shape, settings)
    assert got_steps == steps
    for width, goal, rate in zip((300, 100), shape, rates.values()):
        for _ in range(steps):  # LotteryTicket's count: floor(rate * live + 0.5).
            width -= math.floor(rate * width + 0.5)
        assert width == goal


def test_granularity_interpolates_in_log_weights(monkeypatch):
    granularity = import_script(monkeypatch, "granularity")
    curve = [(1.0, 90.0), (0.25, 80.0), (0.0625, 60.0)]
    assert granularity.interpolate(curve, 0.5) == pytest.approx(85.0)
    assert granularity.interpolate(curve, 0.125) == pytest.approx(70.0)
    assert granularity.interpolate(curve, 0.25) == pytest.approx(80.0)
    assert granularity.interpolate(curve, 0.01) is None


@pytest.mark.slow  # About 30 s: trains 6 small networks and exports 13 files.
@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST test set not in {MNIST}")
def test_quick_run_writes_its_table_json_and_plot_then_resumes(tmp_path):
    completed = run_script("--output", str(tmp_path))
    assert completed.returncode == 0, completed.stderr[-4000:]
    out = completed.stdout
    assert "| row | precision | encoding | shape |" in out
    assert "control_64x32: training 1 round(s)" in out
    results = json.loads((tmp_path / "results.json").read_text())
    shapes = check_rows(results["rows"], MODELS)
    assert shapes["unit_64x32"] == shapes["control_64x32"] == "784-64-32-10"
    assert shapes["dense"] == "784-300-100-10"
    assert len(results["targets"]) == 2 * 6 + 2
    assert all(isinstance(t["met"], bool) for t in results["targets"])
    assert (tmp_path / "deploy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "table.md").read_text().startswith("## LeNet-300-100")

    # Again: every training and export is found, so nothing trains.
    again = run_script("--output", str(tmp_path))
    assert again.returncode == 0, again.stderr[-4000:]
    assert "training" not in again.stdout
    assert "| row | precision | encoding | shape |" in again.stdout
    # The granularity comparison reads the same trainings.
    compared = run_benchmark(
        "granularity.py", "--deploy-dir", str(tmp_path), timeout=120
    )
    assert compared.returncode == 0, compared.stderr[-4000:]
    assert "| round | weights left | unit | refill | IMP | block 1x4 |" in (
        compared.stdout
    )
    assert (tmp_path / "granularity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Other training settings are refused in the same folder.
    other = run_script("--output", str(tmp_path), "--epochs-per-round", "2")
    assert other.returncode != 0
    assert "other settings" in other.stderr
