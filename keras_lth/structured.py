"""Structured magnitude pruning: whole output units, as pure functions.

`prune_units` is `keras_lth.pruning.prune` at the granularity of *units*: a
tensor loses whole output units (every weight that computes one output
feature), so that `keras_lth.shrink` can remove them from the network. Like
the functions of `keras_lth.pruning`, it maps `(weights, masks)`, dicts of
arrays keyed by tensor (`"dense/kernel"`), to new masks, with exact counts
(a tensor asked to lose `rate` of its `n` live units loses
`floor(rate * n + 0.5)` of them), deterministic ties (in order of unit
index) and monotone masks (a pruned weight stays pruned).

**What a unit is.** The axes of a tensor that index a unit; the other axes
run inside it. `default_unit_axes` gives them from the tensor's key and
shape, and `unit_axes={key: axes}` overrides them:

* The last axis: a column of a Dense kernel `(in, out)`, a filter of a
  convolution kernel `(..., in, out)` or of a separable convolution's
  pointwise kernel, a gate column of a recurrent kernel.
* `(-2, -1)` for a SeparableConv's `depthwise_kernel` `(kh, kw, in,
  multiplier)`: one output channel of the depthwise convolution.
* `-2`, the head, for the `query`, `key` and `value` projections of
  `MultiHeadAttention`, kernels of shape `(dim, heads, head_dim)`.
* None, so not pruned by unit, for `attention_output` kernels
  `(heads, head_dim, dim)` and Embedding tables (keys ending in
  `embeddings`). Their last axis is a feature of the model dimension, which
  residual connections and every token share, not a unit one layer owns;
  and a head of `attention_output` is an *input* of the layer, pruned by
  pruning the head in `value`.
* The key does not tell a ConvTranspose kernel, stored `(..., out, in)`,
  nor a DepthwiseConv layer's `kernel` from a convolution's: pass
  `unit_axes={key: -2}` or `{key: (-2, -1)}` for them (`LotteryTicket`
  does it from the layer).

A unit is live while any of its weights is kept, and is ranked by the L2
norm of its kept weights (pruned ones count as zero).

**Refilling** (Chen et al., "Coarsening the Granularity: Towards
Structurally Sparse Lottery Tickets", ICML 2022): with `refill=True`, each
tensor keeps as many units as without it, but chooses them from an
unstructured ranking. The tensor's kept weights are first pruned by
magnitude, unstructured, to the count that the kept units hold
(`floor(kept * units_kept / units_live + 0.5)`, exactly
`units_kept * unit_size` for unit-aligned masks); the units with the most
survivors of that step are kept (ties: larger norm, then lower index), and
refilled: every weight the current mask keeps in them is kept. The rest are
pruned whole. This is the paper's "refill" with its default criterion (the
count of remaining weights per channel), applied after each IMP round as in
its IMP-Refill. It differs from the paper's code in that (1) each tensor is
ranked on its own and keeps an exact number of units, whereas the paper
prunes globally and rounds each layer's channel count down from its
weights; (2) ties are broken by norm and index, not at random; (3) a
refilled unit only gets back weights of the current mask, so masks stay
monotone (the paper sets the whole channel to 1, the same for the
unit-aligned masks IMP-Refill produces); (4) it applies to every tensor
that has units, where the paper refills convolutions but the first.

**Holding pruned units at 0.** Pruning a unit's weights leaves its bias,
and the `beta` of a BatchNormalization reading it, so the unit still
outputs a constant. `hold_pruned_units(model)`, the one function here that
takes a model, zeroes them (and that BatchNormalization's `gamma`) and
constrains them to stay 0 through training, so that `keras_lth.shrink`
can remove the unit; `LotteryTicket(granularity="unit")` calls it.

Example:

>>> weights = {"dense/kernel": np.array([[3.0, 0.1, 2.0], [3.0, 0.2, -2.0]])}
>>> masks = {"dense/kernel": np.ones((2, 3))}
>>> prune_units(weights, masks, 1 / 3)["dense/kernel"]  # Column norms 4.2, .2, 2.8
array([[1., 0., 1.],
       [1., 0., 1.]], dtype=float32)
"""

