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

**Across tensors.** `"global"` ranks every tensor's weights by `|w|`, so a
tensor initialised at a smaller scale (an Embedding next to Dense kernels)
can lose almost all of its weights. `"lamp"` (Lee et al., ICLR 2021) ranks
them by a score that no rescaling of a tensor changes (`lamp_scores`) and
keeps each tensor's largest weight. With both, `min_density` keeps at least
`floor(min_density * n + 0.5)` of each tensor's `n` weights (or blocks).

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

from keras_lth._blocks import block_for
from keras_lth._blocks import block_text
from keras_lth._blocks import check_block
from keras_lth._blocks import check_masks
from keras_lth._blocks import check_n_m
from keras_lth._blocks import is_block_sparse
from keras_lth._blocks import is_n_m_sparse
from keras_lth._blocks import keep_n_of_m
from keras_lth._blocks import parse_block
from keras_lth._blocks import surviving_blocks
from keras_lth._blocks import units_per_tensor
from keras_lth._checks import check_choice
from keras_lth._checks import check_fraction
from keras_lth._checks import check_known_keys

__all__ = [
    "lowest_across",
    "GLOBAL_STRATEGIES",
    "STRATEGIES",
    "block_text",
    "check_block",
    "check_masks",
    "check_min_density",
    "check_strategy",
    "count_units",
    "is_block_sparse",
    "is_n_m_sparse",
    "lamp_scores",
    "parse_block",
    "prune",
    "prune_global",
    "prune_lamp",
    "prune_layerwise",
    "prune_n_m",
    "prune_random",
    "prune_to_sparsity",
    "surviving_blocks",
    "target_count",
]

#: The pruning strategies: magnitude per tensor, magnitude across tensors, the
#: paper's random-pruning control, and layer-adaptive LAMP scores across tensors.
STRATEGIES = ("layerwise", "global", "random", "lamp")

#: The strategies that rank all tensors together, with one rate and threshold.
GLOBAL_STRATEGIES = ("global", "lamp")


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


def prune(
    weights,
    masks,
    rate,
    *,
    strategy="layerwise",
    seed=None,
    block=None,
    min_density=0.0,
):
    """Prunes with the named strategy.

    Args:
        weights: Dict mapping a tensor key to its trained weights.
        masks: Dict with the same keys mapping to the current masks (1 keeps a
            weight, 0 prunes it).
        rate: For `"layerwise"` and `"random"`, a float in `[0, 1]` or a dict
            mapping keys to such floats: the fraction of each tensor's
            surviving weights (or blocks) to prune (keys missing from the dict
            are not pruned). For `"global"` and `"lamp"`, one float: the
            fraction of all surviving weights (or blocks) to prune, below a
            single threshold on `|w|` or on LAMP scores.
        strategy: One of `STRATEGIES`: `"layerwise"`, `"global"`, `"random"`
            or `"lamp"`.
        seed: Seed of the random generator, for `"random"` only.
        block: `None` to prune single weights, or `(rows, cols)` to prune
            whole blocks of `rows` output units by `cols` consecutive inputs
            (LiteRT's orientation; see the module docstring), or a dict
            mapping keys to such pairs (missing keys and `None` values are
            pruned weight by weight). For example `(1, 4)` for LiteRT's float
            sparse kernels and `(1, 16)` for its int8 ones.
        min_density: For `"global"` and `"lamp"`, a float in `[0, 1)`: the
            fraction of each tensor's weights (or blocks) it keeps at least;
            see `prune_global`. Must be 0 with the other strategies.

    Returns:
        A dict with the new masks.
    """
    check_min_density(min_density, strategy)
    if strategy == "layerwise":
        return prune_layerwise(weights, masks, rate, block=block)
    if strategy in GLOBAL_STRATEGIES:
        prune_together = prune_global if strategy == "global" else prune_lamp
        return prune_together(
            weights, masks, rate, block=block, min_density=min_density
        )
    return prune_random(weights, masks, rate, seed=seed, block=block)


def check_min_density(min_density, strategy="global"):
    """Returns `min_density` as a float in `[0, 1)`, for `strategy`.

    Raises:
        TypeError: If it is not a number.
        ValueError: If it lies outside `[0, 1)`, or is not 0 with a strategy
            outside `GLOBAL_STRATEGIES`, or `strategy` is unknown.
    """
    check_strategy(strategy)
    min_density = check_fraction(min_density, "min_density", interval="[0, 1)")
    if min_density and strategy not in GLOBAL_STRATEGIES:
        raise ValueError(
            "`min_density` sets a floor under each tensor when the tensors are "
            f"ranked together, with strategy in {GLOBAL_STRATEGIES}; "
            f"strategy={strategy!r} sets each tensor's count itself. Expected "
            f"min_density=0. Received: min_density={min_density!r}"
        )
    return min_density


