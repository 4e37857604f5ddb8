"""Magnitude pruning as pure functions over arrays.

Every function here takes the trained weights and the current masks, each a
dict that maps a tensor's key (for example `"dense/kernel"`) to an array, and
returns new masks as a dict of float32 numpy arrays of the same shapes. No
model is needed, so the functions can be tested, reused and composed on their
own.

All of them share three guarantees:

* **Exact counts.** A tensor asked to lose a fraction `rate` of its `n`
  surviving weights loses exactly `floor(rate * n + 0.5)` of them (rounded
  half up, unlike Python's `round`).
* **Deterministic ties.** Weights of equal magnitude are pruned in order of
  their flat index (and, for `"global"`, of the tensors' order in the dict).
* **Monotone.** A pruned weight (mask 0) stays pruned.

**Block pruning.** With `block=(rows, cols)`, `prune`, `prune_layerwise`,
`prune_global` and `prune_random` prune whole blocks of weights instead of
single weights, for sparse inference kernels such as LiteRT's sparse
FULLY_CONNECTED, which skips whole `(1, 4)` blocks (float) or `(1, 16)` blocks
(int8) of zeros.

The block is given in LiteRT's orientation: LiteRT stores a FULLY_CONNECTED
weight as `(out, in)`, so `rows` counts consecutive output units and `cols`
consecutive input positions, and the `(1, 4)` block is 4 consecutive inputs of
one output unit. Keras stores a Dense kernel the other way round, as
`(in, out)`, so on the Keras kernel that block is 4 consecutive entries down
axis 0 within one column: a `(4, 1)` patch. In general a tensor is read as
`(..., in, out)`: its last axis is the output, the axis before it the input,
and any leading axes (the `(kh, kw)` of a convolution kernel) index separate
matrices that no block spans. This matches the kernels of Dense,
Conv1D/2D/3D and the pointwise kernel of SeparableConv (`(..., in, out)`); an
Embedding table `(vocab, dim)` reads as `(in, out)` (a one-hot input times the
table), and a depthwise kernel `(kh, kw, in, multiplier)` gets blocks along
`in`. ConvTranspose kernels are stored `(..., out, in)`, so on them blocks run
along the layer's output channels; pass `block` as a dict to leave them
unstructured. A 1-D tensor of shape `(n,)` reads as one output unit with `n`
inputs, `(n, 1)`, and a 0-d tensor as one weight.

* A side that does not divide the tensor's dimension leaves a smaller last
  block holding the rest (a Dense kernel with 300 inputs and `(1, 16)` blocks
  has 18 blocks of 16 and one of 12 per output unit), pruned whole like any
  other block.
* A block is ranked by its magnitude: the L2 norm of its surviving weights
  (weights already pruned count as zero). For a `(1, 1)` block that is `|w|`,
  so `block=(1, 1)` gives exactly the masks of `block=None`.
* A block is alive while any of its weights is. The exact counts are in
  blocks: a tensor with `n` surviving blocks asked to lose `rate` of them loses
  `floor(rate * n + 0.5)` whole blocks, and ties are pruned in order of flat
  block index (the blocks in C order over `(leading axes, input blocks, output
  blocks)`, which is also the order of their first weights' flat indices).
* Masks stay monotone. A block that earlier unstructured pruning left partly
  pruned is alive, ranked by the norm of its survivors, and when it is pruned
  all of its weights are; until then its pruned weights stay pruned, so the
  mask holds a partial block. Start block pruning from masks that are all ones
  (or were only ever block-pruned with the same block) to get masks for which
  `is_block_sparse` holds.

**N:M sparsity.** `prune_n_m` keeps at most `n` of every `m` consecutive
weights along the input axis (the same axis as a block's `cols`), for GPU
sparse tensor cores (2:4 on NVIDIA Ampere and later). `is_block_sparse`,
`is_n_m_sparse` and `surviving_blocks` check and count these structures.
"""

import numpy as np
from numpy.typing import ArrayLike

from keras_lth._blocks import Blocks
from keras_lth._blocks import block_counts
from keras_lth._blocks import block_for
from keras_lth._blocks import block_text
from keras_lth._blocks import check_block
from keras_lth._blocks import check_finite
from keras_lth._blocks import parse_block
from keras_lth._blocks import units_per_tensor
from keras_lth._checks import check_choice
from keras_lth._checks import check_fraction
from keras_lth._checks import check_known_keys
from keras_lth._checks import is_int

