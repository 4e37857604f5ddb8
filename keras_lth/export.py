"""Exporting a ticket to LiteRT (TFLite), verified: `export_litert`.

TensorFlow backend only: TensorFlow and `ai_edge_litert` are imported when
`export_litert` runs, never when keras_lth is imported.
"""

import contextlib
import dataclasses
import io
import os
import warnings

import keras
import numpy as np

from keras_lth import _litert_runtime as runtime
from keras_lth.masking import prunable_layers
from keras_lth.masking import strip_masks
from keras_lth.saving import atomic_write

QUANTIZE_MODES = (None, "dynamic", "float16", "int8")

#: Default verification tolerance, as a fraction of the largest magnitude of
#: each Keras output over the samples, and never below `ABSOLUTE_TOLERANCE`.
#: See `export_litert` for how each was chosen.
RELATIVE_TOLERANCES = {None: 1e-5, "float16": 1e-2, "dynamic": 5e-2, "int8": 0.25}
ABSOLUTE_TOLERANCE = 1e-5

#: At most this many samples are compared with the Keras model.
MAX_VERIFY_SAMPLES = 32


class LiteRTExportError(RuntimeError):
    """Raised when no LiteRT file that runs and matches the model was made.

    Nothing is written to the destination path when it is raised.
    """


