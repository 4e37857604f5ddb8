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

When only a test set is at hand (the official 10,000 MNIST test images, say),
it is split into train / validation / test (8,000 / 1,000 / 1,000 by default)
and `Splits.note` says so: report it with any number trained on it.

Example:

```python
data = keras_lth.datasets.load("mnist", path="../shared/data/mnist")
print(data.note)
model.fit(*data.train, validation_data=data.validation, ...)
model.evaluate(*data.test)
```
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pathlib
import zipfile
import zlib

import numpy as np

#: Names accepted by `load`.
NAMES = ("digits", "mnist", "fashion_mnist", "cifar10")

_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions.
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension.

# Default split sizes.
_DIGITS_HOLDOUT = 250  # Validation and test each, of 1,797 digits.
_VALIDATION_FROM_TRAIN = 5000  # As in the paper: 55,000 / 5,000 for MNIST.
_HOLDOUT_FRACTION = 0.1  # Of a lone test set: 8,000 / 1,000 / 1,000 of 10k.


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Splits:
    """A dataset split into train, validation and test sets.

    Attributes:
        train: `(x, y)` numpy arrays for training.
        validation: `(x, y)` for validation (early stopping, `monitor`).
        test: `(x, y)` for the final evaluation.
        num_classes: Number of classes; labels are `0` to `num_classes - 1`.
        input_shape: Shape of one example, `x.shape[1:]`.
        name: The dataset's name, such as `"mnist"`.
        source: Where the data came from: `"keras.datasets.mnist"`, a
            file or folder path, or `"sklearn.datasets.load_digits"`.
        note: How the split was made, in words, for reports. Says so when
            the official training set was not used.
    """

    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    num_classes: int
    input_shape: tuple[int, ...]
    name: str
    source: str
    note: str = ""

    def __repr__(self):
        return (
            f"Splits(name={self.name!r}, train={len(self.train[0])}, "
            f"validation={len(self.validation[0])}, test={len(self.test[0])}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"source={self.source!r})"
        )


# ------------------------------------------------------------------ loaders


