"""`keras_lth.litert.export`: LiteRT files that run and match, written atomically."""

import os

import keras
import numpy as np
import pytest

from keras_lth import litert
from keras_lth.litert import LiteRTExportError
from keras_lth.litert import export as litert_export
from keras_lth.litert import export_litert
from keras_lth.litert import runtime
from tests.litert._helpers import FAST
from tests.litert._helpers import TENSORFLOW
from tests.litert._helpers import keras_outputs
from tests.litert._helpers import listing
from tests.litert._helpers import needs_litert
from tests.litert._helpers import random_inputs
from tests.litert._helpers import run_file
from tests.litert._helpers import ticket
from tests.litert._helpers import tiny_model


@needs_litert
def test_float_ticket_round_trips_within_1e_5(tmp_path):
    model = ticket()
    path = tmp_path / "ticket.tflite"
    report = export_litert(model, path, **FAST)

    x = random_inputs()
    error = np.max(np.abs(run_file(path, x) - keras_outputs(model, x)))
    assert error <= 1e-5
    assert report.max_error <= 1e-5
    assert report.output_tolerances == (1e-5,)  # Outputs within [-1, 1].
    assert report.samples == litert.MAX_VERIFY_SAMPLES
    assert report.sample_source == "random"
    assert listing(tmp_path) == ["ticket.tflite"]  # No temporary left.


@needs_litert
@pytest.mark.parametrize("quantize", ["dynamic", "float16", "int8"])
def test_each_quantize_mode_runs_within_its_documented_tolerance(tmp_path, quantize):
    model = tiny_model()
    x = random_inputs()
    path = tmp_path / "model.tflite"
    report = export_litert(
        model,
        path,
        quantize=quantize,
        representative_data=x if quantize == "int8" else None,
        sparse=False,
        **FAST,
    )

    reference = keras_outputs(model, x)
    got = run_file(path, x)
    bound = max(
        litert.ABSOLUTE_TOLERANCE,
        litert.RELATIVE_TOLERANCES[quantize] * np.max(np.abs(reference)),
    )
    assert np.all(np.isfinite(got))
    assert np.max(np.abs(got - reference)) <= bound
    assert report.quantize == quantize
    assert report.max_error <= report.output_tolerances[0]
    # The file really is quantized: smaller than float32 weights would be.
    float_bytes = 4 * sum(int(np.prod(w.shape)) for w in model.weights)
    assert report.file_bytes < float_bytes


@needs_litert
def test_int8_calibrates_and_verifies_on_representative_data(tmp_path):
    model = tiny_model()
    x = random_inputs(count=50)

    def batches():  # The `TFLiteConverter.representative_dataset` style.
        for row in x:
            yield [row[None]]

    report = export_litert(
        model,
        tmp_path / "int8.tflite",
        quantize="int8",
        representative_data=batches,
        sparse=False,
        **FAST,
    )
    assert report.sample_source == "representative_data"
    assert report.samples == litert.MAX_VERIFY_SAMPLES
    assert report.ops["QUANTIZE"] == 1 and report.ops["DEQUANTIZE"] == 1


@needs_litert
def test_sparse_export_of_a_90_percent_sparse_ticket_is_smaller(tmp_path):
    model = ticket(rate=0.9)
    path = tmp_path / "sparse.tflite"
    report = export_litert(model, path, **FAST)

    assert report.sparse_encoded
    assert report.file_bytes == os.path.getsize(path)
    assert report.file_bytes < 0.5 * report.dense_bytes
    assert report.size_ratio == report.file_bytes / report.dense_bytes
    # The hidden kernel (64 x 64) and the logits kernel (8 x 64), stored as
    # 10% of their values, unstructured, and densified when the file loads.
    shapes = sorted(t.shape for t in report.sparse_tensors)
    assert shapes == [(8, 64), (64, 64)]
    for tensor in report.sparse_tensors:
        assert tensor.block == (1, 1)
        assert tensor.stored_fraction == pytest.approx(0.1, abs=0.01)
        assert tensor.read_by == ("DENSIFY",)
        assert not tensor.sparse_kernel
    assert report.densify_ops == 2
    assert report.sparse_kernel_ops == 0


@needs_litert
def test_without_sparse_encoding_the_file_is_the_dense_export(tmp_path):
    report = export_litert(ticket(), tmp_path / "dense.tflite", sparse=False, **FAST)
    assert not report.sparse_encoded and not report.sparse_requested
    assert report.file_bytes == report.dense_bytes
    assert report.sparse_tensors == ()
    assert report.latency_us == report.dense_latency_us
    assert report.delegated_ops == sum(report.ops.values())  # All on XNNPACK.


@needs_litert
def test_a_model_without_zeros_is_stored_dense_and_the_report_says_why(tmp_path):
    report = export_litert(tiny_model(), tmp_path / "m.tflite", **FAST)
    assert report.sparse_tensors == ()
    assert report.file_bytes == pytest.approx(report.dense_bytes, rel=0.01)
    assert any("at least 30% zeros" in note for note in report.notes)


