"""Masked twins of the convolution layers.

Covers `Conv1D/2D/3D`, `Conv1DTranspose/2DTranspose/3DTranspose`,
`DepthwiseConv1D/2D` and `SeparableConv1D/2D` (both kernels are prunable).
Each takes exactly the arguments of its stock layer and adds one
non-trainable mask per prunable kernel (see `keras_lth.layers.MaskedLayer`);
biases stay dense. How a pruning block lies on each kernel is explained in
`keras_lth.pruning`.
"""

import keras
from keras import ops

from keras_lth.layers.base import MaskedLayer

__all__ = [
    "MaskedConv1D",
    "MaskedConv1DTranspose",
    "MaskedConv2D",
    "MaskedConv2DTranspose",
    "MaskedConv3D",
    "MaskedConv3DTranspose",
    "MaskedDepthwiseConv1D",
    "MaskedDepthwiseConv2D",
    "MaskedSeparableConv1D",
    "MaskedSeparableConv2D",
]


class _MaskedConvolution(MaskedLayer):
    """Shared tail of every masked convolution: bias, then activation."""

    def _bias_and_activation(self, outputs, channels):
        if self.use_bias:
            if self.data_format == "channels_last":
                bias_shape = (1,) * (self.rank + 1) + (channels,)
            else:
                bias_shape = (1, channels) + (1,) * self.rank
            outputs = ops.add(outputs, ops.reshape(self.bias, bias_shape))
        if self.activation is not None:
            return self.activation(outputs)
        return outputs