def prune_to_sparsity(
    weights: dict,
    masks: dict,
    sparsity,
    *,
    strategy: str = "layerwise",
    seed=None,
    block=None,
    min_density: float = 0.0,
) -> dict:
    """Prunes surviving weights until a target sparsity is reached.

    `prune` takes a rate *of the survivors*; this takes the
    *absolute* fraction of a tensor's weights that should end up pruned, and
    converts it. For a tensor of `n` weights of which `alive` survive:

        target = floor(sparsity * n + 0.5)        # weights pruned in the end
        count = max(target - (n - alive), 0)      # newly pruned now
        rate = count / alive

    so exactly `target` weights are pruned afterwards (or more, if the masks
    already pruned more: nothing grows back). With `"global"` and `"lamp"`,
    `n`, `alive` and `target` are summed over all tensors and one threshold
    is shared (fewer are pruned if `min_density` or LAMP's one kept weight
    per tensor forbids more).

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
            magnitude), `"global"` (all tensors together, by magnitude),
            `"lamp"` (all together, by LAMP score) or `"random"` (each tensor
            reaches `sparsity`, at random).
        seed: Seed for `"random"`.
        block: `None` (single weights), a `(rows, cols)` block in LiteRT's
            `(out, in)` orientation, or a dict mapping keys to such blocks or
            `None`; see `prune`.
        min_density: Float in `[0, 1)`, for `"global"` and `"lamp"`; see
            `prune_global`.

    Returns:
        A dict with the new masks, float32 arrays.
    """
    check_min_density(min_density, strategy)
    if not isinstance(masks, dict):
        raise TypeError(
            "Expected `masks` to be a dict mapping tensor keys to arrays. "
            f"Received: {type(masks).__name__}"
        )
    masks = {key: np.asarray(mask, dtype=np.float32) for key, mask in masks.items()}
    if strategy in GLOBAL_STRATEGIES:
        if isinstance(sparsity, dict):
            raise TypeError(
                f"Expected `sparsity` to be one float for strategy={strategy!r}. "
                f"Received: sparsity={sparsity!r}"
            )
        check_fraction(sparsity, "sparsity", interval="[0, 1]")
        units = [_units(mask, block_for(block, key)) for key, mask in masks.items()]
        size = sum(total for total, _ in units)
        alive = sum(alive for _, alive in units)
        rate = _rate(sparsity, size, alive)
        return prune(
            weights,
            masks,
            rate,
            strategy=strategy,
            block=block,
            min_density=min_density,
        )
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


def prune_global(weights, masks, rate, *, block=None, min_density=0.0):
    """Prunes the smallest-magnitude surviving weights across all tensors.

    One magnitude threshold is shared by every tensor in `masks`: exactly
    `floor(rate * total_surviving + 0.5)` weights are pruned, the smallest `|w|`
    first. To keep a tensor out of the ranking, leave it out of `masks`. With
    `block`, the same holds for the surviving blocks of all tensors, ranked by
    their L2 norms. Blocks of different sizes (a dict `block`, or the smaller
    last blocks of a dimension the block does not divide) share the one
    threshold, so the smaller ones, whose norms sum fewer weights, tend to go
    first.

    With `min_density`, a tensor of `n` weights (or blocks) keeps at least
    `floor(min_density * n + 0.5)` of them (or all it has, if fewer survive):
    once it reaches that floor, the threshold passes it by. If the floors
    leave fewer than the count to prune, only those are pruned.

    Args:
        weights: Dict mapping a tensor key to its trained weights.
        masks: Dict with the same keys mapping to the current masks.
        rate: A float in `[0, 1]`: the fraction of all surviving weights (or
            blocks) to prune.
        block: `None`, a `(rows, cols)` pair in LiteRT's `(out, in)`
            orientation, or a dict mapping keys to such pairs; see `prune`.
        min_density: A float in `[0, 1)`: the fraction of each tensor's
            weights (or blocks) it keeps at least. Defaults to 0.

    Returns:
        A dict with the new masks.
    """
    return _prune_together(weights, masks, rate, block, min_density, lamp=False)


