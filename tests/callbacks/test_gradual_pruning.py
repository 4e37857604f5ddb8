"""Tests of `GradualPruning`: masks follow the schedule, step by step."""

import copy
import json
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import keras_lth as lth
from keras_lth.callbacks.gradual_pruning import GradualPruning
from keras_lth.masking import get_masks
from keras_lth.masking import get_prunable_weights
from keras_lth.schedules import ConstantSparsity
from keras_lth.schedules import PolynomialDecay
from tests import backends

SAMPLES, BATCH = 64, 8  # 8 steps per epoch.
SIZES = {"hidden/kernel": 8 * 16, "output/kernel": 16 * 3}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(optimizer="adam"):
    model = lth.mask_model(
        keras.Sequential(
            [
                keras.Input((8,)),
                keras.layers.Dense(16, activation="relu", name="hidden"),
                keras.layers.Dense(3, name="output"),
            ]
        )
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, 8)).astype("float32")
    return x, rng.integers(0, 3, SAMPLES)


def pruned_count(sparsity, size):
    return int(np.floor(sparsity * size + 0.5))


def pruned(mask):
    return int(np.sum(mask == 0))


class Recorder(keras.callbacks.Callback):
    """Records masks and weights before every step, after the pruner ran.

    Placed after `GradualPruning` in `callbacks`. Reading the device every
    batch is fine in a test; the pruner itself does not.
    """

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_begin(self, batch, logs=None):
        step = int(ops.convert_to_numpy(self.model.optimizer.iterations))
        weights = get_prunable_weights(self.model)
        self.steps.append((step, get_masks(self.model), weights))


def fit(model, callbacks, epochs=2, **kwargs):
    x, y = data()
    model.fit(
        x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=callbacks, **kwargs
    )


# --- Following the schedule ---------------------------------------------------


# Its schedule stops short of its target; that warning is tested on its own.
@pytest.mark.filterwarnings("ignore:GradualPruning. the schedule does not reach")
def test_masks_change_only_at_scheduled_steps_and_reach_exact_sparsity():
    schedule = PolynomialDecay(0.1, 0.8, begin_step=2, end_step=12, frequency=3)
    model = build()
    pruner, recorder = GradualPruning(schedule), Recorder()
    fit(model, [pruner, recorder])

    scheduled = [t for t in range(16) if schedule(t)[0]]
    assert scheduled == [2, 5, 8, 11]
    assert pruner.history == [(t, schedule(t)[1]) for t in scheduled]
    assert [step for step, _, _ in recorder.steps] == list(range(16))
    previous = {key: np.ones(size) for key, size in SIZES.items()}
    target = 0.0
    for step, masks, weights in recorder.steps:
        changed = any(
            not np.array_equal(masks[k].ravel(), previous[k].ravel()) for k in masks
        )
        assert changed == (step in scheduled and schedule(step)[1] > 0), step
        if step in scheduled:
            target = schedule(step)[1]
        for key, mask in masks.items():
            # Exactly the target count, per tensor, from the scheduled step on.
            assert np.sum(mask == 0) == pruned_count(target, SIZES[key]), step
            # Monotone, and pruned weights are exact zeros.
            assert np.all(mask <= previous[key].reshape(mask.shape))
            assert np.all(weights[key][mask == 0] == 0.0)
        previous = masks
    # Still zero after the last step's update: no weight grew back.
    final_masks, final_weights = get_masks(model), get_prunable_weights(model)
    for key, mask in final_masks.items():
        assert np.all(final_weights[key][mask == 0] == 0.0)
        assert np.sum(mask == 0) == pruned_count(schedule(11)[1], SIZES[key])


def test_prunes_the_smallest_surviving_magnitudes():
    schedule = PolynomialDecay(0.2, 0.6, begin_step=2, end_step=6, frequency=4)
    model = build()
    # `before` sees the weights the pruner ranks; `after`, its masks.
    before, after = Recorder(), Recorder()
    fit(model, [before, GradualPruning(schedule), after], epochs=1)
    for step in (2, 6):
        weights, masks = before.steps[step][2], after.steps[step][1]
        old_masks = before.steps[step][1]
        for key, mask in masks.items():
            magnitudes = np.abs(weights[key])
            newly = (old_masks[key] == 1) & (mask == 0)
            assert np.sum(mask == 0) == pruned_count(schedule(step)[1], SIZES[key])
            assert newly.any()
            assert magnitudes[newly].max() <= magnitudes[mask == 1].min()


