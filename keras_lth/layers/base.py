"""The mixin that turns a stock Keras layer into a prunable one."""

import functools

import keras
import numpy as np
from keras import ops

from keras_lth._compat import only_first_replica_scope
from keras_lth._compat import refuse_tf_distribute_off_tensorflow

__all__ = [
    "MaskedContainer",
    "MaskedLayer",
    "become_masked",
    "gradient_masked",
    "multiply_by_mask",
    "stock_class",
]


class MaskedLayer:
    """Mixin that adds one non-trainable mask per prunable weight.

    A masked layer subclasses a stock Keras layer, for example
    `MaskedDense(MaskedLayer, keras.layers.Dense)`, and lists the attribute
    names of its prunable weights in `prunable_weight_names`. After the stock
    `build` has created them, the mixin adds for each a mask variable of the
    same shape, named after it (`kernel_mask`, `depthwise_kernel_mask`, ...)
    and initialised to ones (kept). Masks are ordinary Keras variables: saved
    with the model, mirrored under a `tf.distribute` strategy, never trained.
    They are bool on JAX and take the weight's dtype elsewhere; files load on
    every backend whichever dtype they were saved in.

    Masks are in `layer.variables` but not in `layer.weights`, like a
    `SeedGenerator`'s state: `get_weights` and `set_weights` carry the stock
    layer's weights only, in its order, so `model.set_weights(snapshot)`
    restores weights under the current masks rather than the snapshot's,
    and `count_params` counts no mask. (Legacy `.h5` files, which hold
    `weights`, lose the masks; `.keras` and `.weights.h5` files keep them.)

    On every training step:

    * **Zero gradient.** `call` reads each prunable weight through
      `masked_weight`, whose gradient is the incoming gradient times the
      mask: no optimizer, momentum or gradient clipping sees a pruned entry.
    * **Stored zeros.** A pruned entry is stored as zero, and every keras_lth
      path that changes masks or weights keeps it so: `set_mask`,
      `keras_lth.set_masks`, `layer.set_weights` and loading, and the
      callbacks, which also zero the optimizer's slots of pruned entries. So
      no update can move a pruned weight off zero, and the forward pass
      reads the weight as it is stored.

    Change masks with `set_mask` or `keras_lth.set_masks`, not by assigning
    the mask variables. After writing weights with `Variable.assign` or
    `Model.set_weights`, call `keras_lth.set_masks(model, {})` (or
    `layer.apply_masks()`) to re-zero the pruned entries;
    `keras_lth.masking.restore_weights` does both. A custom training loop
    whose optimizer is not `model.optimizer` passes it to `set_masks`
    (`optimizer=`), which zeroes its slots too: Adam's moments would
    otherwise move pruned weights on zero gradients. With LoRA enabled,
    the low-rank update is not stored in the kernel, so `call` multiplies
    the weight by its mask instead.

    Example:

    >>> layer = keras_lth.layers.MaskedDense(2)
    >>> y = layer(keras.ops.ones((1, 3)))
    >>> layer.set_mask("kernel", [[1, 0], [1, 1], [0, 1]])
    >>> float(keras.ops.convert_to_numpy(layer.kernel)[0, 1])
    0.0
    """

    prunable_weight_names = ("kernel",)
    # Where the stock layer keeps each prunable weight's initializer.
    prunable_initializers = {"kernel": "kernel_initializer"}

    def build(self, input_shape=None):
        # The stock `build` ends with `enable_lora` when `lora_rank` is set,
        # which locks the layer; the masks must exist before that.
        lora_rank = getattr(self, "lora_rank", None)
        if lora_rank:
            self.lora_rank = None
        super().build(input_shape)
        self.add_masks()
        if lora_rank:
            self.lora_rank = lora_rank
            # `lora_alpha` exists from Keras 3.10 on; before, `enable_lora`
            # implies alpha == rank, as newer Keras does for `None`.
            lora_alpha = getattr(self, "lora_alpha", None)
            if lora_alpha is None:
                self.enable_lora(lora_rank)
            else:
                self.enable_lora(lora_rank, lora_alpha=lora_alpha)

    def add_masks(self):
        """Adds an all-ones mask per prunable weight; `build` calls it.

        A layer masked in place (`keras_lth.mask_model(..., in_place=True)`)
        is built already: Keras locks a built layer's state, so the lock is
        lifted while the masks are added, as Keras's own `quantize` does.
        """
        refuse_tf_distribute_off_tensorflow(f"Masked layer '{self.name}' is built")
        locked = self._tracker.locked
        self._tracker.unlock()
        try:
            for name in self.prunable_weight_names:
                weight = self.prunable_variable(name)
                with only_first_replica_scope():
                    mask = self.add_weight(
                        name=f"{name}_mask",
                        shape=weight.shape,
                        initializer="ones",
                        dtype="bool" if _BOOL_MASKS else weight.dtype,
                        trainable=False,
                        aggregation="only_first_replica",
                    )
                setattr(self, f"{name}_mask", mask)
        finally:
            if locked:
                self._tracker.lock()

    def prunable_variable(self, name):
        """Returns the stored variable behind the prunable weight `name`."""
        for variable in self.weights:
            if variable.name == name:
                return variable
        raise ValueError(
            f"Layer '{self.name}' has no weight named '{name}'. "
            f"Its weights are: {[v.name for v in self.weights]}."
        )

    def mask_variable(self, name):
        """Returns the mask variable of the prunable weight `name`."""
        if name not in self.prunable_weight_names:
            raise ValueError(
                f"Expected one of {self.prunable_weight_names} for layer "
                f"'{self.name}'. Received: name={name!r}"
            )
        if not self.built:
            raise ValueError(
                f"Layer '{self.name}' has no masks until it is built. Call it "
                "on data or call `build(input_shape)` first."
            )
        return getattr(self, f"{name}_mask")

    def initializer_for(self, name):
        """Returns the initializer the stock layer uses for weight `name`."""
        return getattr(self, self.prunable_initializers[name])

    def masked_weight(self, name):
        """Returns the weight `name` as `call` should use it.

        Its value is the weight itself, whose pruned entries are stored as
        zeros, and its gradient is masked: pruned entries get exactly zero.
        """
        # Only the gradient is masked: `weight * mask` in the forward pass
        # would cost a pass over every kernel, forward and backward, while
        # the stored zeros cost nothing to read. TensorFlow and JAX compile
        # the step, where a custom gradient costs only the multiply; PyTorch
        # runs it eagerly, where a tensor hook is cheaper than a Python
        # `autograd.Function` on every call (see `_torch_gradient`).
        mask = self.mask_variable(name)
        weight = getattr(self, name)
        if getattr(self, "lora_enabled", False):
            # The low-rank update is not zero at pruned entries.
            return multiply_by_mask(weight, mask)
        return gradient_masked(weight, mask)

    def set_mask(self, name, mask):
        """Sets the mask of weight `name` and zeroes its pruned entries.

        Args:
            name: A prunable weight's name, for example `"kernel"`.
            mask: An array of the weight's shape holding 0 (pruned) and 1
                (kept), of any numeric dtype, or `False` and `True`.
        """
        mask_variable = self.mask_variable(name)
        mask = np.asarray(ops.convert_to_numpy(mask))
        if mask.shape != tuple(mask_variable.shape):
            raise ValueError(
                f"Expected a mask of shape {tuple(mask_variable.shape)} for "
                f"'{self.name}/{name}'. Received shape {mask.shape}"
            )
        invalid = ~np.isin(mask, (0, 1))
        if invalid.any():
            raise ValueError(
                f"Expected a mask of 0 (pruned) and 1 (kept) for "
                f"'{self.name}/{name}'. Received {int(invalid.sum())} other "
                f"values, such as {np.unique(mask[invalid])[:3].tolist()}"
            )
        mask_variable.assign(mask.astype(bool))
        self.apply_masks()

    def apply_masks(self):
        """Zeroes the stored weights wherever their mask is 0."""
        for name in self.prunable_weight_names:
            mask = self.mask_variable(name)  # Refuses an unbuilt layer.
            weight = self.prunable_variable(name)
            weight.assign(multiply_by_mask(weight, mask))

    @property
    def weights(self):
        """The stock layer's weights: every weight variable but the masks."""
        masks = {f"{name}_mask" for name in self.prunable_weight_names}
        return [v for v in super().weights if v.name not in masks]

    def set_weights(self, weights):
        """Sets the stock layer's weights and re-zeroes the pruned entries.

        `weights` lists them as the stock layer's `get_weights` does, without
        masks: the masks stay as they are (change them with `set_mask`).
        """
        super().set_weights(weights)
        self.apply_masks()

    # The stock layers override these two to support quantization and LoRA,
    # and save only their stock weights. Masks are part of a masked layer's
    # state, so every variable is saved, in the order the layer owns them.
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)
        self.apply_masks()


