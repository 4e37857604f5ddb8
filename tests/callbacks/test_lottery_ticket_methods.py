"""`LotteryTicket`'s other methods: learning-rate rewinding, fine-tuning,
one-shot pruning and early-bird rounds. Semantics, not accuracy."""

import json

import keras
import numpy as np
import pytest

import keras_lth as lth
from keras_lth import pruning
from tests.callbacks.test_lottery_ticket import BATCH
from tests.callbacks.test_lottery_ticket import Probe
from tests.callbacks.test_lottery_ticket import assert_optimizer_rewound
from tests.callbacks.test_lottery_ticket import build_model
from tests.callbacks.test_lottery_ticket import compiled
from tests.callbacks.test_lottery_ticket import run_imp


class RoundEnds(Probe):
    """Records the trained state at every epoch end. Placed *before* the
    ticket in `callbacks`, so it sees each round's weights before pruning."""

    def on_train_begin(self, logs=None):
        self.epoch_ends = []

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(self._state())


def fit_with(digits, ticket, *, model=None, before=(), after=()):
    x, y, xv, yv = digits
    if model is None:
        keras.utils.set_random_seed(1234)
        model = compiled(lth.mask_model(build_model()))
    history = model.fit(
        x,
        y,
        validation_data=(xv, yv),
        batch_size=BATCH,
        epochs=ticket.total_epochs,
        callbacks=[*before, ticket, *after],
        shuffle=False,
        verbose=0,
    )
    return model, history


# ------------------------------------------------------ learning-rate rewind


def test_lr_rewinding_keeps_the_trained_weights_and_restarts_the_optimizer(digits):
    ends = RoundEnds(2)
    probe = Probe(2)
    ticket = lth.LotteryTicket(3, 2, rewind="lr", verbose=0)
    fit_with(digits, ticket, before=[ends], after=[probe])
    for round_index in (1, 2):
        trained = ends.epoch_ends[2 * round_index - 1]
        start = probe.round_starts[round_index]
        for key, mask in start["masks"].items():
            # The survivors keep their trained values; nothing is rewound.
            np.testing.assert_array_equal(
                start["weights"][key], trained["weights"][key] * mask
            )
        for now, then in zip(start["bn"], trained["bn"]):
            np.testing.assert_array_equal(now, then)
        # The optimizer, its step included, is back at the start.
        assert start["iterations"] == 0
        assert_optimizer_rewound(start, probe.initial)


def test_lr_rewinding_restarts_the_learning_rate_schedule(digits):
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.5)
    model = compiled(lth.mask_model(build_model()), keras.optimizers.SGD(schedule))
    probe = Probe(2)
    ticket = lth.LotteryTicket(2, 2, rewind="lr", verbose=0)
    fit_with(digits, ticket, model=model, after=[probe])
    assert probe.round_starts[1]["learning_rate"] == pytest.approx(1e-2)


def test_fine_tuning_resets_nothing(digits):
    ends = RoundEnds(2)
    probe = Probe(2)
    ticket = lth.LotteryTicket(3, 2, rewind="none", verbose=0)
    fit_with(digits, ticket, before=[ends], after=[probe])
    for round_index in (1, 2):
        trained = ends.epoch_ends[2 * round_index - 1]
        start = probe.round_starts[round_index]
        assert start["iterations"] == trained["iterations"] > 0
        for key, mask in start["masks"].items():
            np.testing.assert_array_equal(
                start["weights"][key], trained["weights"][key] * mask
            )
    assert ticket._run.snapshot is None  # No rewind point is kept.
    assert [r["weights_remaining"] for r in ticket.results] == pytest.approx(
        [r["weights_remaining"] for r in run_imp(digits, rounds=3)[1].results]
    )


# ----------------------------------------------------------------- one-shot


