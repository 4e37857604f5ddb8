"""Physically removing the units of a ticket that cannot change its outputs.

A pruned ticket stores its pruned weights as zeros, so it is as large and as
slow as the dense network. `shrink` builds a smaller plain Keras model in
which every unit (a Dense unit, a convolution filter, an embedding feature)
that can no longer change the outputs is gone, with the matching slices of
the layers around it: BatchNormalization's statistics, a depthwise
convolution's channel, the rows of every layer that reads it (through
activations, pooling, `Flatten`, `Concatenate` and residual `Add`s).

Channels are tracked as *elements*, in the spirit of Torch-Pruning's
dependency graph (Fang et al., CVPR 2023): one per channel of a producing
layer's output, merged where an `Add` sums channels (those are removed
together) and mapped through `Flatten` and `Concatenate` to the rows of the
layers that read them. An element is removable when

* all the weights reading it are zero (its outgoing weights are pruned), or
* all the weights making it are zero, so that it is a constant (`act(bias)`
  through BatchNorm and pooling): the constant is folded into the bias of
  each Dense layer, or `"valid"` convolution, that reads it, which is exact.
  Not through a `"same"` convolution, whose zero padding makes the border
  differ, nor when an `Add` sums it with another layer's channel.

Removing units can leave others dead, so this repeats until nothing changes.
Whatever it cannot follow (a layer it does not know, `LayerNormalization`,
attention, the model's outputs) pins the channels it touches: they stay,
and the report says which layers were left as they were and why.
"""

import dataclasses
import warnings

import keras
import numpy as np
from keras import ops

from keras_lth.conversion import can_copy
from keras_lth.layer_tree import prunable_layers
from keras_lth.masking import strip_masks

__all__ = ["ShrinkReport", "shrink"]

# Layers whose kernel's last axis makes the output channels; `config` is the
# argument counting them.
_PRODUCERS = {
    keras.layers.Dense: "units",
    keras.layers.Conv1D: "filters",
    keras.layers.Conv2D: "filters",
    keras.layers.Conv3D: "filters",
    keras.layers.Embedding: "output_dim",
}
# Layers whose output channel i depends only on input channel i.
_CHANNELWISE = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.UpSampling1D,
    keras.layers.UpSampling2D,
)
_MERGES = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Maximum,
    keras.layers.Minimum,
    keras.layers.Average,
    keras.layers.Multiply,
)


