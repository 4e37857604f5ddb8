"""What `export_litert` reports: `ExportReport` and its `SparseTensor`s."""

import dataclasses

__all__ = ["ExportReport", "SparseTensor"]


@dataclasses.dataclass(frozen=True)
class SparseTensor:
    """A weight tensor that the LiteRT file stores in sparse form.

    Shapes and blocks are in LiteRT's layout (a FULLY_CONNECTED weight is
    `(out, in)`): see `keras_lth.pruning` for how it maps to Keras kernels.

    Attributes:
        name: The tensor's name in the file (LiteRT fuses op names into it).
        shape: Its dense shape, in LiteRT's layout.
        dtype: Stored element type (`"float32"`, `"float16"`, `"int8"`).
        block: The block shape it is stored in: all ones for unstructured
            sparsity, for example `(1, 4)` for blocks of 4 inputs.
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

    `print(report)` shows it as a table. The "dense export" is the same model
    converted the same way, without sparsity encoding.

    Attributes:
        path: Where the file was written.
        quantize: The quantization mode.
        sparse_requested: The `sparse` argument.
        sparse_encoded: Whether the written file has sparsity encoding
            (False after a fallback, or with `sparse=False`).
        file_bytes: Size of the written file.
        dense_bytes: Size of the dense export.
        sparse_tensors: The `SparseTensor`s of the file.
        ops: Op name -> count in the file (delegate nodes not counted).
        sparse_kernel_ops: Ops that read a sparse weight directly, so run
            LiteRT's sparse kernels.
        densify_ops: DENSIFY ops, which expand a sparse weight to dense when
            the file loads (smaller file, dense speed).
        delegated_ops: Ops that the default delegate (XNNPACK) runs.
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