def test_one_shot_prunes_round_zero_weights_straight_to_each_target(digits):
    ends = RoundEnds(2)
    probe = Probe(2)
    ticket = lth.LotteryTicket(3, 2, one_shot=True, verbose=0)
    fit_with(digits, ticket, before=[ends], after=[probe])
    dense = ends.epoch_ends[1]  # Round 0's trained weights.
    rates = {"hidden/kernel": 0.2, "hidden_2/kernel": 0.2, "output/kernel": 0.1}
    for round_index in (1, 2):
        start = probe.round_starts[round_index]
        for key, mask in start["masks"].items():
            kept = int(np.floor(mask.size * (1 - rates[key]) ** round_index + 0.5))
            expected = pruning.prune_layerwise(
                {key: dense["weights"][key]},
                {key: np.ones_like(mask)},
                (mask.size - kept) / mask.size,
            )[key]
            np.testing.assert_array_equal(mask, expected)
            # Each ticket trains from the rewind point, the init here.
            np.testing.assert_array_equal(
                start["weights"][key], probe.initial["weights"][key] * mask
            )


def test_one_shot_differs_from_iterative_pruning(digits):
    _, iterative, iterative_probe = run_imp(digits, rounds=3)
    ticket = lth.LotteryTicket(3, 2, one_shot=True, verbose=0)
    probe = Probe(2)
    fit_with(digits, ticket, after=[probe])
    # Same sparsity every round, other masks by round 2.
    assert [r["weights_remaining"] for r in ticket.results] == pytest.approx(
        [r["weights_remaining"] for r in iterative.results]
    )
    one_shot_masks = probe.round_starts[2]["masks"]
    iterative_masks = iterative_probe.round_starts[2]["masks"]
    assert any(np.any(one_shot_masks[k] != iterative_masks[k]) for k in one_shot_masks)


def test_one_shot_needs_a_rewind_point():
    with pytest.raises(ValueError, match="rewind='none'"):
        lth.LotteryTicket(2, 1, one_shot=True, rewind="none")


# --------------------------------------------------------------- early bird


def _flat(masks):
    return np.concatenate([m.ravel() for m in masks.values()]) > 0


def test_early_bird_stops_when_the_masks_stop_changing_and_not_before(digits):
    # A scripted sequence of next-round masks, one per epoch end. Masks that
    # zero the first n and m entries differ on |n - m| of 100 entries.
    size = 100
    base = np.ones(size)
    flips = [40, 25, 12, 5, 11, 0, 0, 0]  # Entries differing from `base`.
    masks = []
    for n in flips:
        m = base.copy()
        m[:n] = 0
        masks.append({"t": m})
    ticket = lth.LotteryTicket(
        3,
        len(flips),
        early_bird=True,
        early_bird_window=2,
        early_bird_distance=0.1,
        rewind="none",
    )
    scripted = iter(masks)
    ticket._next_masks = lambda step: next(scripted)
    decisions = [ticket._early_bird_stops(0) for _ in flips]
    # Epoch 5: 11 vs 5 and 12 (0.06, 0.01) stops; epochs 6 and 7: 0 vs 11
    # (0.11) does not; epoch 8: 0 vs 0 and 0 stops.
    expected = [False, False, False, False, True, False, False, True]
    for i in range(len(flips)):
        newest = _flat(masks[i])
        window = [_flat(masks[j]) for j in range(max(0, i - 2), i)]
        stops = len(window) == 2 and all(np.mean(newest != w) < 0.1 for w in window)
        assert stops == expected[i]
    assert decisions == expected


def test_early_bird_ends_rounds_early_and_records_the_saving(digits):
    # With a zero learning rate the weights, so the masks, never change: each
    # round but the last stops once it has `window + 1` equal masks.
    model = compiled(lth.mask_model(build_model()), keras.optimizers.SGD(0.0))
    ticket = lth.LotteryTicket(
        3, 6, early_bird=True, early_bird_window=2, rewind="none", verbose=0
    )
    _, history = fit_with(digits, ticket, model=model)
    assert [r["epochs"] for r in ticket.results] == [3, 3, 6]
    assert [r["epochs_skipped"] for r in ticket.results] == [3, 3, 0]
    assert len(history.history["loss"]) == 12  # `fit` stopped 6 epochs early.
    assert ticket.epochs_done == 12


def test_early_bird_keeps_training_while_the_masks_move(digits):
    model = compiled(lth.mask_model(build_model()), keras.optimizers.SGD(0.5))
    ticket = lth.LotteryTicket(
        2, 4, early_bird=True, early_bird_distance=1e-6, verbose=0
    )
    fit_with(digits, ticket, model=model)
    assert [r["epochs"] for r in ticket.results] == [4, 4]


