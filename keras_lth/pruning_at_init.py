"""Pruning at initialization: a one-shot mask before any training.

Each function here takes a prunable model (see `keras_lth.mask_model`) and
returns masks, `{"<layer>/<weight>": float32 array}` keyed like
`keras_lth.get_masks`, without changing the model. Apply them with
`keras_lth.set_masks`, then train the sparse network as usual:

```python
model = keras_lth.mask_model(build_model())
masks = keras_lth.pruning_at_init.snip(
    model, x[:256], y[:256],
    keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    sparsity=0.9,
)
keras_lth.set_masks(model, masks)      # pruned weights become exact zeros
model.compile(...)
model.fit(...)                          # the masks stay fixed
```

The methods, and what each costs:

* `snip` (Lee et al., 2019): one forward and backward pass on one batch.
* `synflow` (Tanaka et al., 2020): data-free; `iterations` forward and
  backward passes on a single input of ones.
* `random_init_mask`: the random control; no pass through the model.

All of them keep exact counts: `sparsity` is reached to within rounding,
`floor(sparsity * n + 0.5)` weights pruned out of `n` (see
`prune_to_sparsity`). Weights a mask already prunes stay pruned.

`snip` and `synflow` need gradients, so they run on the TensorFlow, JAX and
PyTorch backends (imported only when called), not on the numpy backend.
"""

import keras
import numpy as np
from keras import ops

from keras_lth._checks import check_count
from keras_lth._checks import check_fraction
from keras_lth._saliency import check_synflow_scores
from keras_lth._saliency import gradients
from keras_lth._saliency import ones_input
from keras_lth._saliency import snip_scores
from keras_lth.masking import get_masks
from keras_lth.masking import get_prunable_weights
from keras_lth.masking import require_prunable_tensors
from keras_lth.pruning import prune_to_sparsity

__all__ = ["prune_to_sparsity", "random_init_mask", "snip", "synflow"]


def snip(model, x, y, loss, *, sparsity: float) -> dict:
    """SNIP: keeps the connections whose removal would change the loss most.

    Lee, Ajanthan & Torr, "SNIP: Single-shot network pruning based on
    connection sensitivity" (ICLR 2019). On one batch, every prunable weight
    gets the saliency

        s(w) = |dL/dw * w|

    (the paper normalises it by the sum over all weights, which changes no
    ranking), and the weights with the smallest saliency across all prunable
    tensors are pruned, with one global threshold, to `sparsity`. The model is
    run in inference mode (`training=False`: no dropout, BatchNorm uses its
    moving statistics) and is not changed.

    Cost: one forward and one backward pass on `x`, plus copying the
    prunable weights and their gradients to the host once.

    Args:
        model: A built model with masked layers.
        x: One batch of inputs (anything `model(x)` accepts). The paper uses
            one mini-batch; a batch with every class helps.
        y: The batch's targets.
        loss: A Keras loss: a `keras.losses.Loss`, a loss identifier such as
            `"sparse_categorical_crossentropy"`, or a callable
            `(y_true, y_pred) -> loss`, averaged if it returns per-sample
            values.
        sparsity: Fraction of all prunable weights to prune, in `[0, 1)`.

    Returns:
        Masks `{"<layer>/<weight>": float32 array}`, for `keras_lth.set_masks`.

    Example:

    >>> model = keras_lth.mask_model(keras.Sequential([
    ...     keras.Input((8,)), keras.layers.Dense(16, name="hidden"),
    ...     keras.layers.Dense(4, name="out")]))
    >>> x, y = np.random.rand(32, 8), np.random.randint(0, 4, 32)
    >>> masks = keras_lth.pruning_at_init.snip(
    ...     model, x, y, "sparse_categorical_crossentropy", sparsity=0.75)
    >>> sum(int(mask.sum()) for mask in masks.values())  # 192 weights.
    48
    >>> keras_lth.set_masks(model, masks)
    """
    check_fraction(sparsity, "sparsity", interval="[0, 1)")
    tensors = _tensors(model, "snip")
    scores = snip_scores(model, tensors, x, y, loss)
    return prune_to_sparsity(scores, get_masks(model), sparsity, strategy="global")


