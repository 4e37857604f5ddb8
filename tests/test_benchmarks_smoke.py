"""Smoke tests of `benchmarks/`: each script's quickest mode runs and writes
what it promises."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "overhead.py"
pytestmark = pytest.mark.slow  # A subprocess that imports TensorFlow.


def run_benchmark(script, *args, timeout, backend="tensorflow"):
    """Runs `benchmarks/<script>` with `args` from the repository root.

    `backend` is set as `KERAS_BACKEND`; `None` leaves the script to choose.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if backend is None:
        env.pop("KERAS_BACKEND", None)
    else:
        env["KERAS_BACKEND"] = backend
    return subprocess.run(
        [sys.executable, str(SCRIPT.parent / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=SCRIPT.parents[1],
    )


ROW = re.compile(r"^(lenet|conv4)\s.*?\s(\d+\.\d+)x\s.*\b(PASS|FAIL)$")


def test_overhead_quick_prints_a_table_with_a_ratio_per_row():
    completed = run_benchmark("overhead.py", "--quick", timeout=300)
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


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--backend", "numpy", "['tensorflow', 'jax', 'torch']"),
        ("--optimizer", "rmsprop", "'adam', 'sgd'"),
    ],
)
def test_overhead_rejects_an_unsupported_choice(option, value, expected):
    completed = run_benchmark("overhead.py", "--quick", option, value, timeout=60)
    assert completed.returncode == 2
    assert f"'{value}'" in completed.stderr
    assert expected in completed.stderr


def test_overhead_with_sgd_trains_every_model_with_it():
    completed = run_benchmark(
        "overhead.py",
        "--quick",
        "--models",
        "lenet",
        "--optimizer",
        "sgd",
        timeout=300,
        backend="torch",
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    out = completed.stdout
    assert "backend torch," in out
    assert "Optimizer: SGD with momentum 0.9" in out
    rows = [m for m in map(ROW.match, out.splitlines()) if m]
    assert [m.group(1) for m in rows] == ["lenet", "lenet"], out
    # No square root to time: the note under the Adam table is left out.
    assert "PyTorch sqrt of" not in out


SUMMARY_ROW = re.compile(
    r"^(tensorflow|jax|torch)\s+(lenet)\s.*?\s(\d+\.\d+)x\s+(PASS|FAIL)$"
)


def test_overhead_all_backends_runs_each_in_turn_and_sums_up():
    completed = run_benchmark(
        "overhead.py",
        "--quick",
        "--backend",
        "all",
        "--models",
        "lenet",
        timeout=600,
        backend=None,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    out = completed.stdout
    for backend in ("tensorflow", "jax", "torch"):
        assert f"=== {backend} ===" in out
        assert f"backend {backend}," in out  # Each child says what it ran on.
    summary = out.split("Summary:")[1]
    rows = [m for m in map(SUMMARY_ROW.match, summary.splitlines()) if m]
    assert [m.group(1) for m in rows] == ["tensorflow"] * 2 + ["jax"] * 2 + [
        "torch"
    ] * 2, summary
    assert all(float(m.group(3)) > 0 for m in rows)
    # The PyTorch child times the square root that its 50% row pays for.
    torch_part = out.split("=== torch ===")[1].split("Summary:")[0]
    note = re.search(
        r"PyTorch sqrt of 266,200 float32 .*: zeros (\d+) us, ones (\d+) us", torch_part
    )
    assert note and int(note.group(2)) > 0, torch_part


MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST test set not in {MNIST}")
def test_reproduce_lenet_dry_run_writes_its_table_plot_and_json(tmp_path):
    completed = run_benchmark(
        "reproduce_lenet.py",
        "--dry-run",
        "--seeds",
        "2",
        "--workers",
        "2",
        "--output",
        str(tmp_path),
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    out = completed.stdout
    assert "| weights remaining | winning ticket | random reinit |" in out
    assert "Dense test accuracy: ours" in out
    # The dry run's trainings all end at their best check (censored): each
    # control branch is trained again, twice as long, from the same draw.
    assert "trained again from the same draw" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["extended"]) == 4  # 2 seeds x 2 controls x 1 level.
    assert {row["epochs"] for row in results["extended"]} == {4}  # 40 / 10.
    runs = results["runs"]
    assert set(runs) == {"imp", "reinit", "random"}
    assert [[r["round"] for r in rows] for rows in runs["imp"]] == [[0, 1]] * 2
    # The controls are branches of round 1, the dry run's one level.
    for control in ("reinit", "random"):
        assert [[r["round"] for r in rows] for rows in runs[control]] == [[1]] * 2
    for rows in runs.values():
        for row in (row for seed in rows for row in seed):
            assert 0 <= row["test"]["accuracy"] <= 1
    level = tmp_path / "seed_1" / "levels" / "round_01_80.0pct"
    assert (level / "masks.npz").exists()
    assert (tmp_path / "seed_1" / "branches" / "reinit" / level.name).is_dir()
    assert (tmp_path / "reproduce_lenet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "report.md").read_text().startswith("## LeNet-300-100")

    # Run again: everything is done, so nothing trains.
    again = run_benchmark(
        "reproduce_lenet.py",
        "--dry-run",
        "--seeds",
        "2",
        "--output",
        str(tmp_path),
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-4000:]
    assert ": IMP, 2 rounds" in completed.stdout and ": branch 1/" in completed.stdout
    assert ": IMP, 2 rounds" not in again.stdout and ": branch 1/" not in again.stdout


@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST test set not in {MNIST}")
def test_block_accuracy_writes_its_json_into_a_new_folder(tmp_path):
    # run_all's full command passes runs/block_accuracy/results.json, whose
    # folder a fresh clone does not have.
    path = tmp_path / "new" / "results.json"
    completed = run_benchmark(
        "block_accuracy.py",
        "--quick",
        "--rounds",
        "2",
        "--json",
        str(path),
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(path.read_text())
    assert [row["round"] for row in report["table"]] == [0, 1]
    assert set(report["runs"]) == {"unstructured", "blocks 1x4"}


@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST test set not in {MNIST}")
def test_run_all_dry_run_runs_every_benchmark(tmp_path):
    """The scripts cannot rot: each one's smallest mode, through run_all."""
    output = tmp_path / "BENCHMARKS.md"
    completed = run_benchmark(
        "run_all.py", "--dry-run", "--output", str(output), timeout=1200
    )
    assert completed.returncode == 0, completed.stdout[-4000:]
    text = output.read_text()
    for script in (
        "overhead.py",
        "tfmot_baseline.py",
        "litert.py",
        "block_accuracy.py",
        "compare_methods.py",
        "reproduce_lenet.py",
        "dead_units.py",
        "deploy.py",
        "deploy_convnets.py",
        "int8_narrow_conv.py",
        "granularity.py",
    ):
        assert f"`python benchmarks/{script}" in text, script
    assert "FAILED" not in text
    assert "- Versions: keras " in text