def test_early_bird_waits_for_the_rewind_point(digits):
    model = compiled(lth.mask_model(build_model()), keras.optimizers.SGD(0.0))
    ticket = lth.LotteryTicket(
        2, 6, early_bird=True, early_bird_window=1, rewind="epoch:4", verbose=0
    )
    fit_with(digits, ticket, model=model)
    assert ticket.results[0]["epochs"] == 4


def test_early_bird_with_random_pruning_is_refused():
    with pytest.raises(ValueError, match="strategy='random'"):
        lth.LotteryTicket(2, 1, early_bird=True, strategy="random")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(early_bird_distance=0.0), "early_bird_distance"),
        (dict(early_bird_distance=1.5), "early_bird_distance"),
        (dict(early_bird_window=0), "early_bird_window"),
        (dict(rewind="lr:3"), "'lr'"),
    ],
)
def test_bad_method_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lth.LotteryTicket(2, 1, **kwargs)


def test_one_shot_early_bird_run_resumes_from_its_checkpoint(digits, tmp_path):
    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 5:
                raise RuntimeError("preempted")

    def ticket():
        return lth.LotteryTicket(
            3,
            4,
            one_shot=True,
            early_bird=True,
            early_bird_window=1,
            early_bird_distance=0.05,
            seed=0,
            verbose=0,
            checkpoint_dir=tmp_path,
        )

    def model():
        keras.utils.set_random_seed(1234)
        return compiled(lth.mask_model(build_model()))

    reference = ticket()
    reference.checkpoint_dir = None
    reference_model, _ = fit_with(digits, reference, model=model())
    with pytest.raises(RuntimeError, match="preempted"):
        fit_with(digits, ticket(), model=model(), after=[Crash()])
    resumed = ticket()
    resumed_model, _ = fit_with(digits, resumed, model=model())
    assert [r["epochs"] for r in resumed.results] == [
        r["epochs"] for r in reference.results
    ]
    for key, mask in lth.get_masks(reference_model).items():
        np.testing.assert_array_equal(lth.get_masks(resumed_model)[key], mask)


# ------------------------------------------------------------------- blocks


@pytest.mark.parametrize("strategy", ["layerwise", "global"])
def test_block_pruning_prunes_whole_blocks_at_exact_block_counts(digits, strategy):
    probe = Probe(1)
    ticket = lth.LotteryTicket(3, 1, block=(1, 4), strategy=strategy, verbose=0)
    fit_with(digits, ticket, after=[probe])
    # Dense kernels (in, out): 4 consecutive inputs per output unit a block.
    blocks = {"hidden/kernel": 16 * 48, "hidden_2/kernel": 12 * 32, "output/kernel": 80}
    rates = {"hidden/kernel": 0.2, "hidden_2/kernel": 0.2, "output/kernel": 0.1}
    for step, start in enumerate(probe.round_starts):
        alive = {}
        for key, mask in start["masks"].items():
            assert pruning.is_block_sparse(mask, (1, 4)), key
            alive[key] = pruning.surviving_blocks(mask, (1, 4))
        if strategy == "layerwise":
            for key, n in blocks.items():
                assert alive[key] == np.floor(n * (1 - rates[key]) ** step + 0.5)
        else:
            total = sum(blocks.values())
            assert sum(alive.values()) == np.floor(total * 0.8**step + 0.5)


def test_block_by_tensor_and_bad_blocks(digits):
    probe = Probe(1)
    ticket = lth.LotteryTicket(2, 1, block={"hidden/kernel": (1, 16)}, verbose=0)
    fit_with(digits, ticket, after=[probe])
    masks = probe.round_starts[1]["masks"]
    assert pruning.is_block_sparse(masks["hidden/kernel"], (1, 16))
    assert not pruning.is_block_sparse(masks["hidden_2/kernel"], (1, 4))
    with pytest.raises(ValueError, match=r"\(1, 0\)"):
        lth.LotteryTicket(2, 1, block=(1, 0))
    with pytest.raises(ValueError, match="'a/kernel'"):
        lth.LotteryTicket(2, 1, block={"a/kernel": (4,)})


