"""`keras_lth.litert.report`: `ExportReport`'s fields and its table."""

import pytest

from keras_lth.litert import ExportReport
from keras_lth.litert import SparseTensor
from keras_lth.litert import export_litert
from tests.litert._helpers import needs_litert
from tests.litert._helpers import ticket


@needs_litert
def test_report_fields_agree_with_each_other_and_the_table(tmp_path):
    model = ticket(rate=0.9)
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


def _report(**changes):
    fields = dict(
        path="m.tflite",
        quantize=None,
        sparse_requested=True,
        sparse_encoded=False,
        file_bytes=500,
        dense_bytes=1000,
        sparse_tensors=(),
        ops={"FULLY_CONNECTED": 2},
        sparse_kernel_ops=0,
        densify_ops=0,
        delegated_ops=2,
        samples=0,
        sample_source="random",
        output_errors=(),
        output_tolerances=(),
        argmax_agreement=None,
        latency_us=None,
        dense_latency_us=None,
        notes=("a note",),
    )
    return ExportReport(**{**fields, **changes})


def test_report_properties_and_table_without_litert():
    report = _report()
    assert report.size_ratio == 0.5
    assert report.speedup is None and report.max_error is None
    table = str(report)
    assert "(sparse requested, fell back)" in table
    assert "outputs not compared with Keras (verify=False)" in table
    assert "weights stored sparse: none" in table
    assert "note: a note" in table
    assert "latency" not in table

    tensor = SparseTensor(
        name="x" * 50,
        shape=(8, 64),
        dtype="float32",
        block=(1, 4),
        stored_fraction=0.25,
        read_by=("FULLY_CONNECTED",),
    )
    assert tensor.sparse_kernel
    densified = SparseTensor("w", (8, 64), "int8", (1, 1), 0.1, ("DENSIFY",))
    assert not densified.sparse_kernel
    timed = _report(
        sparse_encoded=True,
        sparse_tensors=(tensor,),
        output_errors=(1e-6, 2e-6),
        output_tolerances=(1e-5, 1e-5),
        samples=32,
        argmax_agreement=1.0,
        latency_us=10.0,
        dense_latency_us=None,
    )
    assert timed.max_error == 2e-6 and timed.speedup is None
    table = str(timed)
    assert "fell back" not in table
    assert "n/a" in table  # The dense export was not timed.
    assert "over 32 random samples" in table and "argmax agreement: 100.0%" in table
    assert "..." + "x" * 37 in table  # Long names keep their end.
    assert "8x64" in table and "1x4" in table and "25.0%" in table
    assert _report(latency_us=10.0, dense_latency_us=30.0).speedup == 3.0