__all__ = [
    "STRATEGIES",
    "block_text",
    "check_block",
    "check_masks",
    "check_strategy",
    "count_units",
    "is_block_sparse",
    "is_n_m_sparse",
    "parse_block",
    "prune",
    "prune_global",
    "prune_layerwise",
    "prune_n_m",
    "prune_random",
    "prune_to_sparsity",
    "surviving_blocks",
    "target_count",
]

#: The pruning strategies: magnitude per tensor, magnitude across tensors, and
#: the paper's random-pruning control.
STRATEGIES = ("layerwise", "global", "random")


def check_strategy(strategy, *, choices=STRATEGIES, name="strategy"):
    """Returns `strategy` if it is one of `choices`, else raises `ValueError`.

    Every caller (the callbacks, the model presets, the tuner, the CLI)
    checks a strategy with this function, against `STRATEGIES` or a subset.
    """
    return check_choice(strategy, name, choices)


def count_units(mask, block=None):
    """What exact counts count in a tensor: kept weights, or surviving blocks.

    Args:
        mask: Array of any shape; nonzero entries count as kept.
        block: `None` for single weights, or a `(rows, cols)` pair.

    >>> count_units(np.array([[1, 0], [1, 1]]))
    3
    """
    block = check_block(block)
    if block is None:
        return int(np.count_nonzero(mask))
    return surviving_blocks(mask, block)


def target_count(start, rate, step):
    """Units a tensor keeps after `step` pruning steps at `rate`: the exact count.

    IMP's targets are cumulative, `floor(start * (1 - rate) ** step + 0.5)`,
    so rounding never accumulates over rounds.

    >>> target_count(1000, 0.2, 2)
    640
    """
    return int(np.floor(start * (1.0 - rate) ** step + 0.5))