def synflow(
    model,
    *,
    sparsity: float,
    iterations: int = 100,
    input_shape=None,
) -> dict:
    """SynFlow: iterative synaptic flow pruning, without data.

    Tanaka, Kunin, Yamins & Ganguli, "Pruning neural networks without any
    data by iteratively conserving synaptic flow" (NeurIPS 2020). Every
    floating-point variable of the model is replaced by its absolute value,
    the model is run on one input of all ones, and with

        R = sum(model(ones)),    s(w) = |dR/dw * w|

    the weights with the smallest score across all prunable tensors are
    pruned. This is repeated `iterations` times with the sparsity rising
    exponentially, so that after iteration `i` of `n` a fraction
    `(1 - sparsity) ** (i / n)` of the weights is left; pruned weights count
    as zero in the following iterations. Scoring a weight by the flow through
    it, and re-scoring as the network thins out, keeps every layer connected
    (no *layer collapse*) even at extreme sparsity. Afterwards every variable
    is restored: the model's weights, signs and masks are unchanged.

    Cost: `iterations` forward and backward passes on a batch of one, and
    copying the prunable weights to and from the host at each iteration.

    Notes:
        * The model runs with `training=False`, so BatchNorm uses its moving
          statistics (eval mode, as the paper requires) and dropout is off.
        * A final softmax (or any output normalised to a constant sum) makes
          `R` constant and every score zero: give a model that outputs
          logits.
        * Scores are computed in the model's float precision. In a very deep
          network the products of `|w|` along paths can overflow float32; a
          `ValueError` says so.

    Args:
        model: A built model with masked layers.
        sparsity: Fraction of all prunable weights to prune, in `[0, 1)`.
        iterations: Number of prune-and-rescore rounds, `>= 1`. Defaults to
            `100`, as in the paper.
        input_shape: Shape of one input sample, without the batch dimension
            (a list of shapes for a model with several inputs). Defaults to
            the model's input shape.

    Returns:
        Masks `{"<layer>/<weight>": float32 array}`, for `keras_lth.set_masks`.

    Example:

    >>> model = keras_lth.mask_model(keras.Sequential([
    ...     keras.Input((8,)), keras.layers.Dense(16, name="hidden"),
    ...     keras.layers.Dense(4, name="out")]))
    >>> masks = keras_lth.pruning_at_init.synflow(
    ...     model, sparsity=0.9, iterations=10)
    >>> {key: int(mask.sum()) > 0 for key, mask in masks.items()}  # No collapse.
    {'hidden/kernel': True, 'out/kernel': True}
    """
    check_fraction(sparsity, "sparsity", interval="[0, 1)")
    iterations = check_count(iterations, "iterations")
    tensors = _tensors(model, "synflow")
    inputs = ones_input(model, input_shape)
    keys = list(tensors)
    variables = [layer.prunable_variable(name) for layer, name in tensors.values()]
    masks = get_masks(model)
    saved = [(v, ops.convert_to_numpy(v).copy()) for v in model.variables]
    try:
        for variable, value in saved:
            if keras.backend.is_float_dtype(variable.dtype):
                variable.assign(np.abs(value))
        magnitudes = {key: np.abs(w) for key, w in get_prunable_weights(model).items()}
        for i in range(1, iterations + 1):
            for key, variable in zip(keys, variables):
                variable.assign(magnitudes[key] * masks[key])
            flow, grads = gradients(model, inputs, ops.sum, variables)
            scores = {
                key: np.abs(grad * magnitudes[key] * masks[key])
                for key, grad in zip(keys, grads)
            }
            check_synflow_scores(scores, flow)
            target = (
                sparsity
                if i == iterations
                else (1.0 - (1.0 - sparsity) ** (i / iterations))
            )
            masks = prune_to_sparsity(scores, masks, target, strategy="global")
    finally:
        for variable, value in saved:
            variable.assign(value)
    return masks


def random_init_mask(model, *, sparsity, seed=None) -> dict:
    """Random pruning at initialization: the control for `snip` and `synflow`.

    Each prunable tensor loses the same fraction of its weights, `sparsity`,
    chosen uniformly at random (exact counts, as `prune_to_sparsity` with
    `strategy="random"`). Weights already pruned stay pruned.

    Cost: none beyond reading the masks; the model is not run.

    Args:
        model: A built model with masked layers.
        sparsity: Fraction of each tensor's weights to prune, in `[0, 1)`, or
            a dict mapping tensor keys to such fractions.
        seed: Seed for `numpy.random.default_rng`.

    Returns:
        Masks `{"<layer>/<weight>": float32 array}`, for `keras_lth.set_masks`.

    Example:

    >>> model = keras_lth.mask_model(keras.Sequential([
    ...     keras.Input((8,)), keras.layers.Dense(16, name="hidden"),
    ...     keras.layers.Dense(4, name="out")]))
    >>> masks = keras_lth.pruning_at_init.random_init_mask(
    ...     model, sparsity=0.75, seed=0)
    >>> {key: int(mask.sum()) for key, mask in masks.items()}  # 128 and 64.
    {'hidden/kernel': 32, 'out/kernel': 16}
    """
    values = sparsity.values() if isinstance(sparsity, dict) else [sparsity]
    for value in values:
        check_fraction(value, "sparsity", interval="[0, 1)")
    _tensors(model, "random_init_mask")
    return prune_to_sparsity(
        get_prunable_weights(model),
        get_masks(model),
        sparsity,
        strategy="random",
        seed=seed,
    )


# ------------------------------------------------------------------ helpers


def _tensors(model, caller):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`{caller}` expects a `keras.Model`. Received: {model!r} "
            f"of type {type(model).__name__}"
        )
    if not model.built:
        raise ValueError(
            f"`{caller}` needs a built model. Model '{model.name}' is not built: "
            "call it on data or give it an `Input` first."
        )
    return require_prunable_tensors(model)
