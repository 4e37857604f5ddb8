"""The mixin that turns a stock Keras layer into a prunable one."""

import keras
from keras import ops


class MaskedLayer:
    """Mixin that adds one non-trainable mask per prunable weight.

    A masked layer subclasses a stock Keras layer (for example
    `MaskedDense(MaskedLayer, keras.layers.Dense)`) and lists the attribute
    names of its prunable weights in `prunable_weight_names`. After the stock
    `build` has created those weights, the mixin adds a mask variable of the
    same shape for each, named after it (`kernel_mask`,
    `depthwise_kernel_mask`, ...) and initialised to ones.

    The layer's `call` reads every prunable weight through `masked_weight`,
    which multiplies it by its mask. A pruned entry therefore contributes
    nothing to the output and receives an exactly zero gradient, whatever the
    optimizer does to the stored value: it can never grow back.

    Masks are ordinary Keras variables. They are saved with the model, mirrored
    under a `tf.distribute` strategy, and updated with `assign` (see
    `keras_lth.mask_model` and `keras_lth.LotteryTicket`).
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
        self._add_masks()
        if lora_rank:
            self.lora_rank = lora_rank
            self.enable_lora(lora_rank, lora_alpha=getattr(self, "lora_alpha", None))

    def _add_masks(self):
        for name in self.prunable_weight_names:
            weight = self.prunable_variable(name)
            mask = self.add_weight(
                name=f"{name}_mask",
                shape=weight.shape,
                initializer="ones",
                dtype=weight.dtype,
                trainable=False,
                aggregation="only_first_replica",
            )
            setattr(self, f"{name}_mask", mask)

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
        """Returns `weight * mask` for the prunable weight `name`."""
        mask = self.mask_variable(name)
        return ops.multiply(getattr(self, name), mask)

    # The stock layers override these two to support quantization and LoRA,
    # and save only their stock weights. Masks are part of a masked layer's
    # state, so every variable is saved, in the order the layer owns them.
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)


def stock_class(masked_class):
    """Returns the stock Keras layer class a masked layer class extends."""
    for cls in masked_class.__mro__:
        if issubclass(cls, keras.layers.Layer) and not issubclass(cls, MaskedLayer):
            return cls
    raise TypeError(f"Expected a subclass of a Keras layer. Received: {masked_class!r}")