import math

import keras
import numpy as np
from keras import ops
from keras.src.models.functional import Functional

from keras_lth import pruning
from keras_lth._blocks import check_finite
from keras_lth._blocks import check_masks
from keras_lth._checks import check_choice
from keras_lth._checks import check_fraction
from keras_lth._checks import check_known_keys
from keras_lth._checks import is_int
from keras_lth.layer_tree import prunable_tensors
from keras_lth.masking import get_masks

__all__ = [
    "GRANULARITIES",
    "check_granularity",
    "count_live_units",
    "default_unit_axes",
    "hold_pruned_units",
    "is_unit_sparse",
    "prune_units",
    "resolve_unit_axes",
]

#: What IMP prunes and counts: single weights, or whole output units.
GRANULARITIES = ("weight", "unit")

# The projections of `MultiHeadAttention` whose units are heads, axis -2.
_HEAD_PROJECTIONS = ("query", "key", "value")


def check_granularity(granularity):
    """Returns `granularity` if it is one of `GRANULARITIES`, else raises."""
    return check_choice(granularity, "granularity", GRANULARITIES)


def default_unit_axes(key, shape):
    """The axes that index a unit of tensor `key`, or None if it has no units.

    See the module docstring for the rules.

    Args:
        key: The tensor's key, such as `"dense/kernel"` or
            `"mha/query/kernel"`.
        shape: The tensor's shape.

    Returns:
        A tuple of non-negative axes, or None.

    >>> default_unit_axes("dense/kernel", (784, 300))
    (1,)
    >>> default_unit_axes("mha/query/kernel", (64, 4, 16))
    (1,)
    >>> default_unit_axes("token_embedding/embeddings", (1000, 64)) is None
    True
    """
    ndim = len(shape)
    parts = key.split("/")
    if ndim == 0 or parts[-1].endswith("embeddings"):
        return None
    if ndim == 3 and parts[-2:] == ["attention_output", "kernel"]:
        return None
    if ndim == 3 and len(parts) >= 2 and parts[-2] in _HEAD_PROJECTIONS:
        return (ndim - 2,)
    if parts[-1] == "depthwise_kernel" and ndim >= 2:
        return (ndim - 2, ndim - 1)
    return (ndim - 1,)


def resolve_unit_axes(masks, unit_axes=None):
    """`{key: axes or None}` for every tensor of `masks`.

    Args:
        masks: Dict mapping a tensor key to its mask (only shapes are read).
        unit_axes: Optional dict mapping keys to an axis, a tuple of axes
            (negative ones count from the end) or None (no units); keys left
            out get `default_unit_axes`.

    Returns:
        A dict with each tensor's unit axes as a sorted tuple of
        non-negative ints, or None.

    Raises:
        ValueError: For unknown keys, or axes out of range or repeated.
    """
    unit_axes = {} if unit_axes is None else unit_axes
    if not isinstance(unit_axes, dict):
        raise TypeError(
            "Expected `unit_axes` to be a dict {key: axis or tuple of axes}. "
            f"Received: unit_axes={unit_axes!r}"
        )
    check_known_keys(unit_axes, masks, "unit_axes")
    resolved = {}
    for key, mask in masks.items():
        shape = np.shape(mask)
        if key not in unit_axes:
            resolved[key] = default_unit_axes(key, shape)
            continue
        axes = unit_axes[key]
        if axes is None:
            resolved[key] = None
            continue
        axes = (axes,) if is_int(axes) else axes
        ndim = len(shape)
        if not (
            isinstance(axes, (tuple, list))
            and axes
            and all(is_int(a) and -ndim <= a < ndim for a in axes)
            and len({a % ndim for a in axes}) == len(axes)
        ):
            raise ValueError(
                f"Expected the unit axes of '{key}' (shape {shape}) to be an "
                "axis or a tuple of distinct axes of the tensor, or None. "
                f"Received: {unit_axes[key]!r}"
            )
        resolved[key] = tuple(sorted(int(a) % ndim for a in axes))
    return resolved


