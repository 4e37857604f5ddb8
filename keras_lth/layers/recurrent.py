"""Masked twins of the recurrent layers and of their cells.

A cell holds the prunable `kernel` and `recurrent_kernel`; its masked twin
computes the stock cell's step with both read through their masks. An RNN
layer (`LSTM`, `GRU`, `SimpleRNN`, `ConvLSTM*D`) creates its cell itself, so
its masked twin makes that cell a masked one. The generic `keras.layers.RNN`
and the wrappers (`Bidirectional`, `TimeDistributed`) serialize the layers
they hold, so `keras_lth.mask_model` masks those in place.
"""

import keras

# Keras exports no name for the convolutional LSTM cell.
from keras.src.layers.rnn.conv_lstm import ConvLSTMCell

from keras_lth.layers.base import MaskedContainer
from keras_lth.layers.in_place import BoundMaskedLayer

__all__ = [
    "MaskedConvLSTM1D",
    "MaskedConvLSTM2D",
    "MaskedConvLSTM3D",
    "MaskedConvLSTMCell",
    "MaskedGRU",
    "MaskedGRUCell",
    "MaskedLSTM",
    "MaskedLSTMCell",
    "MaskedSimpleRNN",
    "MaskedSimpleRNNCell",
]

_INITIALIZERS = {
    "kernel": "kernel_initializer",
    "recurrent_kernel": "recurrent_initializer",
}


class _MaskedCell(BoundMaskedLayer):
    prunable_weight_names = ("kernel", "recurrent_kernel")
    prunable_initializers = _INITIALIZERS

    def call(self, inputs, states, training=False):
        with self.masked_weights_bound():
            return super().call(inputs, states, training=training)


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedLSTMCell(_MaskedCell, keras.layers.LSTMCell):
    """`keras.layers.LSTMCell` with a prunable `kernel` and `recurrent_kernel`."""


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedGRUCell(_MaskedCell, keras.layers.GRUCell):
    """`keras.layers.GRUCell` with a prunable `kernel` and `recurrent_kernel`."""


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedSimpleRNNCell(_MaskedCell, keras.layers.SimpleRNNCell):
    """`keras.layers.SimpleRNNCell` with a prunable `kernel` and `recurrent_kernel`."""


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedConvLSTMCell(_MaskedCell, ConvLSTMCell):
    """The cell of `keras.layers.ConvLSTM*D`, with prunable kernels."""


class _MaskedRNN(MaskedContainer):
    """Takes exactly the arguments of the stock layer; its cell is masked.

    Its inner loop reads the cell's kernels masked, bound once per call (see
    `BoundMaskedLayer.masked_weights_bound`), whether it steps through the
    cell or hands the kernels to a fused kernel (cuDNN, PyTorch's). Only that
    loop sees `use_cudnn`: to anything else, `Bidirectional`'s fused kernel
    for both directions included, it reads False, as that kernel would take
    the cells' kernels unmasked.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_masks()  # The cell is not built: it is masked when it is.

    @property
    def use_cudnn(self):
        if not self.__dict__.get("_keras_lth_looping"):
            return False
        # Set by the stock `__init__`, before or after the class became this.
        return self.__dict__.get("_keras_lth_use_cudnn", self.__dict__.get("use_cudnn"))

    @use_cudnn.setter
    def use_cudnn(self, value):
        self.__dict__["_keras_lth_use_cudnn"] = value

    def inner_loop(self, sequences, initial_state, mask, training=False):
        self.__dict__["_keras_lth_looping"] = True
        try:
            with self.cell.masked_weights_bound():
                return super().inner_loop(
                    sequences, initial_state, mask, training=training
                )
        finally:
            self.__dict__["_keras_lth_looping"] = False


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedLSTM(_MaskedRNN, keras.layers.LSTM):
    """`keras.layers.LSTM` whose cell is a `MaskedLSTMCell`.

    Example:

    >>> layer = MaskedLSTM(4)
    >>> y = layer(keras.ops.ones((2, 5, 3)))
    >>> tuple(layer.cell.recurrent_kernel_mask.shape)
    (4, 16)
    """

    sublayer_twins = {keras.layers.LSTMCell: MaskedLSTMCell}


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedGRU(_MaskedRNN, keras.layers.GRU):
    """`keras.layers.GRU` whose cell is a `MaskedGRUCell`."""

    sublayer_twins = {keras.layers.GRUCell: MaskedGRUCell}


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedSimpleRNN(_MaskedRNN, keras.layers.SimpleRNN):
    """`keras.layers.SimpleRNN` whose cell is a `MaskedSimpleRNNCell`."""

    sublayer_twins = {keras.layers.SimpleRNNCell: MaskedSimpleRNNCell}


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedConvLSTM1D(_MaskedRNN, keras.layers.ConvLSTM1D):
    """`keras.layers.ConvLSTM1D` whose cell is a `MaskedConvLSTMCell`."""

    sublayer_twins = {ConvLSTMCell: MaskedConvLSTMCell}


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedConvLSTM2D(_MaskedRNN, keras.layers.ConvLSTM2D):
    """`keras.layers.ConvLSTM2D` whose cell is a `MaskedConvLSTMCell`."""

    sublayer_twins = {ConvLSTMCell: MaskedConvLSTMCell}


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedConvLSTM3D(_MaskedRNN, keras.layers.ConvLSTM3D):
    """`keras.layers.ConvLSTM3D` whose cell is a `MaskedConvLSTMCell`."""

    sublayer_twins = {ConvLSTMCell: MaskedConvLSTMCell}
