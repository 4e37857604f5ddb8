"""The loaders: one per dataset, and `load(name)`, which dispatches on the name."""

import os
import pathlib

import numpy as np

from keras_lth._checks import check_count
from keras_lth.datasets.sources import check_pair
from keras_lth.datasets.sources import from_idx_folder
from keras_lth.datasets.sources import from_keras
from keras_lth.datasets.sources import from_npz
from keras_lth.datasets.splits import Splits
from keras_lth.datasets.splits import split_pool
from keras_lth.datasets.splits import split_train

__all__ = [
    "NAMES",
    "load",
    "load_cifar10",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
]

#: Names accepted by `load`.
NAMES = ("digits", "mnist", "fashion_mnist", "cifar10")

_DIGITS_HOLDOUT = 250  # Validation and test each, of 1,797 digits.
_HOLDOUT_FRACTION = 0.1  # Of a lone test set: 8,000 / 1,000 / 1,000 of 10k.


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
    return split_pool(
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


# name: (title, image shape, IDX files available)
_IMAGE_DATASETS = {
    "mnist": ("MNIST", (28, 28, 1), True),
    "fashion_mnist": ("Fashion-MNIST", (28, 28, 1), True),
    "cifar10": ("CIFAR-10", (32, 32, 3), False),
}


def _load_image_dataset(name, path, *, validation, test, seed, flatten):
    title, image_shape, has_idx = _IMAGE_DATASETS[name]
    check_count(seed, "seed", minimum=0)
    if path is None:
        train, official_test = from_keras(name)
        source = f"keras.datasets.{name}"
    else:
        path = pathlib.Path(path)
        if path.is_dir() and has_idx:
            train, official_test = from_idx_folder(path, title, image_shape)
            source = f"IDX files in {path}"
        elif path.is_file() and path.suffix == ".npz":
            train, official_test = from_npz(path)
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
            pairs[split] = check_pair(pair, image_shape, source, split)
    train, official_test = pairs["training"], pairs["test"]
    if train is not None and official_test is not None:
        return split_train(
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
    return split_pool(
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
