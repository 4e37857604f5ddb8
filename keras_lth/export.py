"""Kept for imports of `keras_lth.export`: the code lives in `keras_lth.litert`."""

from keras_lth.litert import ABSOLUTE_TOLERANCE
from keras_lth.litert import MAX_VERIFY_SAMPLES
from keras_lth.litert import QUANTIZE_MODES
from keras_lth.litert import RELATIVE_TOLERANCES
from keras_lth.litert import ExportReport
from keras_lth.litert import LiteRTExportError
from keras_lth.litert import SparseTensor
from keras_lth.litert import export_litert

__all__ = [
    "ABSOLUTE_TOLERANCE",
    "MAX_VERIFY_SAMPLES",
    "QUANTIZE_MODES",
    "RELATIVE_TOLERANCES",
    "ExportReport",
    "LiteRTExportError",
    "SparseTensor",
    "export_litert",
]
