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

import numbers

import keras
import numpy as np
from keras import ops

from keras_lth import pruning
from keras_lth.masking import get_masks
from keras_lth.masking import get_prunable_weights
from keras_lth.masking import prunable_tensors

__all__ = ["prune_to_sparsity", "random_init_mask", "snip", "synflow"]

_TO_SPARSITY_STRATEGIES = ("layerwise", "global", "random")


def prune_to_sparsity(
    weights: dict,
    masks: dict,
    sparsity,
    *,
    strategy: str = "layerwise",
    seed=None,
    block=None,
) -> dict:
    """Prunes surviving weights until a target sparsity is reached.

    `keras_lth.pruning` takes a rate *of the survivors*; this takes the
    *absolute* fraction of a tensor's weights that should end up pruned, and
    converts it. For a tensor of `n` weights of which `alive` survive:

        target = floor(sparsity * n + 0.5)        # weights pruned in the end
        count = max(target - (n - alive), 0)      # newly pruned now
        rate = count / alive

    so exactly `target` weights are pruned afterwards (or more, if the masks
    already pruned more: nothing grows back). With `"global"`, `n`, `alive`
    and `target` are summed over all tensors and one magnitude threshold is
    shared.

    With `block`, the same holds in blocks (see `keras_lth.pruning`): `n` is
    the tensor's number of blocks, `alive` its blocks that keep a weight, and
    `target` whole blocks are pruned. Blocks at an edge the block size does
    not divide are smaller, so the fraction of *weights* pruned can differ
    slightly from `sparsity`.

    Args:
        weights: Dict mapping a tensor key to its weights, or to any scores
            where a larger absolute value means more important.
        masks: Dict with the same keys mapping to the current masks.
        sparsity: A float in `[0, 1]`. For `"layerwise"` and `"random"`, also
            a dict mapping keys to such floats (tensors left out are not
            pruned further).
        strategy: `"layerwise"` (each tensor reaches `sparsity`, by
            magnitude), `"global"` (all tensors together, by magnitude) or
            `"random"` (each tensor reaches `sparsity`, at random).
        seed: Seed for `"random"`.
        block: `None` (single weights), a `(rows, cols)` block in LiteRT's
            `(out, in)` orientation, or a dict mapping keys to such blocks or
            `None`; see `keras_lth.pruning.prune`.

    Returns:
        A dict with the new masks, float32 arrays.
    """
    if strategy not in _TO_SPARSITY_STRATEGIES:
        raise ValueError(
            f"Expected `strategy` to be one of {_TO_SPARSITY_STRATEGIES}. "
            f"Received: strategy={strategy!r}"
        )
    if not isinstance(masks, dict):
        raise TypeError(
            "Expected `masks` to be a dict mapping tensor keys to arrays. "
            f"Received: {type(masks).__name__}"
        )
    masks = {key: np.asarray(mask, dtype=np.float32) for key, mask in masks.items()}
    if strategy == "global":
        if isinstance(sparsity, dict):
            raise TypeError(
                "Expected `sparsity` to be one float for global pruning. "
                f"Received: sparsity={sparsity!r}"
            )
        _check_fraction(sparsity, "sparsity", closed=True)
        units = [_units(mask, _block_of(block, key)) for key, mask in masks.items()]
        size = sum(total for total, _ in units)
        alive = sum(alive for _, alive in units)
        rate = _rate(sparsity, size, alive)
        return pruning.prune(weights, masks, rate, strategy="global", block=block)
    if isinstance(sparsity, dict):
        unknown = [key for key in sparsity if key not in masks]
        if unknown:
            raise ValueError(
                f"`sparsity` names tensors that have no mask: {unknown}. "
                f"Known tensors: {list(masks)}"
            )
        targets = sparsity
    else:
        targets = {key: sparsity for key in masks}
    rates = {}
    for key, target in targets.items():
        _check_fraction(target, f"sparsity for '{key}'", closed=True)
        size, alive = _units(masks[key], _block_of(block, key))
        rates[key] = _rate(target, size, alive)
    return pruning.prune(
        weights, masks, rates, strategy=strategy, seed=seed, block=block
    )


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
    """
    _check_fraction(sparsity, "sparsity", closed=False)
    tensors = _tensors(model, "snip")
    scores = _snip_scores(model, tensors, x, y, loss)
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
    """
    _check_fraction(sparsity, "sparsity", closed=False)
    if not isinstance(iterations, numbers.Integral) or isinstance(iterations, bool):
        raise TypeError(
            "Expected `iterations` to be an int. Received: "
            f"iterations={iterations!r} of type {type(iterations).__name__}"
        )
    if iterations < 1:
        raise ValueError(f"Expected `iterations` >= 1. Received: {iterations}")
    tensors = _tensors(model, "synflow")
    inputs = _ones_input(model, input_shape)
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
            flow, grads = _gradients(model, inputs, ops.sum, variables)
            scores = {
                key: np.abs(grad * magnitudes[key] * masks[key])
                for key, grad in zip(keys, grads)
            }
            _check_synflow_scores(scores, flow)
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
    """
    values = sparsity.values() if isinstance(sparsity, dict) else [sparsity]
    for value in values:
        _check_fraction(value, "sparsity", closed=False)
    _tensors(model, "random_init_mask")
    return prune_to_sparsity(
        get_prunable_weights(model),
        get_masks(model),
        sparsity,
        strategy="random",
        seed=seed,
    )


# ------------------------------------------------------------------ helpers


def _block_of(block, key):
    return block.get(key) if isinstance(block, dict) else block


def _units(mask, block):
    """`(units, surviving units)` of a tensor: its weights, or its blocks."""
    if block is None:
        return mask.size, int(np.count_nonzero(mask))
    whole = pruning.surviving_blocks(np.ones(mask.shape, np.float32), block)
    return whole, pruning.surviving_blocks(mask, block)


def _rate(sparsity, size, alive):
    """The rate of survivors to prune so that `sparsity` of `size` is pruned."""
    target = int(np.floor(sparsity * size + 0.5))
    count = max(target - (size - alive), 0)
    return count / alive if alive else 0.0


def _check_fraction(value, name, closed):
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(
            f"Expected `{name}` to be a float. Received: {value!r} "
            f"of type {type(value).__name__}"
        )
    if not (0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0):
        interval = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"Expected `{name}` in {interval}. Received: {value!r}")


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
    tensors = prunable_tensors(model)
    if not tensors:
        raise ValueError(
            f"Model '{model.name}' has no prunable layers. Make it prunable "
            "with `keras_lth.mask_model(model)`."
        )
    return tensors


def _snip_scores(model, tensors, x, y, loss):
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

    _, grads = _gradients(model, x, objective, variables)
    return {
        key: np.abs(grad * ops.convert_to_numpy(variable))
        for key, grad, variable in zip(tensors, grads, variables)
    }


def _check_synflow_scores(scores, flow):
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


def _ones_input(model, input_shape):
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


def _gradients(model, inputs, objective, variables):
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