def gradient_masked(weight, mask):
    """Returns the value of variable `weight`, its gradient times `mask`.

    See `MaskedLayer.masked_weight`, which this implements.
    """
    if _torch_gradient is None:
        # Tensors, not the variables: a custom gradient differentiates with
        # respect to its tensor arguments.
        return _mask_gradient(
            ops.convert_to_tensor(weight), ops.convert_to_tensor(mask)
        )
    tensor = _torch_gradient.hooked_weight(weight, mask)
    # While torch.compile traces, there is no hook.
    return multiply_by_mask(weight, mask) if tensor is None else tensor


def multiply_by_mask(value, mask):
    """Returns `value * mask` in `value`'s dtype, whatever the mask's dtype.

    Masks are bool on JAX and take the weight's dtype elsewhere, while the
    value may be a weight, a gradient, an optimizer slot or a compute-dtype
    tensor under mixed precision.
    """
    return ops.multiply(value, ops.cast(mask, value.dtype))


class MaskedContainer:
    """Mixin of a layer whose prunable weights live in masked sublayers.

    `MultiHeadAttention` holds its kernels in `EinsumDense` sublayers, an
    RNN in its cell: their masked twins (`MaskedMultiHeadAttention`,
    `MaskedLSTM`, ...) hold no mask themselves but make those sublayers
    masked ones, when they are built and when a file is loaded.
    """

    #: Stock sublayer class -> its masked twin, set by each container twin.
    sublayer_twins = {}

    def add_masks(self):
        """Makes the built sublayers of `sublayer_twins`' classes masked."""
        for layer in self._flatten_layers(include_self=False, recursive=True):
            twin = self.sublayer_twins.get(type(layer))
            if twin is not None:
                become_masked(layer, twin)


