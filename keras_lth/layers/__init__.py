"""Prunable twins of the stock Keras layers.

Each `Masked*` class subclasses the stock layer of the same name, takes the
same arguments, and carries one non-trainable mask per prunable weight.
Biases and normalization layers stay dense. Layers whose kernels live in
sublayers (`MaskedMultiHeadAttention`, the recurrent layers) are
`MaskedContainer`s: they make those sublayers masked. Use them directly to build a
prunable model (including a subclassed one), or let `keras_lth.mask_model`
swap them into an existing Sequential or Functional model.
"""

from keras_lth.layers.attention import MaskedMultiHeadAttention
from keras_lth.layers.base import MaskedContainer
from keras_lth.layers.base import MaskedLayer
from keras_lth.layers.base import stock_class
from keras_lth.layers.convolutional import MaskedConv1D
from keras_lth.layers.convolutional import MaskedConv1DTranspose
from keras_lth.layers.convolutional import MaskedConv2D
from keras_lth.layers.convolutional import MaskedConv2DTranspose
from keras_lth.layers.convolutional import MaskedConv3D
from keras_lth.layers.convolutional import MaskedConv3DTranspose
from keras_lth.layers.convolutional import MaskedDepthwiseConv1D
from keras_lth.layers.convolutional import MaskedDepthwiseConv2D
from keras_lth.layers.convolutional import MaskedSeparableConv1D
from keras_lth.layers.convolutional import MaskedSeparableConv2D
from keras_lth.layers.dense import MaskedDense
from keras_lth.layers.dense import MaskedEinsumDense
from keras_lth.layers.embedding import MaskedEmbedding
from keras_lth.layers.recurrent import MaskedConvLSTM1D
from keras_lth.layers.recurrent import MaskedConvLSTM2D
from keras_lth.layers.recurrent import MaskedConvLSTM3D
from keras_lth.layers.recurrent import MaskedConvLSTMCell
from keras_lth.layers.recurrent import MaskedGRU
from keras_lth.layers.recurrent import MaskedGRUCell
from keras_lth.layers.recurrent import MaskedLSTM
from keras_lth.layers.recurrent import MaskedLSTMCell
from keras_lth.layers.recurrent import MaskedSimpleRNN
from keras_lth.layers.recurrent import MaskedSimpleRNNCell

MASKED_LAYERS = (
    MaskedDense,
    MaskedEinsumDense,
    MaskedConv1D,
    MaskedConv2D,
    MaskedConv3D,
    MaskedConv1DTranspose,
    MaskedConv2DTranspose,
    MaskedConv3DTranspose,
    MaskedDepthwiseConv1D,
    MaskedDepthwiseConv2D,
    MaskedSeparableConv1D,
    MaskedSeparableConv2D,
    MaskedEmbedding,
    MaskedMultiHeadAttention,
    MaskedLSTM,
    MaskedGRU,
    MaskedSimpleRNN,
    MaskedConvLSTM1D,
    MaskedConvLSTM2D,
    MaskedConvLSTM3D,
    MaskedLSTMCell,
    MaskedGRUCell,
    MaskedSimpleRNNCell,
    MaskedConvLSTMCell,
)

#: Maps each supported stock Keras layer class to its masked twin.
MASKED_TWINS = {stock_class(cls): cls for cls in MASKED_LAYERS}

__all__ = [
    "MASKED_TWINS",
    "MaskedContainer",
    "MaskedLayer",
    *(cls.__name__ for cls in MASKED_LAYERS),
]
