"""Masking a layer whose `call` keras_lth does not rewrite.

The masked twins of `keras_lth.layers` rewrite the stock `call` to read each
prunable weight through `masked_weight`. A layer keras_lth has no twin for (a
KerasHub `ReversibleEmbedding`, an RNN cell, a user's custom layer) gets a
`BoundMaskedLayer` subclass of its own class instead: while its `call` runs,
the attributes that hold its prunable variables hold the gradient-masked
values, so its own code computes with the weights exactly as a twin would.
"""

import contextlib
import functools

import keras

from keras_lth.layers.base import MaskedLayer
from keras_lth.layers.base import gradient_masked

__all__ = ["BoundMaskedLayer", "bound_masked_class", "bindable_weight_names"]

#: Variables whose names end so are pruned: kernels and embedding tables.
PRUNABLE_SUFFIXES = ("kernel", "embeddings")


class BoundMaskedLayer(MaskedLayer):
    """Masks a layer through the attributes its `call` reads.

    Subclasses list `prunable_weight_names` as for any `MaskedLayer` and
    wrap the stock `call` in `masked_weights_bound()`.
    """

    @contextlib.contextmanager
    def masked_weights_bound(self):
        """While it is entered, the layer's prunable attributes are masked.

        Each attribute holding a prunable variable holds `masked_weight`'s
        value instead: the stored weight, its gradient times the mask. The
        variables are put back on exit, whatever happens.
        """
        if self.__dict__.get("_keras_lth_bound_now"):
            yield  # Bound already, by the RNN layer around this cell.
            return
        bound = self.__dict__.get("_keras_lth_bound")
        if bound is None:
            bound = _bound_attributes(self, self.prunable_weight_names)
            # Set past Keras's attribute tracking: a list of names, not state.
            object.__setattr__(self, "_keras_lth_bound", bound)
        saved = {}
        try:
            for attribute, name in bound:
                variable = self.__dict__[attribute]
                saved[attribute] = variable
                value = gradient_masked(variable, self.mask_variable(name))
                object.__setattr__(self, attribute, value)
            self.__dict__["_keras_lth_bound_now"] = True
            yield
        finally:
            self.__dict__["_keras_lth_bound_now"] = False
            for attribute, variable in saved.items():
                object.__setattr__(self, attribute, variable)

    def masked_weight(self, name):
        """Returns weight `name`'s value, its gradient times its mask."""
        return gradient_masked(self.prunable_variable(name), self.mask_variable(name))

    def initializer_for(self, name):
        """Returns the initializer of weight `name`, found by its name.

        `<name>_initializer`, `recurrent_initializer` for a recurrent kernel,
        or `initializer` (as KerasHub's `PositionEmbedding` calls it).
        """
        candidates = [self.prunable_initializers.get(name), f"{name}_initializer"]
        if name == "recurrent_kernel":
            candidates.append("recurrent_initializer")
        candidates.append("initializer")
        for attribute in filter(None, candidates):
            initializer = getattr(self, attribute, None)
            if initializer is not None:
                return keras.initializers.get(initializer)
        raise ValueError(
            f"Layer '{self.name}' ({type(self).__name__}) has no attribute "
            f"naming the initializer of its weight '{name}' (tried "
            f"{[c for c in candidates if c]}): it cannot be drawn again."
        )


def bindable_weight_names(layer):
    """Names of `layer`'s own variables that a `BoundMaskedLayer` can mask.

    Its kernels and embedding tables (`PRUNABLE_SUFFIXES`) that are not a
    sublayer's and that an attribute of the layer holds, so that `call`
    reads them through it.
    """
    below = {
        id(variable)
        for child in layer._flatten_layers(include_self=False, recursive=True)
        for variable in child.variables
    }
    held = {id(value) for value in vars(layer).values()}
    return tuple(
        variable.name
        for variable in layer.variables
        if id(variable) not in below
        and id(variable) in held
        and variable.name.endswith(PRUNABLE_SUFFIXES)
    )


_CLASSES = {}  # (class, weight names) -> its BoundMaskedLayer subclass.


def bound_masked_class(cls, names):
    """Returns a masked subclass of layer class `cls` masking weights `names`.

    It keeps `cls`'s name and module, so it prints and serializes as `cls`
    does. One class is made per `(cls, names)` and reused.
    """
    key = (cls, tuple(names))
    if key not in _CLASSES:
        stock_call = cls.call

        @functools.wraps(stock_call)
        def call(self, *args, **kwargs):
            with self.masked_weights_bound():
                return stock_call(self, *args, **kwargs)

        _CLASSES[key] = type(
            cls.__name__,
            (BoundMaskedLayer, cls),
            {
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__doc__": cls.__doc__,
                "prunable_weight_names": tuple(names),
                "prunable_initializers": {},
                "call": call,
            },
        )
    return _CLASSES[key]


def _bound_attributes(layer, names):
    variables = {id(layer.prunable_variable(name)): name for name in names}
    bound = [
        (attribute, variables[id(value)])
        for attribute, value in vars(layer).items()
        if id(value) in variables
    ]
    missing = set(names) - {name for _, name in bound}
    if missing:
        raise ValueError(
            f"Layer '{layer.name}' holds its weights {sorted(missing)} in no "
            "attribute, so its `call` cannot be made to read them masked."
        )
    return bound