def become_masked(layer, cls):
    """Makes `layer` an instance of `cls`, a masked subclass of its class.

    Its variables and everything else stay; a built layer gets its masks
    (all ones) at once, an unbuilt one when it is built.
    """
    layer.__class__ = cls
    if layer.built:
        layer.add_masks()
        return
    # Keras wrapped the stock `build` for this object when it was created
    # (`Layer.__new__`), so the new class's `build` would never run.
    stock_build = layer.build

    @functools.wraps(stock_build)
    def build(*args, **kwargs):
        stock_build(*args, **kwargs)
        layer.add_masks()

    object.__setattr__(layer, "build", build)


def stock_class(masked_class):
    """Returns the stock Keras layer class a masked layer class extends."""
    for cls in masked_class.__mro__:
        if issubclass(cls, keras.layers.Layer) and not issubclass(
            cls, (MaskedLayer, MaskedContainer)
        ):
            return cls
    raise TypeError(f"Expected a subclass of a Keras layer. Received: {masked_class!r}")


# Only XLA, which Keras uses on JAX everywhere, fuses a mask's cast into the
# gradient, so there a bool mask costs a quarter of the memory and of the bytes
# read per step that a float32 one does. TensorFlow (without XLA on CPU) and
# PyTorch would cast in a kernel of its own, and multiply two floats fastest.
_BOOL_MASKS = keras.backend.backend() == "jax"

# PyTorch runs the training step eagerly, where the custom gradient below is a
# Python `autograd.Function` on every call: a tensor hook replaces it there.
if keras.backend.backend() == "torch":
    from keras_lth.layers import _torch_gradient
else:
    _torch_gradient = None


@ops.custom_gradient
def _mask_gradient(weight, mask):
    """Identity on `weight`, whose gradient is multiplied by `mask`."""

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        return multiply_by_mask(upstream, mask), None

    return weight, grad