def load_digits(
    *,
    validation: int | float = _DIGITS_HOLDOUT,
    test: int | float = _DIGITS_HOLDOUT,
    seed: int = 0,
    flatten: bool = True,
) -> Splits:
    """scikit-learn's bundled 8x8 digits: 1,797 images, 10 classes, offline.

    The images are shuffled with `seed` and split: by default 1,297 train,
    250 validation and 250 test. Pixels (0 to 16) are scaled to `[0, 1]`.

    Args:
        validation: Size of the validation set: a count, or a fraction of
            the 1,797 images. Defaults to 250.
        test: Size of the test set, likewise. Defaults to 250.
        seed: Seed of the shuffle. Defaults to 0.
        flatten: If `True` (the default), each image is 64 floats, for
            LeNet; if `False`, an `(8, 8, 1)` image.

    Returns:
        A `Splits`.

    Raises:
        ImportError: If scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as err:
        raise ImportError(
            "`keras_lth.datasets.load_digits` needs scikit-learn. Install it "
            'with `pip install "keras-lth[data]"` (or `pip install '
            "scikit-learn`)."
        ) from err
    data = sklearn_load_digits()
    x = data.images.astype("float32") / 16.0
    y = data.target
    return _split_pool(
        "digits",
        x[..., np.newaxis],
        y,
        num_classes=10,
        validation=validation,
        test=test,
        seed=seed,
        flatten=flatten,
        source="sklearn.datasets.load_digits",
        what="scikit-learn's 8x8 digits",
    )


def load_mnist(
    path: str | os.PathLike | None = None,
    *,
    validation: int | float | None = None,
    test: int | float | None = None,
    seed: int = 0,
    flatten: bool = True,
) -> Splits:
    """MNIST: 28x28 handwritten digits, 10 classes.

    With the official training set (60,000 images), `validation` examples
    (5,000 by default, as in Frankle & Carbin) are drawn from it with `seed`
    and the official 10,000-image test set is the test set. With only the
    test set at hand (as IDX files, say), its 10,000 images are split
    8,000 / 1,000 / 1,000 by default, and `Splits.note` says so.

    Args:
        path: `None` to use `keras.datasets.mnist` (which downloads the data
            on first use). Otherwise a folder holding the IDX files
            `t10k-images-idx3-ubyte.gz` and `t10k-labels-idx1-ubyte.gz`
            and/or `train-images-idx3-ubyte.gz` and
            `train-labels-idx1-ubyte.gz` (gzipped or not), or an `.npz` file
            with `x_test`, `y_test` and/or `x_train`, `y_train`, as
            `keras.datasets` stores them.
        validation: Size of the validation set: a count or a fraction. By
            default 5,000 from the training set, or 10% of a lone test set.
        test: Size of the test set carved from a lone test set (a count or
            a fraction; 10% by default). Must be `None` when the official
            training set is there, since the official test set is used.
        seed: Seed of the split. Defaults to 0.
        flatten: If `True` (the default), each image is 784 floats, for
            LeNet-300-100; if `False`, a `(28, 28, 1)` image.

    Returns:
        A `Splits`.

    Raises:
        ValueError: If a local file is missing, corrupt or not MNIST.
        RuntimeError: If `path` is `None` and `keras.datasets` cannot load
            the data (no internet, for one).
    """
    return _load_image_dataset(
        "mnist", path, validation=validation, test=test, seed=seed, flatten=flatten
    )


def load_fashion_mnist(
    path: str | os.PathLike | None = None,
    *,
    validation: int | float | None = None,
    test: int | float | None = None,
    seed: int = 0,
    flatten: bool = True,
) -> Splits:
    """Fashion-MNIST: 28x28 images of clothing, 10 classes.

    Same files (IDX names included) and same splitting as `load_mnist`.

    Args:
        path: `None` for `keras.datasets.fashion_mnist`, or a folder of IDX
            files, or an `.npz` file: see `load_mnist`.
        validation: Size of the validation set; see `load_mnist`.
        test: Size of the test set carved from a lone test set; see
            `load_mnist`.
        seed: Seed of the split. Defaults to 0.
        flatten: If `True` (the default), 784 floats per image; if `False`,
            `(28, 28, 1)` images.

    Returns:
        A `Splits`.
    """
    return _load_image_dataset(
        "fashion_mnist",
        path,
        validation=validation,
        test=test,
        seed=seed,
        flatten=flatten,
    )


def load_cifar10(
    path: str | os.PathLike | None = None,
    *,
    validation: int | float | None = None,
    test: int | float | None = None,
    seed: int = 0,
    flatten: bool = False,
) -> Splits:
    """CIFAR-10: 32x32 color images, 10 classes.

    With the official training set (50,000 images), 5,000 of them are the
    validation set by default (the paper's 45,000 / 5,000 split) and the
    official 10,000-image test set is the test set.

    Args:
        path: `None` for `keras.datasets.cifar10` (downloaded on first use),
            or an `.npz` file with `x_train`, `y_train`, `x_test`, `y_test`
            (or only the test pair) as `keras.datasets.cifar10.load_data()`
            returns them: `uint8` images of shape `(n, 32, 32, 3)`.
        validation: Size of the validation set; see `load_mnist`.
        test: Size of the test set carved from a lone test set; see
            `load_mnist`.
        seed: Seed of the split. Defaults to 0.
        flatten: If `False` (the default), `(32, 32, 3)` images, channels
            last; if `True`, 3,072 floats per image.

    Returns:
        A `Splits`.
    """
    return _load_image_dataset(
        "cifar10", path, validation=validation, test=test, seed=seed, flatten=flatten
    )


_LOADERS = {
    "digits": load_digits,
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
}


def load(name: str, *, path: str | os.PathLike | None = None, **kwargs) -> Splits:
    """Loads a dataset by name.

    Args:
        name: One of `"digits"`, `"mnist"`, `"fashion_mnist"`, `"cifar10"`.
        path: Local files for the dataset (see `load_mnist`); not accepted
            for `"digits"`, which scikit-learn bundles.
        **kwargs: Passed to the loader: `validation`, `test`, `seed`,
            `flatten`.

    Returns:
        A `Splits`.
    """
    if name not in _LOADERS:
        raise ValueError(
            f"Unknown dataset {name!r}. Expected one of: {', '.join(NAMES)}"
        )
    if name == "digits":
        if path is not None:
            raise ValueError(
                "The 'digits' dataset is bundled with scikit-learn and takes no "
                f"`path`. Received: path={path!r}"
            )
        return load_digits(**kwargs)
    return _LOADERS[name](path, **kwargs)


# ------------------------------------------------------------ image datasets

# name: (title, image shape, IDX files available)
_IMAGE_DATASETS = {
    "mnist": ("MNIST", (28, 28, 1), True),
    "fashion_mnist": ("Fashion-MNIST", (28, 28, 1), True),
    "cifar10": ("CIFAR-10", (32, 32, 3), False),
}


def _load_image_dataset(name, path, *, validation, test, seed, flatten):
    title, image_shape, has_idx = _IMAGE_DATASETS[name]
    _check_seed(seed)
    if path is None:
        train, official_test = _from_keras(name)
        source = f"keras.datasets.{name}"
    else:
        path = pathlib.Path(path)
        if path.is_dir() and has_idx:
            train, official_test = _from_idx_folder(path, title, image_shape)
            source = f"IDX files in {path}"
        elif path.is_file() and path.suffix == ".npz":
            train, official_test = _from_npz(path)
            source = str(path)
        else:
            expected = (
                "a folder of IDX files or an .npz file" if has_idx else "an .npz file"
            )
            raise ValueError(
                f"Expected `path` to be {expected} for {title}. Received: "
                f"path={str(path)!r}"
                + ("" if path.exists() else ", which does not exist.")
            )
    pairs = {"training": train, "test": official_test}
    for split, pair in pairs.items():
        if pair is not None:
            pairs[split] = _prepare(pair, image_shape, source, split)
    train, official_test = pairs["training"], pairs["test"]
    if train is not None and official_test is not None:
        return _split_train(
            name,
            train,
            official_test,
            validation=validation,
            test=test,
            seed=seed,
            flatten=flatten,
            source=source,
            title=title,
        )
    lone, split = (
        (train, "training") if official_test is None else (official_test, "test")
    )
    return _split_pool(
        name,
        *lone,
        num_classes=10,
        validation=_HOLDOUT_FRACTION if validation is None else validation,
        test=_HOLDOUT_FRACTION if test is None else test,
        seed=seed,
        flatten=flatten,
        source=source,
        what=f"the official {title} {split} set",
        lone=True,
    )


def _from_keras(name):
    import keras

    module = getattr(keras.datasets, name)
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as err:  # Keras raises plain `Exception`s on fetch errors.
        raise RuntimeError(
            f"Could not load {name} with `keras.datasets.{name}.load_data()`, "
            f"which downloads it on first use: {err}\n"
            f"Without internet access, copy the files to this machine and pass their "
            f"location: `keras_lth.datasets.load_{name}(path=...)` takes "
            + (
                "a folder of IDX files (t10k-images-idx3-ubyte.gz, ...) or "
                if name != "cifar10"
                else ""
            )
            + "an .npz file with x_train, y_train, x_test, y_test."
        ) from err
    return (x_train, y_train), (x_test, y_test)


def _from_idx_folder(folder, title, image_shape):
    """Returns `(train, test)` pairs read from IDX files, `None` if absent."""
    pairs = {}
    for prefix in ("train", "t10k"):
        images = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
        labels = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
        if images is None and labels is None:
            pairs[prefix] = None
            continue
        if images is None or labels is None:
            missing = f"{prefix}-{'images-idx3' if images is None else 'labels-idx1'}"
            found = labels if images is None else images
            raise ValueError(
                f"Found {found} but not its companion {missing}-ubyte.gz (or "
                f"{missing}-ubyte) in {folder}. Expected both IDX files."
            )
        x = _read_idx(images, _IDX_IMAGES_MAGIC, "images")
        if x.shape[1:] != image_shape[:2]:
            raise ValueError(
                f"{images} holds images of {x.shape[1]}x{x.shape[2]} pixels. "
                f"Expected {image_shape[0]}x{image_shape[1]} for {title}."
            )
        y = _read_idx(labels, _IDX_LABELS_MAGIC, "labels")
        if len(x) != len(y):
            raise ValueError(
                f"{images} holds {len(x):,} images but {labels} holds "
                f"{len(y):,} labels. Expected the same count in both."
            )
        pairs[prefix] = (x, y)
    if pairs["train"] is None and pairs["t10k"] is None:
        raise ValueError(
            f"No {title} IDX files in {folder}. Expected "
            "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (the test "
            "set) and/or train-images-idx3-ubyte.gz and "
            "train-labels-idx1-ubyte.gz (gzipped or not), or pass the path of "
            "an .npz file instead."
        )
    return pairs["train"], pairs["t10k"]


def _find_idx(folder, stem):
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path, magic, kind):
    """Reads an IDX file of unsigned bytes, checking its header and size."""
    dims_expected = 3 if magic == _IDX_IMAGES_MAGIC else 1
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(
            f"Could not read the IDX {kind} file {path}: {err}. The file is "
            "corrupt or truncated; download it again."
        ) from err
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        raise ValueError(
            f"{path} is not an IDX {kind} file: its magic number is {found}, "
            f"expected {magic} (unsigned bytes, {dims_expected} "
            f"dimension{'s' if dims_expected > 1 else ''})."
        )
    header = 4 + 4 * dims_expected
    if len(data) < header:
        raise ValueError(
            f"{path} is truncated: {len(data)} bytes, shorter than the "
            f"{header}-byte IDX {kind} header."
        )
    dims = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims_expected)
    )
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: its header promises {dims[0]:,} "
            f"{kind}"
            + (f" of {dims[1]}x{dims[2]}" if dims_expected == 3 else "")
            + f", {expected:,} bytes in all, but it holds {len(data):,} bytes."
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _from_npz(path):
    """Returns `(train, test)` pairs from a keras-layout .npz, `None` if absent."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"Could not read the .npz file {path}: {err}") from err
    pairs = []
    for split in ("train", "test"):
        keys = (f"x_{split}", f"y_{split}")
        present = [key in arrays for key in keys]
        if any(present) and not all(present):
            raise ValueError(
                f"{path} holds {keys[present.index(True)]} but not "
                f"{keys[present.index(False)]}. Expected both."
            )
        pairs.append((arrays[keys[0]], arrays[keys[1]]) if all(present) else None)
    if pairs == [None, None]:
        raise ValueError(
            f"{path} holds the arrays {sorted(arrays)}. Expected x_test and "
            "y_test and/or x_train and y_train, as in keras.datasets."
        )
    return tuple(pairs)


def _prepare(pair, image_shape, source, split):
    """Checks one `(x, y)` pair; returns float32 images in [0, 1], int32 labels."""
    x, y = np.asarray(pair[0]), np.asarray(pair[1])
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # keras.datasets.cifar10 labels are (n, 1).
    if y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            f"The {split} set in {source} has images of shape {x.shape} and "
            f"labels of shape {y.shape}. Expected one label per image."
        )
    if x.ndim == len(image_shape) and image_shape[-1] == 1:
        x = x[..., np.newaxis]  # (n, 28, 28) -> (n, 28, 28, 1).
    if x.shape[1:] != image_shape:
        raise ValueError(
            f"The {split} set in {source} has images of shape {x.shape[1:]}. "
            f"Expected {image_shape}."
        )
    if not np.issubdtype(y.dtype, np.integer) or (
        y.size and (y.min() < 0 or y.max() > 9)
    ):
        raise ValueError(
            f"The {split} labels in {source} are not integers from 0 to 9: "
            f"dtype {y.dtype}, values {np.unique(y)[:12]}."
        )
    if x.dtype == np.uint8:
        x = x.astype("float32") / 255.0
    elif np.issubdtype(x.dtype, np.floating) and (
        not x.size or (x.min() >= 0.0 and x.max() <= 1.0)
    ):
        x = x.astype("float32")
    else:
        raise ValueError(
            f"The {split} images in {source} have dtype {x.dtype}. Expected "
            "uint8 pixels (0 to 255) or floats in [0, 1]."
        )
    return x, y.astype("int32")


