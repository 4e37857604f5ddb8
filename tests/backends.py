"""What the tests need to know about the Keras backend they run on.

The backend comes from `KERAS_BACKEND`, as Keras reads it at import, so one
suite serves TensorFlow, JAX and PyTorch: `.ci/run` runs the core modules
once per backend. A test of something only TensorFlow has (`tf.distribute`,
LiteRT export, tfmot) is marked with `requires_tensorflow(why)`; everything
else runs everywhere.
"""

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()


def requires_tensorflow(why):
    """Skips a test (or module) unless the backend is TensorFlow.

    Args:
        why: What the test needs TensorFlow for, shown in the skip reason.
    """
    return pytest.mark.skipif(
        BACKEND != "tensorflow",
        reason=f"{why}: needs KERAS_BACKEND=tensorflow (this run: {BACKEND})",
    )


def mask_dtype(weight_dtype):
    """The dtype masks are stored in on this backend, for a weight's dtype.

    bool on JAX, where XLA fuses the cast into the masked gradient; the
    weight's own dtype on TensorFlow and PyTorch.
    """
    return "bool" if BACKEND == "jax" else weight_dtype


def not_on(backend, why):
    """Skips a test on `backend`, saying why (a limit of Keras there)."""
    return pytest.mark.skipif(BACKEND == backend, reason=f"{why} (on {backend})")


def gradients(function, variables):
    """The gradients of `function()`, a scalar, with respect to `variables`.

    Differentiated with the backend's own machinery (`tf.GradientTape`,
    `jax.grad` with the variables' values swapped in through a
    `keras.StatelessScope`, or torch autograd), and returned as numpy arrays,
    dense (an embedding table's gradient too).
    """
    variables = list(variables)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = function()
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(value, variables)]
    elif BACKEND == "jax":
        import jax

        def stateless(values):
            mapping = list(zip(variables, values, strict=True))
            with keras.StatelessScope(state_mapping=mapping):
                return function()

        grads = jax.grad(stateless)([v.value for v in variables])
    elif BACKEND == "torch":
        import torch

        grads = torch.autograd.grad(function(), [v.value for v in variables])
    else:
        pytest.skip(f"no gradients on the {BACKEND} backend")
    return [np.asarray(keras.ops.convert_to_numpy(g)) for g in grads]
