"""Saving and loading models; durable file writes.

`save_model` and `load_model` are Keras's, made atomic (save) and able to
read a model masked in place (load).

Every file keras_lth writes goes through `atomic_write`: a temporary file in
the destination folder, `fsync`, an atomic rename over the destination, then
an `fsync` of the folder so that the rename itself survives a power cut.
"""

import contextlib
import json
import os
import secrets
import warnings
import zipfile

__all__ = ["atomic_write", "atomic_write_text", "load_model", "save_model"]


def atomic_write(path, write):
    """Calls `write(file)` on a temporary file, then renames it to `path`.

    The temporary file is created with mode `0o666` less the process's umask,
    as a plain `open` would, so the file gets the permissions the user
    expects without changing the process-wide umask.

    Args:
        path: Destination path. Its folder is created if missing.
        write: Function taking a binary file object open for writing.
    """
    with _replacing(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically; see `atomic_write`."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def save_model(model, path, **kwargs):
    """Saves `model` like `model.save(path)`, but atomically and durably.

    Keras writes a `.keras` file in place, so a crash mid-save would leave a
    torn file where the previous good one was. This saves into a temporary
    file beside `path`, fsyncs it, renames it over `path` and fsyncs the
    folder.

    Args:
        model: The Keras model to save.
        path: Destination, ending in `.keras` (or `.h5`).
        **kwargs: Passed on to `model.save`.

    Example:

    >>> model = keras_lth.mask_model(keras.Sequential(
    ...     [keras.Input((4,)), keras.layers.Dense(2, name="out")]))
    >>> keras_lth.save_model(model, "ticket.keras")
    >>> loaded = keras.saving.load_model("ticket.keras")
    >>> type(loaded.layers[0]).__name__, sorted(keras_lth.get_masks(loaded))
    ('MaskedDense', ['out/kernel'])
    """
    suffix = os.path.splitext(os.fspath(path))[1]
    with _replacing(path, suffix=suffix) as tmp:
        model.save(tmp, **kwargs)
        _fsync_path(tmp)


def load_model(path, *, custom_objects=None, compile=True, safe_mode=True):
    """Loads a `.keras` file, including a model masked in place.

    `keras.saving.load_model(path, ...)` loads a ticket made by
    `keras_lth.mask_model` without `in_place`, and every stock model. A
    model masked in place (a subclassed model, a KerasHub backbone) rebuilds
    its stock layers when Keras loads it, which have no masks to load. This
    rebuilds it from the file's config, masks it in place as
    `keras_lth.mask_model(model, in_place=True)` does, then loads its
    weights and masks.

    Args:
        path: A `.keras` file.
        custom_objects: As for `keras.saving.load_model`.
        compile: Whether to compile the model as it was saved.
        safe_mode: As for `keras.saving.load_model`.

    Returns:
        The model.

    Raises:
        ValueError: If the file is not one Keras can load, masked or not.

    Example:

    A subclassed model, masked in place, keeps its class:

    >>> @keras.saving.register_keras_serializable(package="example")
    ... class TwoLayers(keras.Model):
    ...     def __init__(self, **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.hidden = keras.layers.Dense(8, name="hidden")
    ...         self.out = keras.layers.Dense(2, name="out")
    ...
    ...     def call(self, x):
    ...         return self.out(self.hidden(x))
    >>> model = TwoLayers()
    >>> _ = model(np.zeros((1, 4)))  # Built.
    >>> _ = keras_lth.mask_model(model, in_place=True)
    >>> keras_lth.save_model(model, "ticket.keras")
    >>> loaded = keras_lth.load_model("ticket.keras")
    >>> type(loaded).__name__, sorted(keras_lth.get_masks(loaded))
    ('TwoLayers', ['hidden/kernel', 'out/kernel'])
    """
    import keras

    options = {"custom_objects": custom_objects, "safe_mode": safe_mode}
    try:
        # Keras warns about each layer it cannot fill before it gives up:
        # said only when the plain load is the answer.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = keras.saving.load_model(path, compile=compile, **options)
    except ValueError as error:
        stock_error = error  # Perhaps a model masked in place: try that.
    else:
        for warning in caught:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        return model
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    if not compile:
        config.pop("compile_config", None)
    model = keras.saving.deserialize_keras_object(config, **options)

    from keras_lth.conversion import mask_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # It was said when it was masked.
        mask_model(model, in_place=True)
    try:
        model.load_weights(path)
    except ValueError:
        raise stock_error from None
    return model


@contextlib.contextmanager
def _replacing(path, suffix=""):
    """Yields an unused temporary path beside `path`, renamed over it on success.

    The temporary path sits in the destination folder, so the final
    `os.replace` is atomic on POSIX and Windows. On any error the temporary
    file is removed and `path` is left as it was. After the rename the folder
    is fsynced, so the new name is on disk too.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(
        folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp{suffix}"
    )
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_folder(folder)


def _fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder):
    # Folders cannot be opened for fsync on Windows; the rename is atomic
    # there all the same.
    if os.name != "nt":
        _fsync_path(folder)