# ---------------------------------------------------------------- splitting


def _split_train(
    name, train, official_test, *, validation, test, seed, flatten, source, title
):
    """Validation drawn from the training set; the official test set kept."""
    if test is not None:
        raise ValueError(
            f"`test` sets the size of a test set carved from the data, but "
            f"{source} has the official {title} test set "
            f"({len(official_test[0]):,} examples), which is used as is. "
            f"Expected test=None. Received: test={test!r}"
        )
    x, y = train
    n = len(x)
    if validation is None:
        validation = _VALIDATION_FROM_TRAIN
    n_val = _count(validation, n, "validation")
    if n_val >= n:
        raise ValueError(
            f"validation={validation!r} leaves no training examples out of "
            f"{n:,}. Expected fewer than {n:,}."
        )
    order = np.random.default_rng(seed).permutation(n)
    train_idx, val_idx = order[: n - n_val], order[n - n_val :]
    note = (
        f"{title}: validation = {n_val:,} examples drawn with seed {seed} from "
        f"the official training set of {n:,} ({n - n_val:,} left to train "
        f"on); test = the official test set ({len(official_test[0]):,})."
    )
    return _splits(
        name,
        (x[train_idx], y[train_idx]),
        (x[val_idx], y[val_idx]),
        official_test,
        flatten=flatten,
        source=source,
        note=note,
        num_classes=10,
    )