def test_global_strategy_reaches_the_total_count_with_one_threshold():
    schedule = ConstantSparsity(0.7, begin_step=3, end_step=3)
    model = build()
    before, after = Recorder(), Recorder()
    pruner = GradualPruning(schedule, strategy="global")
    fit(model, [before, pruner, after], epochs=1)
    weights, masks = before.steps[3][2], after.steps[3][1]
    total = sum(SIZES.values())
    assert sum(int(np.sum(m == 0)) for m in masks.values()) == pruned_count(0.7, total)
    pruned = np.concatenate([np.abs(weights[k])[masks[k] == 0] for k in masks])
    kept = np.concatenate([np.abs(weights[k])[masks[k] == 1] for k in masks])
    assert pruned.max() <= kept.min()
    per_tensor = {k: float(np.mean(m == 0)) for k, m in masks.items()}
    assert per_tensor["hidden/kernel"] != per_tensor["output/kernel"]


def test_lamp_strategy_reaches_the_total_count_and_keeps_every_tensor():
    model = build()
    pruner = GradualPruning(ConstantSparsity(0.95, 3, 3), strategy="lamp")
    fit(model, [pruner], epochs=1)
    masks = get_masks(model)
    total = sum(SIZES.values())
    assert sum(pruned(m) for m in masks.values()) == pruned_count(0.95, total)
    assert all(m.sum() >= 1 for m in masks.values())


def test_optimizer_slots_of_pruned_weights_are_zero():
    model = build()
    fit(model, [GradualPruning(ConstantSparsity(0.6, begin_step=5, end_step=5))])
    mask = get_masks(model)["hidden/kernel"]
    slots = [
        ops.convert_to_numpy(v)
        for v in model.optimizer.variables
        if tuple(v.shape) == mask.shape
    ]
    assert len(slots) == 2  # Adam's two moments.
    for slot in slots:
        assert np.all(slot[mask == 0] == 0.0)
        assert np.any(slot[mask == 1] != 0.0)


def test_a_sparsity_that_goes_down_prunes_nothing_more():
    values = {2: 0.6, 4: 0.3, 6: 0.75}

    def schedule(step):
        return step in values, values.get(step, 0.0)

    model = build()
    recorder = Recorder()
    pruner = GradualPruning(schedule)
    fit(model, [pruner, recorder], epochs=1)
    assert pruner.history == [(2, 0.6), (4, 0.3), (6, 0.75)]
    counts = [int(np.sum(r[1]["hidden/kernel"] == 0)) for r in recorder.steps]
    assert counts[2] == counts[4] == counts[5] == pruned_count(0.6, 128)
    assert counts[6] == pruned_count(0.75, 128)


@backends.not_on("torch", "Keras allows steps_per_execution=1 only")
def test_steps_per_execution_applies_a_missed_step_at_the_next_call():
    schedule = PolynomialDecay(0.0, 0.6, begin_step=2, end_step=8, frequency=2)
    model = build()
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=3)
    x, _ = data()
    pruner, recorder = GradualPruning(schedule), Recorder()
    model.fit(
        x,
        np.zeros((SAMPLES, 3)),
        batch_size=BATCH,
        epochs=2,
        verbose=0,
        callbacks=[pruner, recorder],
    )
    # Executions start at steps 0, 3, 6 (2 steps), 8, 11, 14 (2 steps).
    assert [r[0] for r in recorder.steps] == [0, 3, 6, 8, 11, 14]
    # Step 2 is applied at 3; 4 and 6 fall in (3, 6]: the latest, 6, wins.
    assert pruner.history == [(3, schedule(2)[1]), (6, schedule(6)[1]), (8, 0.6)]
    for step, masks, _ in recorder.steps:
        done = [s for t, s in pruner.history if t <= step]
        target = done[-1] if done else 0.0
        # Never ahead of the schedule: at most the latest scheduled target.
        due = [schedule(t)[1] for t in range(step + 1) if schedule(t)[0]]
        latest = max([0.0, *due])
        assert target <= latest + 1e-12
        for key, mask in masks.items():
            assert np.sum(mask == 0) == pruned_count(target, SIZES[key])


