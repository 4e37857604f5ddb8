"""Helpers that the tests of `keras_lth.models` share."""

import numpy as np

from keras_lth.masking import prunable_layers


def kernel_sizes(model):
    """`{layer name: kernel size}` of the masked layers, in order."""
    return {
        layer.name: int(np.prod(layer.kernel.shape)) for layer in prunable_layers(model)
    }
