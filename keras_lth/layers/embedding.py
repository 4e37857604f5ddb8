"""Masked twin of `Embedding`."""

import keras
from keras import ops

from keras_lth.layers.base import MaskedLayer
from keras_lth.layers.base import multiply_by_mask

__all__ = ["MaskedEmbedding"]


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedEmbedding(MaskedLayer, keras.layers.Embedding):
    """`keras.layers.Embedding` with a prunable embedding table.

    Takes exactly the arguments of `keras.layers.Embedding` and adds a
    non-trainable `embeddings_mask` of the table's shape. Pruned entries
    are stored as zeros and get no gradient. When a batch looks up fewer
    entries than the table has rows (a large vocabulary), only the looked-up
    rows are masked, so the cost grows with the batch, not the vocabulary,
    and the gradient stays as sparse as the stock layer's; otherwise the
    table's gradient is masked as a whole, the cheaper of the two.

    Example:

    >>> layer = MaskedEmbedding(input_dim=10, output_dim=4)
    >>> y = layer(keras.ops.array([[1, 2]]))
    >>> tuple(layer.embeddings_mask.shape)
    (10, 4)
    """

    prunable_weight_names = ("embeddings",)
    prunable_initializers = {"embeddings": "embeddings_initializer"}

    def call(self, inputs):
        if inputs.dtype != "int32" and inputs.dtype != "int64":
            inputs = ops.cast(inputs, "int32")
        if _lookups(inputs) < self.input_dim:
            rows = ops.take(self.embeddings, inputs, axis=0)
            mask = ops.take(self.embeddings_mask, inputs, axis=0)
            outputs = multiply_by_mask(rows, mask)
        else:
            outputs = ops.take(self.masked_weight("embeddings"), inputs, axis=0)
        return ops.cast(outputs, dtype=self.compute_dtype)


def _lookups(inputs):
    """How many rows `inputs` looks up; 0 while its shape is not known."""
    count = 1
    for size in inputs.shape:
        if size is None:
            return 0
        count *= int(size)
    return count
