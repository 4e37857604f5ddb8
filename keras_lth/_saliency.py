"""Saliency scores for pruning at initialization, on every backend.

`keras_lth.pruning_at_init` ranks weights by `|dObjective/dw * w|`. This module
computes those gradients with the backend's own machinery (`tf.GradientTape`,
`jax.value_and_grad` over `model.stateless_call`, or torch autograd), each
imported only when called, and returns them as numpy arrays.
"""

import numbers

import keras
import numpy as np
from keras import ops

__all__ = ["check_synflow_scores", "gradients", "ones_input", "snip_scores"]


def snip_scores(model, tensors, x, y, loss):
    """`{key: |dL/dw * w|}` on one batch, as numpy arrays."""
    loss_fn = keras.losses.get(loss) if isinstance(loss, str) else loss
    if not callable(loss_fn):
        raise TypeError(
            "Expected `loss` to be a Keras loss, a loss name or a callable "
            f"(y_true, y_pred) -> loss. Received: {loss!r}"
        )
    variables = [layer.prunable_variable(name) for layer, name in tensors.values()]
    y = ops.convert_to_tensor(y)

    def objective(outputs):
        return ops.mean(loss_fn(y, outputs))

    _, grads = gradients(model, x, objective, variables)
    return {
        key: np.abs(grad * ops.convert_to_numpy(variable))
        for key, grad, variable in zip(tensors, grads, variables)
    }


def check_synflow_scores(scores, flow):
    """Refuses scores that cannot rank: overflowed, or no flow through them.

    Without biases, the scores of each layer sum to the total flow `R`
    (Tanaka et al., conservation of synaptic saliency); with biases, to at
    most `R`. If no layer carries a `1e-6` share of `R`, the output sum does
    not depend on the weights and the scores are rounding noise.
    """
    if not np.isfinite(flow) or not all(
        np.all(np.isfinite(s)) for s in scores.values()
    ):
        raise ValueError(
            "SynFlow scores overflowed: the products of |w| along the paths "
            "through the model exceed its float range (the model is too deep "
            "or its weights too large for its dtype)."
        )
    largest = max(float(np.sum(s, dtype=np.float64)) for s in scores.values())
    if not largest > 1e-6 * abs(flow):
        raise ValueError(
            "The SynFlow scores are (numerically) zero, so no weight can be "
            "ranked: the sum of the model's outputs does not depend on its "
            "weights. Does the model end with a softmax (or another "
            "normalisation)? Give a model that outputs logits. Very deep "
            "models can also underflow to zero."
        )


def ones_input(model, input_shape):
    """A batch of one input of ones, in the dtype of each model input."""
    if input_shape is None:
        try:
            shapes = model.input_shape
        except (AttributeError, ValueError) as e:
            raise ValueError(
                f"Model '{model.name}' has no known input shape; pass "
                "`input_shape` (one sample's shape, without the batch "
                "dimension)."
            ) from e
        several = isinstance(shapes, list)
        shapes = [tuple(s)[1:] for s in (shapes if several else [shapes])]
    else:
        several = isinstance(input_shape, list)
        shapes = [tuple(s) for s in (input_shape if several else [input_shape])]
    for shape in shapes:
        if any(not isinstance(d, numbers.Integral) or d < 1 for d in shape):
            raise ValueError(
                "Expected a fully known input shape (positive ints, without the "
                f"batch dimension). Received: {shape}; pass `input_shape`."
            )
    dtypes = [getattr(t, "dtype", None) for t in getattr(model, "inputs", None) or []]
    if len(dtypes) != len(shapes):
        dtypes = [None] * len(shapes)
    ones = [
        np.ones((1, *shape), dtype=keras.backend.standardize_dtype(dtype or "float32"))
        for shape, dtype in zip(shapes, dtypes)
    ]
    return ones if several else ones[0]


def gradients(model, inputs, objective, variables):
    """`objective(model(inputs, training=False))` and its gradients, on the host.

    Returns the objective's value, a float, and the gradients with respect to
    `variables`, as numpy arrays.

    Differentiation needs the backend itself: `tf.GradientTape`, `jax.grad`
    over `model.stateless_call`, or torch autograd, each imported only here.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        value, grads = _tensorflow_gradients(model, inputs, objective, variables)
    elif backend == "jax":
        value, grads = _jax_gradients(model, inputs, objective, variables)
    elif backend == "torch":
        value, grads = _torch_gradients(model, inputs, objective, variables)
    else:
        raise ValueError(
            "Pruning at initialization by saliency needs gradients, which the "
            f"'{backend}' backend does not provide. Expected the 'tensorflow', "
            "'jax' or 'torch' backend."
        )
    for grad, variable in zip(grads, variables):
        if grad is None:
            raise ValueError(
                f"The objective does not depend on weight '{variable.path}': "
                "is its layer used by the model's outputs?"
            )
    value = float(ops.convert_to_numpy(value))
    return value, [np.asarray(ops.convert_to_numpy(grad)) for grad in grads]


def _tensorflow_gradients(model, inputs, objective, variables):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        for variable in variables:
            if not variable.trainable:
                tape.watch(variable.value)
        value = objective(model(inputs, training=False))
    return value, tape.gradient(value, variables)


def _jax_gradients(model, inputs, objective, variables):
    import jax

    trainable = list(model.trainable_variables)
    non_trainable = list(model.non_trainable_variables)
    positions = []
    for variable in variables:
        for kind, group in ((0, trainable), (1, non_trainable)):
            index = next((i for i, v in enumerate(group) if v is variable), None)
            if index is not None:
                positions.append((kind, index))
                break
    values = ([v.value for v in trainable], [v.value for v in non_trainable])

    def f(selected):
        state = (list(values[0]), list(values[1]))
        for (kind, index), value in zip(positions, selected):
            state[kind][index] = value
        outputs, _ = model.stateless_call(state[0], state[1], inputs, training=False)
        return objective(outputs)

    return jax.value_and_grad(f)([v.value for v in variables])


def _torch_gradients(model, inputs, objective, variables):
    import torch

    tensors = [variable.value for variable in variables]
    frozen = [t for t in tensors if not t.requires_grad]
    for t in frozen:
        t.requires_grad_(True)
    try:
        value = objective(model(inputs, training=False))
        grads = torch.autograd.grad(value, tensors, allow_unused=True)
        return value.detach(), list(grads)
    finally:
        for t in frozen:
            t.requires_grad_(False)
