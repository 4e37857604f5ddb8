"""What the backend can run on this machine, probed once per test session.

Some layer arguments run on one machine and not on another with the same
backend. TensorFlow's CPU kernels for `channels_first` convolutions come from
oneDNN, which TensorFlow turns on only on some CPUs (not on AMD EPYC, for
one): without it, stock `keras.layers.Conv2D(data_format="channels_first")`
fails on CPU too. A test of such arguments asks here first and is skipped,
with the reason, only when the stock layer cannot run them. It never decides
by the CPU's name.
"""

import functools
import inspect
import re

import keras
import numpy as np
import pytest
from keras import ops

from tests import backends


@functools.cache
def channels_first_error(layer_name):
    """Why stock `keras.layers.<layer_name>` cannot run `channels_first` here.

    Runs the stock layer (1 filter, kernel size 1, on a batch of one) forward,
    and backward to its input and its weights, once per layer class and test
    session.

    Args:
        layer_name: A convolution class in `keras.layers`, such as `"Conv2D"`.

    Returns:
        `None` if it runs, else the error it raised, as one line of text.
    """
    cls = getattr(keras.layers, layer_name)
    arguments = {"kernel_size": 1, "data_format": "channels_first"}
    parameters = inspect.signature(cls).parameters
    if "filters" in parameters:
        arguments["filters"] = 1
    # Constant initializers and a name of its own: the probe draws no random
    # numbers and takes no default layer name from the test that triggers it.
    for initializer in ("kernel", "depthwise", "pointwise"):
        if f"{initializer}_initializer" in parameters:
            arguments[f"{initializer}_initializer"] = "ones"
    layer = cls(name=f"channels_first_probe_{layer_name.lower()}", **arguments)
    shape = (1, 1) + (2,) * layer.rank
    layer.build(shape)
    x = keras.Variable(np.ones(shape, "float32"), name="channels_first_probe_x")
    try:
        backends.gradients(lambda: ops.sum(layer(x)), [x, *layer.trainable_variables])
    except Exception as error:  # Whatever the backend raises for the kernel.
        return f"{type(error).__name__}: {_gist(error)}"
    return None


def _gist(error):
    """The backend's own words from an error that Keras wrapped for a layer."""
    lines = [
        re.sub(r"\x1b\[[0-9;]*m|\{\{function_node [^}]*\}\}", "", line).strip()
        for line in str(error).splitlines()
    ]
    lines = [line for line in lines if line]
    # Keras puts "Exception encountered when calling X.call()." first and
    # "Arguments received by ..." after the backend's message.
    if len(lines) > 1 and lines[0].startswith("Exception encountered"):
        lines = lines[1:]
    return lines[0][:300] if lines else ""


def require_channels_first(layer_name):
    """Skips the calling test if stock `layer_name` cannot run `channels_first`.

    Args:
        layer_name: A convolution class in `keras.layers`, such as `"Conv2D"`.
    """
    error = channels_first_error(layer_name)
    if error is not None:
        hint = ""
        if backends.BACKEND == "tensorflow":
            hint = " (TensorFlow on a CPU without oneDNN)"
        pytest.skip(
            reason=(
                f"stock keras.layers.{layer_name}(data_format='channels_first') "
                f"cannot run on this machine's {backends.BACKEND} backend{hint}: "
                f"{error}"
            )
        )
