"""The report of `benchmarks/deploy.py`: its table, targets and Pareto plot.

`deploy_convnets.py` uses its table and plot. Each function reads measured
rows (`_deploy_common.Row`: `label`, `model`, `quantize`, `precision`,
`shape`, `weights`, `keras_accuracy`, `keras_us`, `report`,
`litert_accuracy`, `median_us`).
"""

import math
import time

__all__ = ["check_targets", "format_table", "plot", "report_lines", "weight_bytes"]

PALETTE = (
    "#1f77b4", "#d62728", "#ff9896", "#2ca02c", "#98df8a", "#9467bd", "#c5b0d5",
    "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
)  # fmt: skip


def format_table(rows):
    """The markdown table: one line per file, ratios to dense of its precision."""
    dense = {row.quantize: row for row in rows if row.model == "dense"}
    lines = [
        "| row | precision | encoding | shape | weights | test acc % | Keras acc % "
        "| file bytes | size x | size / dense float32 | LiteRT us | speedup "
        "| Keras b1 us | speedup | Keras b256 us | speedup |",
        "|---" * 16 + "|",
    ]
    for row in rows:
        base, report = dense[row.quantize], row.report
        encoding = "sparse" if report.sparse_encoded else "dense"
        if report.sparse_requested and not report.sparse_encoded:
            encoding = "dense (fallback)"
        size, dense_size = report.file_bytes, dense[None].report.file_bytes
        cells = [row.label, row.precision, encoding, row.shape, f"{row.weights:,}"]
        cells += [f"{100 * row.litert_accuracy:.2f}", f"{100 * row.keras_accuracy:.2f}"]
        cells += [f"{size:,}", f"{size / base.report.file_bytes:.3f}"]
        cells += [f"{size / dense_size:.3f}", f"{row.median_us:.2f}"]
        cells.append(f"{base.median_us / row.median_us:.2f}x")
        for batch in (1, 256):
            us = row.keras_us[batch]
            cells += [f"{us:.0f}", f"{dense[None].keras_us[batch] / us:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_targets(rows):
    """`[(target, measured, met)]`: issue 19's targets, and the controls.

    For every shrunk unit ticket (`unit_<shape>`, `refill_<shape>`): within
    0.5 points of dense float32, >= 4x faster in float32 and >= 2x in int8,
    its int8 file <= 0.05x the dense float32 file, and better than
    `control_<shape>` in each precision. For the block tickets: within 0.5
    points of the unstructured ticket in the same precision. Accuracies are
    the LiteRT files' on the test set. A missed file size also gives what
    the weights and biases alone take in that file (`weight_bytes`).
    """
    by = {(row.model, row.quantize): row for row in rows}
    targets = []

    def gap(a, b, what, bound=-0.5):
        points = 100 * (a.litert_accuracy - b.litert_accuracy)
        targets.append((what, f"{points:+.2f} points", points >= bound))

    def ratio(value, what, at_least):
        targets.append((what, f"{value:.3f}x", value >= at_least))

    dense, dense8 = by["dense", None], by["dense", "int8"]
    units = [r.model for r in rows if r.model.startswith(("unit_", "refill_"))]
    for key in dict.fromkeys(units):
        f, i = by[key, None], by[key, "int8"]
        name = f"{f.label} {f.shape}"
        gap(f, dense, f"{name} within 0.5 points of dense (float32)")
        ratio(dense.median_us / f.median_us, f"{name} >= 4x faster, float32", 4)
        ratio(dense8.median_us / i.median_us, f"{name} >= 2x faster, int8", 2)
        targets.append(_size_target(name, i.report, dense.report))
        control = "control_" + key.partition("_")[2]
        for q in (None, "int8"):
            what = f"{name} beats the dense control of its shape ({q or 'float32'})"
            gap(by[key, q], by[control, q], what, bound=1e-9)
    for block, q in (("block4", None), ("block16", "int8")):
        what = f"{by[block, q].label} within 0.5 points of IMP ({q or 'float32'})"
        gap(by[block, q], by["imp", q], what)
    return targets


def weight_bytes(path):
    """The bytes of a LiteRT file's buffers: its weights and biases alone.

    The sum of the flatbuffer's buffer sizes; the rest of the file is its
    graph (operators, tensors, quantization parameters) and metadata.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    with open(path, "rb") as f:
        buffer = f.read()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buffer, 0))
    return sum(len(b.data) for b in model.buffers if b.data is not None)


def _size_target(name, int8, dense):
    """The int8 file-size target of a unit ticket: `(target, measured, met)`.

    Args:
        name: The ticket's label and shape.
        int8: The `report` of its int8 file (`file_bytes`, `path`).
        dense: The `report` of the dense float32 file.
    """
    size = int8.file_bytes / dense.file_bytes
    measured = f"{size:.3f}x"
    if size > 0.05:  # Could any file of these weights meet it?
        data = weight_bytes(int8.path)
        measured += (
            f" (its weights and biases alone take {data:,} of its "
            f"{int8.file_bytes:,} bytes = {data / dense.file_bytes:.4f}x of the "
            f"dense {dense.file_bytes:,}-byte file)"
        )
    what = f"{name} int8 file <= 0.05x the dense float32 file"
    return what, measured, size <= 0.05


def report_lines(rows, *, header, floor_us, targets, shrunk):
    """The report printed and written to `table.md`.

    Args:
        rows: The measured rows.
        header: The paragraph under the title (environment, data, budget).
        floor_us: The call floor's median invoke time.
        targets: `check_targets(rows)`.
        shrunk: The `ShrinkReport` of the unstructured ticket.
    """
    by = {(row.model, row.quantize): row for row in rows}
    imp, small = by["imp", None], by["imp_shrunk", None]
    units = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in shrunk.units.items())
    checks = [
        f"- {what}: {value}: **{'met' if ok else 'missed'}**"
        for what, value, ok in targets
    ]
    notes = [
        f"- note, {row.label} {row.precision}: {note}"
        for row in rows
        for note in row.report.notes
    ]
    return [
        f"## LeNet-300-100: deployed tickets ({time.strftime('%Y-%m-%d')})",
        "",
        header,
        "",
        format_table(rows),
        "",
        f"Call floor (Flatten + Dense 784 -> 1, timed in the same loop): "
        f"{floor_us:.2f} us. Keras columns: `predict_on_batch` of the float32 "
        "Keras model (int8 rows too); ratios to dense float32.",
        "",
        f"`shrink` on the unstructured ticket removes its dead units ({units or 'none'}"
        f"; {shrunk.folded} constant units folded): {imp.shape} -> {small.shape}, "
        f"LiteRT {imp.median_us:.2f} -> {small.median_us:.2f} us, Keras batch 256 "
        f"{imp.keras_us[256]:.0f} -> {small.keras_us[256]:.0f} us.",
        "",
        *checks,
        *notes,
    ]


def plot(rows, path, title):
    """Accuracy against LiteRT latency and file size, as a PNG at `path`.

    One point per row (circles float32, squares int8), with the Pareto front
    of each panel dashed. matplotlib renders with Agg, as in
    `keras_lth.plotting`; the file is written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter
    from matplotlib.ticker import LogLocator
    from matplotlib.ticker import NullFormatter

    from keras_lth.saving import atomic_write

    colors = dict(zip(dict.fromkeys(row.model for row in rows), PALETTE))
    fig = Figure(figsize=(14.0, 5.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, what in zip(axes, ("median_us", "file_bytes")):
        points = []
        for row in rows:
            x = row.median_us if what == "median_us" else row.report.file_bytes / 1e3
            points.append((x, 100 * row.litert_accuracy))
            style = dict(color=colors[row.model], edgecolors="black", linewidths=0.6)
            marker = "s" if row.quantize else "o"
            label = f"{row.label} {row.shape.removeprefix('784-')}, {row.precision}"
            ax.scatter(*points[-1], s=46, marker=marker, label=label, **style)
        front, best = [], -math.inf
        for x, y in sorted(points):
            if y > best:
                front.append((x, y))
                best = y
        ax.step(*zip(*front), where="post", color="gray", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_xlabel("LiteRT latency, us per invoke (batch 1, 1 thread; log)")
    axes[1].set_xlabel("LiteRT file size, kB (log)")
    axes[0].set_ylabel("test accuracy of the LiteRT file, %")
    fig.legend(
        *axes[0].get_legend_handles_labels(),
        loc="outside right center",
        fontsize="small",
    )
    fig.suptitle(f"{title} (circles float32, squares int8; dashed: Pareto front)")
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
