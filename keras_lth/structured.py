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

**Holding pruned units at 0**, so that `keras_lth.shrink` can remove them,
is `keras_lth.unit_holding.hold_pruned_units`.

Example:

>>> weights = {"dense/kernel": np.array([[3.0, 0.1, 2.0], [3.0, 0.2, -2.0]])}
>>> masks = {"dense/kernel": np.ones((2, 3))}
>>> prune_units(weights, masks, 1 / 3)["dense/kernel"]  # Column norms 4.2, .2, 2.8
array([[1., 0., 1.],
       [1., 0., 1.]], dtype=float32)
"""

import math

import numpy as np

from keras_lth import pruning
from keras_lth._blocks import check_finite
from keras_lth._blocks import check_masks
from keras_lth._checks import check_choice
from keras_lth._checks import check_fraction
from keras_lth._checks import check_known_keys
from keras_lth._checks import check_tensor_dict
from keras_lth._checks import is_int

__all__ = [
    "GRANULARITIES",
    "check_granularity",
    "count_live_units",
    "default_unit_axes",
    "is_unit_sparse",
    "live_units",
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
    unit_axes = check_tensor_dict(
        unit_axes, masks, "unit_axes", "axis or tuple of axes"
    )
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


def live_units(mask, axes):
    """Whether each unit of `mask` keeps an entry, shaped as the unit axes.

    >>> live_units(np.array([[1, 0, 0], [1, 0, 1]]), (1,))
    array([ True, False,  True])
    """
    mask = np.asarray(mask)
    axes = _normalized(axes, mask.ndim)
    alive = _Units(mask.shape, axes).rows(mask != 0).any(axis=1)
    return alive.reshape([mask.shape[a] for a in axes])


def count_live_units(mask, axes):
    """The units of `mask` that keep at least one entry.

    Args:
        mask: Array; nonzero entries count as kept.
        axes: The unit axes (see `resolve_unit_axes`).

    >>> count_live_units(np.array([[1, 0, 0], [1, 0, 1]]), (1,))
    2
    """
    return int(np.count_nonzero(live_units(mask, axes)))


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
    coupled=None,
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
        coupled: Optional `{key: labels}`, one hashable label per unit of
            the tensor (in the order of `_Units`: C order over the unit
            axes), as `keras_lth.coupling.coupled_units` finds them. Units
            with the same label, in one tensor or several, are one unit of
            a *group*: ranked by their joint L2 norm and pruned together.
            A group counts and loses units as one tensor does, at the mean
            of its tensors' rates weighted by their live units (their rate
            when they share one).
        refill: Whether to choose the units by refilling (see the module
            docstring). `"layerwise"` only.
        seed: Seed of `numpy.random.default_rng`, for `"random"`.
        min_density: With `"global"` and `"lamp"`, the fraction of its units
            each tensor (or group) keeps at least, in `[0, 1)`.

    Returns:
        A dict with the new masks, float32 arrays.

    Raises:
        ValueError: For a tensor without units asked to lose some, `refill`
            with another strategy than `"layerwise"`, or bad arguments.

    >>> w = {"a/kernel": np.array([[3.0, 0.1]]), "b/kernel": np.array([[0.2, 0.4]])}
    >>> m = {key: np.ones((1, 2)) for key in w}
    >>> coupled = {"a/kernel": [0, 1], "b/kernel": [0, 1]}
    >>> new = prune_units(w, m, 0.5, coupled=coupled)  # Joint norms 3.0, 0.4
    >>> new["a/kernel"], new["b/kernel"]  # Unit 1 goes from both.
    (array([[1., 0.]], dtype=float32), array([[1., 0.]], dtype=float32))
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
        groups = _groups(weights, masks, axes, coupled, set(masks))
        return _prune_together(groups, rate, strategy, min_density)
    rates = _per_tensor_rates(rate, masks)
    rng = np.random.default_rng(seed)
    new_masks = {key: mask.copy() for key, mask in masks.items()}
    pruned = {key for key, value in rates.items() if value != 0}
    for group in _groups(weights, masks, axes, coupled, pruned):
        alive = np.flatnonzero(group.alive)
        count = _count(group.rate(rates), alive.size)
        if count == 0:
            continue
        if strategy == "random":
            dropped = rng.choice(alive, size=count, replace=False)
        elif refill:
            dropped = group.refill_dropped(alive, count)
        else:
            dropped = alive[np.argsort(group.norms[alive], kind="stable")[:count]]
        new_masks.update(group.drop(dropped))
    return new_masks


class _Group:
    """The units of one tensor, or the coupled units of several.

    `labels[key]` numbers the units of member `key` with the group's units
    (`0 .. count - 1`); a unit of the group is live while one of its
    members' units is, and its norm is the L2 norm of all their kept
    weights.
    """

    def __init__(self, weights, masks, axes, labels):
        self.members = {}
        for key, label in labels.items():
            units = _units_of(key, masks[key], axes)
            rows = units.rows(masks[key])
            norms = _norms(key, units.rows(weights[key]), rows)
            self.members[key] = (units, rows, np.asarray(label), norms)
        self.weights, self.masks = weights, masks
        self.count = 1 + max(int(m[2].max(initial=-1)) for m in self.members.values())
        self.alive = self._sum(lambda units, rows, norms: rows.any(axis=1)) > 0
        self.size = self._sum(
            lambda units, rows, norms: np.full(units.count, units.size)
        )
        largest = max(m[3].max(initial=0.0) for m in self.members.values())
        scale = largest if largest > 0 else 1.0
        squares = self._sum(lambda units, rows, norms: (norms / scale) ** 2)
        self.norms = scale * np.sqrt(squares)

    def _sum(self, per_unit):
        """Sums `per_unit(units, rows, norms)` of each member over the
        group's units."""
        total = np.zeros(self.count)
        for units, rows, label, norms in self.members.values():
            value = per_unit(units, rows, norms)
            total += np.bincount(label, weights=value, minlength=self.count)
        return total

    def rate(self, rates):
        """The members' rates, averaged with their live units as weights."""
        live = {k: np.count_nonzero(m[1].any(axis=1)) for k, m in self.members.items()}
        total = sum(live.values())
        if not total:
            return 0.0
        return sum(rates[key] * n for key, n in live.items()) / total

    def refill_dropped(self, alive, count):
        """The live units that refilling prunes: those with the fewest
        survivors of unstructured magnitude pruning, in each member, to the
        weight count its kept units hold."""
        survivors = np.zeros(self.count)
        for key, (units, rows, label, _) in self.members.items():
            kept = int(np.count_nonzero(rows))
            budget = int(np.floor(kept * (alive.size - count) / alive.size + 0.5))
            unstructured = pruning.prune_layerwise(
                {key: self.weights[key]},
                {key: self.masks[key]},
                (kept - budget) / kept if kept else 0.0,
            )[key]
            per_unit = units.rows(unstructured).sum(axis=1)
            survivors += np.bincount(label, weights=per_unit, minlength=self.count)
        # Fewest survivors first; then smallest norm; then lowest unit index.
        order = np.lexsort((alive, self.norms[alive], survivors[alive]))
        return alive[order[:count]]

    def drop(self, dropped):
        """`{key: new mask}` of the members without the `dropped` units."""
        new = {}
        for key, (units, rows, label, _) in self.members.items():
            kept = rows.copy()
            kept[np.isin(label, dropped)] = 0.0
            new[key] = units.unrows(kept).astype(np.float32)
        return new


