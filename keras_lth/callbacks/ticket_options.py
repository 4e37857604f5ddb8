"""The options of `LotteryTicket`: their checks, and how they are saved.

One function per rule, each raising Keras's "Expected ... Received: ..."
`ValueError`. `settings_with_defaults` fills in the settings that run-state
files written before an option existed do not hold, so that such a file
still resumes with the option's default.
"""

import warnings

import keras

from keras_lth import structured

__all__ = [
    "ADDED_SETTINGS",
    "block_config",
    "check_early_bird",
    "check_granularity",
    "check_one_shot",
    "check_rewind_point",
    "saved_settings",
    "settings_with_defaults",
    "unit_axes_of",
]

#: Settings newer than the run-state format, with the value a file written
#: before them was run with.
ADDED_SETTINGS = {
    "min_density": 0.0,
    "granularity": "weight",
    "refill": False,
    "coupled": False,
}

# Kernels stored `(..., out, in)`: their units run along axis -2.
_TRANSPOSED = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
# Kernels `(..., in, multiplier)` named `kernel`: a unit is an `(in, m)` pair.
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)


def check_rewind_point(rewind, epochs_per_round):
    """Refuses an `"epoch:K"` rewind point after round 0 ends.

    Args:
        rewind: A parsed `keras_lth.rewind.Rewind`.
        epochs_per_round: The epochs of a round.
    """
    if rewind.kind == "epoch" and rewind.at > epochs_per_round:
        raise ValueError(
            f"The rewind point rewind={rewind.value!r} falls after round 0 "
            f"ends (round 0 has epochs_per_round={epochs_per_round} "
            f"epochs). Expected K <= {epochs_per_round}."
        )


def check_one_shot(one_shot, rewind):
    """Returns `one_shot` as a bool, refusing it without a rewind point."""
    one_shot = bool(one_shot)
    if one_shot and not rewind.has_point:
        raise ValueError(
            "one_shot=True prunes round 0's trained weights and trains "
            "each ticket from the rewind point, so it needs a rewind "
            f"point. Received: rewind={rewind.value!r}. Use 'init', an int "
            "step, 'epoch:K' or 'reinit_each_round'."
        )
    return one_shot


def check_early_bird(early_bird, strategy):
    """Returns `early_bird` as a bool, refusing it with random masks."""
    early_bird = bool(early_bird)
    if early_bird and strategy == "random":
        raise ValueError(
            "early_bird=True watches the magnitude-pruning mask settle, "
            "but strategy='random' draws masks that ignore the weights. "
            "Use strategy='layerwise' or 'global' with early_bird."
        )
    return early_bird


def check_granularity(granularity, refill, coupled, *, strategy, block):
    """Returns `(granularity, refill, coupled)`, refusing clashing ones.

    `coupled` comes back True only with `granularity="unit"`: it ties the
    units of different tensors (`keras_lth.coupling`), and weights have none.

    Raises:
        ValueError: For an unknown granularity, `"unit"` with a `block`,
            `refill=True` without `granularity="unit"`, or with another
            strategy than `"layerwise"`.
        TypeError: If `refill` or `coupled` is not a bool.
    """
    granularity = structured.check_granularity(granularity)
    if not isinstance(refill, bool):
        raise TypeError(f"Expected `refill` to be a bool. Received: refill={refill!r}")
    if not isinstance(coupled, bool):
        raise TypeError(
            f"Expected `coupled` to be a bool. Received: coupled={coupled!r}"
        )
    if granularity == "unit" and block is not None:
        raise ValueError(
            "granularity='unit' prunes whole output units, and `block` "
            "prunes blocks of weights: choose one. Expected block=None with "
            f"granularity='unit'. Received: block={block!r}"
        )
    if refill and granularity != "unit":
        raise ValueError(
            "refill=True refills whole output units after an unstructured "
            "ranking, so it needs granularity='unit'. Received: "
            f"granularity={granularity!r}"
        )
    if refill and strategy != "layerwise":
        raise ValueError(
            "refill=True ranks each tensor's weights on its own. Expected "
            f"strategy='layerwise'. Received: strategy={strategy!r}"
        )
    return granularity, refill, coupled and granularity == "unit"


def unit_axes_of(tensors):
    """`{key: unit axes or None}` of a model's prunable tensors.

    `keras_lth.structured.default_unit_axes`, except that the kernels of
    ConvTranspose layers, stored `(..., out, in)`, have their units on
    axis -2, and those of DepthwiseConv layers on axes `(-2, -1)`. Warns
    naming the tensors without units (they are not pruned).

    Args:
        tensors: `keras_lth.masking.prunable_tensors(model)`.
    """
    axes = {}
    for key, (layer, name) in tensors.items():
        shape = tuple(layer.prunable_variable(name).shape)
        if isinstance(layer, _TRANSPOSED) and name == "kernel":
            axes[key] = (len(shape) - 2,)
        elif isinstance(layer, _DEPTHWISE) and name == "kernel":
            axes[key] = (len(shape) - 2, len(shape) - 1)
        else:
            axes[key] = structured.default_unit_axes(key, shape)
    without = sorted(key for key, unit in axes.items() if unit is None)
    if without:
        warnings.warn(
            "LotteryTicket(granularity='unit'): these tensors have no output "
            f"units and are not pruned: {without}. See "
            "keras_lth.structured.default_unit_axes.",
            stacklevel=3,
        )
    return axes


# The settings a run-state file holds, checked on resume.
_SAVED = (
    "rounds",
    "epochs_per_round",
    "prune_rate",
    "strategy",
    "min_density",
    "layer_rates",
    "block",
    "granularity",
    "refill",
    "coupled",
    "rewind",
    "one_shot",
    "early_bird",
    "early_bird_distance",
    "early_bird_window",
    "monitor",
    "mode",
    "seed",
)


def saved_settings(ticket, seed=None):
    """A `LotteryTicket`'s settings as its run-state file holds them.

    `seed`, if given, stands for the ticket's (a resumed run's drawn seed).
    """
    settings = {name: getattr(ticket, name) for name in _SAVED}
    settings["block"] = block_config(ticket.block)
    if seed is not None:
        settings["seed"] = seed
    return settings


def settings_with_defaults(saved):
    """`saved` settings with `ADDED_SETTINGS` filled in where missing."""
    return {**ADDED_SETTINGS, **saved}


def block_config(block):
    """`block` as it reads back from JSON."""
    if isinstance(block, dict):
        return {k: None if v is None else list(v) for k, v in block.items()}
    return None if block is None else list(block)