class _Units:
    """A tensor seen as a `(units, weights per unit)` matrix.

    Units are numbered in C order over the unit axes, in increasing order of
    axis; the weights of a unit in C order over the other axes.
    """

    def __init__(self, shape, axes):
        self.shape = tuple(shape)
        rest = tuple(a for a in range(len(self.shape)) if a not in axes)
        self.order = tuple(axes) + rest
        self.count = math.prod(self.shape[a] for a in axes)
        self.size = math.prod(self.shape[a] for a in rest)

    def rows(self, values):
        moved = np.transpose(values, self.order)
        return moved.reshape(self.count, self.size)

    def unrows(self, rows):
        moved = rows.reshape([self.shape[a] for a in self.order])
        return np.transpose(moved, np.argsort(self.order))


def count_live_units(mask, axes):
    """The units of `mask` that keep at least one entry.

    Args:
        mask: Array; nonzero entries count as kept.
        axes: The unit axes (see `resolve_unit_axes`).

    >>> count_live_units(np.array([[1, 0, 0], [1, 0, 1]]), (1,))
    2
    """
    mask = np.asarray(mask)
    units = _Units(mask.shape, _normalized(axes, mask.ndim))
    return int(np.count_nonzero(units.rows(mask != 0).any(axis=1)))


def is_unit_sparse(mask, axes):
    """Whether every unit of `mask` is either wholly kept or wholly pruned.

    >>> is_unit_sparse(np.array([[1, 0, 1], [1, 0, 1]]), (1,))
    True
    """
    mask = np.asarray(mask)
    rows = _Units(mask.shape, _normalized(axes, mask.ndim)).rows(mask != 0)
    return bool(np.all(rows.all(axis=1) | ~rows.any(axis=1)))


def prune_units(
    weights,
    masks,
    rate,
    *,
    strategy="layerwise",
    unit_axes=None,
    refill=False,
    seed=None,
    min_density=0.0,
):
    """Prunes whole output units, the smallest L2 norms first.

    Args:
        weights: Dict mapping a tensor key to its trained weights.
        masks: Dict with the same keys mapping to the current masks.
        rate: For `"layerwise"` and `"random"`, a float in `[0, 1]` or a dict
            mapping keys to such floats: the fraction of each tensor's live
            units to prune (keys missing from the dict are not pruned). For
            `"global"` and `"lamp"`, one float: the fraction of all live
            units to prune.
        strategy: `"layerwise"` (each tensor by its units' norms),
            `"global"` (all units together, by their norm divided by the
            square root of the unit's size: the root mean square of its
            weights), `"lamp"` (all together, by `pruning.lamp_scores` of
            each tensor's unit norms; each tensor keeps one unit) or
            `"random"` (as many units as `"layerwise"`, chosen uniformly).
        unit_axes: Optional dict overriding `default_unit_axes`; see
            `resolve_unit_axes`. A tensor without units must get a rate of 0
            (or, with `"global"` and `"lamp"`, be left out of `masks`).
        refill: Whether to choose the units by refilling (see the module
            docstring). `"layerwise"` only.
        seed: Seed of `numpy.random.default_rng`, for `"random"`.
        min_density: With `"global"` and `"lamp"`, the fraction of its units
            each tensor keeps at least, in `[0, 1)`.

    Returns:
        A dict with the new masks, float32 arrays.

    Raises:
        ValueError: For a tensor without units asked to lose some, `refill`
            with another strategy than `"layerwise"`, or bad arguments.
    """
    weights, masks = check_masks(weights, masks)
    pruning.check_strategy(strategy)
    min_density = pruning.check_min_density(min_density, strategy)
    if not isinstance(refill, bool):
        raise TypeError(f"Expected `refill` to be a bool. Received: refill={refill!r}")
    if refill and strategy != "layerwise":
        raise ValueError(
            "refill=True ranks each tensor's weights by magnitude and keeps "
            "the units with the most survivors, one tensor at a time. "
            f"Expected strategy='layerwise'. Received: strategy={strategy!r}"
        )
    axes = resolve_unit_axes(masks, unit_axes)
    if strategy in pruning.GLOBAL_STRATEGIES:
        return _prune_together(weights, masks, rate, axes, strategy, min_density)
    rates = _per_tensor_rates(rate, masks)
    rng = np.random.default_rng(seed)
    new_masks = {}
    for key, mask in masks.items():
        if rates[key] == 0:
            new_masks[key] = mask.copy()
            continue
        units = _units_of(key, mask, axes)
        rows = units.rows(mask)
        alive = np.flatnonzero(rows.any(axis=1))
        count = _count(rates[key], alive.size)
        if strategy == "random":
            dropped = rng.choice(alive, size=count, replace=False)
        elif refill:
            dropped = _refill_dropped(key, weights[key], mask, units, alive, count)
        else:
            norms = _norms(key, units.rows(weights[key]), rows)[alive]
            dropped = alive[np.argsort(norms, kind="stable")[:count]]
        new_masks[key] = _drop(units, rows, dropped)
    return new_masks


