"""Which output units of a model must be pruned together.

Channels that an `Add` sums are, for pruning, one channel: ResNet's residual
stream is written by the stem, by each block's last convolution and by each
1x1 shortcut, and `keras_lth.shrink` can remove a channel of the stream only
once all of them have pruned it (and a pruned unit is held at exactly 0 by
`keras_lth.unit_holding.hold_pruned_units`). Pruned tensor by tensor, each
prunes other channels, and the network loses weights without getting any
narrower. `coupled_units` finds these ties in the model's functional graph,
with the channel graph `shrink` follows (the dependency graph of
Torch-Pruning, Fang et al., CVPR 2023), and labels the units for
`keras_lth.structured.prune_units(coupled=...)`, which ranks each group of
tied units by their joint norm and prunes them together.
`LotteryTicket(granularity="unit")` does this by default (`coupled=True`).
"""

import collections
import warnings

from keras_lth._shrink_graph import ChannelGraph
from keras_lth.conversion import can_copy
from keras_lth.conversion import strip_masks
from keras_lth.layer_tree import prunable_tensors
from keras_lth.masking import get_masks
from keras_lth.structured import live_units
from keras_lth.structured import resolve_unit_axes

__all__ = ["coupled_units"]


def coupled_units(model, unit_axes=None):
    """Labels the output units that other tensors' units are tied to.

    Two units are tied when `shrink` can only remove them together: an
    `Add` (or `Subtract`, `Maximum`, `Minimum`, `Average`, `Multiply`)
    sums their channels, directly or through activations, pooling,
    BatchNormalization and other merges. Only the `kernel`s of Dense,
    convolution and ConvTranspose layers, whose units are the channels
    they make, are considered.

    Args:
        model: A Sequential or Functional model with masked layers.
        unit_axes: Optional `{key: axes or None}`, as for
            `keras_lth.structured.resolve_unit_axes`.

    Returns:
        `{key: [label per unit]}` for the tensors with a unit tied to
        another; units with the same int label are tied. Empty if nothing
        is tied, and, with a warning, for a model whose graph cannot be
        copied (a subclassed model or a KerasHub backbone): its units are
        then pruned tensor by tensor.

    Example:

    >>> x = keras.Input((8,))
    >>> y = keras.layers.Add()([keras.layers.Dense(4, name="a")(x),
    ...                         keras.layers.Dense(4, name="b")(x)])
    >>> model = keras_lth.mask_model(keras.Model(x, keras.layers.Dense(2)(y)))
    >>> labels = coupled_units(model)
    >>> sorted(labels), labels["a/kernel"] == labels["b/kernel"]
    (['a/kernel', 'b/kernel'], True)
    """
    if not can_copy(model):
        warnings.warn(
            f"coupled_units: model '{model.name}' of type "
            f"{type(model).__name__} has no graph that keras_lth can copy, so "
            "the units an `Add` ties are not found: each tensor is pruned on "
            "its own, and `shrink` cannot remove such units.",
            UserWarning,
            stacklevel=2,
        )
        return {}
    graph = ChannelGraph(strip_masks(model))
    masks = get_masks(model)
    axes = resolve_unit_axes(masks, unit_axes)
    labels = {}
    for key, (layer, name) in prunable_tensors(model).items():
        elements = graph.producers.get(layer.name)
        if name != "kernel" or elements is None or layer.name in graph.attention:
            continue
        if axes[key] is None:
            continue
        units = live_units(masks[key], axes[key]).size
        if units == len(elements):
            labels[key] = [graph.find(e) for e in elements]
    seen = collections.Counter(x for roots in labels.values() for x in roots)
    return {
        key: roots for key, roots in labels.items() if any(seen[x] > 1 for x in roots)
    }
