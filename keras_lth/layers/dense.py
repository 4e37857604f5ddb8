"""Masked twins of `Dense` and `EinsumDense`."""

import keras
from keras import ops

from keras_lth.layers.base import MaskedLayer

__all__ = ["MaskedDense", "MaskedEinsumDense"]


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedDense(MaskedLayer, keras.layers.Dense):
    """`keras.layers.Dense` with a prunable kernel.

    Takes exactly the arguments of `keras.layers.Dense` and adds a
    non-trainable `kernel_mask` of the kernel's shape. The bias stays dense.

    Example:

    >>> layer = MaskedDense(4)
    >>> y = layer(keras.ops.ones((2, 3)))
    >>> tuple(layer.kernel_mask.shape)
    (3, 4)
    """

    def call(self, inputs, training=None):
        x = ops.matmul(inputs, self.masked_weight("kernel"))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedEinsumDense(MaskedLayer, keras.layers.EinsumDense):
    """`keras.layers.EinsumDense` with a prunable kernel.

    Takes exactly the arguments of `keras.layers.EinsumDense` and adds a
    non-trainable `kernel_mask` of the kernel's shape.

    Example:

    >>> layer = MaskedEinsumDense("ab,bc->ac", output_shape=4)
    >>> y = layer(keras.ops.ones((2, 3)))
    >>> tuple(layer.kernel_mask.shape)
    (3, 4)
    """

    def call(self, inputs, training=None):
        x = ops.einsum(self.equation, inputs, self.masked_weight("kernel"))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x
