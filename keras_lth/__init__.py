"""keras_lth: the Lottery Ticket Hypothesis for Keras 3.

Make a model prunable with `mask_model`, find a winning ticket with the
`LotteryTicket` callback in a plain `model.fit`, then `strip_masks` to get an
ordinary Keras model back.
"""

from keras_lth import datasets
from keras_lth import layers
from keras_lth import models
from keras_lth import pruning
from keras_lth import pruning_at_init
from keras_lth import schedules
from keras_lth._io import save_model
from keras_lth.callbacks import GradualPruning
from keras_lth.callbacks import LotteryTicket
from keras_lth.callbacks import SparsitySummaries
from keras_lth.export import ExportReport
from keras_lth.export import LiteRTExportError
from keras_lth.export import export_litert
from keras_lth.masking import get_masks
from keras_lth.masking import mask_model
from keras_lth.masking import set_masks
from keras_lth.masking import sparsity
from keras_lth.masking import strip_masks
from keras_lth.plotting import plot_results
from keras_lth.pruning import prune
from keras_lth.results import load_results
from keras_lth.results import results_table
from keras_lth.results import save_results_csv
from keras_lth.results import save_results_json

__version__ = "0.1.0"

__all__ = [
    "ExportReport",
    "GradualPruning",
    "LiteRTExportError",
    "LotteryTicket",
    "SparsitySummaries",
    "datasets",
    "export_litert",
    "get_masks",
    "layers",
    "load_results",
    "mask_model",
    "models",
    "plot_results",
    "prune",
    "pruning",
    "pruning_at_init",
    "results_table",
    "save_results_csv",
    "save_model",
    "save_results_json",
    "schedules",
    "set_masks",
    "sparsity",
    "strip_masks",
]