def _split_pool(
    name,
    x,
    y,
    *,
    num_classes,
    validation,
    test,
    seed,
    flatten,
    source,
    what,
    lone=False,
):
    """Shuffles one pool of examples and cuts train / validation / test."""
    _check_seed(seed)
    n = len(x)
    n_val = _count(validation, n, "validation")
    n_test = _count(test, n, "test")
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(
            f"validation={validation!r} and test={test!r} leave no training "
            f"examples out of {n:,}. Expected them to add up to fewer than {n:,}."
        )
    order = np.random.default_rng(seed).permutation(n)
    parts = np.split(order, [n_train, n_train + n_val])
    note = (
        f"{what[0].upper()}{what[1:]} ({n:,} examples), split {n_train:,} train "
        f"/ {n_val:,} validation / {n_test:,} test with seed {seed}."
    )
    if lone:
        note += (
            " Only this set was available, so results on this split are not "
            "comparable with published ones; say so when reporting them."
        )
    return _splits(
        name,
        *((x[idx], y[idx]) for idx in parts),
        flatten=flatten,
        source=source,
        note=note,
        num_classes=num_classes,
    )


def _splits(name, train, validation, test, *, flatten, source, note, num_classes):
    if not isinstance(flatten, bool):
        raise TypeError(
            f"Expected `flatten` to be True or False. Received: {flatten!r}"
        )

    def shape(pair):
        x, y = pair
        if flatten:
            x = x.reshape(len(x), -1)
        return np.ascontiguousarray(x, dtype="float32"), y.astype("int32")

    train, validation, test = shape(train), shape(validation), shape(test)
    return Splits(
        train=train,
        validation=validation,
        test=test,
        num_classes=num_classes,
        input_shape=tuple(train[0].shape[1:]),
        name=name,
        source=source,
        note=note,
    )


def _count(value, n, arg):
    """A split size: an int count, or a float fraction of `n`."""
    if isinstance(value, bool):
        pass
    elif isinstance(value, (int, np.integer)) and 0 <= value <= n:
        return int(value)
    elif isinstance(value, float) and 0.0 <= value < 1.0:
        return int(round(value * n))
    raise ValueError(
        f"Expected `{arg}` to be a count from 0 to {n:,} or a fraction in "
        f"[0, 1). Received: {arg}={value!r}"
    )


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"Expected `seed` to be an int >= 0. Received: seed={seed!r}")
