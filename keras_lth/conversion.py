"""Turning a model prunable (`mask_model`) and back (`strip_masks`).

Two ways, for two kinds of model:

* **A copy**, for Sequential and Functional models: every supported stock
  layer, at any depth, becomes its masked twin from `keras_lth.layers`
  (`Dense` -> `MaskedDense`, `MultiHeadAttention` ->
  `MaskedMultiHeadAttention`, the `LSTM` inside a `Bidirectional` ->
  `MaskedLSTM`, ...). The twins are registered with Keras, so
  `keras.saving.load_model` reads the copy back with nothing extra.
* **In place** (`in_place=True`), for any model, subclassed and KerasHub
  models included, keeping its class: each layer holding kernels or
  embedding tables becomes a masked subclass of its own class (the object,
  its variables and the model around it stay). Since the model's own code
  rebuilds stock layers when Keras loads it, `keras_lth.load_model` reads
  such a model back (it masks it in place before loading the weights).
"""

import warnings

import keras
import numpy as np
from keras import ops

# `clone_model` accepts a `clone_function` for exactly these two kinds of
# model; Keras exposes no public name for the functional class.
from keras.src.models.functional import Functional

from keras_lth.layer_tree import dense_weights
from keras_lth.layer_tree import layer_tree
from keras_lth.layer_tree import prunable_layers
from keras_lth.layers import MASKED_TWINS
from keras_lth.layers import MaskedContainer
from keras_lth.layers import MaskedLayer
from keras_lth.layers import stock_class
from keras_lth.layers.base import become_masked
from keras_lth.layers.base import multiply_by_mask
from keras_lth.layers.in_place import bindable_weight_names
from keras_lth.layers.in_place import bound_masked_class

__all__ = ["can_copy", "mask_model", "strip_masks"]

# Layers whose config holds the layers inside them, so that a twin swapped in
# is saved and loaded as one. A custom layer that makes its sublayers in
# `__init__` would make stock ones again on loading.
_HOLDERS = (
    keras.layers.Wrapper,
    keras.layers.Bidirectional,
    keras.layers.RNN,
    keras.layers.StackedRNNCells,
)

# Set on a layer masked in place: the class it had, which `strip_masks`
# gives back.
_ORIGINAL_CLASS = "_keras_lth_original_class"


def mask_model(model, *, layers=None, in_place=False):
    """Makes a model prunable: a copy of it, or the model itself.

    Every kernel and embedding table of a selected layer, at any depth,
    gets a mask, all ones to start with: Dense, EinsumDense, Conv* and
    Embedding layers, `MultiHeadAttention`'s projections, the `kernel` and
    `recurrent_kernel` of LSTM, GRU, SimpleRNN and ConvLSTM cells, layers
    inside `Bidirectional`, `TimeDistributed` and nested models. Outputs are
    unchanged.

    * By default `model` must be Sequential or Functional, and a copy is
      returned, made of the masked twins in `keras_lth.layers`; it is not
      compiled and `keras.saving.load_model` loads it.
    * With `in_place=True`, any built `keras.Model` (subclassed, KerasHub
      backbones) is made prunable where it is, and keeps its class. Layers
      without a twin (KerasHub's `ReversibleEmbedding` and
      `PositionEmbedding`, your own layers) are masked too, through the
      attributes their `call` reads. Load its saved file with
      `keras_lth.load_model`. Do it before `compile`.

    Kernels it cannot make prunable (a custom layer's weight held in a list,
    say) stay dense, and one `UserWarning` names them with their size;
    `sparsity(model)["dense"]` lists them too.

    Args:
        model: The model. Without `in_place`, a `keras.Sequential` or
            Functional `keras.Model` (not a subclass of it, whose class the
            copy would lose).
        layers: Which layers become prunable, with everything inside them.
            `None` (the default) selects all. Otherwise a layer name, a layer
            class, a list mixing names and classes, or a predicate
            `layer -> bool`.
        in_place: Whether to change `model` itself rather than copy it.

    Returns:
        The prunable copy, or `model`.

    Raises:
        ValueError: If no layer could be made prunable, if `model` cannot
            be copied (use `in_place=True`), or if it is not built and does
            not know its input shape.

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((784,)),
    ...     keras.layers.Dense(300, activation="relu", name="hidden"),
    ...     keras.layers.Dense(10, name="logits"),
    ... ])
    >>> masked = keras_lth.mask_model(model)
    >>> [type(layer).__name__ for layer in masked.layers]
    ['MaskedDense', 'MaskedDense']
    >>> keras_lth.sparsity(masked)["layers"]  # All ones to start with.
    {'hidden/kernel': 0.0, 'logits/kernel': 0.0}
    >>> x = np.random.rand(2, 784)
    >>> np.allclose(masked.predict(x, verbose=0), model.predict(x, verbose=0))
    True
    """
    select = _selector(layers)
    if in_place:
        _check_model(model, "mask_model")
        _build(model)
        masked = _mask_in_place(model, select)
    else:
        _check_cloneable(
            model,
            "mask_model",
            hint="Pass `in_place=True` to make it prunable where it is, "
            "keeping its class.",
        )
        masked = _mask_copy(model, select)
    if not list(prunable_layers(masked)):
        raise ValueError(
            f"`mask_model` found no layer to make prunable in model "
            f"'{model.name}' with layers={layers!r}. Supported layers: "
            f"{sorted(cls.__name__ for cls in MASKED_TWINS)}"
            + ("" if in_place else ", and with `in_place=True` any layer")
        )
    _warn_dense(masked, select, in_place)
    return masked


