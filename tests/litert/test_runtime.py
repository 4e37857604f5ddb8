"""`keras_lth.litert.runtime`: running a file in LiteRT and reading what it holds."""

import sys

import keras
import numpy as np
import pytest

from keras_lth.litert import export_litert
from tests.litert._helpers import FAST
from tests.litert._helpers import listing
from tests.litert._helpers import needs_litert
from tests.litert._helpers import ticket
from tests.litert._helpers import tiny_model


@needs_litert
def test_multi_input_multi_output_model_keeps_input_and_output_order(tmp_path):
    a = keras.Input((6,), name="a")
    b = keras.Input((3,), name="b")
    hidden = keras.layers.Concatenate()(
        [keras.layers.Dense(8)(a), keras.layers.Dense(8)(b)]
    )
    model = keras.Model(
        [a, b], [keras.layers.Dense(2)(hidden), keras.layers.Dense(5)(hidden)]
    )
    rng = np.random.default_rng(1)
    data = {"a": rng.random((20, 6)), "b": rng.random((20, 3))}
    report = export_litert(model, tmp_path / "two.tflite", sample_inputs=data, **FAST)
    assert len(report.output_errors) == 2
    assert report.max_error <= 1e-5
    assert report.argmax_agreement == 1.0

    report = export_litert(
        model,
        tmp_path / "two_int8.tflite",
        quantize="int8",
        representative_data=[data["a"], data["b"]],
        **FAST,
    )
    assert all(
        error <= tol
        for error, tol in zip(report.output_errors, report.output_tolerances)
    )


@needs_litert
def test_block_sparse_dense_kernels_run_on_sparse_kernels(tmp_path):
    model = ticket(rate=0.9, block=4)
    report = export_litert(model, tmp_path / "block.tflite", **FAST)

    assert report.sparse_encoded
    assert report.densify_ops == 0
    assert report.sparse_kernel_ops == 2
    assert {t.block for t in report.sparse_tensors} == {(1, 4)}
    assert all(t.read_by == ("FULLY_CONNECTED",) for t in report.sparse_tensors)
    assert report.delegated_ops == 0  # XNNPACK leaves sparse weights to LiteRT.
    assert report.max_error <= 1e-5


@needs_litert
def test_missing_litert_package_names_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(ImportError, match=r"ai-edge-litert.*keras-lth\[litert\]"):
        export_litert(tiny_model(), tmp_path / "m.tflite")
    assert listing(tmp_path) == []


class _FakeInterpreter:
    def __init__(self):
        self.invokes = 0

    def invoke(self):
        self.invokes += 1


class _FakeRunner:
    def __init__(self):
        self.interpreter = _FakeInterpreter()
        self.inputs = []

    def set_inputs(self, sample):
        self.inputs.append(sample)


def test_median_invoke_seconds_times_every_runner_alike():
    from keras_lth.litert import runtime

    runners = [_FakeRunner(), _FakeRunner()]
    medians = runtime.median_invoke_seconds(runners, ["sample"], runs=25)
    assert len(medians) == 2 and all(m >= 0 for m in medians)
    for runner in runners:
        assert runner.inputs == [["sample"]]
        assert runner.interpreter.invokes == 10 + 25  # Warm-up, then timed.