def test_block_pruning_counts_whole_blocks():
    # (1, 4) blocks: 4 consecutive inputs of one output unit, i.e. 4 entries
    # down axis 0 of a Keras (in, out) kernel. hidden: 2 x 16 = 32 blocks;
    # output: 4 x 3 = 12 blocks. The output layer stays unstructured.
    schedule = PolynomialDecay(0.2, 0.7, begin_step=1, end_step=9, frequency=4)
    block = {"hidden/kernel": (1, 4), "output/kernel": None}
    model = build()
    pruner = GradualPruning(schedule, block=block)
    before, recorder = Recorder(), Recorder()  # `before` runs ahead of pruning.
    fit(model, [before, pruner, recorder], epochs=2)
    assert [t for t, _ in pruner.history] == [1, 5, 9]
    target = 0.0
    for step, masks, weights in recorder.steps:
        if schedule(step)[0]:
            target = schedule(step)[1]
        hidden = masks["hidden/kernel"]
        assert lth.pruning.is_block_sparse(hidden, (1, 4)), step
        alive = lth.pruning.surviving_blocks(hidden, (1, 4))
        assert 32 - alive == pruned_count(target, 32), step
        assert pruned(masks["output/kernel"]) == pruned_count(target, 48), step
        assert np.all(weights["hidden/kernel"][hidden == 0] == 0.0)
    # The blocks went in order of their L2 norms: every block pruned at the
    # last step was at most as large as every kept one, on the weights the
    # pruner ranked.
    seen = before.steps[9][2]["hidden/kernel"]
    norms = np.sqrt((seen.reshape(2, 4, 16) ** 2).sum(axis=1))
    was_alive = before.steps[9][1]["hidden/kernel"].reshape(2, 4, 16)[:, 0]
    now = recorder.steps[9][1]["hidden/kernel"].reshape(2, 4, 16)[:, 0]
    newly = (was_alive == 1) & (now == 0)
    assert newly.any()
    assert norms[newly].max() <= norms[now == 1].min()


# --- Performance: no batch-end hook, no per-batch device read -----------------


def test_no_batch_end_hook_so_async_dispatch_stays_on():
    pruner = GradualPruning(PolynomialDecay(0.0, 0.5, 0, 10))
    assert keras.src.utils.is_default(pruner.on_train_batch_end)
    assert keras.src.utils.is_default(pruner.on_batch_end)
    callbacks = keras.callbacks.CallbackList([pruner])
    # TensorFlow's backend is never async (IS_THREAD_SAFE is False); the JAX
    # test below checks the flag stays on where Keras uses it.
    assert callbacks._async_train == keras.src.backend.IS_THREAD_SAFE


def test_reads_the_step_from_the_device_once_per_epoch(monkeypatch):
    pruner = GradualPruning(PolynomialDecay(0.0, 0.5, 0, 12, frequency=4))
    reads = []
    original = GradualPruning._read_step
    monkeypatch.setattr(
        GradualPruning, "_read_step", lambda self: reads.append(1) or original(self)
    )
    calls = []

    def counting_schedule(step):
        calls.append(step)
        return PolynomialDecay(0.0, 0.5, 0, 12, frequency=4)(step)

    pruner.schedule = counting_schedule
    fit(build(), [pruner], epochs=3)
    assert len(reads) == 1 + 3  # on_train_begin, then each on_epoch_begin.
    # One schedule call per step, plus the check in on_train_begin.
    assert calls == [0] + list(range(24))
    assert [t for t, _ in pruner.history] == [0, 4, 8, 12]


def test_touches_the_model_only_in_batches_that_prune():
    # On JAX, reading `Callback.model` writes the whole training state back
    # into the variables (`jax_state_sync`), and the next step re-reads it:
    # the pruner must not touch the model in batches that do not prune.
    class Watched(GradualPruning):
        def on_train_batch_begin(self, batch, logs=None):
            self.where = batch
            super().on_train_batch_begin(batch, logs)
            self.where = None

        @property
        def model(self):
            if getattr(self, "where", None) is not None:
                self.touched.append(self.where)
            return self._model

    pruner = Watched(ConstantSparsity(0.5, begin_step=3, end_step=6, frequency=3))
    pruner.touched = []
    fit(build(), [pruner], epochs=1)
    assert [t for t, _ in pruner.history] == [3, 6]
    # On PyTorch it also fills Adam's second moments before the first batch
    # of each epoch (`optimizer_slots.fill_square_root_slots`).
    filled = [0] if keras.backend.backend() == "torch" else []
    assert sorted(set(pruner.touched)) == filled + [3, 6]