@dataclasses.dataclass(frozen=True)
class SparseTensor:
    """A weight tensor that the LiteRT file stores in sparse form.

    Attributes:
        name: The tensor's name in the file (LiteRT fuses op names into it).
        shape: Its dense shape, in LiteRT's layout: a FULLY_CONNECTED
            weight is `(out, in)`, the transpose of a Keras Dense kernel.
        dtype: Stored element type (`"float32"`, `"float16"`, `"int8"`).
        block: The block shape it is stored in: all ones for unstructured
            sparsity, `(1, 4)` or `(1, 16)` for blocks of 4 or 16
            consecutive inputs of one output.
        stored_fraction: Values stored over the dense size. With blocks,
            zeros inside a kept block are stored too.
        read_by: The ops that read it: `FULLY_CONNECTED` runs a sparse
            kernel on it, `DENSIFY` expands it to dense when the file loads.
    """

    name: str
    shape: tuple
    dtype: str
    block: tuple
    stored_fraction: float
    read_by: tuple

    @property
    def sparse_kernel(self):
        """Whether an op other than DENSIFY reads the sparse tensor."""
        return any(op != "DENSIFY" for op in self.read_by)


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What `export_litert` wrote, measured on the file itself.

    The "dense export" is the same model converted the same way and with the
    same quantization, but without sparsity encoding.

    Attributes:
        path: Where the file was written.
        quantize: The quantization mode.
        sparse_requested: The `sparse` argument.
        sparse_encoded: Whether the written file was converted with sparsity
            encoding (False after a fallback, or when `sparse=False`).
        file_bytes: Size of the written file.
        dense_bytes: Size of the dense export.
        sparse_tensors: The weight tensors stored sparse in the file.
        ops: Op name -> count in the file (delegate nodes not counted).
        sparse_kernel_ops: Ops that read a sparse weight directly and so run
            LiteRT's sparse kernels (FULLY_CONNECTED with 1x4 float or 1x16
            int8 blocks).
        densify_ops: DENSIFY ops, which expand a sparse weight to dense when
            the interpreter prepares the file: the file is smaller, the op
            that follows runs dense.
        delegated_ops: Ops that LiteRT's default delegate (XNNPACK) runs;
            the others run on LiteRT's builtin kernels.
        samples: How many samples were compared with the Keras model.
        sample_source: `"sample_inputs"`, `"representative_data"` or
            `"random"` (uniform in [0, 1), fixed seed).
        output_errors: Largest absolute difference from the Keras model, per
            output; empty when `verify=False`.
        output_tolerances: The tolerance each output was checked against.
        argmax_agreement: For a first output of shape `(batch, classes)`, the
            fraction of samples where LiteRT and Keras pick the same class.
        latency_us: Median time of one `invoke` of the file, in
            microseconds: batch 1, 1 thread, default delegates.
        dense_latency_us: The same for the dense export, timed interleaved.
        notes: Fallbacks taken and other remarks.
    """

    path: str
    quantize: str | None
    sparse_requested: bool
    sparse_encoded: bool
    file_bytes: int
    dense_bytes: int
    sparse_tensors: tuple
    ops: dict
    sparse_kernel_ops: int
    densify_ops: int
    delegated_ops: int
    samples: int
    sample_source: str
    output_errors: tuple
    output_tolerances: tuple
    argmax_agreement: float | None
    latency_us: float | None
    dense_latency_us: float | None
    notes: tuple

    @property
    def size_ratio(self):
        """File size over the dense export's size."""
        return self.file_bytes / self.dense_bytes

    @property
    def speedup(self):
        """Dense export's latency over the file's, or None if not timed."""
        if not self.latency_us or not self.dense_latency_us:
            return None
        return self.dense_latency_us / self.latency_us

    @property
    def max_error(self):
        """Largest absolute difference from Keras over all outputs, or None."""
        return max(self.output_errors) if self.output_errors else None

    def __str__(self):
        encoding = "sparse" if self.sparse_encoded else "dense"
        lines = [
            f"LiteRT export: {self.path}",
            f"quantize={self.quantize!r}, {encoding} encoding"
            + (
                " (sparse requested, fell back)"
                if self.sparse_requested and not self.sparse_encoded
                else ""
            ),
            "",
            f"{'':<22}{'this file':>14}{'dense export':>14}{'ratio':>10}",
            f"{'size (bytes)':<22}{self.file_bytes:>14,}{self.dense_bytes:>14,}"
            f"{self.size_ratio:>9.3f}x",
        ]
        if self.latency_us is not None:
            dense = (
                f"{self.dense_latency_us:>14.2f}"
                if self.dense_latency_us is not None
                else f"{'n/a':>14}"
            )
            speedup = (
                f"{self.speedup:>9.2f}x speedup" if self.speedup is not None else ""
            )
            lines.append(
                f"{'latency (us, median)':<22}{self.latency_us:>14.2f}{dense}{speedup}"
            )
        lines.append("")
        if self.output_errors:
            checks = ", ".join(
                f"{error:.2e} (tolerance {tol:.2e})"
                for error, tol in zip(
                    self.output_errors, self.output_tolerances, strict=True
                )
            )
            lines.append(
                f"max |LiteRT - Keras| per output: {checks}, over {self.samples} "
                f"{self.sample_source} samples"
            )
            if self.argmax_agreement is not None:
                lines.append(f"argmax agreement: {self.argmax_agreement:.1%}")
        else:
            lines.append("outputs not compared with Keras (verify=False)")
        ops = ", ".join(f"{name} x{count}" for name, count in sorted(self.ops.items()))
        lines += [
            f"ops: {ops}",
            f"sparse kernels: {self.sparse_kernel_ops}, DENSIFY at load: "
            f"{self.densify_ops}, run by XNNPACK: {self.delegated_ops} of "
            f"{sum(self.ops.values())}",
        ]
        if self.sparse_tensors:
            lines.append("weights stored sparse (LiteRT layout, (out, in) for FC):")
            width = max(len(t.name) for t in self.sparse_tensors)
            width = min(max(width, 6), 40)
            lines.append(
                f"  {'tensor':<{width}}  {'shape':<14}{'dtype':<9}{'block':<7}"
                f"{'stored':>8}  read by"
            )
            for tensor in self.sparse_tensors:
                name = tensor.name
                if len(name) > width:
                    name = "..." + name[-(width - 3) :]
                shape = "x".join(str(dim) for dim in tensor.shape)
                block = "x".join(str(dim) for dim in tensor.block)
                lines.append(
                    f"  {name:<{width}}  {shape:<14}{tensor.dtype:<9}{block:<7}"
                    f"{tensor.stored_fraction:>7.1%}  {', '.join(tensor.read_by)}"
                )
        else:
            lines.append("weights stored sparse: none")
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)


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

    The masks are baked in first (`keras_lth.strip_masks`; a model without
    masks is used as is). The model is converted with
    `tf.lite.TFLiteConverter.from_keras_model`, with LiteRT's sparsity
    encoding when `sparse=True`, and also without it (the "dense export",
    for comparison and as a fallback). The chosen file is loaded with
    `ai_edge_litert`'s interpreter and its default delegates (XNNPACK), run
    on samples and compared with the Keras model, timed against the dense
    export, and only then written, atomically: a file at `path` is replaced
    only by a file that passed, and on any error it is left as it was.

    How LiteRT stores and runs a sparse weight (its converter decides per
    tensor; tensors less than 30% zeros stay dense):

    * FULLY_CONNECTED weights whose zeros come in blocks of 4 consecutive
      inputs of one output (float; 16 for int8) are stored in blocks and run
      on LiteRT's sparse kernels, which skip the zero blocks: smaller and
      faster. Prune Dense kernels in such blocks to get this.
    * Other sparse weights (unstructured sparsity, convolutions) are stored
      compressed and expanded by a DENSIFY op when the file loads: smaller,
      but no faster.
    * Some combinations do not load under XNNPACK or compute wrong results.
      Measured with ai-edge-litert 2.3: "dynamic" with sparse weights fails
      to load (unstructured) or gives NaN (1x16 blocks); "int8" fails to
      load when a weight needs DENSIFY (1x16 blocks work); "float16" with
      1x4 blocks gives NaN. Verification catches these; with
      `fallback=True` the dense export is written instead and the report
      says why.

    Verification tolerance, per output: `max(1e-5, r * max|y|)`, where
    `max|y|` is the output's largest magnitude in Keras over the samples, and
    `r` is 1e-5 for float files (so 1e-5 absolute for outputs within
    [-1, 1]; float32 sums in another order differ by about 1e-7 relative),
    1e-2 for "float16" (weights rounded to 11 significant bits, 4.9e-4
    relative each), 5e-2 for "dynamic" (int8 weights per channel, inputs
    quantized on the fly) and 0.25 for "int8" (weights and activations int8:
    the error grows through the layers). `benchmarks/litert.py` measures
    these errors: on a trained LeNet-300-100 and a small convnet they were
    at most 6.4e-7, 2.2e-4, 7.8e-3 and 3.7e-2 of `max|y|`. So the bounds
    catch broken files (NaN, wrong layouts), not ordinary quantization
    error. int8 errors grow on inputs unlike the calibration data, which is
    why int8 is verified on `representative_data` by default. Pass
    `tolerance=` to check an absolute bound of your own instead.

    Args:
        model: A Sequential or Functional model, masked or plain.
        path: Destination file, usually ending in `.tflite`.
        quantize: `None` (float32), `"dynamic"` (int8 weights, float
            activations), `"float16"` (float16 weights) or `"int8"` (int8
            weights and activations, calibrated on `representative_data`;
            inputs and outputs stay float32).
        representative_data: Samples of real inputs. Required for `"int8"`,
            used for calibration and, unless `sample_inputs` is given, for
            verification. An array (batch first), a list of arrays or a dict
            by input name for a multi-input model, or a callable or iterable
            (a generator, a `tf.data.Dataset`) yielding such batches, as
            `TFLiteConverter.representative_dataset` does. It is read once.
        sparse: Use LiteRT's sparsity encoding.
        verify: Compare the file's outputs with the Keras model's. With
            `False` the file is still loaded and run once before it is
            written.
        sample_inputs: Inputs to verify and time with, in the formats of
            `representative_data`. Default: `representative_data`, else 32
            random inputs, uniform in [0, 1) (0 or 1 for integer inputs).
        tolerance: Absolute tolerance replacing the default ones above.
        fallback: When the sparse-encoded file fails to load, to run or to
            match, write the dense export if that one passes. With `False`,
            raise instead.
        latency_runs: Timed invokes per file; 0 skips timing.
        seed: Seed of the random verification inputs.

    Returns:
        An `ExportReport`; `print` it for a table.

    Raises:
        ValueError: For a backend other than TensorFlow, an unknown
            `quantize`, `"int8"` without `representative_data`, or inputs of
            the wrong shape.
        ImportError: If `ai_edge_litert` is not installed.
        LiteRTExportError: If no file that runs and matches could be made.

    Example:

    >>> report = keras_lth.export_litert(ticket, "ticket.tflite")
    >>> print(report)
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
    if isinstance(latency_runs, bool) or not isinstance(latency_runs, int):
        raise TypeError(
            f"Expected `latency_runs` to be an int. Received: {latency_runs!r}"
        )
    if latency_runs < 0:
        raise ValueError(
            f"Expected `latency_runs` >= 0. Received: latency_runs={latency_runs}"
        )
    path = os.fspath(path)

    plain = _plain_model(model)
    specs = _input_specs(plain)
    names = [spec["name"] for spec in specs]
    calibration = None
    if representative_data is not None:
        calibration = _samples(representative_data, specs, "representative_data")
    if sample_inputs is not None:
        samples = _samples(sample_inputs, specs, "sample_inputs")
        source = "sample_inputs"
    elif calibration is not None:
        samples, source = calibration, "representative_data"
    else:
        samples, source = _random_samples(specs, seed), "random"
    samples = samples[:MAX_VERIFY_SAMPLES]
    reference = _reference_outputs(plain, samples) if verify else None
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
    dense = trial(_convert(plain, quantize, calibration, names, sparse=False))
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
            notes.append(
                f"sparsity encoding dropped: the sparse-encoded file did not pass "
                f"({problem}); wrote the dense export, which did"
            )
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
    if next(prunable_layers(model), None) is not None:
        return strip_masks(model)
    return model


