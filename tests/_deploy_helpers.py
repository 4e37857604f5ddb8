"""What the smoke tests of the two deploy benchmarks share.

`benchmarks/deploy.py` and `benchmarks/deploy_convnets.py` are scripts: a
test imports one as a module with the benchmarks folder on `sys.path` (as
when the script runs), and runs its `--quick` mode in a subprocess.
"""

import importlib
import pathlib

from tests.test_benchmarks_smoke import run_benchmark

__all__ = ["BENCHMARKS", "MNIST", "check_rows", "import_script", "run_quick"]

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
MNIST = ROOT.parent / "shared" / "data" / "mnist"  # What `--quick` reads.


def import_script(monkeypatch, name):
    """`benchmarks/<name>.py` as a module, its folder on `sys.path`."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module(name)


def run_quick(script, *args, timeout):
    """Runs `benchmarks/<script> --quick *args`: the `CompletedProcess`."""
    return run_benchmark(script, "--quick", *args, timeout=timeout)


def check_rows(rows, models):
    """Checks the rows of a quick run's `results.json`; returns their shapes.

    Args:
        rows: The rows, as written.
        models: The model key expected of each row, in order.

    Returns:
        `{model key: shape}`.
    """
    assert [row["model"] for row in rows] == models
    for row in rows:
        assert 0 <= row["litert_accuracy"] <= 1 and 0 <= row["keras_accuracy"] <= 1
        assert row["report"]["file_bytes"] > 0 and row["median_us"] > 0
        assert set(row["keras_us"]) == {"1", "256"}
    return {row["model"]: row["shape"] for row in rows}
