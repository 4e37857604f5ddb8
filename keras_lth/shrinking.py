"""Physically removing the units of a ticket that cannot change its outputs.

A pruned ticket stores its pruned weights as zeros, so it is as large and as
slow as the dense network. `shrink` builds a smaller plain Keras model without
the units (Dense units, convolution and ConvTranspose filters, embedding
features, attention heads) that can no longer change the outputs, and without
the matching slices of the layers around them. Channels are tracked as
*elements*, as in Torch-Pruning's dependency graph (Fang et al., CVPR 2023):
one per channel a layer makes, merged where an `Add` sums channels (removed
together), followed through activations, pooling, BatchNorm, depthwise
convolutions, `Flatten` and `Concatenate` to the kernel rows that read them
(a ConvTranspose kernel `(..., out, in)` reads on its last axis). An element
is removable when all the weights reading it are zero, or when all the
weights making it are: a constant, folded exactly into the bias of each
Dense, attention or `"valid"` convolution layer reading it (not through zero
padding, nor into a ConvTranspose, which adds an input unevenly across its
output, nor when an `Add` sums it with another channel). An attention head
goes when its output projection is zero, or its value projection (its value
bias is folded). This repeats until nothing changes.

`LayerNormalization` is followed where that is exact: one that normalizes
over other axes than the channels (`axis=1` on `(batch, steps, channels)`)
treats each channel on its own, so channels pass through it. One that
normalizes over the channels (the default `axis=-1`) keeps all of them: a
channel left out changes the mean and variance the others are normalized
with, even a constant channel or one nothing reads, so its inputs stay whole
(the layers after it still lose their own dead units). That, an unknown
layer, a grouped convolution and the model's outputs pin the channels they
touch, and the report names those layers.
"""

import dataclasses
import warnings

import keras

from keras_lth._shrink_graph import ChannelGraph
from keras_lth.conversion import can_copy
from keras_lth.layer_tree import prunable_layers
from keras_lth.masking import strip_masks

__all__ = ["ShrinkReport", "shrink"]


@dataclasses.dataclass
class ShrinkReport:
    """What `shrink` removed, and what it left as it was.

    Attributes:
        units: `{layer name: (units before, units after)}` of the layers it
            shrank (Dense units, filters, embedding features), and
            `"<name> heads"` entries for attention heads.
        params_before: Parameters of the model, masks left out.
        params_after: Parameters of the shrunk model.
        folded: How many constant units were folded into the next biases.
        unshrunk: `{layer name: reason}` of the layers whose channels it
            could not follow, left as they were.
    """

    units: dict
    params_before: int
    params_after: int
    folded: int
    unshrunk: dict

    def __str__(self):
        width = max([24, *(len(name) for name in self.units)])
        lines = [f"{'layer':<{width}} {'units':>14}"]
        for name, (before, after) in self.units.items():
            lines.append(f"{name:<{width}} {before:>6} -> {after:<6}")
        ratio = self.params_after / self.params_before if self.params_before else 1.0
        lines.append(
            f"parameters: {self.params_before:,} -> {self.params_after:,} "
            f"({ratio:.3f}x); constant units folded: {self.folded}"
        )
        for name, reason in self.unshrunk.items():
            lines.append(f"left as it was: {name} ({reason})")
        return "\n".join(lines)


def shrink(model, *, return_report=False):
    """Returns a smaller model computing the same outputs as `model`.

    Every unit that can no longer change the outputs is removed (see the
    module docstring for the rules), with the matching slices of the layers
    around it. A masked model is stripped first (`strip_masks`): its pruned
    weights are zeros. The result is a plain, uncompiled Keras model of stock
    layers, on any backend, whose outputs equal `model`'s up to float
    rounding.

    Args:
        model: A Sequential or Functional model, masked or plain, with
            channels-last layers.
        return_report: Also return a `ShrinkReport`.

    Returns:
        The shrunk model, or `(model, report)`.

    Raises:
        ValueError: If `model` is subclassed or holds a subclassed model.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)),
    ...     keras.layers.Dense(3, name="hidden"), keras.layers.Dense(2)])
    >>> hidden = model.get_layer("hidden")
    >>> _ = hidden.kernel.assign(hidden.kernel * np.array([1.0, 0.0, 0.0]))
    >>> small, report = shrink(model, return_report=True)
    >>> small.get_layer("hidden").units  # Two units lost every input.
    1
    >>> x = np.ones((1, 4))
    >>> bool(np.allclose(small(x), model(x), atol=1e-6))
    True
    >>> report.folded  # Their constant outputs went into the next bias.
    2
    """
    if not isinstance(model, keras.Model) or not can_copy(model):
        raise ValueError(
            "`shrink` rebuilds Sequential and Functional models. Received "
            f"{model!r} of type {type(model).__name__}."
        )
    # A copy: deciding what to fold evaluates the model with changed weights.
    if next(prunable_layers(model), None) is not None:
        copy = strip_masks(model)
    else:
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
    graph = ChannelGraph(copy)
    folded = 0
    while True:
        folded += graph.fold_constants()
        heads = graph.remove_heads()
        if not graph.remove_dead() and not heads:
            break
    small = graph.rebuild()
    report = ShrinkReport(
        units={
            name: counts
            for name, counts in graph.unit_counts().items()
            if counts[0] != counts[1]
        },
        params_before=model.count_params(),
        params_after=small.count_params(),
        folded=folded,
        unshrunk=dict(graph.pinned_layers),
    )
    if report.unshrunk:
        listed = ", ".join(f"'{k}' ({v})" for k, v in report.unshrunk.items())
        warnings.warn(
            f"`shrink` left these layers of model '{model.name}' as they were: "
            f"{listed}.",
            UserWarning,
            stacklevel=2,
        )
    return (small, report) if return_report else small