def _input_specs(model):
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(
            "`export_litert` needs a model with known inputs: a Sequential "
            "model starting with `keras.Input` or a Functional model. "
            f"Received model '{model.name}' of type {type(model).__name__} "
            "without `inputs`."
        )
    return [
        {
            "name": tensor.name,
            "shape": tuple(tensor.shape),
            "dtype": keras.backend.standardize_dtype(tensor.dtype),
        }
        for tensor in inputs
    ]


def _samples(data, specs, what):
    """Normalizes input data to a list of samples, each a list of arrays.

    Every array of a sample has a leading batch dimension of 1, and the
    arrays follow the model's input order.
    """
    if callable(data) and not hasattr(data, "__array__"):
        data = data()
    if isinstance(data, (np.ndarray, list, tuple, dict)) or hasattr(data, "__array__"):
        batches = [data]
    elif hasattr(data, "__iter__"):
        batches = list(data)
    else:
        raise TypeError(
            f"Expected `{what}` to be an array, a list or dict of arrays, or "
            f"a callable or iterable yielding them. Received: {data!r}"
        )
    samples = []
    for batch in batches:
        arrays = _per_input(batch, specs, what)
        count = arrays[0].shape[0]
        if any(array.shape[0] != count for array in arrays):
            raise ValueError(
                f"The inputs in `{what}` hold different numbers of samples: "
                f"{[array.shape[0] for array in arrays]}"
            )
        samples.extend([array[i : i + 1] for array in arrays] for i in range(count))
    if not samples:
        raise ValueError(f"`{what}` holds no samples. Received: {data!r}")
    return samples


