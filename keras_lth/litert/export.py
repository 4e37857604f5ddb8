"""`export_litert`: a model written as a LiteRT (TFLite) file, verified first.

TensorFlow backend only: TensorFlow and `ai_edge_litert` are imported when
`export_litert` runs, never when this module is imported.
"""

import contextlib
import io
import os
import warnings

import keras
import numpy as np

from keras_lth._checks import check_count
from keras_lth.conversion import can_copy
from keras_lth.litert import runtime
from keras_lth.litert.report import ExportReport
from keras_lth.litert.report import SparseTensor
from keras_lth.litert.samples import input_specs
from keras_lth.litert.samples import random_samples
from keras_lth.litert.samples import reference_outputs
from keras_lth.litert.samples import to_samples
from keras_lth.litert.samples import with_known_inputs
from keras_lth.masking import prunable_layers
from keras_lth.masking import strip_masks
from keras_lth.saving import atomic_write

__all__ = [
    "ABSOLUTE_TOLERANCE",
    "MAX_VERIFY_SAMPLES",
    "QUANTIZE_MODES",
    "RELATIVE_TOLERANCES",
    "LiteRTExportError",
    "export_litert",
]

#: The `quantize` modes of `export_litert`.
QUANTIZE_MODES = (None, "dynamic", "float16", "int8")

#: Default verification tolerance per `quantize` mode, as a fraction of the
#: largest magnitude of each Keras output over the samples, and never below
#: `ABSOLUTE_TOLERANCE`: float32 sums in another order (None), weights
#: rounded to float16, int8 weights with inputs quantized on the fly
#: ("dynamic"), and int8 weights and activations, whose error grows through
#: the layers. Loose enough for ordinary quantization error, tight enough to
#: catch broken files (NaN, wrong layouts); BENCHMARKS.md has the errors
#: measured by `benchmarks/litert.py`.
RELATIVE_TOLERANCES = {None: 1e-5, "float16": 1e-2, "dynamic": 5e-2, "int8": 0.25}
ABSOLUTE_TOLERANCE = 1e-5

#: At most this many samples are compared with the Keras model.
MAX_VERIFY_SAMPLES = 32


class LiteRTExportError(RuntimeError):
    """Raised when no LiteRT file that runs and matches the model was made.

    Nothing is written to the destination path when it is raised.
    """


