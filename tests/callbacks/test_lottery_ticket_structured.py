"""`LotteryTicket(granularity="unit")`: IMP that prunes whole output units.

A small Dense model on scikit-learn's digits: after `r` pruning steps each
hidden layer has exactly `pruning.target_count(units, rate, r)` live units,
every mask is unit-aligned, and the output layer keeps its 10 classes.
"""

import warnings

import keras
import numpy as np
import pytest

import keras_lth as lth
from keras_lth.callbacks import ticket_options
from keras_lth.callbacks.checkpoint import CHECKPOINT_NAME
from keras_lth.masking import prunable_tensors
from keras_lth.pruning import target_count
from keras_lth.structured import count_live_units
from keras_lth.structured import is_unit_sparse

ROUNDS = 4
UNITS = {"hidden/kernel": 48, "hidden_2/kernel": 32, "output/kernel": 10}


def build_model():
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(48, activation="relu", name="hidden"),
            keras.layers.Dense(32, activation="relu", name="hidden_2"),
            keras.layers.Dense(10, name="output"),
        ]
    )


def fit(digits, *, rounds=ROUNDS, callbacks=(), **kwargs):
    x, y, xv, yv = digits
    keras.utils.set_random_seed(1234)
    model = lth.mask_model(build_model())
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    ticket = lth.LotteryTicket(rounds, 1, verbose=0, seed=0, **kwargs)
    model.fit(
        x,
        y,
        validation_data=(xv, yv),
        batch_size=256,
        epochs=ticket.total_epochs,
        callbacks=[ticket, *callbacks],
        shuffle=False,
        verbose=0,
    )
    return model, ticket


def live_units(masks):
    return {key: count_live_units(mask, (1,)) for key, mask in masks.items()}


@pytest.mark.parametrize("refill", [False, True], ids=["norm", "refill"])
def test_each_round_keeps_the_exact_number_of_whole_units(digits, refill):
    model, ticket = fit(digits, granularity="unit", refill=refill)
    for step in range(ROUNDS):
        masks = ticket.masks_at(step)
        assert live_units(masks) == {
            "hidden/kernel": target_count(48, 0.2, step),
            "hidden_2/kernel": target_count(32, 0.2, step),
            "output/kernel": 10,  # The classes are never pruned by default.
        }
        assert all(is_unit_sparse(mask, (1,)) for mask in masks.values())
        # Pruned columns are whole: the kept weights are the kept columns.
        for key, mask in masks.items():
            assert mask.sum() == live_units({key: mask})[key] * mask.shape[0]
    final = lth.get_masks(model)
    assert live_units(final)["hidden/kernel"] == target_count(48, 0.2, ROUNDS - 1)
    for row, step in zip(ticket.results, range(ROUNDS), strict=True):
        assert row["round"] == step


def test_global_units_share_one_target_and_skip_the_output_layer(digits):
    _, ticket = fit(digits, rounds=3, granularity="unit", strategy="global")
    for step in range(3):
        live = live_units(ticket.masks_at(step))
        assert live["hidden/kernel"] + live["hidden_2/kernel"] == target_count(
            80, 0.2, step
        )
        assert live["output/kernel"] == 10


def test_a_named_output_layer_is_pruned_by_unit(digits):
    _, ticket = fit(digits, rounds=2, granularity="unit", layer_rates={"output": 0.3})
    assert live_units(ticket.masks_at(1))["output/kernel"] == 7


def test_a_stopped_run_resumes_and_refuses_other_granularities(digits, tmp_path):
    class StopAt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:  # After the first pruning step.
                self.model.stop_training = True

    folder = str(tmp_path / "ckpt")
    _, whole = fit(digits, rounds=3, granularity="unit", refill=True)
    _, stopped = fit(
        digits,
        rounds=3,
        granularity="unit",
        refill=True,
        checkpoint_dir=folder,
        callbacks=[StopAt()],
    )
    assert len(stopped.results) == 2
    for other in ({"granularity": "weight"}, {"granularity": "unit"}):
        with pytest.raises(ValueError, match="other settings"):
            fit(digits, rounds=3, checkpoint_dir=folder, **other)
    _, resumed = fit(
        digits, rounds=3, granularity="unit", refill=True, checkpoint_dir=folder
    )
    assert [row["round"] for row in resumed.results] == [0, 1, 2]
    for step in range(3):
        masks = resumed.masks_at(step)
        assert live_units(masks)["hidden_2/kernel"] == target_count(32, 0.2, step)
        for key, mask in whole.masks_at(step).items():
            np.testing.assert_array_equal(masks[key], mask)
    state = lth.LotteryTicket(3, 1, granularity="unit", refill=True, seed=0)
    state.load_state(tmp_path / "ckpt" / CHECKPOINT_NAME)
    assert state.granularity == "unit" and state.refill is True


def test_embeddings_have_no_units_and_stay_as_they_are(digits):
    inputs = keras.Input((4,), dtype="int32")
    x = keras.layers.Embedding(20, 6, name="embedding")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, name="output")(
        keras.layers.Dense(12, name="hidden")(x)
    )
    model = lth.mask_model(keras.Model(inputs, outputs))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    ticket = lth.LotteryTicket(
        2, 1, granularity="unit", monitor="loss", verbose=0, seed=0
    )
    x = np.random.default_rng(0).integers(0, 20, size=(64, 4))
    y = np.arange(64) % 10
    with pytest.warns(UserWarning, match=r"no output units.*embedding/embeddings"):
        model.fit(x, y, epochs=ticket.total_epochs, callbacks=[ticket], verbose=0)
    masks = ticket.masks_at(1)
    assert masks["embedding/embeddings"].all()
    assert count_live_units(masks["hidden/kernel"], (1,)) == 10  # 12 * 0.8


def test_unit_axes_follow_the_layer():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Conv2DTranspose(5, 3, name="up")(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = keras.layers.Reshape((36, 10))(x)
    x = keras.layers.MultiHeadAttention(2, 4, name="mha")(x, x)
    model = lth.mask_model(keras.Model(inputs, x))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        axes = ticket_options.unit_axes_of(prunable_tensors(model))
    assert axes["conv/kernel"] == (3,)
    assert axes["up/kernel"] == (2,)  # (kh, kw, out, in)
    assert axes["dw/kernel"] == (2, 3)  # (kh, kw, in, multiplier)
    assert axes["query/kernel"] == axes["value/kernel"] == (1,)  # Heads.
    assert axes["attention_output/kernel"] is None
    assert "attention_output/kernel" in str(caught[0].message)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"granularity": "channel"}, ValueError, "granularity"),
        ({"granularity": "unit", "block": (1, 4)}, ValueError, "block=None"),
        ({"refill": True}, ValueError, "granularity='unit'"),
        (
            {"granularity": "unit", "refill": True, "strategy": "global"},
            ValueError,
            "strategy='layerwise'",
        ),
        ({"granularity": "unit", "refill": "yes"}, TypeError, "bool"),
    ],
)
def test_incompatible_options_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        lth.LotteryTicket(2, 1, **kwargs)