def _per_input(batch, specs, what):
    """Splits one batch into one array per model input, batch axis first."""
    names = [spec["name"] for spec in specs]
    if isinstance(batch, dict):
        missing = [name for name in names if name not in batch]
        if missing:
            raise ValueError(
                f"`{what}` is a dict without the model's inputs {missing}. "
                f"Expected keys {names}. Received keys {sorted(batch)}"
            )
        parts = [batch[name] for name in names]
    elif len(specs) == 1:
        if isinstance(batch, (list, tuple)) and len(batch) == 1:
            batch = batch[0]
        parts = [batch]
    elif isinstance(batch, (list, tuple)) and len(batch) == len(specs):
        parts = list(batch)
    else:
        raise ValueError(
            f"The model has {len(specs)} inputs {names}: expected `{what}` to "
            f"give a list of {len(specs)} arrays or a dict by input name. "
            f"Received: {type(batch).__name__}"
        )
    arrays = []
    for part, spec in zip(parts, specs, strict=True):
        array = np.asarray(part, dtype=spec["dtype"])
        expected = spec["shape"]
        if array.ndim == len(expected) - 1:
            array = array[None]
        matches = array.ndim == len(expected) and all(
            want is None or want == got
            for want, got in zip(expected[1:], array.shape[1:], strict=True)
        )
        if not matches:
            raise ValueError(
                f"Input '{spec['name']}' expects samples of shape "
                f"{expected} (batch first). Received an array of shape "
                f"{array.shape} in `{what}`."
            )
        arrays.append(array)
    return arrays


def _random_samples(specs, seed):
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        shape = spec["shape"][1:]
        if any(dim is None for dim in shape):
            raise ValueError(
                f"Input '{spec['name']}' has shape {spec['shape']} with unknown "
                "dimensions besides the batch, so random inputs cannot be made. "
                "Pass `sample_inputs`."
            )
        size = (MAX_VERIFY_SAMPLES, *shape)
        dtype = np.dtype(spec["dtype"])
        if dtype.kind in "iu":
            array = rng.integers(0, 2, size=size).astype(dtype)
        elif dtype.kind == "b":
            array = rng.random(size) < 0.5
        else:
            array = rng.random(size).astype(dtype)
        arrays.append(array)
    return [[array[i : i + 1] for array in arrays] for i in range(MAX_VERIFY_SAMPLES)]


def _reference_outputs(model, samples):
    """The Keras model's outputs on the samples, flattened, as float64."""
    count = len(samples[0])
    batch = [np.concatenate([sample[i] for sample in samples]) for i in range(count)]
    outputs = model(batch[0] if count == 1 else batch, training=False)
    return [
        np.asarray(keras.ops.convert_to_numpy(output), dtype="float64")
        for output in keras.tree.flatten(outputs)
    ]


def _convert(model, quantize, calibration, names, *, sparse):
    """Converts `model` to a LiteRT flatbuffer, returned as bytes.

    Through `tf.lite.TFLiteConverter.from_keras_model`, chosen over Keras's
    own `model.export(format="litert")` and over a frozen concrete function
    after measuring the three on LeNet-300-100, a small convnet and a
    two-input model (TF 2.21, Keras 3.15): `from_keras_model` traces the
    same graph as `model.export` (both go through a Keras `ExportArchive`;
    files within 8 bytes, identical outputs) but keeps to LiteRT's builtin
    ops, while `model.export` also allows TensorFlow "Flex" ops that the
    stock LiteRT interpreter cannot run, and it took about half the time
    (0.41 s against 0.83 s for LeNet). A frozen concrete function converted
    fastest (0.13 s) only through the converter's deprecated path, which
    gives a file without a signature (so LiteRT's signature runner cannot
    feed it by input name); through the supported path (with a
    `trackable_obj`) it kept the signature but took 0.51 s.
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