def export_litert(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    quantize: str | None = None,
    representative_data=None,
    sparse: bool = True,
    verify: bool = True,
    sample_inputs=None,
    tolerance: float | None = None,
    fallback: bool = True,
    latency_runs: int = 200,
    seed: int = 0,
) -> ExportReport:
    """Writes a model (or a ticket) as a LiteRT file that is known to run.

    The masks are baked in (`keras_lth.strip_masks`) and the model converted
    with `tf.lite.TFLiteConverter`, with LiteRT's sparsity encoding and
    without it (the "dense export"). The file is loaded in `ai_edge_litert`
    with its default delegates (XNNPACK), compared with the Keras model
    within `RELATIVE_TOLERANCES`, timed against the dense export, and only
    then written, atomically. Dense kernels pruned in LiteRT's blocks (see
    `keras_lth.pruning`) run on sparse kernels; other sparse weights are only
    stored smaller. A sparse file that does not load or match is replaced by
    the dense export (`fallback=True`), and the report says why.

    Args:
        model: A model, masked or plain. A subclassed model needs
            `sample_inputs` or `representative_data` as arrays, which give
            its input shapes and dtypes.
        path: Destination file, usually ending in `.tflite`.
        quantize: None (float32), `"dynamic"` (int8 weights), `"float16"` or
            `"int8"` (int8 weights and activations; float32 inputs/outputs).
        representative_data: Real inputs, required for `"int8"` calibration:
            an array (batch first), a list or dict of arrays for several
            inputs, or a callable or iterable (`tf.data.Dataset`) of batches.
        sparse: Use LiteRT's sparsity encoding. Defaults to True.
        verify: Compare with Keras's outputs (the file always runs once).
        sample_inputs: Inputs to verify and time with, as `representative_data`.
            Default: `representative_data`, else 32 random inputs in [0, 1).
        tolerance: An absolute tolerance replacing the default ones.
        fallback: Write the dense export when the sparse file does not pass.
        latency_runs: Timed invokes per file; 0 skips timing.
        seed: Seed of the random verification inputs.

    Returns:
        An `ExportReport`; `print` it for a table.

    Raises:
        ValueError: Off the TensorFlow backend, or for bad arguments or inputs.
        ImportError: If `ai_edge_litert` is not installed.
        LiteRTExportError: If no file that runs and matches could be made;
            nothing is written then, and a file at `path` is left as it was.

    Example:

    >>> ticket = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> report = keras_lth.export_litert(ticket, "ticket.tflite")
    >>> report.file_bytes > 0 and report.quantize is None
    True

    `print(report)` shows the checks (outputs against Keras, sparse and
    densified tensors, latency against the dense export).
    """
    _check_backend()
    runtime.import_interpreter()
    if quantize not in QUANTIZE_MODES:
        raise ValueError(
            f"Expected `quantize` to be one of {list(QUANTIZE_MODES)}. "
            f"Received: quantize={quantize!r}"
        )
    if quantize == "int8" and representative_data is None:
        raise ValueError(
            'quantize="int8" calibrates the activations on real inputs: pass '
            "`representative_data` (an array of samples, or a callable "
            "yielding batches). Received: representative_data=None"
        )
    if tolerance is not None and not tolerance > 0:
        raise ValueError(
            f"Expected `tolerance` to be a positive float or None. "
            f"Received: tolerance={tolerance!r}"
        )
    check_count(latency_runs, "latency_runs", minimum=0)
    path = os.fspath(path)

    plain = _plain_model(model)
    shapes_from = sample_inputs if sample_inputs is not None else representative_data
    plain = with_known_inputs(plain, shapes_from)
    specs = input_specs(plain)
    names = [spec["name"] for spec in specs]
    calibration = None
    if representative_data is not None:
        calibration = to_samples(representative_data, specs, "representative_data")
    if sample_inputs is not None:
        samples = to_samples(sample_inputs, specs, "sample_inputs")
        source = "sample_inputs"
    elif calibration is not None:
        samples, source = calibration, "representative_data"
    else:
        samples = random_samples(specs, seed, MAX_VERIFY_SAMPLES)
        source = "random"
    samples = samples[:MAX_VERIFY_SAMPLES]
    reference = reference_outputs(plain, samples) if verify else None
    tolerances = None
    if verify:
        relative = RELATIVE_TOLERANCES[quantize]
        tolerances = [
            tolerance
            if tolerance is not None
            else max(ABSOLUTE_TOLERANCE, relative * float(np.max(np.abs(ref))))
            for ref in reference
        ]

    def trial(content):
        return _Trial(content, names, samples, reference, tolerances)

    notes = []
    sparse_problem = ""
    try:
        dense = trial(_convert(plain, quantize, calibration, names, sparse=False))
    except Exception as error:  # The converter's errors have no common type.
        raise LiteRTExportError(
            f"The LiteRT converter cannot convert model '{model.name}', masked "
            f"or not: {_describe(error)}. Nothing was written to {path!r}. "
            "Keras's recurrent layers (LSTM, GRU, SimpleRNN) need TensorFlow ops "
            "the LiteRT interpreter does not have; the stock model fails alike."
        ) from error
    chosen = None
    if sparse:
        try:
            sparse_content = _convert(plain, quantize, calibration, names, sparse=True)
        except Exception as error:  # The converter's errors have no common type.
            sparse_trial = None
            problem = f"the converter failed: {_describe(error)}"
        else:
            sparse_trial = trial(sparse_content)
            problem = sparse_trial.problem
        if problem is None:
            chosen = sparse_trial
        elif dense.problem is not None:
            sparse_problem = (
                f" The sparse-encoded file does not pass either: {problem}."
            )
        elif not fallback:
            raise LiteRTExportError(
                f"The sparse-encoded LiteRT file (quantize={quantize!r}) does "
                f"not pass: {problem}. Nothing was written to {path!r}. Pass "
                "sparse=False to export without sparsity encoding, "
                "fallback=True to do so only when needed, or another "
                "`quantize`."
            )
        else:
            note = (
                f"sparsity encoding dropped: the sparse-encoded file did not pass "
                f"({problem}); wrote the dense export, which did"
            )
            if quantize in ("int8", "dynamic"):
                note += (
                    ". For a smaller int8 file that runs faster, prune in LiteRT's "
                    "int8 blocks (`block=(1, 16)`) or remove dead units with "
                    "`keras_lth.shrink`"
                )
            notes.append(note)
            warnings.warn(f"export_litert: {note}.", UserWarning, stacklevel=2)
    if chosen is None:
        if dense.problem is not None:
            raise LiteRTExportError(
                f"The LiteRT file (quantize={quantize!r}, dense encoding) does not "
                f"pass: {dense.problem}.{sparse_problem} Nothing was written to "
                f"{path!r}. Check that the samples look like real inputs "
                "(`representative_data` for int8 calibration), or try another "
                "`quantize`, or pass a looser `tolerance`."
            )
        chosen = dense

    info = runtime.inspect_interpreter(chosen.runner.interpreter)
    if sparse and chosen is not dense and not info["tensors"]:
        notes.append(
            "no weight tensor is stored sparse: LiteRT's converter encodes only "
            "tensors that are at least 30% zeros"
        )
    latency = dense_latency = None
    if latency_runs:
        runners = [chosen.runner]
        if chosen is not dense and dense.runner is not None:
            runners.append(dense.runner)
        medians = runtime.median_invoke_seconds(runners, samples[0], latency_runs)
        latency = medians[0] * 1e6
        dense_latency = (
            medians[-1] * 1e6 if len(medians) > 1 or chosen is dense else None
        )
        if dense_latency is None:
            notes.append(f"the dense export could not be timed: {dense.problem}")
        elif chosen is not dense and latency > 1.2 * dense_latency:
            notes.append(
                f"the sparse file runs {latency / dense_latency:.2f}x slower than "
                "the dense export; pass sparse=False if speed matters more than size"
            )

    atomic_write(path, lambda f: f.write(chosen.content))
    return ExportReport(
        path=path,
        quantize=quantize,
        sparse_requested=bool(sparse),
        sparse_encoded=chosen is not dense,
        file_bytes=len(chosen.content),
        dense_bytes=len(dense.content),
        sparse_tensors=tuple(SparseTensor(**tensor) for tensor in info["tensors"]),
        ops=info["ops"],
        sparse_kernel_ops=info["sparse_kernel_ops"],
        densify_ops=info["densify_ops"],
        delegated_ops=info["delegated_ops"],
        samples=len(samples) if verify else 0,
        sample_source=source,
        output_errors=tuple(chosen.errors),
        output_tolerances=tuple(tolerances or ()),
        argmax_agreement=chosen.argmax_agreement,
        latency_us=latency,
        dense_latency_us=dense_latency,
        notes=tuple(notes),
    )


