"""The channel dependency graph behind `keras_lth.shrink`.

`ChannelGraph` traces a Functional model into channel *elements* (see
`keras_lth.shrinking` for the rules), decides which can go, and rebuilds the
smaller model.
"""

import keras
import numpy as np
from keras import ops

__all__ = ["ChannelGraph"]

# Layers whose kernel makes output channels; `config` is the argument
# counting them. The kernel's last axis makes them, its second to last reads
# the input channels; the other way round for `_TRANSPOSED` kernels.
_PRODUCERS = {
    keras.layers.Dense: "units",
    keras.layers.Conv1D: "filters",
    keras.layers.Conv2D: "filters",
    keras.layers.Conv3D: "filters",
    keras.layers.Conv1DTranspose: "filters",
    keras.layers.Conv2DTranspose: "filters",
    keras.layers.Conv3DTranspose: "filters",
    keras.layers.Embedding: "output_dim",
}
# Kernels stored `(..., out, in)`.
_TRANSPOSED = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
# Layers whose output channel i depends only on input channel i.
_CHANNELWISE = tuple(
    getattr(keras.layers, name)
    for name in """Activation ReLU LeakyReLU ELU Dropout SpatialDropout1D
    SpatialDropout2D GaussianNoise MaxPooling1D MaxPooling2D MaxPooling3D
    AveragePooling1D AveragePooling2D AveragePooling3D GlobalAveragePooling1D
    GlobalAveragePooling2D GlobalAveragePooling3D GlobalMaxPooling1D
    GlobalMaxPooling2D GlobalMaxPooling3D ZeroPadding1D ZeroPadding2D
    UpSampling1D UpSampling2D""".split()
)
_MERGES = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Maximum,
    keras.layers.Minimum,
    keras.layers.Average,
    keras.layers.Multiply,
)