class _MaskedConv(_MaskedConvolution):
    def call(self, inputs):
        padding = self.padding
        if padding == "causal":  # Only Conv1D accepts it.
            inputs = ops.pad(inputs, self._compute_causal_padding())
            padding = "valid"
        outputs = ops.conv(
            inputs,
            self.masked_weight("kernel"),
            strides=list(self.strides),
            padding=padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        return self._bias_and_activation(outputs, self.filters)


class _MaskedConvTranspose(_MaskedConvolution):
    def call(self, inputs):
        outputs = ops.conv_transpose(
            inputs,
            self.masked_weight("kernel"),
            strides=list(self.strides),
            padding=self.padding,
            output_padding=self.output_padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        return self._bias_and_activation(outputs, self.filters)


class _MaskedDepthwiseConv(_MaskedConvolution):
    prunable_initializers = {"kernel": "depthwise_initializer"}

    def call(self, inputs):
        if self.data_format == "channels_last":
            input_channel = inputs.shape[-1]
        else:
            input_channel = inputs.shape[1]
        outputs = ops.depthwise_conv(
            inputs,
            self.masked_weight("kernel"),
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        channels = self.depth_multiplier * input_channel
        return self._bias_and_activation(outputs, channels)


class _MaskedSeparableConv(_MaskedConvolution):
    prunable_weight_names = ("depthwise_kernel", "pointwise_kernel")
    prunable_initializers = {
        "depthwise_kernel": "depthwise_initializer",
        "pointwise_kernel": "pointwise_initializer",
    }

    def call(self, inputs):
        outputs = ops.separable_conv(
            inputs,
            self.masked_weight("depthwise_kernel"),
            self.masked_weight("pointwise_kernel"),
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        return self._bias_and_activation(outputs, self.filters)


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedConv1D(_MaskedConv, keras.layers.Conv1D):
    """`keras.layers.Conv1D` with a prunable kernel.

    Takes exactly the arguments of `keras.layers.Conv1D` and adds
    a non-trainable `kernel_mask` of the kernel's shape. The bias stays dense.

    Example:

    >>> layer = MaskedConv1D(filters=4, kernel_size=3)
    >>> y = layer(keras.ops.ones((1, 8, 2)))
    >>> tuple(layer.kernel_mask.shape)
    (3, 2, 4)
    """


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedConv2D(_MaskedConv, keras.layers.Conv2D):
    """`keras.layers.Conv2D` with a prunable kernel.

    Takes exactly the arguments of `keras.layers.Conv2D` and adds
    a non-trainable `kernel_mask` of the kernel's shape. The bias stays dense.

    Example:

    >>> layer = MaskedConv2D(filters=4, kernel_size=3)
    >>> y = layer(keras.ops.ones((1, 8, 8, 2)))
    >>> tuple(layer.kernel_mask.shape)
    (3, 3, 2, 4)
    """


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedConv3D(_MaskedConv, keras.layers.Conv3D):
    """`keras.layers.Conv3D` with a prunable kernel.

    Takes exactly the arguments of `keras.layers.Conv3D` and adds
    a non-trainable `kernel_mask` of the kernel's shape. The bias stays dense.

    Example:

    >>> layer = MaskedConv3D(filters=4, kernel_size=3)
    >>> y = layer(keras.ops.ones((1, 6, 6, 6, 2)))
    >>> tuple(layer.kernel_mask.shape)
    (3, 3, 3, 2, 4)
    """


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedConv1DTranspose(_MaskedConvTranspose, keras.layers.Conv1DTranspose):
    """`keras.layers.Conv1DTranspose` with a prunable kernel.

    Takes exactly the arguments of `keras.layers.Conv1DTranspose` and adds
    a non-trainable `kernel_mask` of the kernel's shape. The bias stays dense.

    Its kernel is stored `(..., filters, in_channels)`, the other way round
    from `Conv1D`'s; see `keras_lth.pruning` for what that means
    for block pruning.

    Example:

    >>> layer = MaskedConv1DTranspose(filters=4, kernel_size=3)
    >>> y = layer(keras.ops.ones((1, 8, 2)))
    >>> tuple(layer.kernel_mask.shape)
    (3, 4, 2)
    """


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedConv2DTranspose(_MaskedConvTranspose, keras.layers.Conv2DTranspose):
    """`keras.layers.Conv2DTranspose` with a prunable kernel.

    Takes exactly the arguments of `keras.layers.Conv2DTranspose` and adds
    a non-trainable `kernel_mask` of the kernel's shape. The bias stays dense.

    Its kernel is stored `(..., filters, in_channels)`, the other way round
    from `Conv2D`'s; see `keras_lth.pruning` for what that means
    for block pruning.

    Example:

    >>> layer = MaskedConv2DTranspose(filters=4, kernel_size=3)
    >>> y = layer(keras.ops.ones((1, 8, 8, 2)))
    >>> tuple(layer.kernel_mask.shape)
    (3, 3, 4, 2)
    """


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedConv3DTranspose(_MaskedConvTranspose, keras.layers.Conv3DTranspose):
    """`keras.layers.Conv3DTranspose` with a prunable kernel.

    Takes exactly the arguments of `keras.layers.Conv3DTranspose` and adds
    a non-trainable `kernel_mask` of the kernel's shape. The bias stays dense.

    Its kernel is stored `(..., filters, in_channels)`, the other way round
    from `Conv3D`'s; see `keras_lth.pruning` for what that means
    for block pruning.

    Example:

    >>> layer = MaskedConv3DTranspose(filters=4, kernel_size=3)
    >>> y = layer(keras.ops.ones((1, 6, 6, 6, 2)))
    >>> tuple(layer.kernel_mask.shape)
    (3, 3, 3, 4, 2)
    """


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedDepthwiseConv1D(_MaskedDepthwiseConv, keras.layers.DepthwiseConv1D):
    """`keras.layers.DepthwiseConv1D` with a prunable kernel.

    Takes exactly the arguments of `keras.layers.DepthwiseConv1D` and adds
    a non-trainable `kernel_mask` of the kernel's shape. The bias stays dense.

    Example:

    >>> layer = MaskedDepthwiseConv1D(kernel_size=3, depth_multiplier=2)
    >>> y = layer(keras.ops.ones((1, 8, 2)))
    >>> tuple(layer.kernel_mask.shape)
    (3, 2, 2)
    """


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedDepthwiseConv2D(_MaskedDepthwiseConv, keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` with a prunable kernel.

    Takes exactly the arguments of `keras.layers.DepthwiseConv2D` and adds
    a non-trainable `kernel_mask` of the kernel's shape. The bias stays dense.

    Example:

    >>> layer = MaskedDepthwiseConv2D(kernel_size=3, depth_multiplier=2)
    >>> y = layer(keras.ops.ones((1, 8, 8, 2)))
    >>> tuple(layer.kernel_mask.shape)
    (3, 3, 2, 2)
    """


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedSeparableConv1D(_MaskedSeparableConv, keras.layers.SeparableConv1D):
    """`keras.layers.SeparableConv1D` with prunable depthwise and pointwise kernels.

    Takes exactly the arguments of `keras.layers.SeparableConv1D` and adds
    the non-trainable `depthwise_kernel_mask` and `pointwise_kernel_mask`,
    shaped like the kernels they mask. The bias stays dense.

    Example:

    >>> layer = MaskedSeparableConv1D(filters=4, kernel_size=3)
    >>> y = layer(keras.ops.ones((1, 8, 2)))
    >>> tuple(layer.depthwise_kernel_mask.shape)
    (3, 2, 1)
    >>> tuple(layer.pointwise_kernel_mask.shape)
    (1, 2, 4)
    """


@keras.saving.register_keras_serializable(package="keras_lth")
class MaskedSeparableConv2D(_MaskedSeparableConv, keras.layers.SeparableConv2D):
    """`keras.layers.SeparableConv2D` with prunable depthwise and pointwise kernels.

    Takes exactly the arguments of `keras.layers.SeparableConv2D` and adds
    the non-trainable `depthwise_kernel_mask` and `pointwise_kernel_mask`,
    shaped like the kernels they mask. The bias stays dense.

    Example:

    >>> layer = MaskedSeparableConv2D(filters=4, kernel_size=3)
    >>> y = layer(keras.ops.ones((1, 8, 8, 2)))
    >>> tuple(layer.depthwise_kernel_mask.shape)
    (3, 3, 2, 1)
    >>> tuple(layer.pointwise_kernel_mask.shape)
    (1, 1, 2, 4)
    """