# ------------------------------------------------- across tensors: "lamp"

SIZES = {"hidden/kernel": 64 * 48, "hidden_2/kernel": 48 * 32, "output/kernel": 320}


def test_lamp_prunes_all_tensors_together_at_exact_total_counts(digits):
    probe = Probe(1)
    ticket = lth.LotteryTicket(4, 1, strategy="lamp", verbose=0)
    fit_with(digits, ticket, after=[probe])
    total = sum(SIZES.values())
    for step, start in enumerate(probe.round_starts):
        kept = {key: int(mask.sum()) for key, mask in start["masks"].items()}
        # One rate for every layer, the output layer's too.
        assert sum(kept.values()) == pruning.target_count(total, 0.2, step)
        assert all(n >= 1 for n in kept.values())
    # Each tensor gets its own sparsity.
    assert len({n / SIZES[k] for k, n in kept.items()}) == 3


@pytest.mark.parametrize("strategy", pruning.GLOBAL_STRATEGIES)
def test_min_density_keeps_a_floor_under_every_tensor(digits, strategy):
    probe = Probe(1)
    ticket = lth.LotteryTicket(
        6, 1, strategy=strategy, prune_rate=0.6, min_density=0.05, verbose=0
    )
    fit_with(digits, ticket, after=[probe])
    assert ticket.min_density == 0.05
    floors = {k: np.floor(0.05 * n + 0.5) for k, n in SIZES.items()}
    for step, start in enumerate(probe.round_starts):
        kept = {key: int(mask.sum()) for key, mask in start["masks"].items()}
        assert all(kept[k] >= floors[k] for k in kept)
        target = pruning.target_count(sum(SIZES.values()), 0.6, step)
        assert sum(kept.values()) == max(target, sum(floors.values()))
    assert any(kept[k] == floors[k] for k in kept)  # A floor was reached.


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(min_density=1.0), ValueError, r"min_density=1.0"),
        (dict(min_density=-0.1), ValueError, r"min_density=-0.1"),
        (dict(min_density="0.1"), TypeError, r"min_density='0.1' of type str"),
        (
            dict(strategy="layerwise", min_density=0.1),
            ValueError,
            r"strategy='layerwise'.*min_density=0",
        ),
        (
            dict(strategy="random", min_density=0.1),
            ValueError,
            r"strategy='random'.*min_density=0",
        ),
        (dict(strategy="lamp", layer_rates={"output": 0.1}), ValueError, "lamp"),
        (dict(strategy="LAMP"), ValueError, r"one of \('layerwise'"),
    ],
)
def test_bad_strategy_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        lth.LotteryTicket(2, 1, **{"strategy": "global", **kwargs})


def test_a_state_saved_before_min_density_existed_loads(digits, tmp_path):
    ticket = lth.LotteryTicket(2, 1, seed=1, verbose=0)
    fit_with(digits, ticket)
    path = tmp_path / "state.npz"
    ticket.save_state(path)
    with np.load(path) as data:
        entries = {k: data[k] for k in data.files}
    meta = json.loads(str(entries["meta"]))
    del meta["config"]["min_density"]
    entries["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **entries)
    again = lth.LotteryTicket(2, 1, verbose=0)
    again.load_state(path)
    assert again.seed == 1 and again.results == ticket.results
    with pytest.raises(ValueError, match=r"'min_density': \(0.0, 0.1\)"):
        lth.LotteryTicket(2, 1, strategy="global", min_density=0.1).load_state(path)


# ------------------------------------------------------------ default seed


def test_keras_global_seed_alone_makes_a_run_repeat(digits):
    def run():
        keras.utils.set_random_seed(1)
        model = compiled(lth.mask_model(build_model()))
        ticket = lth.LotteryTicket(3, 1, strategy="random", verbose=0)
        fit_with(digits, ticket, model=model)
        return ticket, lth.get_masks(model)

    (first, masks), (second, again) = run(), run()
    assert first.seed == second.seed == 1
    for key, mask in masks.items():
        assert 0 < mask.mean() < 1
        np.testing.assert_array_equal(again[key], mask)
    # An explicit seed still wins.
    assert lth.LotteryTicket(2, 1, seed=5).seed == 5
