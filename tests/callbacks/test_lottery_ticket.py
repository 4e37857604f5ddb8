"""End-to-end tests of `LotteryTicket` on real data (scikit-learn digits)."""

import copy
import csv
import json
import math
import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_lth as lth
from keras_lth.masking import get_prunable_weights
from tests import backends

BATCH = 64


def build_model(batch_norm=True):
    layers = [
        keras.Input((64,)),
        keras.layers.Dense(48, activation="relu", name="hidden"),
    ]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization())
    layers += [
        keras.layers.Dense(32, activation="relu", name="hidden_2"),
        keras.layers.Dense(10, name="output"),
    ]
    return keras.Sequential(layers)


def compiled(model, optimizer=None):
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def numpy_values(variables):
    return [ops.convert_to_numpy(v).copy() for v in variables]


class Probe(keras.callbacks.Callback):
    """Records the model's state where each round begins.

    Placed after the LotteryTicket in `callbacks`, so its `on_epoch_begin`
    sees the state the ticket left for the round.
    """

    def __init__(self, epochs_per_round, capture_step=None):
        super().__init__()
        self.epochs_per_round = epochs_per_round
        self.capture_step = capture_step
        self.round_starts = []
        self.captured = None

    def on_train_begin(self, logs=None):
        self.initial = self._state()

    def on_epoch_begin(self, epoch, logs=None):
        if epoch % self.epochs_per_round == 0:
            self.round_starts.append(self._state())

    def on_train_batch_end(self, batch, logs=None):
        if self.capture_step is None or self.captured is not None:
            return
        if self._step() == self.capture_step:
            self.captured = self._state()

    def _step(self):
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def _state(self):
        model = self.model
        masks = lth.get_masks(model)
        bn = [
            v
            for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)
            for v in layer.non_trainable_weights
        ]
        return {
            "weights": get_prunable_weights(model),
            "masks": masks,
            "all_trainable": numpy_values(model.trainable_variables),
            "bn": numpy_values(bn),
            "optimizer": numpy_values(model.optimizer.variables),
            "optimizer_paths": [v.path for v in model.optimizer.variables],
            "iterations": self._step(),
            "learning_rate": float(ops.convert_to_numpy(model.optimizer.learning_rate)),
        }


def assert_optimizer_rewound(state, rewind_point, atol=0.0):
    """The optimizer holds the rewind point's state, with the slots of
    pruned weights (the Adam moments of `..._<layer>_kernel_...`) zeroed."""
    assert len(state["optimizer"]) == len(rewind_point["optimizer"])
    masked_slots = 0
    for path, now, then in zip(
        state["optimizer_paths"], state["optimizer"], rewind_point["optimizer"]
    ):
        expected = then
        for key, mask in state["masks"].items():
            if f"_{key.replace('/', '_')}_" in path.split("/")[-1]:
                expected = then * mask
                masked_slots += 1
        np.testing.assert_allclose(now, expected, atol=atol, rtol=0)
    assert masked_slots == 2 * len(state["masks"])  # Adam: two slots each.


def run_imp(digits, *, rounds=3, epochs=2, probe=None, model=None, **kwargs):
    x, y, xv, yv = digits
    if model is None:
        keras.utils.set_random_seed(1234)  # Same init and data in every run.
        model = compiled(lth.mask_model(build_model()))
    ticket = lth.LotteryTicket(rounds, epochs, verbose=0, **kwargs)
    probe = probe or Probe(epochs)
    model.fit(
        x,
        y,
        validation_data=(xv, yv),
        batch_size=BATCH,
        epochs=ticket.total_epochs,
        callbacks=[ticket, probe],
        shuffle=False,
        verbose=0,
    )
    return model, ticket, probe


def expected_kept(size, rate, steps):
    return math.floor(size * (1 - rate) ** steps + 0.5)