class ChannelGraph:
    """The model's layers, their weights as arrays, and the channel elements.

    The elements and the rules that remove them are described in
    `keras_lth.shrinking`. `fold_constants`, `remove_heads` and `remove_dead`
    decide, on copies of the weights as numpy arrays; `rebuild` makes the
    smaller model.

    Args:
        model: A Sequential or Functional model of stock layers; its
            variables are overwritten while deciding what to fold.
    """

    def __init__(self, model):
        model = keras.Model(_structure(model.inputs), _structure(model.outputs))
        self.model = model
        self.weights = {
            layer.name: [ops.convert_to_numpy(w) for w in layer.weights]
            for layer in model.layers
        }
        self.parent = []  # Union-find over elements.
        self.pinned = set()  # Element roots that must stay.
        self.producers = {}  # layer name -> [element per output channel]
        self.modifiers = {}  # layer name -> [element per channel] (BN, depthwise)
        # Consumer key -> [element per kernel input row]. The key is a layer's
        # name (its kernel is weight 0), or `(name, index)` for attention's
        # query, key and value kernels, whose rows are their first axis.
        self.consumers = {}
        self.reads = {}  # Consumer key -> the KerasTensor it reads.
        self.attention = {}  # Attention layer name -> {weight name: index}
        self.removed_heads = {}  # Attention layer name -> set of heads
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
        if not _elementwise(getattr(layer, "activation", None)):
            return self._stop(layer, inputs, output, "its activation mixes channels")
        if getattr(layer, "groups", 1) != 1:
            return self._stop(layer, inputs, output, "a grouped convolution")
        if kind in _PRODUCERS and _channels_last(layer):
            if kind is not keras.layers.Embedding:
                self.consumers[layer.name] = inputs[0]
                self.reads[layer.name] = node.input_tensors[0]
            out = self._new(_channels(output))
            self.producers[layer.name] = out
            return out
        if kind is keras.layers.MultiHeadAttention and len(inputs) in (2, 3):
            return self._attention(layer, inputs, node, output)
        if kind is keras.layers.BatchNormalization and layer.axis in (
            -1,
            len(output.shape) - 1,
        ):
            self.modifiers[layer.name] = inputs[0]
            return inputs[0]
        if kind in _DEPTHWISE and layer.depth_multiplier == 1:
            self.modifiers[layer.name] = inputs[0]
            return inputs[0]
        if kind is keras.layers.LayerNormalization:
            rank = len(output.shape)
            axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
            if rank - 1 not in {a % rank for a in axes}:
                return inputs[0]  # Each channel normalized on its own.
            # A channel left out, even a constant or an unread one, changes the
            # mean and variance the others are normalized with.
            reason = "it normalizes over its channels: all of them stay"
            return self._stop(layer, inputs, output, reason)
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
        return self._stop(layer, inputs, output, reason)

    def _stop(self, layer, inputs, output, reason):
        """Pins what `layer` reads; its outputs are new, pinned elements."""
        for x in inputs:
            self._pin(x, layer, reason)
        return self._new(_channels(output), pinned=True)

    def _attention(self, layer, inputs, node, output):
        """Attention reads its inputs through three kernels, makes channels
        with a fourth, and has heads (see `remove_heads`)."""
        index = {
            "/".join(w.path.split("/")[-2:]): i for i, w in enumerate(layer.weights)
        }
        names = ("query/kernel", "value/kernel", "key/kernel")
        # Called as (query, value) or (query, value, key): key defaults to value.
        reads = [*zip(names, node.input_tensors, inputs)]
        if len(inputs) == 2:
            reads.append(("key/kernel", node.input_tensors[1], inputs[1]))
        for weight, tensor, elements in reads:
            self.consumers[layer.name, index[weight]] = elements
            self.reads[layer.name, index[weight]] = tensor
        self.attention[layer.name] = index
        self.removed_heads[layer.name] = set()
        out = self._new(_channels(output))
        self.producers[layer.name] = out
        return out

    # --- Deciding -------------------------------------------------------------

    def _rows(self, key):
        """Kernel input rows of consumer `key`, as `[(row, element root)]`."""
        return [(i, self.find(e)) for i, e in enumerate(self.consumers[key])]

    def _consumer(self, key):
        """`(layer name, kernel, row axis, bias or None)` of consumer `key`."""
        if isinstance(key, tuple):
            name, index = key
            layer = self.model.get_layer(name)
            bias = self.weights[name][index + 1] if layer.use_bias else None
            return name, self.weights[name][index], 0, bias
        layer = self.model.get_layer(key)
        bias = self.weights[key][1] if self._has_bias(layer) else None
        return key, self.weights[key][0], _in_axis(layer), bias

    def _kernel(self, name):
        """`(kernel, axis)`: the kernel making producer `name`'s channels."""
        if name in self.attention:
            index = self.attention[name]["attention_output/kernel"]
            return self.weights[name][index], -1
        return self.weights[name][0], _out_axis(self.model.get_layer(name))

    def _outgoing_zero(self):
        """Element roots all of whose reading weights are zero."""
        alive = set()
        for key in self.consumers:
            _, kernel, axis, _ = self._consumer(key)
            for row, root in self._rows(key):
                if root in self.removed:
                    continue
                if np.any(np.take(kernel, row, axis=axis)):
                    alive.add(root)
        return alive

    def remove_heads(self):
        """Removes attention heads that cannot change the outputs.

        A head is removable when its output projection is pruned, or when its
        value projection is: then it outputs its value bias whatever the
        attention weights (they sum to 1), a constant folded into the output
        bias. Returns how many heads were removed.
        """
        count = 0
        for name, index in self.attention.items():
            weights = self.weights[name]
            value = weights[index["value/kernel"]]
            out = weights[index["attention_output/kernel"]]
            heads = value.shape[1]
            removed = self.removed_heads[name]
            for head in range(heads):
                if head in removed or len(removed) == heads - 1:
                    continue
                if np.any(out[head]) and np.any(value[:, head]):
                    continue
                if np.any(out[head]) and "value/bias" in index:
                    bias = weights[index["attention_output/bias"]]
                    bias += np.einsum(
                        "d,do->o", weights[index["value/bias"]][head], out[head]
                    )
                for weight in ("query", "key", "value"):
                    weights[index[f"{weight}/kernel"]][:, head] = 0
                    if f"{weight}/bias" in index:
                        weights[index[f"{weight}/bias"]][head] = 0
                out[head] = 0
                removed.add(head)
                count += 1
        return count

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
            kernel, axis = self._kernel(name)  # for the next rounds to see.
            for channel, e in enumerate(out):
                if self.find(e) in dead:
                    _zero(kernel, channel, axis)
        for key in self.consumers:
            _, kernel, axis, _ = self._consumer(key)
            for row, root in self._rows(key):
                if root in dead:
                    _zero(kernel, row, axis)
        return True

    def fold_constants(self):
        """Folds units whose making weights are all zero into next biases.

        A channel an `Add` sums from several layers is constant only when
        every one of them makes it with zero weights."""
        making = {}  # root -> whether every layer making it has zero weights
        for name, out in self.producers.items():
            kernel, axis = self._kernel(name)
            opaque = name in self.attention or isinstance(
                self.model.get_layer(name), keras.layers.Embedding
            )
            for channel, e in enumerate(out):
                root = self.find(e)
                zero = not opaque and not np.any(np.take(kernel, channel, axis))
                making[root] = making.get(root, True) and zero
        constant = [
            root
            for root, zero in making.items()
            if zero and root not in self.removed and root not in self.pinned
        ]
        if not constant:
            return 0
        readers = [
            key
            for key in self.consumers
            if any(root in constant for _, root in self._rows(key))
        ]
        values = self._probe(readers)
        folded = set(constant)
        for key in readers:  # A unit folds only if every reader can take it.
            name, _, _, bias = self._consumer(key)
            layer = self.model.get_layer(name)
            # A transposed convolution spreads an input over its output
            # unevenly (by kernel position, fewer at the borders).
            foldable = (
                bias is not None
                and getattr(layer, "padding", "valid") == "valid"
                and not isinstance(layer, _TRANSPOSED)
            )
            for row, root in self._rows(key):
                value = values[key][row]
                # An exact zero adds nothing, whatever the padding or the bias.
                if root in folded and value != 0.0 and (not foldable or value is None):
                    folded.discard(root)
        for key in readers:
            _, kernel, axis, bias = self._consumer(key)
            for row, root in self._rows(key):
                if root in folded:
                    if values[key][row] != 0.0:
                        weights = np.take(kernel, row, axis=axis)
                        spatial = tuple(range(weights.ndim - bias.ndim))
                        bias += values[key][row] * weights.sum(axis=spatial)
                    _zero(kernel, row, axis)
        return len(folded)

    def _has_bias(self, layer):
        return getattr(layer, "use_bias", False) and len(self.weights[layer.name]) >= 2

    def _probe(self, keys):
        """`{key: [constant value or None per input row]}` of those consumers.

        The inputs each layer reads, computed on two random samples with the
        current weights: a row holds a constant when it is the same for both
        samples and at every position.
        """
        probe = keras.Model(
            _structure(self.model.inputs), [self.reads[key] for key in keys]
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
        for name, output in zip(keys, outputs, strict=True):
            array = ops.convert_to_numpy(output)
            rows = array.reshape(-1, array.shape[-1])
            spread = np.ptp(rows, axis=0)
            scale = np.maximum(np.abs(rows).max(axis=0), 1.0)
            found[name] = [
                _constant(rows[:, i]) if spread[i] <= 1e-6 * scale[i] else None
                for i in range(rows.shape[1])
            ]
        return found

    # --- Rebuilding -----------------------------------------------------------

    def _kept(self, elements):
        return [i for i, e in enumerate(elements) if self.find(e) not in self.removed]

    def unit_counts(self):
        counts = {
            name: (len(out), len(self._kept(out)))
            for name, out in self.producers.items()
        }
        for name, index in self.attention.items():
            heads = self.weights[name][index["value/kernel"]].shape[1]
            counts[f"{name} heads"] = (heads, heads - len(self.removed_heads[name]))
        return counts

    def rebuild(self):
        new_weights = {}

        def clone(layer):
            config = layer.get_config()
            arrays = [a.copy() for a in self.weights[layer.name]]
            if layer.name in self.attention:
                arrays, config = self._sliced_attention(layer, arrays, config)
                new_weights[layer.name] = arrays
                return layer.__class__.from_config(config)
            if layer.name in self.consumers:
                keep = self._kept(self.consumers[layer.name])
                arrays[0] = np.take(arrays[0], keep, axis=_in_axis(layer))
            if layer.name in self.producers:
                keep = self._kept(self.producers[layer.name])
                arrays[0] = np.take(arrays[0], keep, axis=_out_axis(layer))
                if len(arrays) > 1:
                    arrays[1] = arrays[1][keep]
                config[_PRODUCERS[type(layer)]] = len(keep)
            if layer.name in self.modifiers:
                keep = self._kept(self.modifiers[layer.name])
                if isinstance(layer, _DEPTHWISE):
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

    def _sliced_attention(self, layer, arrays, config):
        index = self.attention[layer.name]
        heads = [
            h
            for h in range(arrays[index["value/kernel"]].shape[1])
            if h not in self.removed_heads[layer.name]
        ]
        out = self._kept(self.producers[layer.name])
        for weight in ("query", "key", "value"):
            i = index[f"{weight}/kernel"]
            rows = self._kept(self.consumers[layer.name, i])
            arrays[i] = arrays[i][rows][:, heads]
            if f"{weight}/bias" in index:
                arrays[i + 1] = arrays[i + 1][heads]
        i = index["attention_output/kernel"]
        arrays[i] = arrays[i][heads][..., out]
        if "attention_output/bias" in index:
            arrays[i + 1] = arrays[i + 1][out]
        config["num_heads"] = len(heads)
        # Explicit: by default it follows the query's width, which may shrink.
        config["output_shape"] = len(out)
        return arrays, config


def _elementwise(activation):
    """Whether an activation acts on each channel alone (softmax does not)."""
    name = getattr(activation, "__name__", str(activation))
    return "softmax" not in name


def _out_axis(layer):
    """The axis of a producer's kernel that makes its output channels."""
    return -2 if isinstance(layer, _TRANSPOSED) else -1


def _in_axis(layer):
    """The axis of a consumer's kernel that reads its input channels."""
    return -1 if isinstance(layer, _TRANSPOSED) else -2


def _zero(array, index, axis):
    """Sets `array`'s slice `index` along `axis` to 0, in place."""
    where = [slice(None)] * array.ndim
    where[axis] = index
    array[tuple(where)] = 0


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


def _constant(values):
    """The constant a probed row holds: exactly 0.0 only if every value is 0."""
    if np.any(values):
        value = float(values[0]) or float(values.mean())
        return value if value != 0.0 else None
    return 0.0