def _mask_copy(model, select):
    def clone(layer):
        twin = MASKED_TWINS.get(type(layer))
        if twin is not None and select(layer):
            return twin.from_config(layer.get_config())
        copy = layer.__class__.from_config(layer.get_config())
        for _, inner, chain in layer_tree(copy):
            twin = MASKED_TWINS.get(type(inner))
            if (
                twin is not None
                and all(isinstance(x, _HOLDERS) for x in (copy, *chain[:-1]))
                and (select(layer) or any(map(select, chain)))
            ):
                become_masked(inner, twin)
        return copy

    masked = keras.models.clone_model(model, clone_function=clone, recursive=True)
    _copy_weights(model, masked)
    return masked


def _mask_in_place(model, select):
    # Each layer holding kernels is masked itself, and a container (attention,
    # an RNN layer) only gets its class: its sublayers are in the tree.
    for _, layer, chain in list(layer_tree(model)):
        if isinstance(layer, (MaskedLayer, MaskedContainer)):
            continue
        if not any(map(select, chain)):
            continue
        cls = MASKED_TWINS.get(type(layer))
        if cls is not None and issubclass(cls, MaskedContainer):
            object.__setattr__(layer, _ORIGINAL_CLASS, type(layer))
            layer.__class__ = cls
            continue
        if cls is None:
            names = bindable_weight_names(layer)
            if not names:
                continue
            cls = bound_masked_class(type(layer), names)
        object.__setattr__(layer, _ORIGINAL_CLASS, type(layer))
        become_masked(layer, cls)
    return model