def test_sparsity_after_each_pruning_step_matches_the_rates(digits):
    model, ticket, probe = run_imp(digits, rounds=4, prune_rate=0.2)
    rates = {"hidden/kernel": 0.2, "hidden_2/kernel": 0.2, "output/kernel": 0.1}
    assert len(ticket.results) == 4
    for step, state in enumerate(probe.round_starts):
        for key, mask in state["masks"].items():
            target = mask.size * (1 - rates[key]) ** step
            assert abs(mask.sum() - target) <= 1, (key, step)
            assert ticket.results[step]["layers"][key] == pytest.approx(
                expected_kept(mask.size, rates[key], step) / mask.size
            )
    total = sum(m.size for m in probe.round_starts[0]["masks"].values())
    for step, row in enumerate(ticket.results):
        kept = sum(m.sum() for m in probe.round_starts[step]["masks"].values())
        assert row["round"] == step
        assert row["weights_remaining"] == pytest.approx(kept / total)
    # The last round's trained ticket is what the model holds.
    final = lth.get_masks(model)
    for key, mask in final.items():
        np.testing.assert_array_equal(mask, probe.round_starts[-1]["masks"][key])


def test_masks_are_monotone_and_pruned_weights_stay_zero(digits):
    model, _, probe = run_imp(digits, rounds=3)
    starts = probe.round_starts
    for before, after in zip(starts, starts[1:]):
        for key in before["masks"]:
            assert np.all(after["masks"][key] <= before["masks"][key])
    for key, weights in get_prunable_weights(model).items():
        mask = lth.get_masks(model)[key]
        assert np.all(weights[mask == 0] == 0.0)


def test_survivors_equal_the_init_point_at_every_round_start(digits):
    _, _, probe = run_imp(digits, rounds=3, rewind="init")
    init = probe.initial
    for state in probe.round_starts[1:]:
        for key, mask in state["masks"].items():
            np.testing.assert_array_equal(
                state["weights"][key], init["weights"][key] * mask
            )
        # Biases and BatchNorm statistics go back to the init point too.
        for now, then in zip(state["bn"], init["bn"]):
            np.testing.assert_array_equal(now, then)


def test_optimizer_step_and_moments_are_reset(digits):
    _, _, probe = run_imp(digits, rounds=3, rewind="init")
    init = probe.initial
    assert init["iterations"] == 0
    for state in probe.round_starts[1:]:
        assert state["iterations"] == 0
        assert_optimizer_rewound(state, init)


def test_learning_rate_schedule_restarts_at_the_rewind_point(digits):
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.5)
    optimizer = keras.optimizers.SGD(schedule, momentum=0.9)
    model = compiled(lth.mask_model(build_model()), optimizer)
    _, _, probe = run_imp(digits, rounds=2, model=model)
    assert probe.round_starts[1]["iterations"] == 0
    assert probe.round_starts[1]["learning_rate"] == pytest.approx(1e-2)
    # Round 0 decayed it: 46 steps at a half-life of 10 steps.
    assert float(schedule(46)) < 1e-3


def test_late_rewind_to_an_epoch_restores_weights_and_optimizer(digits):
    x = digits[0]
    steps = math.ceil(len(x) / BATCH)
    _, ticket, probe = run_imp(digits, rounds=3, epochs=2, rewind="epoch:1")
    # After 1 epoch the optimizer has taken `steps` steps; each later round
    # starts from there.
    for state in probe.round_starts[1:]:
        assert state["iterations"] == steps
    # Compare with the state at the start of round 0's second epoch: it is
    # the state after one epoch, which the ticket rewinds to.
    probe_epoch = RecordAtEpoch(1)
    _, _, _ = run_imp(digits, rounds=1, epochs=2, probe=probe_epoch)
    rewind_point = probe_epoch.state
    for state in probe.round_starts[1:]:
        for key, mask in state["masks"].items():
            np.testing.assert_allclose(
                state["weights"][key], rewind_point["weights"][key] * mask, atol=1e-6
            )
        assert_optimizer_rewound(state, rewind_point, atol=1e-6)
    assert ticket.results[1]["best_step"] <= 2 * steps


class RecordAtEpoch(Probe):
    def __init__(self, epoch):
        super().__init__(epochs_per_round=10**9)
        self.epoch = epoch
        self.state = None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.state = self._state()