def _prune_together(weights, masks, rate, axes, strategy, min_density):
    """`prune_units` with `"global"` and `"lamp"`: one threshold for all."""
    if isinstance(rate, dict):
        raise TypeError(
            "Expected `rate` to be one float for pruning across tensors. "
            f"Received: rate={rate!r} of type {type(rate).__name__}"
        )
    check_fraction(rate, "rate", interval="[0, 1]")
    lamp = strategy == "lamp"
    candidates, scores, alive_total, layout = [], [], 0, {}
    for key, mask in masks.items():
        units = _units_of(key, mask, axes)
        rows = units.rows(mask)
        alive = np.flatnonzero(rows.any(axis=1))
        norms = _norms(key, units.rows(weights[key]), rows)[alive]
        if lamp:
            score = pruning.lamp_scores(norms)
        else:
            score = norms / math.sqrt(max(units.size, 1))
        order = np.argsort(norms, kind="stable")
        floor = min(max(_count(min_density, units.count), int(lamp)), alive.size)
        candidates.append(alive[order[: alive.size - floor]])
        scores.append(score[order[: alive.size - floor]])
        alive_total += alive.size
        layout[key] = (units, rows)
    if not masks:
        return {}
    chosen = pruning.lowest_across(candidates, scores, _count(rate, alive_total))
    return {key: _drop(*layout[key], chosen[i]) for i, key in enumerate(masks)}


def _refill_dropped(key, weights, mask, units, alive, count):
    """The live units that refilling prunes: those with the fewest survivors
    of unstructured magnitude pruning to the kept units' weight count."""
    kept_units = alive.size - count
    kept = int(np.count_nonzero(mask))
    budget = int(np.floor(kept * kept_units / alive.size + 0.5)) if alive.size else 0
    unstructured = pruning.prune_layerwise(
        {key: weights}, {key: mask}, (kept - budget) / kept if kept else 0.0
    )[key]
    survivors = units.rows(unstructured).sum(axis=1)[alive]
    norms = _norms(key, units.rows(weights), units.rows(mask))[alive]
    # Fewest survivors first; then smallest norm; then lowest unit index.
    order = np.lexsort((alive, norms, survivors))
    return alive[order[:count]]


def _units_of(key, mask, axes):
    if axes[key] is None:
        raise ValueError(
            f"'{key}' (shape {mask.shape}) has no output units to prune (see "
            "`keras_lth.structured.default_unit_axes`). Give it a rate of 0, "
            "leave it out of `masks`, or name its unit axes in `unit_axes`."
        )
    return _Units(mask.shape, axes[key])


def _norms(key, weight_rows, mask_rows):
    """The L2 norm of each unit's kept weights, safe from overflow."""
    kept = mask_rows == 1
    check_finite(key, np.abs(weight_rows[kept]))
    magnitudes = np.where(kept, np.abs(weight_rows.astype(np.float64)), 0.0)
    if magnitudes.shape[1] == 0:
        return np.zeros(magnitudes.shape[0])
    largest = magnitudes.max(axis=1)
    scale = np.where(largest > 0, largest, 1.0)[:, None]
    return largest * np.sqrt(np.sum((magnitudes / scale) ** 2, axis=1))