def prune(weights, masks, rate, *, strategy="layerwise", seed=None, block=None):
    """Prunes with the named strategy.

    Args:
        weights: Dict mapping a tensor key to its trained weights.
        masks: Dict with the same keys mapping to the current masks (1 keeps a
            weight, 0 prunes it).
        rate: For `"layerwise"` and `"random"`, a float in `[0, 1]` or a dict
            mapping keys to such floats: the fraction of each tensor's
            surviving weights (or blocks) to prune (keys missing from the dict
            are not pruned). For `"global"`, one float: the fraction of all
            surviving weights (or blocks) to prune, below a single magnitude
            threshold.
        strategy: One of `"layerwise"`, `"global"` or `"random"`.
        seed: Seed of the random generator, for `"random"` only.
        block: `None` to prune single weights, or `(rows, cols)` to prune
            whole blocks of `rows` output units by `cols` consecutive inputs
            (LiteRT's orientation; see the module docstring), or a dict
            mapping keys to such pairs (missing keys and `None` values are
            pruned weight by weight). For example `(1, 4)` for LiteRT's float
            sparse kernels and `(1, 16)` for its int8 ones.

    Returns:
        A dict with the new masks.
    """
    check_strategy(strategy)
    if strategy == "layerwise":
        return prune_layerwise(weights, masks, rate, block=block)
    if strategy == "global":
        return prune_global(weights, masks, rate, block=block)
    return prune_random(weights, masks, rate, seed=seed, block=block)


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

    `prune` takes a rate *of the survivors*; this takes the
    *absolute* fraction of a tensor's weights that should end up pruned, and
    converts it. For a tensor of `n` weights of which `alive` survive:

        target = floor(sparsity * n + 0.5)        # weights pruned in the end
        count = max(target - (n - alive), 0)      # newly pruned now
        rate = count / alive

    so exactly `target` weights are pruned afterwards (or more, if the masks
    already pruned more: nothing grows back). With `"global"`, `n`, `alive`
    and `target` are summed over all tensors and one magnitude threshold is
    shared.

    With `block`, the same holds in blocks (see the module docstring): `n` is
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
            `None`; see `prune`.

    Returns:
        A dict with the new masks, float32 arrays.
    """
    check_strategy(strategy)
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
        check_fraction(sparsity, "sparsity", interval="[0, 1]")
        units = [_units(mask, block_for(block, key)) for key, mask in masks.items()]
        size = sum(total for total, _ in units)
        alive = sum(alive for _, alive in units)
        rate = _rate(sparsity, size, alive)
        return prune(weights, masks, rate, strategy="global", block=block)
    if isinstance(sparsity, dict):
        check_known_keys(sparsity, masks, "sparsity")
        targets = sparsity
    else:
        targets = {key: sparsity for key in masks}
    rates = {}
    for key, target in targets.items():
        check_fraction(target, f"sparsity for '{key}'", interval="[0, 1]")
        size, alive = _units(masks[key], block_for(block, key))
        rates[key] = _rate(target, size, alive)
    return prune(weights, masks, rates, strategy=strategy, seed=seed, block=block)


def _units(mask, block):
    """`(units, surviving units)` of a tensor: its weights, or its blocks."""
    whole = count_units(np.ones(mask.shape, np.float32), block)
    return whole, count_units(mask, block)


def _rate(sparsity, size, alive):
    """The rate of survivors to prune so that `sparsity` of `size` is pruned."""
    count = max(_count(sparsity, size) - (size - alive), 0)
    return count / alive if alive else 0.0


def prune_layerwise(weights, masks, rate, *, block=None):
    """Prunes each tensor's smallest-magnitude surviving weights.

    Tensor `k` loses `floor(rate[k] * surviving[k] + 0.5)` weights: the ones with
    the smallest `|w|` among those its mask still keeps. With `block`, it
    loses that many of its surviving blocks instead: those with the smallest
    L2 norm.

    Args:
        weights: Dict mapping a tensor key to its trained weights.
        masks: Dict with the same keys mapping to the current masks.
        rate: A float in `[0, 1]`, or a dict mapping keys to such floats
            (missing keys are not pruned).
        block: `None`, a `(rows, cols)` pair in LiteRT's `(out, in)`
            orientation, or a dict mapping keys to such pairs; see `prune`.

    Returns:
        A dict with the new masks.

    Example:

    >>> weights = {"dense/kernel": np.array([[4.0, 1.0], [0.5, 3.0]])}
    >>> masks = {"dense/kernel": np.ones((2, 2))}
    >>> prune_layerwise(weights, masks, 0.5)["dense/kernel"]
    array([[1., 0.],
           [0., 1.]], dtype=float32)
    >>> # One block per output unit: its 2 inputs. Norms 4.03 and 3.16.
    >>> prune_layerwise(weights, masks, 0.5, block=(1, 2))["dense/kernel"]
    array([[1., 0.],
           [1., 0.]], dtype=float32)
    """
    weights, masks = check_masks(weights, masks)
    rates = _per_tensor_rates(rate, masks)
    units = units_per_tensor(block, masks)
    new_masks = {}
    for key, mask in masks.items():
        alive = units[key].alive(mask)
        count = _count(rates[key], alive.size)
        scores = units[key].scores(key, weights[key], mask, alive)
        order = np.argsort(scores, kind="stable")
        new_masks[key] = units[key].drop(mask, alive[order[:count]])
    return new_masks


def prune_global(weights, masks, rate, *, block=None):
    """Prunes the smallest-magnitude surviving weights across all tensors.

    One magnitude threshold is shared by every tensor in `masks`: exactly
    `floor(rate * total_surviving + 0.5)` weights are pruned, the smallest `|w|`
    first. To keep a tensor out of the ranking, leave it out of `masks`. With
    `block`, the same holds for the surviving blocks of all tensors, ranked by
    their L2 norms. Blocks of different sizes (a dict `block`, or the smaller
    last blocks of a dimension the block does not divide) share the one
    threshold, so the smaller ones, whose norms sum fewer weights, tend to go
    first.

    Args:
        weights: Dict mapping a tensor key to its trained weights.
        masks: Dict with the same keys mapping to the current masks.
        rate: A float in `[0, 1]`: the fraction of all surviving weights (or
            blocks) to prune.
        block: `None`, a `(rows, cols)` pair in LiteRT's `(out, in)`
            orientation, or a dict mapping keys to such pairs; see `prune`.

    Returns:
        A dict with the new masks.
    """
    weights, masks = check_masks(weights, masks)
    if isinstance(rate, dict):
        raise TypeError(
            "Expected `rate` to be one float for global pruning. "
            f"Received: rate={rate!r} of type {type(rate).__name__}"
        )
    check_fraction(rate, "rate", interval="[0, 1]")
    units = units_per_tensor(block, masks)
    if not masks:
        return {}
    keys = list(masks)
    survivors = [units[key].alive(masks[key]) for key in keys]
    scores = [
        units[key].scores(key, weights[key], masks[key], alive)
        for key, alive in zip(keys, survivors)
    ]
    owners = np.concatenate(
        [np.full(alive.size, i) for i, alive in enumerate(survivors)]
    ).astype(np.int64)
    flat_scores = np.concatenate(scores) if scores else np.zeros(0)
    flat_index = np.concatenate(survivors) if survivors else np.zeros(0, int)
    count = _count(rate, flat_scores.size)
    pruned = np.argsort(flat_scores, kind="stable")[:count]
    return {
        key: units[key].drop(masks[key], flat_index[pruned[owners[pruned] == i]])
        for i, key in enumerate(keys)
    }


def prune_random(weights, masks, rate, *, seed=None, block=None):
    """Prunes surviving weights at random: the paper's random-pruning control.

    Each tensor loses as many weights as `prune_layerwise` would take from it,
    chosen uniformly among its survivors. With `block`, it loses as many
    blocks, chosen uniformly among its surviving blocks.

    Args:
        weights: Dict mapping a tensor key to its weights (only the keys are
            checked; magnitudes play no part).
        masks: Dict with the same keys mapping to the current masks.
        rate: A float in `[0, 1]`, or a dict mapping keys to such floats.
        seed: Seed for `numpy.random.default_rng`; the same seed, masks and
            rates give the same masks.
        block: `None`, a `(rows, cols)` pair in LiteRT's `(out, in)`
            orientation, or a dict mapping keys to such pairs; see `prune`.

    Returns:
        A dict with the new masks.
    """
    weights, masks = check_masks(weights, masks)
    rates = _per_tensor_rates(rate, masks)
    units = units_per_tensor(block, masks)
    rng = np.random.default_rng(seed)
    new_masks = {}
    for key, mask in masks.items():
        alive = units[key].alive(mask)
        count = _count(rates[key], alive.size)
        chosen = rng.choice(alive, size=count, replace=False)
        new_masks[key] = units[key].drop(mask, chosen)
    return new_masks


def prune_n_m(weights: dict, masks: dict, *, n: int = 2, m: int = 4) -> dict:
    """Keeps at most `n` of every `m` consecutive weights along the input axis.

    For GPU sparse tensor cores (2:4 on NVIDIA Ampere and later). The groups
    run along the input axis of each tensor read as `(..., in, out)` (axis 0
    of a Dense kernel; see the module docstring), one group of `m` consecutive
    inputs per output unit and leading index, like a `(1, m)` block. A group
    with `k` surviving weights loses exactly `max(k - n, 0)` of them, the
    smallest `|w|` first, ties in order of flat index, so the largest `n`
    survivors stay. Pruned weights stay pruned, and a group that already holds
    `n` survivors or fewer is left as it is, so applying it again changes
    nothing. When `m` does not divide the input dimension, the last group of
    each column is shorter and also keeps at most `n`, so the mask stays valid
    when the dimension is zero-padded to a multiple of `m`.

    This is a function of its own rather than an option of `prune`: the
    structure, not a rate, fixes how many weights go, and no strategy applies.
    Compose it with the others, for example `prune_n_m` once after a last
    `prune_layerwise`, or after every pruning step of IMP.

    Args:
        weights: Dict mapping a tensor key to its trained weights.
        masks: Dict with the same keys mapping to the current masks. Tensors
            left out of `masks` are left out of the result.
        n: Positive int: the most weights kept in a group.
        m: Int `>= n`: the length of a group.

    Returns:
        A dict with the new masks.

    Example:

    >>> weights = {"dense/kernel": np.array([[1.0], [-4.0], [3.0], [2.0]])}
    >>> masks = {"dense/kernel": np.ones((4, 1))}
    >>> prune_n_m(weights, masks, n=2, m=4)["dense/kernel"].ravel()
    array([0., 1., 1., 0.], dtype=float32)
    """
    weights, masks = check_masks(weights, masks)
    n, m = _check_n_m(n, m)
    new_masks = {}
    for key, mask in masks.items():
        groups = Blocks(mask.shape, (1, m))
        alive = mask == 1
        check_finite(key, np.abs(weights[key][alive]))
        scores = np.where(alive, np.abs(weights[key].astype(np.float64)), -np.inf)
        # Padding ranks below every weight; pruned weights tie with it and
        # stay pruned whatever their rank.
        grouped = groups.pad(scores, fill=-np.inf)
        order = np.argsort(grouped, axis=2, kind="stable")
        ranks = np.empty_like(order)
        positions = np.arange(m).reshape(1, 1, m, 1, 1)
        np.put_along_axis(ranks, order, np.broadcast_to(positions, order.shape), 2)
        new = mask.copy()
        new *= groups.crop(ranks >= m - n)
        new_masks[key] = new
    return new_masks


def is_block_sparse(mask: ArrayLike, block: tuple[int, int]) -> bool:
    """Whether every block of `mask` is either wholly kept or wholly pruned.

    Blocks are read as in block pruning (see the module docstring): `block`
    is `(rows, cols)` in LiteRT's `(out, in)` orientation, on a tensor read as
    `(..., in, out)`, with a smaller last block where a side does not divide
    the dimension.

    Args:
        mask: Array of any shape; nonzero entries count as kept.
        block: A `(rows, cols)` pair of positive ints.

    Returns:
        `True` if no block mixes kept and pruned entries.

    Example:

    >>> is_block_sparse(np.array([[1, 0], [1, 0], [0, 1], [0, 1]]), (1, 2))
    True
    >>> is_block_sparse(np.array([[1, 0], [0, 0], [0, 1], [0, 1]]), (1, 2))
    False
    """
    kept, size = block_counts(mask, check_block(block, allow_none=False))
    return bool(np.all((kept == 0) | (kept == size)))


def is_n_m_sparse(mask: ArrayLike, n: int, m: int) -> bool:
    """Whether every `m` consecutive entries along the input axis keep `<= n`.

    The groups are those of `prune_n_m`. Pass a stripped kernel to check the
    weights themselves: their nonzero entries count as kept.

    Args:
        mask: Array of any shape; nonzero entries count as kept.
        n: Positive int: the most entries a group may keep.
        m: Int `>= n`: the length of a group.

    Returns:
        `True` if no group keeps more than `n` entries.

    Example:

    >>> is_n_m_sparse(np.array([[1], [0], [0], [1], [1], [1], [0], [0]]), 2, 4)
    True
    """
    n, m = _check_n_m(n, m)
    kept, _ = block_counts(mask, (1, m))
    return bool(np.all(kept <= n))


def surviving_blocks(mask: ArrayLike, block: tuple[int, int]) -> int:
    """The number of blocks of `mask` that keep at least one entry.

    This is the `n` that block pruning's exact counts refer to: a tensor asked
    to lose `rate` of its blocks loses `floor(rate * n + 0.5)` of them. With
    `block=(1, 1)` it is the number of kept entries.

    Args:
        mask: Array of any shape; nonzero entries count as kept.
        block: A `(rows, cols)` pair of positive ints in LiteRT's `(out, in)`
            orientation.

    Returns:
        The number of blocks that are still alive.
    """
    kept, _ = block_counts(mask, check_block(block, allow_none=False))
    return int(np.count_nonzero(kept))


def _check_n_m(n, m):
    if not (is_int(n) and is_int(m) and 1 <= n <= m):
        raise ValueError(
            "Expected `n` and `m` to be ints with 1 <= n <= m, for example "
            f"n=2, m=4. Received: n={n!r}, m={m!r}"
        )
    return int(n), int(m)


def check_masks(weights, masks):
    """Checks masks against their weights: `(weights, masks)` as numpy arrays.

    Every mask needs weights of its shape and holds only 0 and 1; masks come
    back as float32.

    Raises:
        TypeError: If either is not a dict.
        ValueError: Naming the tensor whose weights are missing, whose shapes
            differ, or whose mask holds other values.
    """
    if not isinstance(weights, dict) or not isinstance(masks, dict):
        raise TypeError(
            "Expected `weights` and `masks` to be dicts mapping tensor keys "
            f"to arrays. Received: {type(weights).__name__} and "
            f"{type(masks).__name__}"
        )
    missing = [key for key in masks if key not in weights]
    if missing:
        raise ValueError(
            f"Every key of `masks` needs weights. Missing weights for: {missing}"
        )
    weights = {key: np.asarray(weights[key]) for key in masks}
    masks = {key: np.asarray(mask, dtype=np.float32) for key, mask in masks.items()}
    for key, mask in masks.items():
        if weights[key].shape != mask.shape:
            raise ValueError(
                f"Expected weights and mask of '{key}' to have the same shape. "
                f"Received: {weights[key].shape} and {mask.shape}"
            )
        if not np.all((mask == 0) | (mask == 1)):
            raise ValueError(
                f"Expected the mask of '{key}' to hold only 0 and 1. "
                f"Received values: {np.unique(mask)[:10]}"
            )
    return weights, masks


def _per_tensor_rates(rate, masks):
    if isinstance(rate, dict):
        check_known_keys(rate, masks, "rate")
        rates = {key: rate.get(key, 0.0) for key in masks}
    else:
        rates = {key: rate for key in masks}
    for key, value in rates.items():
        check_fraction(value, f"rate for '{key}'", interval="[0, 1]")
    return rates


def _count(rate, surviving):
    return int(np.floor(rate * surviving + 0.5))