def test_late_rewind_to_a_step_restores_that_step(digits):
    k = 30  # Mid-epoch: 23 steps per epoch.
    probe = Probe(2, capture_step=k)
    _, _, probe = run_imp(digits, rounds=2, epochs=2, rewind=k, probe=probe)
    start = probe.round_starts[1]
    assert start["iterations"] == k
    for key, mask in start["masks"].items():
        np.testing.assert_array_equal(
            start["weights"][key], probe.captured["weights"][key] * mask
        )
    assert_optimizer_rewound(start, probe.captured)


def test_reinit_each_round_draws_new_survivors_every_round(digits):
    _, _, probe = run_imp(digits, rounds=3, rewind="reinit_each_round", seed=7)
    init = probe.initial["weights"]
    starts = probe.round_starts
    for state in starts[1:]:
        for key, mask in state["masks"].items():
            survivors = state["weights"][key][mask == 1]
            assert not np.allclose(survivors, init[key][mask == 1])
            assert np.all(state["weights"][key][mask == 0] == 0)
            # Drawn from the layer's initializer: Glorot-uniform scale.
            limit = math.sqrt(6 / sum(mask.shape))
            assert np.abs(survivors).max() <= limit
    key = "hidden/kernel"
    mask = starts[2]["masks"][key]
    assert not np.allclose(
        starts[1]["weights"][key][mask == 1], starts[2]["weights"][key][mask == 1]
    )


def test_reinit_each_round_and_init_give_different_survivors(digits):
    _, _, init_probe = run_imp(digits, rounds=2, rewind="init", seed=3)
    _, _, reinit_probe = run_imp(digits, rounds=2, rewind="reinit_each_round", seed=3)
    # Round 0 is the same dense training, so the first masks agree.
    for key, mask in init_probe.round_starts[1]["masks"].items():
        np.testing.assert_array_equal(mask, reinit_probe.round_starts[1]["masks"][key])
        survivors = mask == 1
        assert not np.allclose(
            init_probe.round_starts[1]["weights"][key][survivors],
            reinit_probe.round_starts[1]["weights"][key][survivors],
        )


@pytest.mark.parametrize("strategy", ["global", "random"])
def test_other_strategies_prune_the_expected_counts(digits, strategy):
    _, ticket, probe = run_imp(digits, rounds=3, strategy=strategy, seed=1)
    masks = probe.round_starts
    size = sum(m.size for m in masks[0]["masks"].values())
    for step, state in enumerate(masks):
        kept = sum(m.sum() for m in state["masks"].values())
        if strategy == "global":
            assert abs(kept - size * 0.8**step) <= 1
        else:
            for key, mask in state["masks"].items():
                rate = 0.1 if key == "output/kernel" else 0.2
                assert abs(mask.sum() - mask.size * (1 - rate) ** step) <= 1
    assert len(ticket.results) == 3


def test_layer_rates_zero_never_prunes(digits):
    _, _, probe = run_imp(digits, rounds=3, layer_rates={"hidden": 0.0, "output": 0.5})
    last = probe.round_starts[-1]["masks"]
    assert last["hidden/kernel"].all()
    assert abs(last["output/kernel"].sum() - 320 * 0.25) <= 1


