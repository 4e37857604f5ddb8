"""Datasets with a fixed train / validation / test split.

Each loader returns a `Splits`: numpy arrays for `train`, `validation` and
`test`, images scaled to floats in `[0, 1]` (`float32`) and integer labels
(`int32`), drawn with a fixed seed so that every run sees the same split.

* `load_digits()`: scikit-learn's bundled 8x8 digits. Needs no download, so
  it is the offline default (`pip install "keras-lth[data]"`).
* `load_mnist()`, `load_fashion_mnist()`, `load_cifar10()`: from
  `keras.datasets` (downloaded on first use), or from local files with
  `path=`: a folder of IDX files (MNIST and Fashion-MNIST) or an `.npz` file
  in the layout of `keras.datasets` (`x_train`, `y_train`, `x_test`,
  `y_test`).
* `load(name, ...)` dispatches on the name.
* `ShuffledBatches`: an endless shuffled stream of batches, so that `fit`
  with `steps_per_epoch=N` validates every N steps.

When only a test set is at hand (the official 10,000 MNIST test images, say),
it is split into train / validation / test (8,000 / 1,000 / 1,000 by default)
and `Splits.note` says so: report it with any number trained on it.

Example:

```python
data = keras_lth.datasets.load("mnist", path="path/to/mnist")
print(data.note)
model.fit(*data.train, validation_data=data.validation, ...)
model.evaluate(*data.test)
```

The loaders live in `keras_lth.datasets.loaders`, the file readers in
`keras_lth.datasets.sources` and the splitting in `keras_lth.datasets.splits`.
"""

from keras_lth.datasets.batches import ShuffledBatches
from keras_lth.datasets.loaders import NAMES
from keras_lth.datasets.loaders import load
from keras_lth.datasets.loaders import load_cifar10
from keras_lth.datasets.loaders import load_digits
from keras_lth.datasets.loaders import load_fashion_mnist
from keras_lth.datasets.loaders import load_mnist
from keras_lth.datasets.splits import Splits

__all__ = [
    "NAMES",
    "ShuffledBatches",
    "Splits",
    "load",
    "load_cifar10",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
]
