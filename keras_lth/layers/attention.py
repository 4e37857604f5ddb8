"""Masked twin of `MultiHeadAttention`."""

import keras

from keras_lth.layers.base import MaskedContainer
from keras_lth.layers.dense import MaskedEinsumDense

__all__ = ["MaskedMultiHeadAttention"]


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedMultiHeadAttention(MaskedContainer, keras.layers.MultiHeadAttention):
    """`keras.layers.MultiHeadAttention` with prunable projections.

    Takes exactly the arguments of `keras.layers.MultiHeadAttention`. Its
    query, key, value and output projections (and the gate, if any) become
    `MaskedEinsumDense` layers when it is built, each with a `kernel_mask`:
    `keras_lth.sparsity` keys them `"<name>/query/kernel"` and so on.

    Example:

    >>> layer = MaskedMultiHeadAttention(num_heads=2, key_dim=4)
    >>> x = keras.ops.ones((1, 3, 8))
    >>> y = layer(x, x)
    >>> tuple(layer.query_dense.kernel_mask.shape)
    (8, 2, 4)
    """

    sublayer_twins = {keras.layers.EinsumDense: MaskedEinsumDense}

    # Keras maps input shapes to `build`'s arguments by name.
    def build(self, query_shape, value_shape, key_shape=None):
        super().build(query_shape, value_shape, key_shape)
        self.add_masks()