class _Trial:
    """Loads one converted file, runs it, and compares it with Keras.

    `problem` is None when the file loaded under the default delegates, ran,
    and (with a reference) matched it within tolerance; else it says why not.
    """

    def __init__(self, content, names, samples, reference, tolerances):
        self.content = content
        self.runner = None
        self.errors = []
        self.argmax_agreement = None
        self.problem = None
        try:
            self.runner = runtime.Runner(content, names, samples[0])
            runs = samples if reference is not None else samples[:1]
            outputs = [self.runner(sample) for sample in runs]
        except Exception as error:  # LiteRT raises RuntimeError and ValueError.
            self.problem = f"LiteRT could not run it: {_describe(error)}"
            return
        if reference is None:
            return
        if len(outputs[0]) != len(reference):
            self.problem = (
                f"it has {len(outputs[0])} outputs, the Keras model {len(reference)}"
            )
            return
        for index, (ref, tol) in enumerate(zip(reference, tolerances, strict=True)):
            got = np.concatenate([out[index] for out in outputs]).astype("float64")
            if got.shape != ref.shape:
                self.problem = (
                    f"output {index} has shape {got.shape[1:]} per sample, "
                    f"expected {ref.shape[1:]}"
                )
                return
            if not np.all(np.isfinite(got)) and np.all(np.isfinite(ref)):
                self.problem = f"output {index} holds NaN or infinite values"
                return
            error = float(np.max(np.abs(got - ref))) if got.size else 0.0
            self.errors.append(error)
            if index == 0 and ref.ndim == 2 and ref.shape[1] > 1:
                agree = np.argmax(got, axis=1) == np.argmax(ref, axis=1)
                self.argmax_agreement = float(np.mean(agree))
            if self.problem is None and not error <= tol:
                self.problem = (
                    f"output {index} differs from Keras by up to {error:.3g}, "
                    f"more than the tolerance {tol:.3g}"
                )


def _describe(error):
    text = " ".join(str(error).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(error).__name__}: {text}"


def _check_backend():
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ValueError(
            "`export_litert` converts with TensorFlow's LiteRT converter, so it "
            "needs the TensorFlow backend. Received: Keras backend "
            f"{backend!r}. Save the ticket (`keras_lth.save_model`) and export it "
            "from a process started with KERAS_BACKEND=tensorflow."
        )


def _plain_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`export_litert` expects a `keras.Model`. Received: "
            f"{model!r} of type {type(model).__name__}"
        )
    if next(prunable_layers(model), None) is None:
        return model
    if can_copy(model):
        return strip_masks(model)
    # A model that cannot be copied (subclassed, KerasHub) is converted as it
    # is: its pruned weights are stored as exact zeros.
    return model


def _convert(model, quantize, calibration, names, *, sparse):
    """Converts `model` to a LiteRT flatbuffer, returned as bytes.

    `TFLiteConverter.from_keras_model` traces the graph Keras's own
    `model.export(format="litert")` traces, but keeps to LiteRT's builtin ops
    (no TensorFlow "Flex" ops, which the stock interpreter cannot run) and
    keeps the signature LiteRT's signature runner feeds inputs by name.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []
    if quantize is not None:
        optimizations.append(tf.lite.Optimize.DEFAULT)
    converter.optimizations = optimizations
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        # By input name, so the order of the converter's inputs does not matter.
        converter.representative_dataset = lambda: (
            dict(zip(names, sample, strict=True)) for sample in calibration
        )
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # `from_keras_model` prints the endpoints of its ExportArchive, and
        # the int8 calibrator warns about its own internal interpreter.
        warnings.filterwarnings("ignore", message=".*Statistics for quantized")
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is dep")
        return converter.convert()
