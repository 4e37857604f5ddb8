"""PyTorch's way of masking a weight's gradient: a hook on the weight's tensor.

Imported by `keras_lth.layers.base` only when Keras runs on PyTorch. The other
backends compile the training step, where a custom gradient
(`keras.ops.custom_gradient`) costs nothing but the multiply. PyTorch runs the
step eagerly, where a custom gradient is a Python `autograd.Function` called
for every masked weight on every step, dearer than the multiply it wraps. A
tensor hook does the same job for little more than the multiply: autograd
hands it the weight's gradient as it computes it, and the forward pass reads
the stored weight, whose pruned entries are zero, with no extra work at all.
"""

import weakref

import torch

__all__ = ["MaskGradient", "hooked_weight"]

# id(tensor) -> (weak reference to the tensor, the mask variable its hook
# multiplies by). Kept here rather than as an attribute of the tensor, which
# PyTorch would pickle; keyed by id because tensors compare elementwise.
_HOOKED = {}


class MaskGradient:
    """The hook: multiplies a gradient by a mask, in the gradient's dtype.

    That is the mask itself, unless mixed precision makes the gradient
    float16 or bfloat16: then a copy in that dtype. While the mask is all
    ones (an unpruned layer, IMP's first round), the product would equal the
    gradient, so the hook leaves the gradient as it is and skips the pass
    over it. What the mask holds is looked at again only when it has changed
    (`Variable.assign` copies in place, which bumps the tensor's version
    counter).
    """

    def __init__(self, mask):
        self.mask = mask
        self.version = None
        self.dtype = None
        self.factor = None  # None while the mask is all ones.

    def __call__(self, gradient):
        if self.version != self.mask._version or self.dtype != gradient.dtype:
            self.version = self.mask._version
            self.dtype = gradient.dtype
            if bool(torch.all(self.mask)):
                self.factor = None
            else:
                self.factor = self.mask.to(gradient.dtype)
        if self.factor is None:
            return None  # The gradient, unchanged.
        return torch.mul(gradient, self.factor)


def hooked_weight(weight, mask):
    """Returns `weight`'s tensor, its gradient multiplied by `mask`'s.

    The hook is registered once per tensor and holds the mask's tensor,
    which `Variable.assign` updates in place, so it follows every later
    `set_mask`. A tensor the hook is not on yet (a new layer, a deep copy, a
    `StatelessScope` value, an autocast copy) gets one on first use.

    Args:
        weight: The prunable `keras.Variable`.
        mask: Its mask `keras.Variable`.

    Returns:
        The tensor to compute with, or `None` while `torch.compile` traces
        the step, where the caller multiplies by the mask instead.
    """
    if torch.compiler.is_compiling():
        return None
    tensor = weight.value
    if not tensor.requires_grad:
        return tensor
    key = id(tensor)
    hooked, hooked_mask = _HOOKED.get(key, (None, None))
    if hooked is None or hooked() is not tensor or hooked_mask is not mask:
        tensor.register_hook(MaskGradient(mask.value))
        _HOOKED[key] = (weakref.ref(tensor, lambda _: _HOOKED.pop(key, None)), mask)
    return tensor