def prune_lamp(weights, masks, rate, *, block=None, min_density=0.0):
    """Prunes the survivors of lowest LAMP score across all tensors.

    LAMP (Lee et al., "Layer-adaptive sparsity for the magnitude-based
    pruning", ICLR 2021) ranks each tensor's survivors by `lamp_scores`, and
    one threshold on the scores is shared by all tensors: each tensor gets
    its own sparsity, rescaling a tensor changes nothing, and within a tensor
    the smallest `|w|` still goes first. Counts and ties are those of
    `prune_global`, with one more floor: a tensor with survivors keeps at
    least one (its largest, of score 1), even at `rate=1`. With `block`,
    blocks are ranked by the LAMP scores of their L2 norms.

    Args:
        weights: Dict mapping a tensor key to its trained weights.
        masks: Dict with the same keys mapping to the current masks.
        rate: A float in `[0, 1]`: the fraction of all surviving weights (or
            blocks) to prune.
        block: `None`, a `(rows, cols)` pair or a dict of them; see `prune`.
        min_density: A float in `[0, 1)`; see `prune_global`.

    Returns:
        A dict with the new masks.

    Example:

    >>> weights = {"emb": np.array([0.01, 0.02, 0.03, 0.04]),
    ...            "dense": np.array([1.0, 2.0, 3.0, 4.0])}
    >>> masks = {key: np.ones(4) for key in weights}
    >>> new = prune_lamp(weights, masks, 0.5)  # Same scores: 2 from each.
    >>> new["emb"], new["dense"]
    (array([0., 0., 1., 1.], dtype=float32), array([0., 0., 1., 1.], dtype=float32))
    >>> prune_global(weights, masks, 0.5)["emb"]  # All 4 from "emb".
    array([0., 0., 0., 0.], dtype=float32)
    """
    return _prune_together(weights, masks, rate, block, min_density, lamp=True)


def lamp_scores(weights: ArrayLike) -> np.ndarray:
    """The LAMP score of every weight of one tensor (Lee et al., ICLR 2021).

    With the weights sorted by `|w|` in ascending order (ties in flat index
    order), weight `u` scores

        score(u) = w[u] ** 2 / sum(w[v] ** 2 for v >= u)

    in `[0, 1]`: the largest weight scores 1, and the scores rise with `|w|`.
    Multiplying the tensor by a constant leaves them unchanged. All-zero
    weights score 0.

    Args:
        weights: Array of any shape.

    Returns:
        A float64 array of the same shape.

    Example:

    >>> lamp_scores(np.array([3.0, -1.0, 2.0]))  # 9/9, 1/14, 4/13
    array([1.        , 0.07142857, 0.30769231])
    """
    magnitudes = np.abs(np.asarray(weights, dtype=np.float64))
    flat = magnitudes.ravel()
    order = np.argsort(flat, kind="stable")
    ranked = flat[order]
    top = ranked[-1] if ranked.size and ranked[-1] > 0 else 1.0
    squares = (ranked / top) ** 2  # Scaled: neither overflows nor underflows.
    below = np.cumsum(squares[::-1])[::-1]
    ranked_scores = np.divide(
        squares, below, out=np.zeros_like(squares), where=below > 0
    )
    # Rising with |w| in exact arithmetic; kept so against rounding.
    scores = np.empty_like(flat)
    scores[order] = np.maximum.accumulate(ranked_scores)
    return scores.reshape(magnitudes.shape)


def _prune_together(weights, masks, rate, block, min_density, lamp):
    """`prune_global` (`lamp=False`) and `prune_lamp` (`lamp=True`)."""
    weights, masks = check_masks(weights, masks)
    if isinstance(rate, dict):
        raise TypeError(
            "Expected `rate` to be one float for pruning across tensors. "
            f"Received: rate={rate!r} of type {type(rate).__name__}"
        )
    check_fraction(rate, "rate", interval="[0, 1]")
    min_density = check_min_density(min_density)
    units = units_per_tensor(block, masks)
    # Each tensor's candidates: its survivors by |w|, smallest first, but for
    # the ones its floor keeps. Its scores rise with |w|, so one threshold
    # prunes a prefix of them, and ties stay in |w| then flat index order.
    candidates, scores, alive_total = [], [], 0
    for key, mask in masks.items():
        alive = units[key].alive(mask)
        magnitude = units[key].scores(key, weights[key], mask, alive)
        score = lamp_scores(magnitude) if lamp else magnitude
        order = np.argsort(magnitude, kind="stable")
        size, _ = _units(mask, block_for(block, key))
        floor = min(max(_count(min_density, size), int(lamp)), alive.size)
        candidates.append(alive[order[: alive.size - floor]])
        scores.append(score[order[: alive.size - floor]])
        alive_total += alive.size
    if not masks:
        return {}
    chosen = lowest_across(candidates, scores, _count(rate, alive_total))
    return {key: units[key].drop(masks[key], chosen[i]) for i, key in enumerate(masks)}


def lowest_across(candidates, scores, count):
    """The `count` lowest `scores` of all tensors together, split per tensor.

    `candidates[i]` holds tensor i's prunable indices and `scores[i]` their
    scores; returns, per tensor, its indices among the `count` lowest (ties
    in order). One rule for every global strategy, weights or units.
    """
    owners = np.repeat(np.arange(len(candidates)), [c.size for c in candidates])
    flat_index = np.concatenate(candidates)
    pruned = np.argsort(np.concatenate(scores), kind="stable")[:count]
    return [flat_index[pruned[owners[pruned] == i]] for i in range(len(candidates))]


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
    n, m = check_n_m(n, m)
    return keep_n_of_m(weights, masks, n, m)


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
