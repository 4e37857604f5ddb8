"""Callbacks that prune during `model.fit`."""

from keras_lth.callbacks.lottery_ticket import LotteryTicket

__all__ = ["LotteryTicket"]
