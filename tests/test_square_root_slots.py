"""Filling the second moments of pruned weights (`optimizer_slots`).

PyTorch's CPU square root is slow on exact zeros, and Adam's second moment
is exactly zero at a pruned weight. `fill_square_root_slots` puts 1.0 there
instead; these tests check that this changes no training at all, on every
backend (the fill itself is plain `keras.ops`), and that `LotteryTicket`
fills on PyTorch only, and `GradualPruning` likewise.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_lth import GradualPruning
from keras_lth import LotteryTicket
from keras_lth import mask_model
from keras_lth import optimizer_slots
from keras_lth import set_masks
from keras_lth.masking import prunable_tensors
from keras_lth.schedules import PolynomialDecay

OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(1e-2),
    "adam_amsgrad": lambda: keras.optimizers.Adam(1e-2, amsgrad=True),
    "adamw": lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.1),
    "nadam": lambda: keras.optimizers.Nadam(1e-2),
    "lamb": lambda: keras.optimizers.Lamb(1e-2),
}


def half_pruned_model(optimizer):
    keras.utils.set_random_seed(0)
    model = mask_model(
        keras.Sequential(
            [
                keras.Input((8,)),
                keras.layers.Dense(16, activation="relu", name="hidden"),
                keras.layers.Dense(3, name="out"),
            ]
        )
    )
    rng = np.random.default_rng(1)
    set_masks(
        model,
        {
            key: (rng.random(tuple(layer.prunable_variable(name).shape)) < 0.5)
            for key, (layer, name) in prunable_tensors(model).items()
        },
    )
    model.compile(optimizer, "mse")
    return model


def data():
    rng = np.random.default_rng(2)
    return (
        rng.normal(size=(64, 8)).astype("float32"),
        rng.normal(size=(64, 3)).astype("float32"),
    )


class FillEveryBatch(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        model = self.model
        tensors = prunable_tensors(model)
        optimizer_slots.fill_square_root_slots(model.optimizer, model, tensors)


def second_moments(model):
    """{slot path: (value, mask)} of the filled slots of `model`."""
    out = {}
    pairs = optimizer_slots._pruned_slots(
        model.optimizer, model, prunable_tensors(model), strict=True
    )
    for slot, mask in pairs:
        if "velocity" in slot.path:
            out[slot.path] = (ops.convert_to_numpy(slot), ops.convert_to_numpy(mask))
    return out


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_filling_changes_no_weight(name):
    x, y = data()
    filled = half_pruned_model(OPTIMIZERS[name]())
    plain = half_pruned_model(OPTIMIZERS[name]())
    for model, callbacks in ((filled, [FillEveryBatch()]), (plain, [])):
        model.fit(
            x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=callbacks
        )
    for a, b in zip(filled.weights, plain.weights, strict=True):
        np.testing.assert_array_equal(
            ops.convert_to_numpy(a), ops.convert_to_numpy(b), err_msg=a.path
        )
    moments = second_moments(filled)
    assert moments  # The optimizer has second moments, and they were found.
    for path, (value, mask) in moments.items():
        assert np.all(value[mask == 0] > 0), path  # Filled, decayed, not zero.
    for path, (value, mask) in second_moments(plain).items():
        assert np.all(value[mask == 0] == 0), path


def test_which_optimizers_are_filled():
    on_torch = keras.backend.backend() == "torch"

    class MyAdam(keras.optimizers.Adam):
        pass

    assert optimizer_slots.fills_square_root_slots(keras.optimizers.Adam()) is on_torch
    scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam())
    assert optimizer_slots.fills_square_root_slots(scaled) is on_torch
    # A subclass may read the slots otherwise; SGD takes no square root.
    assert not optimizer_slots.fills_square_root_slots(MyAdam())
    assert not optimizer_slots.fills_square_root_slots(keras.optimizers.SGD())
    assert not optimizer_slots.fills_square_root_slots(keras.optimizers.RMSprop())
    model = half_pruned_model(keras.optimizers.SGD(0.1, momentum=0.9))
    with pytest.raises(ValueError, match="Adam, AdamW, Nadam or Lamb.*SGD"):
        optimizer_slots.fill_square_root_slots(
            model.optimizer, model, prunable_tensors(model)
        )


class FilledSpy(keras.callbacks.Callback):
    """Records, after every batch, whether every pruned entry was filled."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        moments = second_moments(self.model)
        self.seen.append(all(np.all(v[m == 0] > 0) for v, m in moments.values()))


def fit_forced(monkeypatch, make_callback, epochs):
    """Trains twice, the fill forced on and off: (filled model, spy, plain model).

    `make_callback()` returns the pruning callback; masks start all ones.
    """
    x, y = data()
    spy = FilledSpy()
    models = []
    for fill in (True, False):
        monkeypatch.setattr(
            optimizer_slots, "fills_square_root_slots", lambda opt, fill=fill: fill
        )
        model = half_pruned_model(keras.optimizers.Adam(1e-2))
        set_masks(model, {})  # All ones: the callback prunes.
        callbacks = [make_callback()] + ([spy] if fill else [])
        model.fit(
            x,
            y,
            batch_size=16,
            epochs=epochs,
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
        )
        models.append(model)
    monkeypatch.undo()
    for a, b in zip(models[0].weights, models[1].weights, strict=True):
        np.testing.assert_array_equal(
            ops.convert_to_numpy(a), ops.convert_to_numpy(b), err_msg=a.path
        )
    return models[0], spy


def test_lottery_ticket_fills_on_torch_only_and_trains_the_same(monkeypatch):
    def ticket():
        return LotteryTicket(
            rounds=3, epochs_per_round=2, prune_rate=0.5, seed=0, monitor="loss"
        )

    _, spy = fit_forced(monkeypatch, ticket, epochs=6)
    # Every batch of rounds 1 and 2 (those with pruned weights) saw them filled.
    assert spy.seen[8:] == [True] * 16
    x, y = data()
    ticket = LotteryTicket(rounds=2, epochs_per_round=1, monitor="loss")
    model = half_pruned_model(keras.optimizers.Adam(1e-2))
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[ticket])
    moments = second_moments(model)
    filled_now = any(np.any(v[m == 0] > 0) for v, m in moments.values())
    assert not filled_now  # Zeroed again when `fit` ends.
    assert ticket._fill.active is (keras.backend.backend() == "torch")


def test_gradual_pruning_fills_and_trains_the_same(monkeypatch):
    def pruner():
        schedule = PolynomialDecay(0.0, 0.8, begin_step=2, end_step=8, frequency=2)
        return GradualPruning(schedule)

    filled, spy = fit_forced(monkeypatch, pruner, epochs=3)
    # From the first pruning step (before batch 2) on, every batch saw the
    # pruned entries filled, also right after a step that pruned more.
    assert spy.seen[2:] == [True] * 10
    for path, (value, mask) in second_moments(filled).items():
        assert np.all(value[mask == 0] == 0), path  # Zeroed when `fit` ended.
