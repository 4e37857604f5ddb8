"""`keras_lth.litert.samples`: the inputs an export verifies with."""

import keras
import numpy as np
import pytest

from keras_lth.litert import export_litert
from keras_lth.litert import samples as litert_samples
from tests.litert._helpers import FAST
from tests.litert._helpers import listing
from tests.litert._helpers import needs_litert
from tests.litert._helpers import random_inputs
from tests.litert._helpers import tiny_model


@needs_litert
def test_representative_data_may_be_a_tf_data_dataset_of_batches(tmp_path):
    import tensorflow as tf

    x = random_inputs(count=24)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(8)
    report = export_litert(
        tiny_model(),
        tmp_path / "int8.tflite",
        quantize="int8",
        representative_data=dataset,
        sparse=False,
        **FAST,
    )
    assert report.samples == 24  # Three batches of 8, split into samples.
    assert report.max_error <= report.output_tolerances[0]


@needs_litert
def test_sample_inputs_of_the_wrong_shape_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\(None, 64\).*\(5, 63\)"):
        export_litert(
            tiny_model(), tmp_path / "m.tflite", sample_inputs=np.zeros((5, 63))
        )
    assert listing(tmp_path) == []


@needs_litert
def test_a_single_sample_without_batch_axis_is_accepted(tmp_path):
    report = export_litert(
        tiny_model(), tmp_path / "m.tflite", sample_inputs=random_inputs()[0], **FAST
    )
    assert report.samples == 1 and report.sample_source == "sample_inputs"


SPECS = [{"name": "x", "shape": (None, 3), "dtype": "float32"}]
TWO = [
    {"name": "a", "shape": (None, 2), "dtype": "float32"},
    {"name": "b", "shape": (None, 1), "dtype": "int32"},
]


def test_to_samples_splits_batches_into_samples_of_batch_one():
    x = np.arange(12, dtype="float32").reshape(4, 3)
    for given in (x, [x], lambda: x, iter([x[:2], x[2:]])):
        samples = litert_samples.to_samples(given, SPECS, "sample_inputs")
        assert len(samples) == 4
        assert all(len(s) == 1 and s[0].shape == (1, 3) for s in samples)
        np.testing.assert_array_equal(np.concatenate([s[0] for s in samples]), x)
    # One sample without its batch axis.
    (sample,) = litert_samples.to_samples(x[0], SPECS, "sample_inputs")
    assert sample[0].shape == (1, 3)


def test_to_samples_orders_several_inputs_as_the_model_does():
    a = np.zeros((2, 2))
    b = np.ones((2, 1))
    by_name = litert_samples.to_samples({"b": b, "a": a}, TWO, "data")
    by_order = litert_samples.to_samples([a, b], TWO, "data")
    for samples in (by_name, by_order):
        assert [part.shape for part in samples[0]] == [(1, 2), (1, 1)]
        assert samples[0][1].dtype == np.int32
    with pytest.raises(ValueError, match=r"without the model's inputs \['b'\]"):
        litert_samples.to_samples({"a": a}, TWO, "data")
    with pytest.raises(ValueError, match="different numbers of samples"):
        litert_samples.to_samples([a, b[:1]], TWO, "data")
    with pytest.raises(ValueError, match="has 2 inputs"):
        litert_samples.to_samples(a, TWO, "data")
    with pytest.raises(ValueError, match="holds no samples"):
        litert_samples.to_samples(iter([]), SPECS, "data")
    with pytest.raises(TypeError, match="Expected `data`"):
        litert_samples.to_samples(3, SPECS, "data")


def test_random_samples_follow_the_specs():
    samples = litert_samples.random_samples(TWO, seed=0, count=5)
    assert len(samples) == 5
    a = np.concatenate([s[0] for s in samples])
    b = np.concatenate([s[1] for s in samples])
    assert a.dtype == np.float32 and np.all((a >= 0) & (a < 1))
    assert b.dtype == np.int32 and set(np.unique(b)) <= {0, 1}
    again = litert_samples.random_samples(TWO, seed=0, count=5)
    np.testing.assert_array_equal(again[0][0], samples[0][0])
    unknown = [{"name": "x", "shape": (None, None), "dtype": "float32"}]
    with pytest.raises(ValueError, match="Pass `sample_inputs`"):
        litert_samples.random_samples(unknown, seed=0, count=1)


def test_input_specs_and_reference_outputs():
    model = tiny_model(inputs=3, hidden=4, outputs=2)
    specs = litert_samples.input_specs(model)
    assert [(s["shape"], s["dtype"]) for s in specs] == [((None, 3), "float32")]
    samples = litert_samples.random_samples(specs, seed=0, count=3)
    (reference,) = litert_samples.reference_outputs(model, samples)
    x = np.concatenate([s[0] for s in samples])
    np.testing.assert_allclose(
        reference, keras.ops.convert_to_numpy(model(x)), rtol=1e-6
    )
    assert reference.dtype == np.float64
    with pytest.raises(ValueError, match="known inputs"):
        litert_samples.input_specs(keras.Sequential([keras.layers.Dense(2)]))
