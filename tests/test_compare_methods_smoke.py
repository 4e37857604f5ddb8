"""Smoke tests of `benchmarks/compare_methods.py`.

The dry run trains every method on scikit-learn's bundled digits
(`--data digits`), so it needs no download and never skips: one subprocess,
a minute or two on 2 CPU cores. The other tests stop before any training.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "compare_methods.py"

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
# A table row: the label, three "acc @weights%" cells, iterations spent,
# iterations run and the wall time.
CELL = r"(\d+\.\d\d) @(\d+\.\d)%"
ROW = re.compile(
    rf"^(?P<label>\S.*?)\s+{CELL}\s+{CELL}\s+{CELL}\s+([\d,]+)\s+([\d,]+)\s+(\d+)s$"
)


def _run(*args, timeout=900):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def _masks(path):
    with np.load(path) as data:
        return {key: data[key].astype(bool) for key in data.files}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One dry run on digits: `(stdout, results.json, output folder)`."""
    output = tmp_path_factory.mktemp("compare_methods")
    completed = _run("--dry-run", "--data", "digits", "--output", str(output))
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads((output / "results.json").read_text())
    return completed.stdout, report, output


@pytest.mark.slow  # A subprocess that imports JAX and trains every method.
def test_dry_run_prints_the_table_and_writes_json_and_png(dry_run):
    out, report, output = dry_run
    header = next(line for line in out.splitlines() if line.startswith("method"))
    for column in ("acc@21%", "acc@7%", "acc@3.6%", "iters spent", "iters run"):
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
        assert int(groups[7].replace(",", "")) >= 1  # Iterations spent.

    assert report["mode"] == "dry-run"
    assert "backend jax" in report["environment"]
    assert set(report["runs"]) == set(LABELS)
    assert [s["method"] for s in report["summary"]] == list(LABELS)
    for method, runs in report["runs"].items():
        (run,) = runs  # One seed.
        assert len(run["points"]) == 3, method
        for row in run["rows"]:  # Every training measured the test set.
            assert 0.0 <= row["test"]["accuracy"] <= 1.0, method
        for point in run["points"]:
            row = run["rows"][point["row"]]
            assert point["test_accuracy"] == row["test"]["accuracy"], method
    # Every method starts from the same initial weights and data order, so
    # the dense round 0 of the IMP-style methods is the same network.
    dense = {
        method: runs[0]["rows"][0]["best"]["val_loss"]
        for method, runs in report["runs"].items()
        if method in ("imp_init", "imp_late", "lr_rewind", "finetune", "one_shot")
    }
    assert len(set(dense.values())) == 1, dense
    # SNIP, SynFlow and gradual pruning land on the IMP rounds' sparsities.
    planned = report["plan"]["weights_remaining"]
    for method in ("gradual", "snip", "synflow"):
        got = [p["weights_remaining"] for p in report["runs"][method][0]["points"]]
        assert got == pytest.approx(planned, abs=1e-3), method

    png = output / "compare_methods.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (output / "table.txt").read_text().startswith("method")


@pytest.mark.slow
def test_controls_branch_off_the_imp_levels_nearest_the_targets(dry_run):
    _, report, output = dry_run
    imp = report["runs"]["imp_init"][0]
    level_rounds = sorted({p["round"] for p in imp["points"]})
    levels = sorted((output / "seed_0" / "levels").iterdir())
    assert [json.loads((d / "level.json").read_text())["round"] for d in levels] == (
        level_rounds
    )
    for control in ("reinit", "random"):
        run = report["runs"][control][0]
        assert [row["round"] for row in run["rows"]] == level_rounds, control
        for row in run["rows"]:
            ticket_row = imp["rows"][row["round"]]
            assert row["weights_remaining"] == ticket_row["weights_remaining"]
            assert row["control"] == control
    for level in levels:
        ticket = _masks(level / "masks.npz")
        reinit = _masks(
            output / "seed_0" / "branches" / "reinit" / level.name / "masks.npz"
        )
        random = _masks(
            output / "seed_0" / "branches" / "random" / level.name / "masks.npz"
        )
        assert set(reinit) == set(random) == set(ticket)
        for key, mask in ticket.items():
            np.testing.assert_array_equal(reinit[key], mask)  # The same mask.
            assert random[key].sum() == mask.sum(), key  # The same count...
        assert any(  # ... in other places.
            not np.array_equal(random[key], mask) for key, mask in ticket.items()
        )

    # Reinit trains the ticket's mask from other weights: another network.
    imp_rows = {row["round"]: row for row in imp["rows"]}
    for row in report["runs"]["reinit"][0]["rows"]:
        assert row["best"]["val_loss"] != imp_rows[row["round"]]["best"]["val_loss"]


@pytest.mark.slow
def test_control_costs_count_what_each_control_needs(dry_run):
    _, report, _ = dry_run
    every = report["budget"]["eval_every"]
    imp_rows = report["runs"]["imp_init"][0]["rows"]
    for method, (run,) in report["runs"].items():
        trained = sum(row["epochs"] * every for row in run["rows"])
        assert run["iterations_run"] == trained, method
        if method != "reinit":
            assert run["iterations_spent"] <= run["iterations_run"], method
    # Random reinit needs the IMP rounds up to its sparsest level first.
    reinit = report["runs"]["reinit"][0]
    sparsest = max(row["round"] for row in reinit["rows"])
    imp_part = sum(row["epochs"] * every for row in imp_rows[: sparsest + 1])
    assert reinit["iterations_spent"] == imp_part + reinit["iterations_run"]
    # Random pruning needs only the per-tensor counts: its own trainings.
    random = report["runs"]["random"][0]
    assert random["iterations_spent"] == random["iterations_run"]


@pytest.mark.parametrize("mode", [[], ["--dry-run"]], ids=["full", "dry-run"])
def test_missing_mnist_folder_skips_cleanly(tmp_path, mode):
    completed = _run(
        *mode,
        "--mnist-dir",
        str(tmp_path / "absent"),
        "--output",
        str(tmp_path / "out"),
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "skipped" in completed.stdout
    assert "--data digits" in completed.stdout
    assert not (tmp_path / "out").exists()


def test_controls_without_the_imp_run_they_branch_off_are_refused():
    completed = _run("--dry-run", "--methods", "reinit,random", timeout=120)
    assert completed.returncode == 2
    assert "add imp_init" in completed.stderr
