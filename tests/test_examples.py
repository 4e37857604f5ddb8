"""Smoke tests: the examples run with tiny settings.

Each example runs as its own process, as a user would start it, and the
tests check what it wrote and printed. `examples/multihost_jax.py` is left to
`tests/distributed/test_multihost_jax.py`, which already runs it on one
process (its cheapest mode, about 40 s here with JAX compiling) and on two.
"""

import os
import pathlib
import subprocess
import sys

import pytest

from keras_lth.results import load_results
from keras_lth.results import results_table

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MNIST_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"

pytestmark = pytest.mark.slow  # Each test starts a process importing TensorFlow.


def run_example(name, *args, cwd):
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)},
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "Traceback" not in completed.stderr
    return completed.stdout


def test_find_ticket(tmp_path):
    output = tmp_path / "out"
    out = run_example(
        "find_ticket.py",
        "--rounds",
        "2",
        "--epochs-per-round",
        "1",
        "--batch-size",
        "256",
        "--output",
        output,
        cwd=tmp_path,
    )
    rows = load_results(output / "results.json")
    assert [row["round"] for row in rows] == [0, 1]
    assert rows[1]["weights_remaining"] == pytest.approx(0.802, abs=1e-3)
    assert results_table(rows) in out
    assert "Epoch 2/2" in out and "LotteryTicket: round 2/2" in out
    assert "Test accuracy of the final ticket: " in out
    assert len((output / "results.csv").read_text().splitlines()) == 3
    for name in ("ticket.keras", "ticket_plain.keras"):
        assert (output / name).stat().st_size > 0


def test_lenet_mnist(tmp_path):
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST not found in {MNIST_DIR}")
    output = tmp_path / "out"
    out = run_example(
        "lenet_mnist.py",
        "--data-path",
        MNIST_DIR,
        "--rounds",
        "2",
        "--epochs-per-round",
        "1",
        "--max-train",
        "600",
        "--output",
        output,
        cwd=tmp_path,
    )
    assert "split 8,000 train / 1,000 validation / 1,000 test" in out
    imp, reinit = (
        load_results(output / name) for name in ("results.json", "results_reinit.json")
    )
    for rows in (imp, reinit):
        assert [row["round"] for row in rows] == [0, 1]
        assert results_table(rows) in out
        for row in rows:  # LotteryTicket(test_data=...) measured the test set.
            assert 0.0 <= row["test"]["accuracy"] <= 1.0
    assert "== Control: random reinitialization" in out
    # The control branches off each round with its mask (the same weights
    # per layer) and other initial weights (another network).
    for ticket_row, control_row in zip(imp, reinit, strict=True):
        assert control_row["layers"] == ticket_row["layers"]
        assert control_row["best"]["val_loss"] != ticket_row["best"]["val_loss"]
    assert "output/kernel    90.0% left" in out  # Pruned at half the rate.
    assert "Test accuracy of the final ticket: " in out
    assert (output / "ticket_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (output / "ticket.keras").stat().st_size > 0


def test_convnet(tmp_path):
    output = tmp_path / "out"
    out = run_example(
        "convnet.py",
        "--rounds",
        "2",
        "--epochs-per-round",
        "1",
        "--max-train",
        "256",
        "--output",
        output,
        cwd=tmp_path,
    )
    assert "input_shape=(8, 8, 1)" in out
    rows = load_results(output / "results.json")
    assert len(rows) == 2
    assert results_table(rows) in out
    # Conv-2's rates: convolutions and output 10% per round, dense layers 20%.
    left = dict(line.split() for line in out.splitlines() if line.startswith("  conv"))
    left.update(line.split() for line in out.splitlines() if line.startswith("  fc"))
    assert left == {
        "conv1/kernel": "89.9%",  # 1,728 weights, 90% rounded to whole weights.
        "conv2/kernel": "90.0%",
        "fc1/kernel": "80.0%",
        "fc2/kernel": "80.0%",
    }
    assert (output / "ticket_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (output / "ticket.keras").stat().st_size > 0


def test_tensorboard_walkthrough(tmp_path):
    log_dir = tmp_path / "logs"
    out = run_example(
        "tensorboard_walkthrough.py",
        "--rounds",
        "2",
        "--epochs-per-round",
        "1",
        "--log-dir",
        log_dir,
        cwd=tmp_path,
    )
    assert "round  remaining" in out
    assert f"tensorboard --logdir {log_dir}" in out
    for split in ("train", "validation"):
        events = list((log_dir / split).glob("events.out.tfevents*"))
        assert events and all(e.stat().st_size > 0 for e in events), split
    assert (log_dir / "ticket_curve.png").read_bytes()[:4] == b"\x89PNG"
