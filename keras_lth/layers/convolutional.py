"""Masked twins of the convolution layers.

Covers `Conv1D/2D/3D`, `Conv1DTranspose/2DTranspose/3DTranspose`,
`DepthwiseConv1D/2D` and `SeparableConv1D/2D` (both kernels are prunable).
Each takes exactly the arguments of its stock layer.
"""

import keras
from keras import ops

from keras_lth.layers.base import MaskedLayer
from keras_lth.layers.base import stock_class


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


def _register(cls):
    stock = stock_class(cls).__name__
    names = cls.prunable_weight_names
    cls.__doc__ = (
        f"`keras.layers.{stock}` whose {' and '.join(names)} "
        f"{'are' if len(names) > 1 else 'is'} prunable.\n\n"
        f"Takes exactly the arguments of `keras.layers.{stock}` and adds the "
        f"non-trainable {', '.join(n + '_mask' for n in names)}, shaped like "
        "the weights they mask. The bias stays dense."
    )
    return keras.saving.register_keras_serializable(package="keras_lth")(cls)


@_register
class MaskedConv1D(_MaskedConv, keras.layers.Conv1D):
    pass


@_register
class MaskedConv2D(_MaskedConv, keras.layers.Conv2D):
    pass


@_register
class MaskedConv3D(_MaskedConv, keras.layers.Conv3D):
    pass


@_register
class MaskedConv1DTranspose(_MaskedConvTranspose, keras.layers.Conv1DTranspose):
    pass


@_register
class MaskedConv2DTranspose(_MaskedConvTranspose, keras.layers.Conv2DTranspose):
    pass


@_register
class MaskedConv3DTranspose(_MaskedConvTranspose, keras.layers.Conv3DTranspose):
    pass


@_register
class MaskedDepthwiseConv1D(_MaskedDepthwiseConv, keras.layers.DepthwiseConv1D):
    pass


@_register
class MaskedDepthwiseConv2D(_MaskedDepthwiseConv, keras.layers.DepthwiseConv2D):
    pass


@_register
class MaskedSeparableConv1D(_MaskedSeparableConv, keras.layers.SeparableConv1D):
    pass


@_register
class MaskedSeparableConv2D(_MaskedSeparableConv, keras.layers.SeparableConv2D):
    pass
