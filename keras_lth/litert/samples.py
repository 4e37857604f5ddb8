"""The inputs `export_litert` verifies with: a list of samples, batch 1 each.

A sample is a list of arrays, one per model input in the model's order, each
with a leading batch dimension of 1.
"""

import keras
import numpy as np

__all__ = [
    "input_specs",
    "with_known_inputs",
    "per_input",
    "random_samples",
    "reference_outputs",
    "to_samples",
]


def _known_inputs(model):
    try:
        return model.inputs
    except (AttributeError, ValueError):
        return None


def _takes_a_dict(model):
    """Whether `model` is a Functional model whose input is a dict."""
    try:
        return isinstance(model.input, dict)
    except (AttributeError, ValueError):  # A model never called.
        return False


def with_known_inputs(model, data):
    """`model`, or a plain Functional model calling it, for the converter.

    The converter takes Sequential and Functional models with positional
    inputs. A subclass of Functional (a KerasHub model), or a model taking a
    dict, is called from a Functional model with the same inputs. A
    subclassed model has no `inputs`: their shapes and dtypes come from
    `data` (an array, or a dict of arrays by input name, batch first).
    Either way the new model shares `model`'s layers and variables.

    Raises:
        ValueError: If `model` has no inputs and `data` is not such arrays.
    """
    from keras.src.models.functional import Functional

    known = _known_inputs(model)
    by_name = bool(known) and _takes_a_dict(model)
    if type(model) in (keras.Sequential, Functional) and not by_name:
        return model
    if known:
        specs = {t.name: (t.shape[1:], t.dtype) for t in model.inputs}
    elif isinstance(data, dict) or hasattr(data, "__array__"):
        arrays = data if isinstance(data, dict) else {"inputs": data}
        specs = {
            name: (np.shape(array)[1:], np.asarray(array).dtype.name)
            for name, array in arrays.items()
        }
        by_name = isinstance(data, dict)
    else:
        raise ValueError(
            f"Model '{model.name}' of type {type(model).__name__} is subclassed: "
            "it has no `inputs` telling `export_litert` its input shapes and "
            "dtypes. Pass `sample_inputs` (or `representative_data`): a batch "
            "of real inputs, an array or a dict of arrays by input name."
        )
    # Positional inputs: the converter feeds a model with several inputs a
    # list, which a Functional model taking a dict refuses.
    inputs = [
        keras.Input(shape, dtype=dtype, name=name)
        for name, (shape, dtype) in specs.items()
    ]
    if by_name:
        outputs = model(dict(zip(specs, inputs, strict=True)))
    else:
        outputs = model(inputs[0] if len(inputs) == 1 else inputs)
    return keras.Model(
        inputs[0] if len(inputs) == 1 else inputs, outputs, name=model.name
    )


def input_specs(model):
    """The name, shape and dtype of each input of `model`, in order."""
    inputs = _known_inputs(model)
    if not inputs:
        raise ValueError(
            "`export_litert` needs a model with known inputs: a Sequential "
            "model starting with `keras.Input` or a Functional model. "
            f"Received model '{model.name}' of type {type(model).__name__} "
            "without `inputs`."
        )
    return [
        {
            "name": tensor.name,
            "shape": tuple(tensor.shape),
            "dtype": keras.backend.standardize_dtype(tensor.dtype),
        }
        for tensor in inputs
    ]


def to_samples(data, specs, what):
    """Normalizes input data to a list of samples, each a list of arrays.

    Every array of a sample has a leading batch dimension of 1, and the
    arrays follow the model's input order.
    """
    if callable(data) and not hasattr(data, "__array__"):
        data = data()
    if isinstance(data, (np.ndarray, list, tuple, dict)) or hasattr(data, "__array__"):
        batches = [data]
    elif hasattr(data, "__iter__"):
        batches = list(data)
    else:
        raise TypeError(
            f"Expected `{what}` to be an array, a list or dict of arrays, or "
            f"a callable or iterable yielding them. Received: {data!r}"
        )
    samples = []
    for batch in batches:
        arrays = per_input(batch, specs, what)
        count = arrays[0].shape[0]
        if any(array.shape[0] != count for array in arrays):
            raise ValueError(
                f"The inputs in `{what}` hold different numbers of samples: "
                f"{[array.shape[0] for array in arrays]}"
            )
        samples.extend([array[i : i + 1] for array in arrays] for i in range(count))
    if not samples:
        raise ValueError(f"`{what}` holds no samples. Received: {data!r}")
    return samples


def per_input(batch, specs, what):
    """Splits one batch into one array per model input, batch axis first."""
    names = [spec["name"] for spec in specs]
    if isinstance(batch, dict):
        missing = [name for name in names if name not in batch]
        if missing:
            raise ValueError(
                f"`{what}` is a dict without the model's inputs {missing}. "
                f"Expected keys {names}. Received keys {sorted(batch)}"
            )
        parts = [batch[name] for name in names]
    elif len(specs) == 1:
        if isinstance(batch, (list, tuple)) and len(batch) == 1:
            batch = batch[0]
        parts = [batch]
    elif isinstance(batch, (list, tuple)) and len(batch) == len(specs):
        parts = list(batch)
    else:
        raise ValueError(
            f"The model has {len(specs)} inputs {names}: expected `{what}` to "
            f"give a list of {len(specs)} arrays or a dict by input name. "
            f"Received: {type(batch).__name__}"
        )
    arrays = []
    for part, spec in zip(parts, specs, strict=True):
        array = np.asarray(part, dtype=spec["dtype"])
        expected = spec["shape"]
        if array.ndim == len(expected) - 1:
            array = array[None]
        matches = array.ndim == len(expected) and all(
            want is None or want == got
            for want, got in zip(expected[1:], array.shape[1:], strict=True)
        )
        if not matches:
            raise ValueError(
                f"Input '{spec['name']}' expects samples of shape "
                f"{expected} (batch first). Received an array of shape "
                f"{array.shape} in `{what}`."
            )
        arrays.append(array)
    return arrays


def random_samples(specs, seed, count):
    """`count` random samples: uniform in [0, 1), or 0 and 1 for ints and bools."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        shape = spec["shape"][1:]
        if any(dim is None for dim in shape):
            raise ValueError(
                f"Input '{spec['name']}' has shape {spec['shape']} with unknown "
                "dimensions besides the batch, so random inputs cannot be made. "
                "Pass `sample_inputs`."
            )
        size = (count, *shape)
        dtype = np.dtype(spec["dtype"])
        if dtype.kind in "iu":
            array = rng.integers(0, 2, size=size).astype(dtype)
        elif dtype.kind == "b":
            array = rng.random(size) < 0.5
        else:
            array = rng.random(size).astype(dtype)
        arrays.append(array)
    return [[array[i : i + 1] for array in arrays] for i in range(count)]


def reference_outputs(model, samples):
    """The Keras model's outputs on the samples, flattened, as float64."""
    count = len(samples[0])
    batch = [np.concatenate([sample[i] for sample in samples]) for i in range(count)]
    inputs = batch[0] if count == 1 else batch
    if _known_inputs(model) and _takes_a_dict(model):  # In `inputs` order.
        names = [tensor.name for tensor in model.inputs]
        inputs = dict(zip(names, batch, strict=True))
    outputs = model(inputs, training=False)
    return [
        np.asarray(keras.ops.convert_to_numpy(output), dtype="float64")
        for output in keras.tree.flatten(outputs)
    ]
