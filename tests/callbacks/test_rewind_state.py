"""The rewind point: snapshot, restore per rewind kind, and reinit."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_lth as lth
from keras_lth.callbacks import rewind_state
from keras_lth.rewind import Rewind


def _trained_model():
    model = lth.mask_model(
        keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(6, name="hidden"),
                keras.layers.BatchNormalization(),
                keras.layers.Dense(2, name="output"),
            ]
        )
    )
    model.compile(keras.optimizers.Adam(0.1), "mse")
    model.optimizer.build(model.trainable_variables)
    return model


def _fit(model):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)), rng.normal(size=(32, 2))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)


def _values(variables):
    return [ops.convert_to_numpy(v).copy() for v in variables]


def _prune(model):
    masks = lth.get_masks(model)
    masks["hidden/kernel"][0] = 0  # The first input's weights.
    lth.set_masks(model, masks)
    return masks


def test_the_snapshot_holds_the_model_but_its_masks_and_the_optimizer():
    model = _trained_model()
    snapshot = rewind_state.take_snapshot(model)
    masks = {id(layer.kernel_mask) for layer in lth.masking.prunable_layers(model)}
    state = rewind_state.model_state(model)
    assert len(state) == len(model.variables) - 2
    assert not any(id(v) in masks for v in state)
    assert rewind_state.snapshot_shapes(model) == {
        part: [x.shape for x in snapshot[part]] for part in ("model", "optimizer")
    }
    assert len(snapshot["optimizer"]) == len(model.optimizer.variables)


@pytest.mark.parametrize("kind", ["init", "step", "epoch"])
def test_a_rewind_point_brings_back_weights_and_optimizer(kind):
    model = _trained_model()
    snapshot = rewind_state.take_snapshot(model)
    _fit(model)
    masks = _prune(model)
    rewind = Rewind(kind, 0 if kind == "init" else 3)
    rewind_state.restore_snapshot(model, snapshot, rewind, seed=[0, 1])
    for now, then in zip(
        _values(rewind_state.model_state(model)), snapshot["model"], strict=True
    ):
        if now.shape == masks["hidden/kernel"].shape:
            then = then * masks["hidden/kernel"]  # Pruned entries stay zero.
        np.testing.assert_array_equal(now, then)
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 0
    np.testing.assert_array_equal(
        lth.get_masks(model)["hidden/kernel"], masks["hidden/kernel"]
    )


def test_lr_rewinding_brings_back_the_optimizer_only_and_none_nothing():
    model = _trained_model()
    snapshot = rewind_state.take_snapshot(model)
    _fit(model)
    _prune(model)
    trained = _values(rewind_state.model_state(model))
    optimizer = _values(model.optimizer.variables)
    rewind_state.restore_snapshot(model, snapshot, Rewind("none"), seed=[0, 1])
    for now, then in zip(_values(model.optimizer.variables), optimizer, strict=True):
        np.testing.assert_array_equal(now, then)
    rewind_state.restore_snapshot(model, snapshot, Rewind("lr"), seed=[0, 1])
    for now, then in zip(
        _values(rewind_state.model_state(model)), trained, strict=True
    ):
        np.testing.assert_array_equal(now, then)
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 0


def test_reinit_each_round_draws_afresh_from_the_seed():
    model = _trained_model()
    snapshot = rewind_state.take_snapshot(model)

    def draw(seed):
        rewind_state.restore_snapshot(
            model, snapshot, Rewind("reinit_each_round"), seed=seed
        )
        return ops.convert_to_numpy(model.get_layer("hidden").kernel).copy()

    first, again, other = draw([0, 1]), draw([0, 1]), draw([0, 2])
    np.testing.assert_array_equal(first, again)  # Reproducible.
    assert not np.allclose(first, other)  # Another round, another draw.
    assert not np.allclose(first, snapshot["model"][0])  # Not the init point.
    limit = np.sqrt(6 / (4 + 6))  # Glorot uniform.
    assert np.abs(first).max() <= limit


def test_a_step_rewind_point_training_never_reaches_is_refused():
    check = rewind_state.check_step_rewind
    check(Rewind("init"), steps_per_epoch=5, epochs_per_round=2)
    check(Rewind("step", 10), steps_per_epoch=5, epochs_per_round=2)
    with pytest.raises(ValueError, match="after round 0 ends: round 0 runs 10"):
        check(Rewind("step", 11), steps_per_epoch=5, epochs_per_round=2)
    check(Rewind("step", 11), steps_per_epoch=None, epochs_per_round=2)
    with pytest.raises(ValueError, match="steps_per_execution=4"):
        check(
            Rewind("step", 6),
            steps_per_epoch=None,
            epochs_per_round=2,
            steps_per_execution=4,
        )
