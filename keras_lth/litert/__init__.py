"""LiteRT (TFLite) export of a ticket, verified before it is written.

`export_litert` bakes a model's masks in, converts it with LiteRT's sparsity
encoding, checks the file in LiteRT's interpreter against the Keras model,
times it against the dense export and writes it atomically; it returns an
`ExportReport`. How LiteRT orients a pruning block is explained in
`keras_lth.pruning`.

TensorFlow backend only, with `pip install "keras-lth[litert]"`. This
package imports neither TensorFlow nor `ai_edge_litert`: they load when
`export_litert` runs, so `import keras_lth.litert` works on every backend
and exporting off TensorFlow raises a `ValueError` naming the backend.

Example:

```python
report = keras_lth.litert.export_litert(ticket, "ticket.tflite", quantize="int8",
                                        representative_data=x_train[:200])
print(report)
```
"""

from keras_lth.litert.export import ABSOLUTE_TOLERANCE
from keras_lth.litert.export import MAX_VERIFY_SAMPLES
from keras_lth.litert.export import QUANTIZE_MODES
from keras_lth.litert.export import RELATIVE_TOLERANCES
from keras_lth.litert.export import LiteRTExportError
from keras_lth.litert.export import export_litert
from keras_lth.litert.report import ExportReport
from keras_lth.litert.report import SparseTensor
from keras_lth.litert.runtime import LITERT_PACKAGE

__all__ = [
    "ABSOLUTE_TOLERANCE",
    "LITERT_PACKAGE",
    "MAX_VERIFY_SAMPLES",
    "QUANTIZE_MODES",
    "RELATIVE_TOLERANCES",
    "ExportReport",
    "LiteRTExportError",
    "SparseTensor",
    "export_litert",
]
