"""Units an `Add` ties are pruned together (`keras_lth.coupling`).

`coupled_units` labels the channels of a residual stream written by several
layers; `LotteryTicket(granularity="unit")` prunes them at the same indices,
so that `keras_lth.shrink` narrows the stream itself. In `CORE_MODULES`: it
runs on every backend.
"""

import warnings

import keras
import numpy as np
import pytest

import keras_lth as lth
from keras_lth.coupling import coupled_units
from keras_lth.pruning import target_count
from keras_lth.structured import count_live_units

ROUNDS = 3
STREAM = ("stem/kernel", "block_1_out/kernel", "block_2_out/kernel")


def residual_mlp():
    """64 -> 32-wide stream with two residual blocks -> 10 logits."""
    x = keras.Input((64,))
    stream = keras.layers.Dense(32, activation="relu", name="stem")(x)
    for b in (1, 2):
        inner = keras.layers.Dense(16, activation="relu", name=f"block_{b}_in")(stream)
        out = keras.layers.Dense(32, name=f"block_{b}_out")(inner)
        stream = keras.layers.Add(name=f"block_{b}_add")([stream, out])
        stream = keras.layers.Activation("relu")(stream)
    return keras.Model(x, keras.layers.Dense(10, name="output")(stream))


def fit(digits, **kwargs):
    x, y, xv, yv = digits
    keras.utils.set_random_seed(1234)
    model = lth.mask_model(residual_mlp())
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    ticket = lth.LotteryTicket(
        ROUNDS, 1, granularity="unit", verbose=0, seed=0, **kwargs
    )
    model.fit(
        x,
        y,
        validation_data=(xv, yv),
        batch_size=256,
        epochs=ticket.total_epochs,
        callbacks=[ticket],
        shuffle=False,
        verbose=0,
    )
    return model, ticket


def test_resnet20s_three_residual_streams_are_found():
    model = lth.models.resnet20(input_shape=(8, 8, 1))
    labels = coupled_units(model)
    streams = {}
    for key, values in labels.items():
        streams.setdefault(tuple(values), []).append(key)
    blocks = [[f"stage{s}_block{b}_conv2/kernel" for b in (1, 2, 3)] for s in (1, 2, 3)]
    assert sorted(streams.values()) == [
        ["conv1/kernel", *blocks[0]],
        [blocks[1][0], "stage2_block1_shortcut_conv/kernel", *blocks[1][1:]],
        [blocks[2][0], "stage3_block1_shortcut_conv/kernel", *blocks[2][1:]],
    ]
    assert [len(set(values)) for values in streams] == [16, 32, 64]


def test_a_concatenation_ties_each_part_to_its_slice():
    x = keras.Input((4,))
    a = keras.layers.Dense(2, name="a")(x)
    b = keras.layers.Dense(3, name="b")(x)
    c = keras.layers.Concatenate()([a, b])
    d = keras.layers.Dense(5, name="d")(x)
    y = keras.layers.Add()([c, d])
    labels = coupled_units(lth.mask_model(keras.Model(x, keras.layers.Dense(1)(y))))
    assert sorted(labels) == ["a/kernel", "b/kernel", "d/kernel"]
    assert labels["d/kernel"] == labels["a/kernel"] + labels["b/kernel"]
    assert len(set(labels["d/kernel"])) == 5


def test_models_without_merges_tie_nothing():
    assert coupled_units(lth.models.lenet_300_100()) == {}


def test_a_subclassed_model_is_said_to_be_pruned_tensor_by_tensor():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = lth.layers.MaskedDense(4)

        def call(self, x):
            return self.hidden(x) + self.hidden(x)

    model = Net()
    model(np.ones((1, 3), "float32"))
    with pytest.warns(UserWarning, match="each tensor is pruned on its own"):
        assert coupled_units(model) == {}


def test_imp_prunes_the_stream_at_the_same_indices_and_shrink_narrows_it(digits):
    model, ticket = fit(digits)
    for step in range(ROUNDS):
        masks = ticket.masks_at(step)
        stream = [masks[key].any(axis=0) for key in STREAM]
        for other in stream[1:]:
            np.testing.assert_array_equal(other, stream[0])
        for key in (*STREAM, "block_1_in/kernel"):
            width = masks[key].shape[1]
            assert count_live_units(masks[key], (1,)) == target_count(width, 0.2, step)
    small, report = lth.shrink(model, return_report=True)
    width = target_count(32, 0.2, ROUNDS - 1)
    for name in ("stem", "block_1_out", "block_2_out"):
        assert report.units[name] == (32, width)
    assert small.get_layer("output").kernel.shape == (width, 10)
    x = digits[2][:64]
    expected = ops_numpy(model(x))
    np.testing.assert_allclose(ops_numpy(small(x)), expected, rtol=1e-5, atol=1e-5)


def test_uncoupled_units_leave_the_stream_as_wide(digits):
    model, ticket = fit(digits, coupled=False)
    assert ticket.coupled is False
    masks = ticket.masks_at(ROUNDS - 1)
    stream = [masks[key].any(axis=0) for key in STREAM]
    assert not all(np.array_equal(stream[0], other) for other in stream[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, report = lth.shrink(model, return_report=True)
    # Each layer pruned other channels: only those all three happened to
    # prune can go, fewer than each of them pruned.
    kept = report.units.get("stem", (32, 32))[1]
    assert kept > target_count(32, 0.2, ROUNDS - 1)


def test_coupled_is_a_unit_setting_saved_with_the_run(tmp_path):
    assert lth.LotteryTicket(2, 1).coupled is False  # Weights have no units.
    assert lth.LotteryTicket(2, 1, granularity="unit").coupled is True
    with pytest.raises(TypeError, match="Expected `coupled` to be a bool"):
        lth.LotteryTicket(2, 1, granularity="unit", coupled="yes")
    from keras_lth.callbacks import ticket_options

    saved = ticket_options.saved_settings(lth.LotteryTicket(2, 1, granularity="unit"))
    assert saved["coupled"] is True
    old = {key: value for key, value in saved.items() if key != "coupled"}
    assert ticket_options.settings_with_defaults(old)["coupled"] is False


def ops_numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_the_random_control_draws_tied_units_together(digits):
    model, ticket = fit(digits)
    masks = ticket.masks_at(ROUNDS - 1)
    keras.utils.set_random_seed(1234)
    control = lth.controls.random_prune(
        lth.mask_model(residual_mlp()), masks, seed=3, granularity="unit"
    )
    drawn = lth.get_masks(control)
    stream = [drawn[key].any(axis=0) for key in STREAM]
    for other in stream[1:]:
        np.testing.assert_array_equal(other, stream[0])
    assert not np.array_equal(stream[0], masks[STREAM[0]].any(axis=0))
    for key, mask in masks.items():
        assert count_live_units(drawn[key], (1,)) == count_live_units(mask, (1,))
    _, report = lth.shrink(control, return_report=True)
    _, ticket_report = lth.shrink(model, return_report=True)
    assert report.units == ticket_report.units  # The same shape.