def strip_masks(model, *, in_place=False):
    """Bakes every mask into its weight, for export or deployment.

    By default, returns a copy of a Sequential or Functional model in which
    each masked layer becomes its stock layer, holding `weight * mask`.

    With `in_place=True`, the way for a subclassed model, the masks are
    baked into `model`'s own weights and `model` is returned. Layers that
    `mask_model(..., in_place=True)` masked get their own class back and
    lose their masks, so the model is exactly the one you masked, with
    pruned weights at zero. Layers your code builds from `keras_lth.layers`
    keep their class (so the model loads as before) with all-ones masks:
    they mask nothing, and training updates every weight.

    Either way pruned entries are exactly `0.0` and the outputs equal the
    masked model's.

    Args:
        model: A `keras.Model` with masked layers.
        in_place: Whether to change `model` rather than return a copy.

    Returns:
        An uncompiled copy made of stock Keras layers, or `model` itself.

    Raises:
        ValueError: If `model` is subclassed and `in_place` is False, or, with
            `in_place=True`, if a masked layer has LoRA enabled (its low-rank
            update is masked in `call`, so all-ones masks would change it).

    Example:

    >>> masked = keras_lth.mask_model(keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(2, name="out")]))
    >>> keras_lth.set_masks(masked, {"out/kernel": np.eye(2)})
    >>> plain = keras_lth.strip_masks(masked)
    >>> [type(layer).__name__ for layer in plain.layers]
    ['Dense']
    >>> int((keras.ops.convert_to_numpy(plain.layers[0].kernel) == 0).sum())
    2
    """
    if in_place:
        _check_model(model, "strip_masks")
        return _strip_in_place(model)
    _check_cloneable(
        model,
        "strip_masks",
        hint="Pass `in_place=True` to bake the masks into its own weights.",
    )

    def clone(layer):
        copy = _stock(layer).from_config(layer.get_config())
        for _, inner, _ in layer_tree(copy):
            if _stock(inner) is not type(inner):
                _unmask(inner, _stock(inner))
        return copy

    plain = keras.models.clone_model(model, clone_function=clone, recursive=True)
    _copy_weights(model, plain, bake_masks=True)
    return plain


def _stock(layer):
    if isinstance(layer, (MaskedLayer, MaskedContainer)):
        return stock_class(type(layer))
    return type(layer)


def _strip_in_place(model):
    layers = list(prunable_layers(model))
    lora = [layer.name for layer in layers if getattr(layer, "lora_enabled", False)]
    if lora:
        raise ValueError(
            f"`strip_masks(in_place=True)` cannot bake the masks of layers "
            f"{lora}: their LoRA update is masked in `call`. Strip a copy."
        )
    for layer in layers:
        layer.apply_masks()
        for name in layer.prunable_weight_names:  # Baked: now mask nothing.
            layer.set_mask(name, np.ones(layer.mask_variable(name).shape))
    for _, layer, _ in list(layer_tree(model)):
        original = layer.__dict__.pop(_ORIGINAL_CLASS, None)
        if original is not None:
            _unmask(layer, original)
    return model


def _unmask(layer, original):
    """Gives a layer masked in place its class back, without the masks."""
    if isinstance(layer, MaskedLayer) and layer.built:
        masks = [layer.mask_variable(name) for name in layer.prunable_weight_names]
        locked = layer._tracker.locked
        layer._tracker.unlock()
        for name, mask in zip(layer.prunable_weight_names, masks, strict=True):
            layer._tracker.untrack(mask)
            layer.__dict__.pop(f"{name}_mask", None)
        if locked:
            layer._tracker.lock()
        layer.__dict__.pop("_keras_lth_bound", None)
    layer.__dict__.pop("build", None)  # `become_masked`'s, if any.
    if "_keras_lth_use_cudnn" in layer.__dict__:  # A masked RNN's setting.
        layer.__dict__["use_cudnn"] = layer.__dict__.pop("_keras_lth_use_cudnn")
    layer.__class__ = original


def _warn_dense(model, select, in_place):
    dense = dense_weights(model, select)
    if not dense:
        return
    prunable = sum(
        int(np.prod(layer.prunable_variable(name).shape))
        for layer in prunable_layers(model)
        for name in layer.prunable_weight_names
    )
    left = sum(dense.values())
    total = prunable + left
    listed = ", ".join(f"'{path}' ({size:,})" for path, size in dense.items())
    hint = (
        "Layers keras_lth has no twin for are masked only in place: pass "
        "`in_place=True`."
        if not in_place
        else "A layer's weight is masked in place only if an attribute of "
        "the layer holds it (not a list or a dict)."
    )
    warnings.warn(
        f"`mask_model` could not make {len(dense)} weight tensors of model "
        f"'{model.name}' prunable: {listed}. They stay dense: {left:,} of "
        f"its {total:,} kernel and embedding weights ({left / total:.1%}). "
        f"{hint} `keras_lth.sparsity(model)['dense']` lists these.",
        UserWarning,
        stacklevel=3,
    )


