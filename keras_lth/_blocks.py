"""Block geometry for pruning: the units a tensor is ranked and pruned by.

A tensor is pruned weight by weight (`Weights`) or block by block
(`Blocks`); how a `(rows, cols)` block lies on a Keras tensor is explained
once, in `keras_lth.pruning`'s module docstring. The structure checks
(`is_block_sparse`, `is_n_m_sparse`, `surviving_blocks`), N:M groups and the
check of masks against their weights live here too; `keras_lth.pruning`
exports them.
"""

import math
import re

import numpy as np
from numpy.typing import ArrayLike

from keras_lth._checks import check_known_keys
from keras_lth._checks import is_int
from keras_lth._checks import quoted

__all__ = [
    "Blocks",
    "Weights",
    "block_counts",
    "block_for",
    "block_text",
    "check_block",
    "check_finite",
    "check_masks",
    "check_n_m",
    "is_block_sparse",
    "is_n_m_sparse",
    "keep_n_of_m",
    "parse_block",
    "surviving_blocks",
    "units_per_tensor",
]


def check_block(block, name="block", *, allow_none=True):
    """Returns `block` as a `(rows, cols)` pair of ints, or `None`.

    Accepts `None` (single weights, unless `allow_none=False`) and a pair of
    positive ints, as a tuple or a list (as JSON gives it back). The pair is
    in LiteRT's orientation: see `keras_lth.pruning`. Text spellings go
    through `parse_block`.

    Raises:
        ValueError: For anything else.
    """
    if block is None and allow_none:
        return None
    if (
        isinstance(block, (tuple, list))
        and len(block) == 2
        and all(is_int(side) and side >= 1 for side in block)
    ):
        return int(block[0]), int(block[1])
    raise ValueError(
        f"Expected {quoted(name)} to be a tuple of 2 positive ints (rows along "
        "the output axis, cols along the input axis, as LiteRT orients a "
        f"weight), for example (1, 4){', or None' if allow_none else ''}. "
        f"Received: {block!r}"
    )


def parse_block(text, name="block"):
    """Reads a block written as text: `"1x4"` -> `(1, 4)`, `"none"` -> `None`.

    The spelling the CLI and the tuner use; the pair is then checked by
    `check_block`.
    """
    if text is None or text == "none":
        return None
    match = re.fullmatch(r"(\d+)x(\d+)", text) if isinstance(text, str) else None
    if match is None:
        return check_block(text, name)
    return check_block((int(match.group(1)), int(match.group(2))), name)


def block_text(block):
    """The text spelling of a block that `parse_block` reads back."""
    block = check_block(block)
    return "none" if block is None else f"{block[0]}x{block[1]}"


class Weights:
    """The units of unstructured pruning: single weights, by flat index."""

    def alive(self, mask):
        return np.flatnonzero(mask)

    def scores(self, key, weights, mask, alive):
        scores = np.abs(weights.ravel()[alive])
        check_finite(key, scores)
        return scores

    def drop(self, mask, flat_indices):
        return drop(mask, flat_indices)


class Blocks:
    """The blocks of one tensor, by flat block index.

    The tensor is viewed as `(lead, n_in, n_out)`, padded up to whole blocks,
    and reshaped to `(lead, in blocks, cols, out blocks, rows)`: axes 2 and 4
    run inside a block, the others index it.
    """

    def __init__(self, shape, block):
        self.shape = tuple(shape)
        self.rows, self.cols = block
        if len(self.shape) >= 2:
            lead, n_in, n_out = math.prod(self.shape[:-2]), *self.shape[-2:]
        else:
            lead, n_in, n_out = 1, math.prod(self.shape), 1
        self.view = (lead, n_in, n_out)
        self.grid = (lead, -(-n_in // self.cols), -(-n_out // self.rows))

    def pad(self, values, fill=0):
        lead, n_in, n_out = self.view
        _, blocks_in, blocks_out = self.grid
        padded = np.full(
            (lead, blocks_in * self.cols, blocks_out * self.rows),
            fill,
            dtype=values.dtype,
        )
        padded[:, :n_in, :n_out] = values.reshape(self.view)
        return padded.reshape(lead, blocks_in, self.cols, blocks_out, self.rows)

    def crop(self, padded):
        lead, n_in, n_out = self.view
        _, blocks_in, blocks_out = self.grid
        full = padded.reshape(lead, blocks_in * self.cols, blocks_out * self.rows)
        return full[:, :n_in, :n_out].reshape(self.shape)

    def pool(self, values, reduce):
        """One value per block: `reduce` over the block's weights (padding 0)."""
        return reduce(self.pad(values), axis=(2, 4)).ravel()

    def spread(self, per_block):
        """Gives every weight the value of its block."""
        grid = per_block.reshape(self.grid)[:, :, None, :, None]
        lead, blocks_in, _, blocks_out, _ = grid.shape
        shape = (lead, blocks_in, self.cols, blocks_out, self.rows)
        return self.crop(np.broadcast_to(grid, shape))

    def alive(self, mask):
        return np.flatnonzero(self.pool(mask, np.max))

    def scores(self, key, weights, mask, alive):
        kept = mask == 1
        check_finite(key, np.abs(weights[kept]))
        magnitudes = np.where(kept, np.abs(weights.astype(np.float64)), 0.0)
        # The L2 norm, scaled by each block's largest magnitude so that it
        # neither overflows nor underflows, and is exactly |w| for one weight.
        largest = self.pool(magnitudes, np.max)
        scale = self.spread(np.where(largest > 0, largest, 1.0))
        norms = largest * np.sqrt(self.pool((magnitudes / scale) ** 2, np.sum))
        return norms[alive]

    def drop(self, mask, block_indices):
        keep = np.ones(math.prod(self.grid), dtype=np.float32)
        keep[block_indices] = 0.0
        new = mask.copy()  # In place: `*` would turn a 0-d array into a scalar.
        new *= self.spread(keep)
        return new


def block_counts(mask, block):
    """Kept entries and entries of each block of `mask`."""
    kept = np.asarray(mask) != 0
    blocks = Blocks(kept.shape, block)
    return (
        blocks.pool(kept.astype(np.int64), np.sum),
        blocks.pool(np.ones(kept.shape, dtype=np.int64), np.sum),
    )


def block_for(block, key):
    """The block of tensor `key`: `block` itself, or its entry when a dict."""
    return block.get(key) if isinstance(block, dict) else block


def units_per_tensor(block, masks):
    if isinstance(block, dict):
        check_known_keys(block, masks, "block")
        blocks = {
            key: check_block(
                block[key], f"`block` for '{key}' (shape {masks[key].shape})"
            )
            for key in masks
            if block.get(key) is not None
        }
    elif block is None:
        blocks = {}
    else:
        fixed = check_block(block)
        blocks = dict.fromkeys(masks, fixed)
    return {
        key: Blocks(mask.shape, blocks[key]) if key in blocks else Weights()
        for key, mask in masks.items()
    }


def check_finite(key, scores):
    if not np.all(np.isfinite(scores)):
        raise ValueError(
            f"Weights of '{key}' hold NaN or infinite values, so they cannot "
            "be ranked by magnitude. Training has probably diverged; lower "
            "the learning rate."
        )


def drop(mask, flat_indices):
    new = mask.copy()
    new.reshape(-1)[flat_indices] = 0.0
    return new


def keep_n_of_m(weights, masks, n, m):
    """`keras_lth.pruning.prune_n_m` on checked arrays and `(n, m)`."""
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

    Blocks are read as in block pruning (see `keras_lth.pruning`): `block`
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
    n, m = check_n_m(n, m)
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


def check_n_m(n, m):
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
