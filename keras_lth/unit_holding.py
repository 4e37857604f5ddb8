"""Holding the bias and BatchNorm parameters of pruned units at 0.

Pruning a unit's kernel weights (`keras_lth.structured.prune_units`) leaves
its bias, and the `beta` of a BatchNormalization reading it, so the unit
still outputs a constant. `hold_pruned_units(model)` zeroes them (and that
BatchNormalization's `gamma`) and constrains them to stay 0 through
training, so that `keras_lth.shrink` can remove the unit;
`LotteryTicket(granularity="unit")` calls it.
"""

import keras
import numpy as np
from keras import ops
from keras.src.models.functional import Functional

from keras_lth.layer_tree import prunable_tensors
from keras_lth.masking import get_masks
from keras_lth.structured import live_units
from keras_lth.structured import resolve_unit_axes

__all__ = ["hold_pruned_units"]

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
        live = live_units(mask, axes[key]).astype("float32")
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