def _groups(weights, masks, axes, coupled, pruned):
    """The `_Group`s of the keys in `pruned` and of every coupled key: one
    per tensor, and one per set of tensors whose units share labels in
    `coupled`."""
    coupled = _check_coupled(coupled, masks, axes)
    groups = [
        _Group(weights, masks, axes, {key: np.arange(_units_of(key, m, axes).count)})
        for key, m in masks.items()
        if key not in coupled and key in pruned
    ]
    owner = {}  # label -> index of its group in `sets`
    sets = []
    for key, labels in coupled.items():
        found = sorted({owner[x] for x in labels if x in owner})
        merged = {key}.union(*(sets[i] for i in found))
        for i in found:
            sets[i] = set()
        sets.append(merged)
        for x in labels:
            owner[x] = len(sets) - 1
        for other in merged:
            for x in coupled[other]:
                owner[x] = len(sets) - 1
    for keys in filter(None, sets):
        numbers = {}
        labels = {
            key: np.array([numbers.setdefault(x, len(numbers)) for x in coupled[key]])
            for key in masks
            if key in keys
        }
        groups.append(_Group(weights, masks, axes, labels))
    return groups


def _check_coupled(coupled, masks, axes):
    """`coupled` as `{key: list of labels}`, each the length of the units."""
    coupled = check_tensor_dict(coupled, masks, "coupled", "one label per unit")
    checked = {}
    for key, labels in coupled.items():
        count = _units_of(key, masks[key], axes).count
        labels = list(labels)
        if len(labels) != count:
            raise ValueError(
                f"Expected one label per unit of '{key}' ({count} units). "
                f"Received {len(labels)} labels."
            )
        checked[key] = labels
    return checked


def _prune_together(groups, rate, strategy, min_density):
    """`prune_units` with `"global"` and `"lamp"`: one threshold for all."""
    if isinstance(rate, dict):
        raise TypeError(
            "Expected `rate` to be one float for pruning across tensors. "
            f"Received: rate={rate!r} of type {type(rate).__name__}"
        )
    check_fraction(rate, "rate", interval="[0, 1]")
    lamp = strategy == "lamp"
    candidates, scores, alive_total = [], [], 0
    for group in groups:
        alive = np.flatnonzero(group.alive)
        norms = group.norms[alive]
        if lamp:
            score = pruning.lamp_scores(norms)
        else:
            score = norms / np.sqrt(np.maximum(group.size[alive], 1))
        order = np.argsort(norms, kind="stable")
        floor = min(max(_count(min_density, group.count), int(lamp)), alive.size)
        candidates.append(alive[order[: alive.size - floor]])
        scores.append(score[order[: alive.size - floor]])
        alive_total += alive.size
    if not groups:
        return {}
    chosen = pruning.lowest_across(candidates, scores, _count(rate, alive_total))
    new_masks = {}
    for group, dropped in zip(groups, chosen, strict=True):
        new_masks.update(group.drop(dropped))
    return new_masks


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