def _drop(units, rows, unit_indices):
    new = rows.copy()
    new[unit_indices] = 0.0
    return units.unrows(new).astype(np.float32)


def _normalized(axes, ndim):
    axes = (axes,) if is_int(axes) else tuple(axes)
    return tuple(sorted(int(a) % ndim for a in axes))


def _per_tensor_rates(rate, masks):
    if isinstance(rate, dict):
        check_known_keys(rate, masks, "rate")
        rates = {key: rate.get(key, 0.0) for key in masks}
    else:
        rates = dict.fromkeys(masks, rate)
    for key, value in rates.items():
        check_fraction(value, f"rate for '{key}'", interval="[0, 1]")
    return rates


def _count(rate, surviving):
    return int(np.floor(rate * surviving + 0.5))


# ------------------------------------------------ holding pruned units at 0

#: The layers whose `bias` has an entry per unit of the tensor named here.
_BIASED = {
    "kernel": (
        keras.layers.Dense,
        keras.layers.EinsumDense,
        keras.layers.Conv1D,
        keras.layers.Conv2D,
        keras.layers.Conv3D,
        keras.layers.Conv1DTranspose,
        keras.layers.Conv2DTranspose,
        keras.layers.Conv3DTranspose,
        keras.layers.DepthwiseConv1D,
        keras.layers.DepthwiseConv2D,
    ),
    "pointwise_kernel": (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D),
}


class _HoldUnits(keras.constraints.Constraint):
    """Multiplies a variable by `live`, after the constraint it had (`inner`).

    `live` is a non-trainable `keras.Variable` (1 for a live unit, 0 for a
    pruned one, broadcast over the variable), so that a later prune changes
    its value, not the constraint. Keras saves the constraints of a layer's
    config, never those set on its variables, so this one is not saved.
    """

    def __init__(self, live, inner=None):
        self.live = live
        self.inner = inner

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        return w * ops.cast(self.live, w.dtype)


def hold_pruned_units(model, unit_axes=None):
    """Keeps the bias (and BatchNorm `beta` and `gamma`) of pruned units at 0.

    A unit whose kernel weights are all pruned still outputs a constant,
    `activation(bias)`, and a `BatchNormalization` reading it adds its
    `beta`: `keras_lth.shrink` cannot remove such a unit where a `"same"`
    convolution's zero padding reads it. As Torch-Pruning and Chen et al.
    (2022) remove a channel's bias and BatchNorm parameters with it, this
    sets to 0, for each unit of a masked layer whose mask is all zero along
    the other axes:

    * its entry of the layer's `bias` (Dense, EinsumDense, convolutions);
    * its `beta` and `gamma` entries in each `BatchNormalization` that
      reads the layer's output directly and normalizes over its units, in
      a Functional or Sequential model. Keras records no graph for a
      subclassed model: there, only biases are held.

    Each of these variables gets a constraint (`variable.constraint`,
    applied after any it had) that multiplies it by a non-trainable vector
    of live units; Keras optimizers apply constraints after every update,
    so the entries stay 0 through training. Call it again after a prune or
    a rewind: it zeroes the entries again and updates the vectors.
    `LotteryTicket(granularity="unit")` does so after every prune, rewind
    and restore.

    A compiled JAX step reads the vectors when it is traced, so on JAX a
    call that changes them recompiles `model`'s train function (a training
    step of your own must then be traced again); elsewhere it is recompiled
    only when a constraint is added. The constraints are not saved with the
    model; `keras_lth.strip_masks` (copy mode) and `keras_lth.shrink` build
    new variables without them, and `strip_masks(model, in_place=True)`
    leaves them on the variables it keeps.

    Args:
        model: A built model with masked layers (`keras_lth.mask_model`).
        unit_axes: Optional `{key: axes or None}`, as for `resolve_unit_axes`
            (keys of `keras_lth.get_masks`); keys left out get
            `default_unit_axes`. Give ConvTranspose and DepthwiseConv
            kernels theirs (`{key: -2}`, `{key: (-2, -1)}`).

    Returns:
        The number of pruned units whose parameters are held at 0.

    Example:

    ```python
    keras_lth.set_masks(model, new_masks)
    keras_lth.structured.hold_pruned_units(model)
    ```
    """
    masks = get_masks(model)
    axes = resolve_unit_axes(masks, unit_axes)
    readers = _batch_norms_reading(model)
    held, added, changed = 0, False, False
    for key, (layer, name) in prunable_tensors(model).items():
        if axes[key] is None or not isinstance(layer, _BIASED.get(name, ())):
            continue
        mask = np.asarray(masks[key])
        live = _Units(mask.shape, axes[key]).rows(mask != 0).any(axis=1)
        live = live.reshape([mask.shape[a] for a in axes[key]]).astype("float32")
        targets = []
        if getattr(layer, "bias", None) is not None:
            factor = _onto(live, axes[key], mask.ndim, tuple(layer.bias.shape))
            targets += [] if factor is None else [(layer.bias, factor)]
        if not isinstance(layer, keras.layers.EinsumDense) or axes[key] == (
            mask.ndim - 1,
        ):
            for norm in readers.get(id(layer), ()):
                for variable in (norm.gamma, norm.beta):
                    if variable is not None and variable.shape == (live.size,):
                        targets.append((variable, live.reshape(-1)))
        for variable, factor in targets:
            new = not isinstance(variable.constraint, _HoldUnits)
            added |= new
            changed |= _hold(variable, factor, new)
        if targets:
            held += int(live.size - np.count_nonzero(live))
    if added or (changed and keras.backend.backend() == "jax"):
        if getattr(model, "train_function", None) is not None:
            model.make_train_function(force=True)
    return held


