"""The results row of an IMP round, from epoch logs and masks."""

import numpy as np
import pytest

from keras_lth.callbacks import round_results

HISTORY = [
    ({"loss": 0.9, "val_loss": 0.6, "val_accuracy": 0.7}, 10),
    ({"loss": 0.7, "val_loss": 0.5, "val_accuracy": 0.9}, 20),
    ({"loss": 0.5, "val_loss": 0.55, "val_accuracy": 0.8}, 30),
]
MASKS = {"a/kernel": np.array([1.0, 0.0, 1.0, 1.0]), "b/kernel": np.ones(4)}


@pytest.mark.parametrize(
    "monitor, mode, best_epoch",
    [
        ("val_loss", "auto", 2),  # min
        ("val_accuracy", "auto", 2),  # max
        ("loss", "auto", 3),
        ("val_accuracy", "min", 1),
        ("val_loss", "max", 1),
    ],
)
def test_the_best_epoch_follows_the_monitor_and_mode(monitor, mode, best_epoch):
    row = round_results.round_row(
        1, HISTORY, MASKS, monitor=monitor, mode=mode, epochs_per_round=4
    )
    assert row["best_epoch"] == best_epoch
    assert row["best_step"] == 10 * best_epoch
    assert row["best"] == HISTORY[best_epoch - 1][0]
    assert row["final"] == HISTORY[-1][0]
    assert row["round"] == 1 and row["monitor"] == monitor
    assert row["weights_remaining"] == 7 / 8
    assert row["layers"] == {"a/kernel": 0.75, "b/kernel": 1.0}
    assert (row["epochs"], row["epochs_skipped"]) == (3, 1)


def test_epochs_without_the_monitor_are_skipped():
    history = [({"loss": 1.0}, 1), ({"loss": 2.0, "x": 0.1}, 2), ({"loss": 0.5}, 3)]
    row = round_results.round_row(
        0, history, MASKS, monitor="loss", mode="auto", epochs_per_round=3
    )
    assert row["best_epoch"] == 3


def test_a_missing_monitor_falls_back_to_loss_with_a_warning():
    with pytest.warns(UserWarning, match=r"monitor='val_loss'.*\['loss'\]"):
        assert round_results.monitor_in_logs("val_loss", {"loss": 1.0}) == "loss"
    assert round_results.monitor_in_logs("loss", {"loss": 1.0}) == "loss"


def test_plain_logs_and_the_round_line():
    logs = {"loss": np.float32(0.25), "vector": np.ones(3), "n": 3}
    assert round_results.plain_logs(logs) == {"loss": 0.25, "n": 3.0}
    row = round_results.round_row(
        0, HISTORY, MASKS, monitor="val_loss", mode="auto", epochs_per_round=3
    )
    assert round_results.round_line(row, 5) == (
        "LotteryTicket: round 1/5, 87.5% of weights remaining, best val_loss "
        "0.5000 at epoch 2 (step 20)"
    )
