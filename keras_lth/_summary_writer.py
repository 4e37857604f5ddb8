"""A TensorBoard event-file writer that needs no TensorFlow.

`SummaryWriter` appends scalars, histograms and PNG images to one event file,
in the format `tf.summary` writes (tensor summaries tagged with the
TensorBoard plugin that reads them), so TensorBoard shows them like those of
`keras.callbacks.TensorBoard`. It relies on the `tensorboard` package only
(its protos and record framing), never on TensorFlow, so it works on every
Keras backend. Writes are synchronous: summaries are written between epochs,
a few at a time.
"""

import os
import socket
import struct
import threading
import time

import numpy as np

#: Default number of buckets in a histogram, as in `tf.summary.histogram`.
DEFAULT_BUCKETS = 30

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_counter_lock = threading.Lock()
_counter = [0]


def _tensorboard():
    """Imports the pieces of `tensorboard` the writer uses, lazily."""
    try:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.histogram import metadata as histogram_metadata
        from tensorboard.plugins.image import metadata as image_metadata
        from tensorboard.plugins.scalar import metadata as scalar_metadata
        from tensorboard.summary.writer.record_writer import RecordWriter
        from tensorboard.util import tensor_util
    except ImportError as e:
        raise ImportError(
            "Writing TensorBoard summaries needs the `tensorboard` package "
            "(TensorFlow itself is not needed). Install it with "
            '`pip install "keras-lth[tensorboard]"` or `pip install tensorboard`.'
        ) from e
    return {
        "event_pb2": event_pb2,
        "summary_pb2": summary_pb2,
        "scalar_metadata": scalar_metadata,
        "histogram_metadata": histogram_metadata,
        "image_metadata": image_metadata,
        "RecordWriter": RecordWriter,
        "tensor_util": tensor_util,
    }


class SummaryWriter:
    """Appends TensorBoard summaries to a new event file in `log_dir`.

    The folder and the file are created at the first write, so creating a
    writer has no side effect. Close it with `close()`.

    Args:
        log_dir: Folder of the event file: one TensorBoard run.
        filename_suffix: Appended to the event file's name, to tell its files
            from those of other writers in the same folder.
    """

    def __init__(self, log_dir, filename_suffix=".keras_lth"):
        self.log_dir = os.fspath(log_dir)
        self.filename_suffix = filename_suffix
        self.path = None
        self._tb = None
        self._records = None

    def scalar(self, tag, value, step, description=None):
        """Writes a float scalar, as `tf.summary.scalar` does.

        `description` (Markdown) is shown beside the chart in TensorBoard.
        """
        tb = self._open()
        tensor = tb["tensor_util"].make_tensor_proto(np.float32(value))
        metadata = tb["scalar_metadata"].create_summary_metadata(
            display_name=None, description=description
        )
        metadata.data_class = tb["summary_pb2"].DATA_CLASS_SCALAR
        self._write_value(tag, step, metadata, tensor)

    def histogram(self, tag, values, step, buckets=DEFAULT_BUCKETS):
        """Writes a histogram of `values`, as `tf.summary.histogram` does.

        The data is a `[buckets, 3]` tensor of `(left edge, right edge,
        count)` rows over `[min, max]` of `values`.
        """
        tb = self._open()
        tensor = tb["tensor_util"].make_tensor_proto(
            histogram_buckets(values, buckets), dtype=np.float64
        )
        metadata = tb["histogram_metadata"].create_summary_metadata(
            display_name=None, description=None
        )
        metadata.data_class = tb["summary_pb2"].DATA_CLASS_TENSOR
        self._write_value(tag, step, metadata, tensor)

    def image(self, tag, png, step):
        """Writes one PNG image (bytes), as `tf.summary.image` does."""
        width, height = png_size(png)
        tb = self._open()
        tensor = tb["tensor_util"].make_tensor_proto(
            np.array([str(width).encode(), str(height).encode(), png], dtype=object)
        )
        metadata = tb["image_metadata"].create_summary_metadata(
            display_name=None, description=None
        )
        metadata.data_class = tb["summary_pb2"].DATA_CLASS_BLOB_SEQUENCE
        self._write_value(tag, step, metadata, tensor)

    def flush(self):
        """Pushes written summaries to the file."""
        if self._records is not None:
            self._records.flush()

    def close(self):
        """Flushes and closes the file. A later write opens a new file."""
        if self._records is not None:
            self._records.close()
            self._records = None

    @property
    def closed(self):
        return self._records is None

    def _open(self):
        if self._tb is None:
            self._tb = _tensorboard()
        if self._records is None:
            os.makedirs(self.log_dir, exist_ok=True)
            with _counter_lock:
                uid = _counter[0]
                _counter[0] += 1
            # The name pattern of TensorFlow's writers: TensorBoard reads any
            # file whose name contains "tfevents", in name order.
            name = (
                f"events.out.tfevents.{int(time.time()):010d}."
                f"{socket.gethostname()}.{os.getpid()}.{uid}{self.filename_suffix}"
            )
            self.path = os.path.join(self.log_dir, name)
            self._records = self._tb["RecordWriter"](open(self.path, "ab"))
            event = self._tb["event_pb2"].Event(
                wall_time=time.time(), file_version="brain.Event:2"
            )
            self._records.write(event.SerializeToString())
            self._records.flush()
        return self._tb

    def _write_value(self, tag, step, metadata, tensor):
        summary = self._tb["summary_pb2"].Summary()
        summary.value.add(tag=tag, metadata=metadata, tensor=tensor)
        event = self._tb["event_pb2"].Event(
            wall_time=time.time(), step=int(step), summary=summary
        )
        self._records.write(event.SerializeToString())


def histogram_buckets(values, buckets=DEFAULT_BUCKETS):
    """Returns the `[buckets, 3]` array `tf.summary.histogram` would write.

    Rows are `(left edge, right edge, count)` over `[min(values),
    max(values)]`, in equal widths; the last bucket includes the maximum.
    All values equal: every edge is that value and the last bucket holds
    them all. No values: all zeros.

    Args:
        values: Array-like of any shape, castable to float.
        buckets: Positive number of buckets.
    """
    if isinstance(buckets, bool) or not isinstance(buckets, (int, np.integer)):
        raise TypeError(f"Expected an int number of buckets. Received: {buckets!r}")
    if buckets < 1:
        raise ValueError(f"Expected at least 1 bucket. Received: buckets={buckets}")
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    if data.size == 0:
        return np.zeros((buckets, 3))
    low, high = float(np.min(data)), float(np.max(data))
    if low == high:
        edges = np.full(buckets, high)
        counts = np.zeros(buckets)
        counts[-1] = data.size
        return np.stack([edges, edges, counts], axis=1)
    counts, edges = np.histogram(data, bins=buckets, range=(low, high))
    edges[-1] = high
    return np.stack([edges[:-1], edges[1:], counts.astype(np.float64)], axis=1)


def png_size(png):
    """Returns `(width, height)` of PNG bytes, read from the IHDR chunk."""
    if not isinstance(png, (bytes, bytearray)):
        raise TypeError(f"Expected PNG data as bytes. Received: {type(png).__name__}")
    if len(png) < 24 or not png.startswith(_PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError(
            f"Expected PNG bytes (starting with {_PNG_SIGNATURE!r} and an IHDR "
            f"chunk). Received {len(png)} bytes starting with {bytes(png[:16])!r}"
        )
    return struct.unpack(">II", png[16:24])