def test_results_report_best_and_final_epochs(digits, tmp_path):
    _, ticket, _ = run_imp(digits, rounds=2, epochs=3, monitor="val_accuracy")
    for row in ticket.results:
        assert 1 <= row["best_epoch"] <= 3
        assert row["best_step"] == row["best_epoch"] * 23
        assert row["monitor"] == "val_accuracy"
        assert row["best"]["val_accuracy"] >= row["final"]["val_accuracy"]
        assert set(row["best"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    table = ticket.results_table()
    assert "best_epoch" in table and "val_accuracy" in table
    assert len(table.splitlines()) == 2 + 2
    ticket.save_results_json(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == ticket.results
    assert lth.load_results(tmp_path / "r.json") == ticket.results
    ticket.save_results_csv(tmp_path / "r.csv")
    with open(tmp_path / "r.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["round"]) for r in rows] == [0, 1]
    assert (
        float(rows[1]["best_val_accuracy"]) == ticket.results[1]["best"]["val_accuracy"]
    )


def test_missing_monitor_warns_and_falls_back_to_loss(digits):
    x, y, _, _ = digits
    model = compiled(lth.mask_model(build_model()))
    ticket = lth.LotteryTicket(2, 1, verbose=0)  # monitor="val_loss"
    with pytest.warns(UserWarning, match="val_loss"):
        model.fit(x, y, epochs=2, callbacks=[ticket], verbose=0)
    assert all(row["monitor"] == "loss" for row in ticket.results)


def test_strip_masks_matches_the_ticket(digits):
    model, _, _ = run_imp(digits, rounds=2)
    plain = lth.strip_masks(model)
    x = digits[2]
    np.testing.assert_allclose(
        plain.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )
    masks = lth.get_masks(model)
    for key, mask in masks.items():
        layer_name = key.split("/")[0]
        kernel = ops.convert_to_numpy(plain.get_layer(layer_name).kernel)
        assert np.all(kernel[mask == 0] == 0.0)


def test_callback_is_reusable_and_deep_copyable(digits):
    _, ticket, _ = run_imp(digits, rounds=2, epochs=1)
    copied = copy.deepcopy(ticket)
    assert copied.results == ticket.results
    assert copied.model is None
    x, y, xv, yv = digits
    model = compiled(lth.mask_model(build_model()))
    model.fit(x, y, validation_data=(xv, yv), epochs=2, callbacks=[copied], verbose=0)
    assert [r["round"] for r in copied.results] == [0, 1]  # Reset, not appended.
    first = copy.deepcopy(copied.results)
    # The same instance again, on a fresh model: a new run, not a resumed one.
    keras.utils.set_random_seed(1234)
    model = compiled(lth.mask_model(build_model()))
    model.fit(x, y, validation_data=(xv, yv), epochs=2, callbacks=[copied], verbose=0)
    assert [r["round"] for r in copied.results] == [0, 1] and copied.epochs_done == 2
    assert [r["weights_remaining"] for r in copied.results] == [
        r["weights_remaining"] for r in first
    ]


@pytest.mark.parametrize("rewind", ["init", "reinit_each_round", "epoch:1", 5])
def test_no_rewind_mode_turns_off_async_batch_dispatch(rewind):
    # A batch *end* hook would make Keras sync the host after every step.
    ticket = lth.LotteryTicket(2, 1, rewind=rewind)
    callbacks = keras.callbacks.CallbackList([ticket])
    assert callbacks._async_train == keras.src.backend.IS_THREAD_SAFE


@pytest.mark.parametrize("k", [23, 46])
def test_late_rewind_to_a_step_at_an_epoch_boundary(digits, k):
    # 23 steps per epoch: step 23 ends epoch 1, step 46 ends round 0.
    probe = Probe(2, capture_step=k)
    _, _, probe = run_imp(digits, rounds=2, epochs=2, rewind=k, probe=probe)
    start = probe.round_starts[1]
    assert start["iterations"] == k
    for key, mask in start["masks"].items():
        np.testing.assert_array_equal(
            start["weights"][key], probe.captured["weights"][key] * mask
        )


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(prune_rate=0.0), ValueError, r"prune_rate.*\(0, 1\).*0.0"),
        (dict(prune_rate=1.0), ValueError, r"\(0, 1\)"),
        (dict(prune_rate="0.2"), TypeError, "prune_rate"),
        (dict(strategy="magic"), ValueError, "magic"),
        (dict(rewind="start"), ValueError, "start"),
        (dict(rewind=-3), ValueError, "-3"),
        (dict(rewind="epoch:9"), ValueError, "after round 0"),
        (dict(layer_rates={"hidden": 1.5}), ValueError, "1.5"),
        (dict(layer_rates=[0.1]), TypeError, "layer_rates"),
        (dict(strategy="global", layer_rates={"hidden": 0.3}), ValueError, "global"),
        (dict(mode="up"), ValueError, "up"),
    ],
)
def test_bad_arguments_raise_before_training(kwargs, error, match):
    with pytest.raises(error, match=match):
        lth.LotteryTicket(3, 2, **kwargs)


@pytest.mark.parametrize("rounds", [0, 2.5, True])
def test_bad_rounds(rounds):
    with pytest.raises((ValueError, TypeError), match="rounds"):
        lth.LotteryTicket(rounds, 2)


def test_wrong_epochs_is_refused(digits):
    x, y = digits[:2]
    model = compiled(lth.mask_model(build_model()))
    ticket = lth.LotteryTicket(3, 2)
    weights = model.get_weights()
    with pytest.raises(ValueError, match=r"epochs=5.*total_epochs \(6\)"):
        model.fit(x, y, epochs=5, callbacks=[ticket], verbose=0)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)  # No training happened.


