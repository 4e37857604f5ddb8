"""keras_lth: the Lottery Ticket Hypothesis for Keras 3.

Make a model prunable with `mask_model`, find a winning ticket with the
`LotteryTicket` callback in a plain `model.fit`, then `strip_masks` to get an
ordinary Keras model back.

The public names load on first use, so `import keras_lth` (and the
`keras-lth` command's `--help`) does not import Keras or TensorFlow. When
Keras is already imported, the masked layers are registered with it at once,
so `keras.models.load_model` reads a ticket after a plain `import keras_lth`.
"""

import importlib
import sys

__version__ = "0.1.0"

#: Public name -> the module that defines it (a name that is a submodule maps
#: to itself).
_EXPORTS = {
    "ExportReport": "keras_lth.litert",
    "GradualPruning": "keras_lth.callbacks",
    "IMPRounds": "keras_lth.rounds",
    "LiteRTExportError": "keras_lth.litert",
    "LotteryTicket": "keras_lth.callbacks",
    "branches": "keras_lth.branches",
    "SparsitySummaries": "keras_lth.callbacks",
    "controls": "keras_lth.controls",
    "coupling": "keras_lth.coupling",
    "datasets": "keras_lth.datasets",
    "export_litert": "keras_lth.litert",
    "get_masks": "keras_lth.masking",
    "get_prunable_weights": "keras_lth.masking",
    "layers": "keras_lth.layers",
    "load_model": "keras_lth.saving",
    "load_results": "keras_lth.results",
    "mask_model": "keras_lth.masking",
    "models": "keras_lth.models",
    "plot_results": "keras_lth.plotting",
    "prune": "keras_lth.pruning",
    "pruned_nonzero": "keras_lth.masking",
    "pruning": "keras_lth.pruning",
    "pruning_at_init": "keras_lth.pruning_at_init",
    "restore_weights": "keras_lth.masking",
    "results_table": "keras_lth.results",
    "save_model": "keras_lth.saving",
    "save_results_csv": "keras_lth.results",
    "save_results_json": "keras_lth.results",
    "schedules": "keras_lth.schedules",
    "set_masks": "keras_lth.masking",
    "shrink": "keras_lth.shrinking",
    "sparsity": "keras_lth.masking",
    "strip_masks": "keras_lth.masking",
    "structured": "keras_lth.structured",
    "unit_holding": "keras_lth.unit_holding",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'keras_lth' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name == f"keras_lth.{name}" else getattr(module, name)
    globals()[name] = value  # Later lookups skip this function.
    return value


def __dir__():
    return sorted({*globals(), *__all__})


if "keras" in sys.modules:
    # Register the masked layers (`keras.saving.register_keras_serializable`)
    # now that it costs nothing: Keras is loaded already.
    importlib.import_module("keras_lth.layers")