# --- Other schedules: duck-typed, bare ----------------------------------------


@pytest.mark.parametrize(
    "convert",
    [
        lambda should, s: (np.bool_(should), np.float32(s)),
        lambda should, s: (np.array(should), np.array([s], dtype=np.float64)),
        lambda should, s: (tf.constant(should), tf.constant(s, dtype=tf.float32)),
        lambda should, s: [int(should), s],
    ],
    ids=["numpy-scalars", "numpy-arrays", "tensorflow", "list-of-int-and-float"],
)
def test_duck_typed_schedules_returning_numpy_or_tf_scalars(convert):
    ours = PolynomialDecay(0.0, 0.7, begin_step=1, end_step=13, frequency=4)

    class Duck:
        def __call__(self, step):
            return convert(*ours(step))

    model = build()
    pruner = GradualPruning(Duck())
    fit(model, [pruner])
    assert [t for t, _ in pruner.history] == [1, 5, 9, 13]
    assert [s for _, s in pruner.history] == pytest.approx(
        [ours(t)[1] for t in (1, 5, 9, 13)], abs=1e-6
    )
    assert all(type(s) is float for _, s in pruner.history)
    for key, mask in get_masks(model).items():
        assert np.sum(mask == 0) == pruned_count(pruner.history[-1][1], SIZES[key])


def test_bare_sparsity_schedule_with_frequency():
    model = build()
    pruner = GradualPruning(lambda step: min(0.5, step / 20), frequency=5)
    fit(model, [pruner])
    assert pruner.history == [(0, 0.0), (5, 0.25), (10, 0.5), (15, 0.5)]
    for key, mask in get_masks(model).items():
        assert np.sum(mask == 0) == pruned_count(0.5, SIZES[key])


# --- Schedules that cannot reach their target ---------------------------------


def test_warns_when_the_schedule_ends_after_training():
    # 8 steps per epoch x 2 epochs: steps 0 to 15. end_step=16 is never seen,
    # so the last pruning step is 12: 0.8 * (1 - (1 - 12/16) ** 3) = 0.7875.
    schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=16, frequency=4)
    model = build()
    pruner = GradualPruning(schedule)
    (caught,) = pruner_warnings(lambda: fit(model, [pruner]))
    message = str(caught.message)
    assert caught.category is UserWarning and "target sparsity 0.8" in message
    assert "last pruning step is 12, to sparsity 0.7875" in message
    assert "steps 0 to 15 at most (8 steps per epoch x 2 epochs)" in message
    assert "set end_step=12" in message
    assert pruner.history[-1] == (12, pytest.approx(0.7875))
    # The suggested end_step reaches the target, without a warning.
    fixed = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=12, frequency=4)
    model, pruner = build(), GradualPruning(fixed)
    assert not pruner_warnings(lambda: fit(model, [pruner]))
    assert pruner.history[-1] == (12, 0.8)
    for key, mask in get_masks(model).items():
        assert pruned(mask) == pruned_count(0.8, SIZES[key])


def test_warns_when_end_step_is_off_the_frequency_grid():
    # Prunes at 2, 5, 8, 11 however long training runs: 12 is not on the grid.
    schedule = PolynomialDecay(0.1, 0.8, begin_step=2, end_step=12, frequency=3)
    with pytest.warns(UserWarning, match=r"last pruning step is 11.*end_step=11"):
        fit(build(), [GradualPruning(schedule)], epochs=4)
    # Within one epoch it never gets there either.
    with pytest.warns(UserWarning, match=r"last pruning step is 5.*end_step=5"):
        fit(build(), [GradualPruning(schedule)], epochs=1)


def test_warns_when_the_schedule_never_prunes():
    schedule = ConstantSparsity(0.5, begin_step=100)
    with pytest.warns(UserWarning, match=r"never prunes.*begin_step to at most 15"):
        fit(build(), [GradualPruning(schedule)])