def test_model_without_prunable_layers_is_refused(digits):
    x, y = digits[:2]
    model = compiled(build_model())
    with pytest.raises(ValueError, match="no prunable layers"):
        model.fit(x, y, epochs=2, callbacks=[lth.LotteryTicket(2, 1)], verbose=0)


def test_unknown_layer_rate_name_is_refused(digits):
    x, y = digits[:2]
    model = compiled(lth.mask_model(build_model()))
    ticket = lth.LotteryTicket(2, 1, layer_rates={"nope": 0.1})
    with pytest.raises(ValueError, match="nope"):
        model.fit(x, y, epochs=2, callbacks=[ticket], verbose=0)


def test_late_rewind_step_after_round_zero_is_refused(digits):
    x, y = digits[:2]
    model = compiled(lth.mask_model(build_model()))
    ticket = lth.LotteryTicket(2, 1, rewind=1000)  # Round 0 has 23 steps.
    with pytest.raises(ValueError, match="after round 0"):
        model.fit(x, y, batch_size=BATCH, epochs=2, callbacks=[ticket], verbose=0)


def test_lenet_on_mnist_finds_a_sparse_ticket(mnist_test_set):
    """The paper's LeNet-300-100 on the MNIST test set (skipped without it)."""
    x, y = mnist_test_set
    x = x.reshape(len(x), -1)[:3000]
    y = y[:3000]
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(300, activation="relu"),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10, name="output"),
        ]
    )
    model = compiled(lth.mask_model(model), keras.optimizers.Adam(1.2e-3))
    ticket = lth.LotteryTicket(3, 2, verbose=0)
    model.fit(
        x[:2500],
        y[:2500],
        validation_data=(x[2500:], y[2500:]),
        batch_size=60,
        epochs=ticket.total_epochs,
        callbacks=[ticket],
        verbose=0,
    )
    remaining = [row["weights_remaining"] for row in ticket.results]
    assert remaining[0] == 1.0
    assert remaining[2] == pytest.approx(0.64, abs=0.01)
    assert lth.sparsity(model)["layers"]["dense/kernel"] == pytest.approx(
        0.36, abs=1e-4
    )
    assert ticket.results[-1]["best"]["val_accuracy"] > 0.85


class PrunedStayZero(keras.callbacks.Callback):
    """Checks at every epoch end that pruned weights are stored as zeros."""

    def __init__(self):
        super().__init__()
        self.checked = 0

    def on_epoch_end(self, epoch, logs=None):
        weights = get_prunable_weights(self.model)
        for key, mask in lth.get_masks(self.model).items():
            assert np.all(weights[key][mask == 0] == 0.0), (key, epoch)
            self.checked += int(np.sum(mask == 0))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_late_rewind_momentum_never_revives_pruned_weights(digits, optimizer):
    # The rewind point's momentum is nonzero at weights pruned later; the
    # callback zeroes those slots, so the weights stay exactly zero.
    optimizer = (
        keras.optimizers.Adam(1e-3, weight_decay=1e-2)
        if optimizer == "adam"
        else keras.optimizers.SGD(0.05, momentum=0.9, weight_decay=1e-2)
    )
    keras.utils.set_random_seed(1234)
    model = compiled(lth.mask_model(build_model()), optimizer)
    check = PrunedStayZero()
    x, y, xv, yv = digits
    ticket = lth.LotteryTicket(3, 2, rewind="epoch:1", verbose=0)
    with warnings.catch_warnings():
        # No "moved off zero" warning either.
        warnings.filterwarnings("error", message=".*moved off zero")
        model.fit(
            x,
            y,
            validation_data=(xv, yv),
            batch_size=BATCH,
            epochs=ticket.total_epochs,
            callbacks=[ticket, check],
            verbose=0,
        )
    assert check.checked > 0