def _check_model(model, caller):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`{caller}` expects a `keras.Model`. Received: {model!r} "
            f"of type {type(model).__name__}"
        )


def can_copy(model):
    """Whether `mask_model` and `strip_masks` can copy `model`.

    They can copy a `keras.Sequential` or Functional model whose nested
    models are so too. A subclass of either (a KerasHub backbone) would be
    copied as a plain Functional model, losing its class and methods, and a
    subclassed model cannot be copied at all.
    """
    return _uncopyable(model) is None


def _uncopyable(model):
    """The first model in `model`'s tree that cannot be copied, or None."""
    models = [model] + [
        x for _, x, _ in layer_tree(model) if isinstance(x, keras.Model)
    ]
    return next(
        (x for x in models if type(x) not in (keras.Sequential, Functional)), None
    )


def _check_cloneable(model, caller, *, hint=""):
    _check_model(model, caller)
    culprit = _uncopyable(model)
    if culprit is not None:
        kind = "Functional" if isinstance(culprit, Functional) else "keras.Model"
        where = "" if culprit is model else f" (in model '{model.name}')"
        raise ValueError(
            f"`{caller}` can only copy Sequential and Functional models, not "
            f"subclasses. Received model '{culprit.name}'{where} of type "
            f"{type(culprit).__name__}, a subclass of {kind}. " + hint
        )


def _build(model):
    """Builds an unbuilt model from its build config, or says how to."""
    config = None if model.built else model.get_build_config()
    if config:
        model.build_from_config(config)
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built: its weights do not exist yet, "
            "so they cannot be masked. Build it first: call it on one batch "
            "(`model(x[:1])`) or `model.build(input_shape)`."
        )


def _selector(layers):
    if layers is None:
        return lambda layer: True
    if callable(layers) and not isinstance(layers, type):
        return layers
    items = layers if isinstance(layers, (list, tuple, set)) else [layers]
    names = {item for item in items if isinstance(item, str)}
    classes = tuple(item for item in items if isinstance(item, type))
    if len(names) + len(classes) != len(items):
        raise TypeError(
            "Expected `layers` to be None, a layer name, a layer class, a list "
            f"of names and classes, or a predicate. Received: {layers!r}"
        )
    return lambda layer: layer.name in names or isinstance(layer, classes)


def _copy_weights(source, target, bake_masks=False):
    """Copies each variable of `source` to its namesake in `target`.

    Variables are matched by layer path and name, so masks that only one of
    the two models has are left alone (the copy's start at ones).
    """
    targets = _variables_by_path(target)
    sources = _variables_by_path(source)
    masks = {}
    if bake_masks:
        for path, layer, _ in layer_tree(source):
            if isinstance(layer, MaskedLayer):
                for name in layer.prunable_weight_names:
                    masks[f"{path}/{name}"] = layer.mask_variable(name)
    for key, variable in sources.items():
        if key not in targets:
            if bake_masks and key.endswith("_mask"):
                continue
            raise RuntimeError(f"The copy of model '{source.name}' has no '{key}'.")
        value = variable
        if key in masks:
            value = multiply_by_mask(variable, masks[key])
        # A copy, as `set_weights(get_weights())` makes: on JAX, assigning
        # the variable itself would share its array, and the next jitted
        # step of either model donates (deletes) it under the other.
        targets[key].assign(ops.convert_to_numpy(value))


def _variables_by_path(model):
    found = {}
    for path, layer, _ in layer_tree(model):
        below = {
            id(variable)
            for child in layer._flatten_layers(include_self=False, recursive=False)
            for variable in child.variables
        }
        for variable in layer.variables:
            if id(variable) not in below:
                found.setdefault(f"{path}/{variable.name}", variable)
    return found