@pytest.mark.parametrize(
    "schedule, frequency",
    [
        (ConstantSparsity(0.5, begin_step=15), None),
        (PolynomialDecay(0.0, 0.5, begin_step=0, end_step=15, frequency=5), None),
        (lambda step: 0.5, 4),  # No target to check against.
    ],
)
def test_no_warning_when_the_target_is_reached_or_unknown(schedule, frequency):
    pruner = GradualPruning(schedule, frequency=frequency)
    assert not pruner_warnings(lambda: fit(build(), [pruner]))
    assert pruner.history[-1][1] == 0.5


def pruner_warnings(run):
    """The warnings of `GradualPruning` that `run()` gives."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [w for w in caught if "GradualPruning" in str(w.message)]


# --- Reuse and copies ---------------------------------------------------------


def test_resets_in_on_train_begin_and_continues_from_the_optimizer_step():
    schedule = ConstantSparsity(0.5, begin_step=0, frequency=6)
    model = build()
    pruner = GradualPruning(schedule)
    fit(model, [pruner], epochs=1)
    assert pruner.history == [(0, 0.5), (6, 0.5)]
    fit(model, [pruner], epochs=1)  # Steps 8 to 15.
    assert pruner.history == [(12, 0.5)]


# Its schedule stops short of its target; that warning is tested on its own.
@pytest.mark.filterwarnings("ignore:GradualPruning. the schedule does not reach")
def test_deep_copy():
    model = build()
    pruner = GradualPruning(PolynomialDecay(0.0, 0.6, 0, 8, frequency=4))
    fit(model, [pruner], epochs=1)
    clone = copy.deepcopy(pruner)
    assert clone.model is None and pruner.model is model
    assert clone.history == pruner.history and clone.history is not pruner.history
    assert clone.schedule is not pruner.schedule
    assert clone.schedule.get_config() == pruner.schedule.get_config()
    other = build()
    fit(other, [clone], epochs=1)
    assert clone.model is other
    assert [t for t, _ in clone.history] == [0, 4]
    assert [t for t, _ in pruner.history] == [0, 4]
    assert lth.sparsity(other)["layers"] == lth.sparsity(model)["layers"]


def test_verbose_prints_one_line_per_pruning_step(capsys):
    fit(build(), [GradualPruning(ConstantSparsity(0.5, 2, 6, 4), verbose=1)], 1)
    lines = [x for x in capsys.readouterr().out.splitlines() if "GradualPruning" in x]
    assert lines == [
        "GradualPruning: step 2: pruned to sparsity 0.5000",
        "GradualPruning: step 6: pruned to sparsity 0.5000",
    ]


# --- Errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((0.5,), {}, TypeError, "Received: 0.5 of type float"),
        ((ConstantSparsity(0.5, 0),), {"strategy": "random"}, ValueError, "random"),
        ((lambda s: 0.5,), {"frequency": 0}, ValueError, "frequency=0"),
        ((lambda s: 0.5,), {"frequency": 2.0}, TypeError, "frequency=2.0"),
        (
            (ConstantSparsity(0.5, 0),),
            {"frequency": 10},
            ValueError,
            "expected frequency=None",
        ),
    ],
)
def test_rejects_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        GradualPruning(*args, **kwargs)


@pytest.mark.parametrize(
    "schedule, frequency, error, match",
    [
        (lambda step: 0.5, None, ValueError, "pass `frequency`"),
        (lambda step: (True, 0.5), 4, ValueError, "decides when to prune"),
        (lambda step: (True, 0.5, 1), None, ValueError, r"\(True, 0.5, 1\)"),
        (lambda step: (True, 1.5), None, ValueError, r"\[0, 1\].*1.5"),
        (lambda step: (True, float("nan")), None, ValueError, "nan"),
        (lambda step: (True, [0.1, 0.2]), None, TypeError, "sparsity to be a scalar"),
        (lambda step: ("yes", 0.5), None, TypeError, "should_prune"),
    ],
)
def test_a_bad_schedule_fails_before_training(schedule, frequency, error, match):
    model = build()
    before = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    with pytest.raises(error, match=match):
        fit(model, [GradualPruning(schedule, frequency=frequency)])
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 0
    after = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize(
    "block, match",
    [((0, 4), r"\(0, 4\)"), ({"nope/kernel": (1, 4)}, r"\['nope/kernel'\]")],
)
def test_a_bad_block_fails_before_training(block, match):
    model = build()
    with pytest.raises(ValueError, match=match):
        fit(model, [GradualPruning(ConstantSparsity(0.5, 0), block=block)])
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 0


def test_model_without_prunable_layers_is_refused():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="no prunable layers"):
        model.fit(
            np.ones((8, 8)),
            np.ones((8, 3)),
            verbose=0,
            callbacks=[GradualPruning(ConstantSparsity(0.5, 0))],
        )


# --- JAX: state kept outside the variables during an epoch ---------------------

# TensorFlow is blocked in this process: the JAX path must not need it (and
# Keras would import it just to check it is there, which takes seconds).
_JAX_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    sys.modules["tensorflow"] = None
    os.environ["KERAS_BACKEND"] = "jax"
    import keras, numpy as np
    import keras_lth
    from keras_lth.callbacks.gradual_pruning import GradualPruning
    from keras_lth.masking import get_masks, get_prunable_weights
    from keras_lth.schedules import PolynomialDecay

    assert keras.backend.backend() == "jax"
    keras.utils.set_random_seed(0)
    model = keras_lth.mask_model(keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(3, name="output")]))
    model.compile(optimizer="adam", loss="mse")
    schedule = PolynomialDecay(0.1, 0.8, begin_step=2, end_step=12, frequency=3)
    pruner = GradualPruning(schedule)
    seen = []

    class Probe(keras.callbacks.Callback):
        # At epoch ends only, where Keras has written the JAX state back, so
        # that the probe itself forces no sync between the pruner's steps.
        def on_epoch_end(self, epoch, logs=None):
            masks, weights = get_masks(self.model), get_prunable_weights(self.model)
            seen.append({
                "pruned": {k: int(np.sum(m == 0)) for k, m in masks.items()},
                "zero": all(bool(np.all(weights[k][m == 0] == 0))
                            for k, m in masks.items()),
            })

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    model.fit(x, rng.normal(size=(64, 3)), batch_size=8, epochs=2, verbose=0,
              callbacks=[pruner, Probe()])
    masks, weights = get_masks(model), get_prunable_weights(model)
    print("JSON:" + json.dumps({
        "async": keras.callbacks.CallbackList([pruner])._async_train,
        "history": pruner.history,
        "seen": seen,
        "final": {k: int(np.sum(m == 0)) for k, m in masks.items()},
        "zero": all(bool(np.all(weights[k][m == 0] == 0)) for k, m in masks.items()),
        "iterations": int(model.optimizer.iterations.numpy()),
    }))
    """
)


