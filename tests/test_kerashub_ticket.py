"""Smoke test: `examples/kerashub_ticket.py --quick` runs and round-trips.

The example runs as its own process, as a user would start it (on the
backend of `KERAS_BACKEND`, TensorFlow by default), like the examples in
`tests/test_examples.py`. It exits with an error itself if a loaded model
predicts otherwise than the ticket; the test checks its exit code, what it
printed and the files it wrote.
"""

import os
import pathlib
import subprocess
import sys

import pytest

from keras_lth.results import load_results
from keras_lth.results import results_table

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "kerashub_ticket.py"

pytestmark = pytest.mark.slow  # It starts a process importing TensorFlow.


def test_kerashub_ticket_quick(tmp_path):
    pytest.importorskip("keras_hub", reason="keras-hub is not installed")
    output = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)},
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "Traceback" not in completed.stderr
    out = completed.stdout

    # mask_model(in_place=True) kept the KerasHub class, and masked it all.
    assert "Masked in place: the model is still a BertTextClassifier" in out
    assert "17 masked tensors" in out
    assert "Weights left dense (not prunable): none" in out

    rows = load_results(output / "results.json")
    assert [row["round"] for row in rows] == [0, 1]
    assert rows[1]["weights_remaining"] == pytest.approx(0.6, abs=1e-3)
    assert all("accuracy" in row["test"] for row in rows)
    assert results_table(rows) in out
    assert "Sparsity of the final ticket: 40.0%" in out

    # Both files load back to a BertTextClassifier with the ticket's
    # predictions (the example exits non-zero otherwise).
    for how in ("keras_lth.load_model", "keras.saving.load_model after strip_masks"):
        assert f"{how}: a BertTextClassifier with the ticket's predictions" in out
    assert "pruned weights are exact zeros, with no masks left" in out
    for name in ("ticket.keras", "ticket_plain.keras"):
        assert (output / name).stat().st_size > 0