def test_weights_written_behind_its_back_are_reported_and_rezeroed(digits):
    class Vandal(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:  # Inside round 1, after the first pruning step.
                layer = self.model.get_layer("hidden")
                layer.kernel.assign(ops.ones(layer.kernel.shape))

    keras.utils.set_random_seed(1234)
    model = compiled(lth.mask_model(build_model()))
    x, y = digits[:2]
    ticket = lth.LotteryTicket(2, 2, verbose=0, monitor="loss")
    with pytest.warns(UserWarning, match=r"hidden/kernel.*moved off zero"):
        model.fit(x, y, epochs=4, callbacks=[ticket, Vandal()], verbose=0)
    mask = lth.get_masks(model)["hidden/kernel"]
    assert np.all(get_prunable_weights(model)["hidden/kernel"][mask == 0] == 0)


@backends.not_on("tensorflow", "tf.distribute works there: see its own tests")
def test_fit_in_a_tf_distribute_scope_on_another_backend_is_refused(digits):
    import tensorflow as tf

    x, y, _, _ = digits
    model = compiled(lth.mask_model(build_model(batch_norm=False)))
    ticket = lth.LotteryTicket(2, 1, verbose=0)
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        with pytest.raises(ValueError, match=r"LotteryTicket.*KERAS_BACKEND=tensorf"):
            model.fit(x, y, epochs=ticket.total_epochs, callbacks=[ticket], verbose=0)


def test_masks_at_gives_the_masks_each_round_trained_with(digits, tmp_path):
    model, ticket, probe = run_imp(digits, rounds=3, epochs=1)
    assert all(np.all(m == 1) for m in ticket.masks_at(0).values())
    for r, row in enumerate(ticket.results):
        masks = ticket.masks_at(r)
        assert {k: float(np.mean(m)) for k, m in masks.items()} == row["layers"]
        assert all(m.dtype == np.float32 for m in masks.values())
    for key, mask in ticket.masks_at(2).items():  # The last round's are live.
        np.testing.assert_array_equal(mask, lth.get_masks(model)[key])
        assert np.all(ticket.masks_at(1)[key] >= mask)  # Nested: none regrow.
    for bad in (3, -1, 1.0, None):
        with pytest.raises(ValueError, match=r"Expected a finished round, 0 to 2"):
            ticket.masks_at(bad)

    # Saved with the run state: a resumed callback has them too.
    ticket.save_state(tmp_path / "state.npz")
    resumed = lth.LotteryTicket(3, 1, verbose=0, seed=ticket.seed)
    resumed.load_state(tmp_path / "state.npz")
    for r in range(3):
        for key, mask in ticket.masks_at(r).items():
            np.testing.assert_array_equal(resumed.masks_at(r)[key], mask)


def test_weights_left_dense_are_named_when_training_starts(digits):
    # A model that never went through `mask_model` (a subclassed one, say):
    # its plain Dense stays dense, and the ticket says so.
    x, y, xv, yv = digits
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(16, name="plain"),
            lth.layers.MaskedDense(10, name="masked"),
        ]
    )
    ticket = lth.LotteryTicket(2, 1, verbose=0)
    with pytest.warns(UserWarning, match=r"stay dense: \['plain/kernel'\]"):
        compiled(model).fit(
            x, y, epochs=ticket.total_epochs, callbacks=[ticket], verbose=0
        )
    assert set(ticket.results[1]["layers"]) == {"masked/kernel"}