@needs_litert
def test_sparse_dynamic_int8_falls_back_to_a_file_that_runs(tmp_path):
    # With ai-edge-litert 2.3, XNNPACK fails to prepare a FULLY_CONNECTED
    # whose int8 weights a DENSIFY expands ("failed to delegate").
    model = ticket(rate=0.9)
    path = tmp_path / "dynamic.tflite"
    with pytest.warns(UserWarning, match=r"dropped.*block=\(1, 16\).*shrink"):
        report = export_litert(model, path, quantize="dynamic", **FAST)

    assert report.sparse_requested and not report.sparse_encoded
    assert report.file_bytes == report.dense_bytes
    assert any("sparsity encoding dropped" in note for note in report.notes)
    assert "XNNPack" in " ".join(report.notes) or "NaN" in " ".join(report.notes)
    x = random_inputs()
    reference = keras_outputs(model, x)
    got = run_file(path, x)  # Loads with the default delegates and runs.
    assert np.max(np.abs(got - reference)) <= 5e-2 * np.max(np.abs(reference))


@needs_litert
def test_without_fallback_a_failing_sparse_file_raises_and_writes_nothing(
    tmp_path,
):
    path = tmp_path / "dynamic.tflite"
    with pytest.raises(LiteRTExportError, match="sparse=False"):
        export_litert(ticket(), path, quantize="dynamic", fallback=False, **FAST)
    assert listing(tmp_path) == []


@needs_litert
def test_fallback_when_the_sparse_file_cannot_even_be_loaded(tmp_path, monkeypatch):
    convert = litert_export._convert

    def broken_sparse(*args, sparse, **kwargs):
        content = convert(*args, sparse=sparse, **kwargs)
        return content[: len(content) // 2] if sparse else content

    monkeypatch.setattr(litert_export, "_convert", broken_sparse)
    path = tmp_path / "model.tflite"
    with pytest.warns(UserWarning, match="sparsity encoding dropped"):
        report = export_litert(ticket(), path, **FAST)
    assert not report.sparse_encoded
    assert "could not run it" in report.notes[0]
    assert report.max_error <= 1e-5
    assert os.path.getsize(path) == report.dense_bytes


@needs_litert
def test_failed_verification_leaves_an_existing_file_untouched(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"previous good file")
    x = random_inputs()
    with pytest.raises(LiteRTExportError, match="tolerance"):
        # No int8 file matches float32 Keras to 1e-9.
        export_litert(
            tiny_model(),
            path,
            quantize="int8",
            representative_data=x,
            tolerance=1e-9,
            **FAST,
        )
    assert path.read_bytes() == b"previous good file"
    assert listing(tmp_path) == ["model.tflite"]


@needs_litert
def test_an_error_after_conversion_leaves_an_existing_file_untouched(
    tmp_path, monkeypatch
):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"previous good file")

    def boom(interpreter):
        raise RuntimeError("inspection failed")

    monkeypatch.setattr(runtime, "inspect_interpreter", boom)
    with pytest.raises(RuntimeError, match="inspection failed"):
        export_litert(ticket(), path, **FAST)
    assert path.read_bytes() == b"previous good file"
    assert listing(tmp_path) == ["model.tflite"]


@needs_litert
def test_a_successful_export_replaces_the_file(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"old")
    report = export_litert(tiny_model(), path, sparse=False, **FAST)
    assert path.read_bytes()[4:8] == b"TFL3"  # The flatbuffer identifier.
    assert os.path.getsize(path) == report.file_bytes
    assert listing(tmp_path) == ["model.tflite"]


@needs_litert
def test_verify_false_skips_the_comparison_but_still_runs_the_file(tmp_path):
    report = export_litert(
        tiny_model(), tmp_path / "m.tflite", verify=False, latency_runs=0
    )
    assert report.output_errors == () and report.max_error is None
    assert report.samples == 0
    assert report.latency_us is None and report.speedup is None
    assert "verify=False" in str(report)


@needs_litert
def test_int8_without_representative_data_is_refused(tmp_path):
    with pytest.raises(ValueError, match="representative_data"):
        export_litert(tiny_model(), tmp_path / "m.tflite", quantize="int8")
    assert listing(tmp_path) == []


@needs_litert
@pytest.mark.parametrize("quantize", ["int16", "fp16", True])
def test_unknown_quantize_is_refused(tmp_path, quantize):
    with pytest.raises(ValueError, match="quantize"):
        export_litert(tiny_model(), tmp_path / "m.tflite", quantize=quantize)


def test_other_backends_are_refused_with_the_backend_to_use(tmp_path, monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="'jax'.*KERAS_BACKEND=tensorflow"):
        export_litert(tiny_model(), tmp_path / "m.tflite")
    assert listing(tmp_path) == []


def test_not_a_model_is_a_type_error(tmp_path):
    if not TENSORFLOW:
        pytest.skip("the backend check comes first")
    pytest.importorskip("ai_edge_litert")
    with pytest.raises(TypeError, match="keras.Model"):
        export_litert(keras.layers.Dense(3), tmp_path / "m.tflite")
