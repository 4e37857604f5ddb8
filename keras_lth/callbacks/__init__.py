"""Callbacks that prune during `model.fit`."""

from keras_lth.callbacks.gradual_pruning import GradualPruning
from keras_lth.callbacks.lottery_ticket import LotteryTicket
from keras_lth.callbacks.sparsity_summaries import SparsitySummaries

__all__ = ["GradualPruning", "LotteryTicket", "SparsitySummaries"]