@dataclasses.dataclass
class ShrinkReport:
    """What `shrink` removed, and what it left as it was.

    Attributes:
        units: `{layer name: (units before, units after)}` of the layers it
            shrank (Dense units, filters, embedding features).
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
        lines = [f"{'layer':<24} {'units':>14}"]
        for name, (before, after) in self.units.items():
            lines.append(f"{name:<24} {before:>6} -> {after:<6}")
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

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
    ...                           keras.layers.Dense(2)])
    >>> kernel = model.layers[0].kernel
    >>> kernel.assign(keras.ops.zeros((4, 3)))  # No unit has an input.
    >>> small = shrink(model)
    >>> small.layers[0].units
    1
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
    graph = _Graph(keras.Model(_structure(copy.inputs), _structure(copy.outputs)))
    folded = 0
    while True:
        folded += graph.fold_constants()
        if not graph.remove_dead():
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


class _Graph:
    """The model's layers, their weights as arrays, and the channel elements."""

    def __init__(self, model):
        self.model = model
        self.weights = {
            layer.name: [ops.convert_to_numpy(w) for w in layer.weights]
            for layer in model.layers
        }
        self.parent = []  # Union-find over elements.
        self.pinned = set()  # Element roots that must stay.
        self.producers = {}  # layer name -> [element per output channel]
        self.modifiers = {}  # layer name -> [element per channel] (BN, depthwise)
        self.consumers = {}  # layer name -> [element per kernel input row]
        self.pinned_layers = {}
        self.removed = set()  # Element roots removed.
        self._trace()

    # --- Elements -----------------------------------------------------------

    def _new(self, count, pinned=False):
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        if pinned:
            self.pinned.update(range(start, start + count))
        return list(range(start, start + count))

    def find(self, e):
        while self.parent[e] != e:
            self.parent[e] = self.parent[self.parent[e]]
            e = self.parent[e]
        return e

    def _union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            if b in self.pinned:
                self.pinned.add(a)

    def _pin(self, elements, layer, reason):
        for e in elements:
            self.pinned.add(self.find(e))
        if layer is not None:
            self.pinned_layers.setdefault(layer.name, reason)

    # --- Tracing the graph --------------------------------------------------

    def _trace(self):
        elems = {}  # id(KerasTensor) -> [element per channel (flattened)]
        for tensor in self.model.inputs:
            elems[id(tensor)] = self._new(_channels(tensor), pinned=True)
        for layer in self.model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            nodes = [n for n in layer._inbound_nodes if _in_model(n, elems)]
            if len(nodes) != 1:
                self._opaque(layer, nodes, elems, "called more than once")
                continue
            node = nodes[0]
            inputs = [elems[id(t)] for t in node.input_tensors]
            (output,) = (
                node.output_tensors if len(node.output_tensors) == 1 else (None,)
            )
            if output is None:
                self._opaque(layer, [node], elems, "several outputs")
                continue
            elems[id(output)] = self._layer(layer, inputs, node, output)
        for tensor in self.model.outputs:
            self._pin(elems[id(tensor)], None, None)

    def _opaque(self, layer, nodes, elems, reason):
        for node in nodes:
            for tensor in node.input_tensors:
                self._pin(elems[id(tensor)], layer, reason)
            for tensor in node.output_tensors:
                elems[id(tensor)] = self._new(_channels(tensor), pinned=True)

    def _layer(self, layer, inputs, node, output):
        kind = type(layer)
        if kind in _PRODUCERS and _channels_last(layer):
            if kind is not keras.layers.Embedding:
                self.consumers[layer.name] = inputs[0]
            out = self._new(_channels(output))
            self.producers[layer.name] = out
            return out
        if kind is keras.layers.BatchNormalization and layer.axis in (
            -1,
            len(output.shape) - 1,
        ):
            self.modifiers[layer.name] = inputs[0]
            return inputs[0]
        if kind is keras.layers.DepthwiseConv2D and layer.depth_multiplier == 1:
            self.modifiers[layer.name] = inputs[0]
            return inputs[0]
        if isinstance(layer, _CHANNELWISE):
            return inputs[0]
        if kind is keras.layers.Flatten:
            channels = len(inputs[0])
            return [inputs[0][i % channels] for i in range(_flat_size(output))]
        if kind is keras.layers.Concatenate and layer.axis in (
            -1,
            len(output.shape) - 1,
        ):
            return [e for part in inputs for e in part]
        if isinstance(layer, _MERGES) and len({len(x) for x in inputs}) == 1:
            # Channel i of every input makes channel i of the output: they
            # are removed together, or not at all.
            for other in inputs[1:]:
                for a, b in zip(inputs[0], other, strict=True):
                    self._union(a, b)
            return inputs[0]
        reason = f"{kind.__name__} is not a layer `shrink` follows channels through"
        for x in inputs:
            self._pin(x, layer, reason)
        return self._new(_channels(output), pinned=True)

    # --- Deciding -------------------------------------------------------------

    def _rows(self, name):
        """Kernel input rows of consumer `name`, as `[(row, element root)]`."""
        return [(i, self.find(e)) for i, e in enumerate(self.consumers[name])]

    def _kernel(self, name):
        return self.weights[name][0]

    def _outgoing_zero(self):
        """Element roots all of whose reading weights are zero."""
        alive = set()
        for name in self.consumers:
            kernel = self._kernel(name)
            for row, root in self._rows(name):
                if root in self.removed:
                    continue
                if np.any(np.take(kernel, row, axis=-2)):
                    alive.add(root)
        return alive

    def remove_dead(self):
        """Removes every removable element; returns whether any was."""
        alive = self._outgoing_zero()
        candidates = (
            {self.find(e) for out in self.producers.values() for e in out}
            - self.removed
            - alive
        )
        dead = {e for e in candidates if e not in self.pinned}
        # A producer keeps one unit at least: Keras has no empty layer.
        for out in self.producers.values():
            roots = [self.find(e) for e in out]
            if all(r in dead or r in self.removed for r in roots):
                dead.discard(next(r for r in roots if r in dead))
        if not dead:
            return False
        self.removed |= dead
        for name, out in self.producers.items():  # Zero what is removed,
            kernel = self._kernel(name)  # for the next rounds to see.
            for channel, e in enumerate(out):
                if self.find(e) in dead:
                    kernel[..., channel] = 0
        for name in self.consumers:
            kernel = self._kernel(name)
            for row, root in self._rows(name):
                if root in dead:
                    index = [slice(None)] * kernel.ndim
                    index[-2] = row
                    kernel[tuple(index)] = 0
        return True

    def fold_constants(self):
        """Folds units whose making weights are all zero into next biases."""
        constant = []
        for name, out in self.producers.items():
            kernel = self._kernel(name)
            if isinstance(self.model.get_layer(name), keras.layers.Embedding):
                continue
            for channel, e in enumerate(out):
                root = self.find(e)
                if root in self.removed or root in self.pinned:
                    continue
                if np.any(np.take(kernel, channel, axis=-1)):
                    continue
                if (
                    sum(
                        self.find(x) == root for o in self.producers.values() for x in o
                    )
                    != 1
                ):
                    continue  # Summed with another layer's channel.
                constant.append(root)
        if not constant:
            return 0
        readers = [
            name
            for name in self.consumers
            if any(root in constant for _, root in self._rows(name))
        ]
        values = self._probe(readers)
        folded = set(constant)
        for name in readers:  # A unit folds only if every reader can take it.
            layer = self.model.get_layer(name)
            foldable = (
                self._has_bias(layer) and getattr(layer, "padding", "valid") == "valid"
            )
            for row, root in self._rows(name):
                if root in folded and (not foldable or values[name][row] is None):
                    folded.discard(root)
        for name in readers:
            kernel, bias = self._kernel(name), self.weights[name][1]
            for row, root in self._rows(name):
                if root in folded:
                    weights = np.take(kernel, row, axis=-2)
                    spatial = tuple(range(weights.ndim - 1))
                    bias += values[name][row] * weights.sum(axis=spatial)
                    index = [slice(None)] * kernel.ndim
                    index[-2] = row
                    kernel[tuple(index)] = 0
        return len(folded)

    def _has_bias(self, layer):
        return getattr(layer, "use_bias", False) and len(self.weights[layer.name]) >= 2

    def _probe(self, names):
        """`{name: [constant value or None per input row]}` of those layers.

        The inputs each layer reads, computed on two random samples with the
        current weights: a row holds a constant when it is the same for both
        samples and at every position.
        """
        layers = [self.model.get_layer(name) for name in names]
        probe = keras.Model(
            _structure(self.model.inputs), [layer.input for layer in layers]
        )
        for layer in self.model.layers:  # The current, partly folded weights.
            originals = layer.weights
            for variable, value in zip(
                originals, self.weights[layer.name], strict=True
            ):
                variable.assign(value)
        rng = np.random.default_rng(0)
        samples = [
            rng.normal(size=(2, *t.shape[1:])).astype(t.dtype)
            if keras.backend.standardize_dtype(t.dtype).startswith("float")
            else np.zeros((2, *t.shape[1:]), t.dtype)
            for t in self.model.inputs
        ]
        outputs = probe(samples if len(samples) > 1 else samples[0], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        found = {}
        for name, output in zip(names, outputs, strict=True):
            array = ops.convert_to_numpy(output)
            rows = array.reshape(-1, array.shape[-1])
            spread = np.ptp(rows, axis=0)
            scale = np.maximum(np.abs(rows).max(axis=0), 1.0)
            found[name] = [
                float(rows[0, i]) if spread[i] <= 1e-6 * scale[i] else None
                for i in range(rows.shape[1])
            ]
        return found

    # --- Rebuilding -----------------------------------------------------------

    def _kept(self, elements):
        return [i for i, e in enumerate(elements) if self.find(e) not in self.removed]

    def unit_counts(self):
        return {
            name: (len(out), len(self._kept(out)))
            for name, out in self.producers.items()
        }

    def rebuild(self):
        new_weights = {}

        def clone(layer):
            config = layer.get_config()
            arrays = [a.copy() for a in self.weights[layer.name]]
            if layer.name in self.consumers:
                keep = self._kept(self.consumers[layer.name])
                arrays[0] = np.take(
                    arrays[0], keep, axis=-2 if arrays[0].ndim > 1 else 0
                )
            if layer.name in self.producers:
                keep = self._kept(self.producers[layer.name])
                arrays[0] = np.take(arrays[0], keep, axis=-1)
                if len(arrays) > 1:
                    arrays[1] = arrays[1][keep]
                config[_PRODUCERS[type(layer)]] = len(keep)
            if layer.name in self.modifiers:
                keep = self._kept(self.modifiers[layer.name])
                if isinstance(layer, keras.layers.DepthwiseConv2D):
                    arrays[0] = np.take(arrays[0], keep, axis=-2)
                    arrays[1:] = [a[keep] for a in arrays[1:]]
                else:
                    arrays = [a[keep] for a in arrays]
            new_weights[layer.name] = arrays
            return layer.__class__.from_config(config)

        small = keras.models.clone_model(self.model, clone_function=clone)
        for layer in small.layers:
            if layer.name in new_weights and layer.weights:
                layer.set_weights(new_weights[layer.name])
        return small


def _structure(tensors):
    """A single tensor as itself, several as a list (how Keras calls them)."""
    return tensors[0] if len(tensors) == 1 else list(tensors)


def _in_model(node, elems):
    return all(id(t) in elems for t in node.input_tensors)


def _channels(tensor):
    shape = tuple(tensor.shape)
    return int(shape[-1]) if len(shape) > 1 and shape[-1] is not None else 1


def _flat_size(tensor):
    return int(np.prod(tensor.shape[1:]))


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") == "channels_last"
