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
    non-trainable `embeddings_mask` of the table's shape. Only the looked-up
    rows are multiplied by their mask, so the cost of masking grows with the
    batch, not with the vocabulary.

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
        rows = ops.take(self.embeddings, inputs, axis=0)
        mask = ops.take(self.embeddings_mask, inputs, axis=0)
        outputs = multiply_by_mask(rows, mask)
        return ops.cast(outputs, dtype=self.compute_dtype)
