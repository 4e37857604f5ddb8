"""`Splits`, and how one pool of examples is cut into train, validation and test."""

import dataclasses

import numpy as np

from keras_lth._checks import check_count
from keras_lth._checks import is_int

__all__ = ["Splits", "split_pool", "split_train"]

_VALIDATION_FROM_TRAIN = 5000  # As in the paper: 55,000 / 5,000 for MNIST.


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


def split_train(
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
    n_val = _split_size(validation, n, "validation")
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


def split_pool(
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
    check_count(seed, "seed", minimum=0)
    n = len(x)
    n_val = _split_size(validation, n, "validation")
    n_test = _split_size(test, n, "test")
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


def _split_size(value, n, arg):
    """A split size: an int count, or a float fraction of `n`."""
    if is_int(value) and 0 <= value <= n:
        return int(value)
    if isinstance(value, float) and 0.0 <= value < 1.0:
        return int(round(value * n))
    raise ValueError(
        f"Expected `{arg}` to be a count from 0 to {n:,} or a fraction in "
        f"[0, 1). Received: {arg}={value!r}"
    )
