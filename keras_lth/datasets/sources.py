"""Where a dataset's arrays come from: IDX files, `.npz` files, `keras.datasets`.

Each reader returns `(train, test)`, each an `(x, y)` pair of numpy arrays or
`None` when the source lacks that set, and refuses a missing, corrupt or
mislabelled file with a `ValueError` that names it. `check_pair` then checks
one pair and scales it: float32 images in `[0, 1]`, int32 labels.
"""

import gzip
import zipfile
import zlib

import numpy as np

__all__ = ["check_pair", "from_idx_folder", "from_keras", "from_npz", "read_idx"]

_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions.
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension.


def from_keras(name):
    """Returns `(train, test)` from `keras.datasets.<name>.load_data()`.

    Keras downloads the data on first use; Keras itself is imported only here.

    Raises:
        RuntimeError: If the download fails, saying how to pass local files.
    """
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


def from_idx_folder(folder, title, image_shape):
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
        x = read_idx(images, _IDX_IMAGES_MAGIC, "images")
        if x.shape[1:] != image_shape[:2]:
            raise ValueError(
                f"{images} holds images of {x.shape[1]}x{x.shape[2]} pixels. "
                f"Expected {image_shape[0]}x{image_shape[1]} for {title}."
            )
        y = read_idx(labels, _IDX_LABELS_MAGIC, "labels")
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


def read_idx(path, magic, kind):
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


def from_npz(path):
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


def check_pair(pair, image_shape, source, split):
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