@pytest.fixture(scope="module", autouse=True)
def jax_process(request):
    """Starts the JAX run before this module's first test, so it overlaps them.

    Only when the test that reads it is selected.
    """
    if not any(
        item.name == "test_gradual_pruning_on_jax" for item in request.session.items
    ):
        yield None
        return
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    process = subprocess.Popen(
        [sys.executable, "-c", _JAX_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.mark.slow
def test_gradual_pruning_on_jax(jax_process):
    stdout, stderr = jax_process.communicate(timeout=300)
    lines = [x for x in stdout.splitlines() if x.startswith("JSON:")]
    assert jax_process.returncode == 0 and lines, stderr[-3000:]
    out = json.loads(lines[-1][len("JSON:") :])
    schedule = PolynomialDecay(0.1, 0.8, begin_step=2, end_step=12, frequency=3)
    assert out["async"] is True  # JAX dispatches batches asynchronously.
    assert out["iterations"] == 16
    assert [tuple(h) for h in out["history"]] == [
        (t, schedule(t)[1]) for t in (2, 5, 8, 11)
    ]
    # After epoch 1 (steps 0-7) the last pruning was at step 5; then at 11.
    for seen, step in zip(out["seen"], (5, 11), strict=True):
        target = schedule(step)[1]
        assert seen["pruned"] == {k: pruned_count(target, n) for k, n in SIZES.items()}
        assert seen["zero"]
    assert out["final"] == {
        k: pruned_count(schedule(11)[1], n) for k, n in SIZES.items()
    }
    assert out["zero"]