def _hold(variable, factor, new):
    """Zeroes `variable` where `factor` is 0 and constrains it to stay so.

    Returns whether the vector of live units changed (or was created)."""
    if new:
        live = keras.Variable(factor, trainable=False, name="live_units")
        variable.constraint = _HoldUnits(live, variable.constraint)
        changed = True
    else:
        live = variable.constraint.live
        changed = not np.array_equal(ops.convert_to_numpy(live), factor)
        if changed:
            live.assign(factor)
    variable.assign(ops.convert_to_numpy(variable) * factor)
    return changed


def _onto(live, axes, ndim, shape):
    """`live` (the unit axes of a kernel of rank `ndim`) broadcast onto a
    bias of `shape`: the same units, flattened units (DepthwiseConv), or the
    units at the same axes counted from the end (EinsumDense). None if the
    bias has no entry per unit."""
    if shape == live.shape:
        return live
    if len(shape) == 1 and shape[0] == live.size:
        return live.reshape(-1)
    target = [1] * len(shape)
    for axis, size in zip(axes, live.shape, strict=True):
        at = axis - ndim + len(shape)
        if at < 0 or shape[at] != size:
            return None
        target[at] = size
    return live.reshape(target)


def _batch_norms_reading(model):
    """`{id(layer): [BatchNormalization layers]}`: those that read the
    layer's output directly, over its channel axis, in the graph of a
    Functional or Sequential model and of such models nested in it."""
    readers = {}
    if not isinstance(model, (Functional, keras.Sequential)):
        return readers
    for layer in model.layers:
        for key, norms in _batch_norms_reading(layer).items():
            readers.setdefault(key, []).extend(norms)
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        producers = set()
        for node in layer._inbound_nodes:
            tensor = node.input_tensors[0] if node.input_tensors else None
            history = getattr(tensor, "_keras_history", None)
            producer = getattr(history, "operation", None)
            rank = len(getattr(tensor, "shape", ()))
            first = getattr(producer, "data_format", None) == "channels_first"
            over_units = rank > 1 and layer.axis % rank == (1 if first else rank - 1)
            producers.add(id(producer) if producer is not None and over_units else None)
        if len(producers) == 1 and None not in producers:
            # One layer feeds it. A BatchNorm shared by several is left alone.
            readers.setdefault(producers.pop(), []).append(layer)
    return readers
