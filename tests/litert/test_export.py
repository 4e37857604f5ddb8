"""Tests for `keras_lth.export_litert`: LiteRT files that run and match."""

import os
import sys

import keras
import numpy as np
import pytest

import keras_lth
from keras_lth import export as export_module
from keras_lth.export import ExportReport
from keras_lth.export import LiteRTExportError
from keras_lth.export import export_litert

TENSORFLOW = keras.backend.backend() == "tensorflow"
needs_litert = pytest.mark.skipif(
    not TENSORFLOW, reason="LiteRT export runs on the TensorFlow backend only"
)
if TENSORFLOW:
    pytest.importorskip("ai_edge_litert")

# Few timed invokes: the tests check the fields, not the speed.
FAST = {"latency_runs": 20}


def _tiny_model(inputs=64, hidden=64, outputs=8):
    # 64 x 64 = 4,096 weights: above the 1,024 below which LiteRT leaves a
    # tensor in float under "dynamic" quantization.
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(hidden, activation="relu", name="hidden"),
            keras.layers.Dense(outputs, name="logits"),
        ],
        name="tiny",
    )


def _block_mask(kernel, keep, block):
    """Keeps the `keep` fraction of (block, 1) patches of a Dense kernel.

    Blocks run down the input axis of the Keras kernel `(in, out)`: LiteRT's
    `(1, block)` blocks of its `(out, in)` weight.
    """
    rows, cols = kernel.shape
    count = -(-rows // block)
    padded = np.zeros((count * block, cols), kernel.dtype)
    padded[:rows] = np.abs(kernel)
    scores = padded.reshape(count, block, cols).sum(axis=1)
    kept = scores >= np.quantile(scores, 1 - keep)
    return np.repeat(kept, block, axis=0)[:rows].astype("float32")


def _ticket(rate=0.9, block=None, **shape):
    """A masked tiny model with `rate` of every kernel pruned by magnitude."""
    model = keras_lth.mask_model(_tiny_model(**shape))
    weights = {
        key: keras.ops.convert_to_numpy(model.get_layer(key.split("/")[0]).kernel)
        for key in keras_lth.get_masks(model)
    }
    if block is None:
        masks = keras_lth.prune(weights, keras_lth.get_masks(model), rate)
    else:
        masks = {key: _block_mask(w, 1 - rate, block) for key, w in weights.items()}
    keras_lth.set_masks(model, masks)
    return model


def _data(count=40, features=64, seed=0):
    return np.random.default_rng(seed).random((count, features), dtype=np.float32)


def _run_file(path, x):
    """Runs a LiteRT file on each row of `x`, independently of keras_lth."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    runner = interpreter.get_signature_runner()
    (name,) = runner.get_input_details()
    (output,) = runner.get_output_details()
    rows = [runner(**{name: row[None]})[output] for row in x]
    return np.concatenate(rows)


def _keras(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _listing(folder):
    return sorted(os.listdir(folder))


# ---------------------------------------------------------------- parity


@needs_litert
def test_float_ticket_round_trips_within_1e_5(tmp_path):
    model = _ticket()
    path = tmp_path / "ticket.tflite"
    report = export_litert(model, path, **FAST)

    x = _data()
    error = np.max(np.abs(_run_file(path, x) - _keras(model, x)))
    assert error <= 1e-5
    assert report.max_error <= 1e-5
    assert report.output_tolerances == (1e-5,)  # Outputs within [-1, 1].
    assert report.samples == export_module.MAX_VERIFY_SAMPLES
    assert report.sample_source == "random"
    assert _listing(tmp_path) == ["ticket.tflite"]  # No temporary left.


@needs_litert
@pytest.mark.parametrize("quantize", ["dynamic", "float16", "int8"])
def test_each_quantize_mode_runs_within_its_documented_tolerance(tmp_path, quantize):
    model = _tiny_model()
    x = _data()
    path = tmp_path / "model.tflite"
    report = export_litert(
        model,
        path,
        quantize=quantize,
        representative_data=x if quantize == "int8" else None,
        sparse=False,
        **FAST,
    )

    reference = _keras(model, x)
    got = _run_file(path, x)
    bound = max(
        export_module.ABSOLUTE_TOLERANCE,
        export_module.RELATIVE_TOLERANCES[quantize] * np.max(np.abs(reference)),
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
    model = _tiny_model()
    x = _data(count=50)

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
    assert report.samples == export_module.MAX_VERIFY_SAMPLES
    assert report.ops["QUANTIZE"] == 1 and report.ops["DEQUANTIZE"] == 1


@needs_litert
def test_representative_data_may_be_a_tf_data_dataset_of_batches(tmp_path):
    import tensorflow as tf

    x = _data(count=24)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(8)
    report = export_litert(
        _tiny_model(),
        tmp_path / "int8.tflite",
        quantize="int8",
        representative_data=dataset,
        sparse=False,
        **FAST,
    )
    assert report.samples == 24  # Three batches of 8, split into samples.
    assert report.max_error <= report.output_tolerances[0]


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


# ------------------------------------------------------- sparse encoding


@needs_litert
def test_sparse_export_of_a_90_percent_sparse_ticket_is_smaller(tmp_path):
    model = _ticket(rate=0.9)
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
def test_block_sparse_dense_kernels_run_on_sparse_kernels(tmp_path):
    model = _ticket(rate=0.9, block=4)
    report = export_litert(model, tmp_path / "block.tflite", **FAST)

    assert report.sparse_encoded
    assert report.densify_ops == 0
    assert report.sparse_kernel_ops == 2
    assert {t.block for t in report.sparse_tensors} == {(1, 4)}
    assert all(t.read_by == ("FULLY_CONNECTED",) for t in report.sparse_tensors)
    assert report.delegated_ops == 0  # XNNPACK leaves sparse weights to LiteRT.
    assert report.max_error <= 1e-5


@needs_litert
def test_report_fields_agree_with_each_other_and_the_table(tmp_path):
    model = _ticket(rate=0.9)
    path = tmp_path / "ticket.tflite"
    report = export_litert(model, path, latency_runs=30)

    assert isinstance(report, ExportReport)
    assert report.path == str(path)
    assert report.quantize is None and report.sparse_requested
    assert report.ops == {"DENSIFY": 2, "FULLY_CONNECTED": 2}
    assert 0 <= report.delegated_ops <= sum(report.ops.values())
    assert report.latency_us > 0 and report.dense_latency_us > 0
    assert report.speedup == pytest.approx(report.dense_latency_us / report.latency_us)
    assert report.max_error == max(report.output_errors)
    assert 0 <= report.argmax_agreement <= 1
    with pytest.raises(AttributeError):
        report.file_bytes = 0  # Frozen.
    table = str(report)
    assert str(path) in table
    assert f"{report.file_bytes:,}" in table
    assert f"{report.dense_bytes:,}" in table
    assert "DENSIFY x2" in table
    assert f"{report.size_ratio:.3f}x" in table


@needs_litert
def test_without_sparse_encoding_the_file_is_the_dense_export(tmp_path):
    report = export_litert(_ticket(), tmp_path / "dense.tflite", sparse=False, **FAST)
    assert not report.sparse_encoded and not report.sparse_requested
    assert report.file_bytes == report.dense_bytes
    assert report.sparse_tensors == ()
    assert report.latency_us == report.dense_latency_us
    assert report.delegated_ops == sum(report.ops.values())  # All on XNNPACK.


@needs_litert
def test_a_model_without_zeros_is_stored_dense_and_the_report_says_why(tmp_path):
    report = export_litert(_tiny_model(), tmp_path / "m.tflite", **FAST)
    assert report.sparse_tensors == ()
    assert report.file_bytes == pytest.approx(report.dense_bytes, rel=0.01)
    assert any("at least 30% zeros" in note for note in report.notes)


# -------------------------------------------------------------- fallback


@needs_litert
def test_sparse_dynamic_int8_falls_back_to_a_file_that_runs(tmp_path):
    # With ai-edge-litert 2.3, XNNPACK fails to prepare a FULLY_CONNECTED
    # whose int8 weights a DENSIFY expands ("failed to delegate").
    model = _ticket(rate=0.9)
    path = tmp_path / "dynamic.tflite"
    report = export_litert(model, path, quantize="dynamic", **FAST)

    assert report.sparse_requested and not report.sparse_encoded
    assert report.file_bytes == report.dense_bytes
    assert any("sparsity encoding dropped" in note for note in report.notes)
    assert "XNNPack" in " ".join(report.notes) or "NaN" in " ".join(report.notes)
    x = _data()
    reference = _keras(model, x)
    got = _run_file(path, x)  # Loads with the default delegates and runs.
    assert np.max(np.abs(got - reference)) <= 5e-2 * np.max(np.abs(reference))


@needs_litert
def test_without_fallback_a_failing_sparse_file_raises_and_writes_nothing(
    tmp_path,
):
    path = tmp_path / "dynamic.tflite"
    with pytest.raises(LiteRTExportError, match="sparse=False"):
        export_litert(_ticket(), path, quantize="dynamic", fallback=False, **FAST)
    assert _listing(tmp_path) == []


@needs_litert
def test_fallback_when_the_sparse_file_cannot_even_be_loaded(tmp_path, monkeypatch):
    convert = export_module._convert

    def broken_sparse(*args, sparse, **kwargs):
        content = convert(*args, sparse=sparse, **kwargs)
        return content[: len(content) // 2] if sparse else content

    monkeypatch.setattr(export_module, "_convert", broken_sparse)
    path = tmp_path / "model.tflite"
    report = export_litert(_ticket(), path, **FAST)
    assert not report.sparse_encoded
    assert "could not run it" in report.notes[0]
    assert report.max_error <= 1e-5
    assert os.path.getsize(path) == report.dense_bytes


# ------------------------------------------------------------- atomicity


@needs_litert
def test_failed_verification_leaves_an_existing_file_untouched(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"previous good file")
    x = _data()
    with pytest.raises(LiteRTExportError, match="tolerance"):
        # No int8 file matches float32 Keras to 1e-9.
        export_litert(
            _tiny_model(),
            path,
            quantize="int8",
            representative_data=x,
            tolerance=1e-9,
            **FAST,
        )
    assert path.read_bytes() == b"previous good file"
    assert _listing(tmp_path) == ["model.tflite"]


@needs_litert
def test_an_error_after_conversion_leaves_an_existing_file_untouched(
    tmp_path, monkeypatch
):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"previous good file")

    def boom(interpreter):
        raise RuntimeError("inspection failed")

    monkeypatch.setattr(export_module.runtime, "inspect_interpreter", boom)
    with pytest.raises(RuntimeError, match="inspection failed"):
        export_litert(_ticket(), path, **FAST)
    assert path.read_bytes() == b"previous good file"
    assert _listing(tmp_path) == ["model.tflite"]


@needs_litert
def test_a_successful_export_replaces_the_file(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"old")
    report = export_litert(_tiny_model(), path, sparse=False, **FAST)
    assert path.read_bytes()[4:8] == b"TFL3"  # The flatbuffer identifier.
    assert os.path.getsize(path) == report.file_bytes
    assert _listing(tmp_path) == ["model.tflite"]


# ------------------------------------------------------ options and errors


@needs_litert
def test_verify_false_skips_the_comparison_but_still_runs_the_file(tmp_path):
    report = export_litert(
        _tiny_model(), tmp_path / "m.tflite", verify=False, latency_runs=0
    )
    assert report.output_errors == () and report.max_error is None
    assert report.samples == 0
    assert report.latency_us is None and report.speedup is None
    assert "verify=False" in str(report)


@needs_litert
def test_int8_without_representative_data_is_refused(tmp_path):
    with pytest.raises(ValueError, match="representative_data"):
        export_litert(_tiny_model(), tmp_path / "m.tflite", quantize="int8")
    assert _listing(tmp_path) == []


@needs_litert
@pytest.mark.parametrize("quantize", ["int16", "fp16", True])
def test_unknown_quantize_is_refused(tmp_path, quantize):
    with pytest.raises(ValueError, match="quantize"):
        export_litert(_tiny_model(), tmp_path / "m.tflite", quantize=quantize)


@needs_litert
def test_sample_inputs_of_the_wrong_shape_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\(None, 64\).*\(5, 63\)"):
        export_litert(
            _tiny_model(), tmp_path / "m.tflite", sample_inputs=np.zeros((5, 63))
        )
    assert _listing(tmp_path) == []


@needs_litert
def test_a_single_sample_without_batch_axis_is_accepted(tmp_path):
    report = export_litert(
        _tiny_model(), tmp_path / "m.tflite", sample_inputs=_data()[0], **FAST
    )
    assert report.samples == 1 and report.sample_source == "sample_inputs"


def test_other_backends_are_refused_with_the_backend_to_use(tmp_path, monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="'jax'.*KERAS_BACKEND=tensorflow"):
        export_litert(_tiny_model(), tmp_path / "m.tflite")
    assert _listing(tmp_path) == []


@needs_litert
def test_missing_litert_package_names_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(ImportError, match=r"ai-edge-litert.*keras-lth\[litert\]"):
        export_litert(_tiny_model(), tmp_path / "m.tflite")
    assert _listing(tmp_path) == []


def test_not_a_model_is_a_type_error(tmp_path):
    if not TENSORFLOW:
        pytest.skip("the backend check comes first")
    pytest.importorskip("ai_edge_litert")
    with pytest.raises(TypeError, match="keras.Model"):
        export_litert(keras.layers.Dense(3), tmp_path / "m.tflite")


# ------------------------------------------------------------ benchmark


def _benchmark_module():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "litert.py"
    spec = importlib.util.spec_from_file_location("_litert_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind, size", [("block4", 4), ("block16", 16)])
def test_benchmark_ticket_masks_are_litert_blocks(kind, size):
    benchmark = _benchmark_module()
    rng = np.random.default_rng(0)
    weights = {
        "fc/kernel": rng.normal(size=(300, 10)),
        "conv/kernel": rng.normal(size=(3, 3, 2, 4)),
    }
    masks = benchmark.ticket_masks(weights, kind)
    assert keras_lth.pruning.is_block_sparse(masks["fc/kernel"], (1, size))
    blocks = keras_lth.pruning.surviving_blocks(np.ones((300, 10)), (1, size))
    kept = keras_lth.pruning.surviving_blocks(masks["fc/kernel"], (1, size))
    assert kept == blocks - int(np.floor(0.9 * blocks + 0.5))
    # Convolution kernels: unstructured, exactly 90% of 72 weights rounded.
    assert masks["conv/kernel"].sum() == 72 - int(np.floor(0.9 * 72 + 0.5))
