"""`keras_lth.datasets.ShuffledBatches`: an endless stream for sub-epoch checks."""

import keras
import numpy as np
import pytest

import keras_lth as lth
from keras_lth.datasets import ShuffledBatches


def stream(batches, steps):
    return [batches[i] for i in range(steps)]


def test_every_example_once_per_pass_reshuffled_between_passes():
    x = np.arange(10, dtype="float32")[:, None]
    batches = ShuffledBatches(x, np.arange(10), batch_size=4, seed=1)
    assert batches.batches_per_pass == 3  # 4 + 4 + 2, like `fit(x, y)`.
    first = np.concatenate([y for _, y in stream(batches, 3)])
    second = np.concatenate([batches[i][1] for i in range(3, 6)])
    assert sorted(first) == sorted(second) == list(range(10))
    assert not np.array_equal(first, second)
    x_batch, y_batch = batches[0]
    np.testing.assert_array_equal(x_batch[:, 0], y_batch)  # Rows stay paired.


def test_a_batch_depends_only_on_seed_and_step():
    x, y = np.arange(30.0)[:, None], np.arange(30)
    whole = ShuffledBatches(x, y, batch_size=7, seed=3)
    resumed = ShuffledBatches(x, y, batch_size=7, seed=3, start_step=9)
    for i in range(6):
        np.testing.assert_array_equal(resumed[i][1], whole[9 + i][1])
    other = ShuffledBatches(x, y, batch_size=7, seed=4)
    assert not np.array_equal(other[0][1], whole[0][1])


def test_dict_inputs_are_sliced_alike():
    x = {"a": np.arange(6.0), "b": np.arange(6.0) * 10}
    batch_x, batch_y = ShuffledBatches(x, np.arange(6), batch_size=3)[1]
    np.testing.assert_array_equal(batch_x["b"], batch_x["a"] * 10)
    np.testing.assert_array_equal(batch_x["a"], batch_y)


def test_fit_validates_every_n_steps_and_the_ticket_counts_them(digits):
    x, y, xv, yv = digits
    keras.utils.set_random_seed(0)
    model = lth.mask_model(
        keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, name="out")])
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(True))
    ticket = lth.LotteryTicket(2, 4, verbose=0)
    history = model.fit(
        ShuffledBatches(x, y, batch_size=32),
        steps_per_epoch=5,
        epochs=ticket.total_epochs,
        shuffle=False,
        validation_data=(xv, yv),
        callbacks=[ticket],
        verbose=0,
    )
    assert len(history.history["val_loss"]) == 8  # A check every 5 steps.
    # Round 1 rewound the step counter to 0, then trained 4 checks of 5 steps.
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 20
    for row in ticket.results:
        assert row["best_step"] == 5 * row["best_epoch"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(x=np.zeros(3), y=np.zeros(4)), ValueError, r"lengths \[3, 4\]"),
        (dict(x=np.zeros(0), y=np.zeros(0)), ValueError, "at least one"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=2.5), TypeError, "batch_size"),
        (dict(start_step=-1), ValueError, "start_step"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match):
    arguments = {"x": np.zeros(4), "y": np.zeros(4), "batch_size": 2, **kwargs}
    x, y = arguments.pop("x"), arguments.pop("y")
    with pytest.raises(error, match=match):
        ShuffledBatches(x, y, **arguments)
