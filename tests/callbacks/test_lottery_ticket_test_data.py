"""`LotteryTicket(test_data=...)`: test metrics at each round's early stop."""

import keras
import numpy as np
import pytest

import keras_lth as lth
from keras_lth.plotting import default_metric
from tests.callbacks.test_lottery_ticket import BATCH
from tests.callbacks.test_lottery_ticket import build_model
from tests.callbacks.test_lottery_ticket import compiled

ROUNDS, EPOCHS = 3, 3


class EpochTest(keras.callbacks.Callback):
    """Evaluates the test split at every epoch end, where it sits in order."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y
        self.per_epoch = []

    def on_epoch_end(self, epoch, logs=None):
        logs = self.model.evaluate(self.x, self.y, verbose=0, return_dict=True)
        self.per_epoch.append(logs["accuracy"])


def split(digits):
    """Digits with a test split carved from the validation set."""
    x, y, xv, yv = digits
    half = len(xv) // 2
    return (x, y), (xv[:half], yv[:half]), (xv[half:], yv[half:])


def fit(digits, callbacks_around, *, test_data="tuple", epochs=EPOCHS, **kwargs):
    """One IMP run; `callbacks_around(ticket)` gives the callbacks list."""
    train, validation, test = split(digits)
    if test_data == "tuple":
        test_data = test
    keras.utils.set_random_seed(7)
    model = compiled(lth.mask_model(build_model()))
    ticket = lth.LotteryTicket(
        ROUNDS, epochs, test_data=test_data, seed=3, verbose=0, **kwargs
    )
    model.fit(
        *train,
        validation_data=validation,
        batch_size=BATCH,
        epochs=ticket.total_epochs,
        callbacks=callbacks_around(ticket),
        shuffle=False,
        verbose=0,
    )
    return ticket


def test_rows_hold_the_early_stopping_epochs_test_metrics_in_any_order(digits):
    _, _, test = split(digits)
    before, after = EpochTest(*test), EpochTest(*test)
    first = fit(digits, lambda ticket: [before, ticket])
    second = fit(digits, lambda ticket: [ticket, after])
    for row, other in zip(first.results, second.results, strict=True):
        assert set(row["test"]) == {"loss", "accuracy"}
        # The best epoch's weights, as a callback placed *before* the ticket
        # sees them (it runs before pruning and rewinding).
        epoch = row["round"] * EPOCHS + row["best_epoch"] - 1
        assert row["test"]["accuracy"] == pytest.approx(before.per_epoch[epoch])
        # The order of the callbacks changes nothing.
        assert other["test"] == pytest.approx(row["test"])
    # A callback placed after the ticket scores the next round's pruned,
    # rewound weights at the end of each round: what `test` protects from.
    last_epochs = [(r + 1) * EPOCHS - 1 for r in range(ROUNDS - 1)]
    assert any(
        after.per_epoch[e] != pytest.approx(before.per_epoch[e]) for e in last_epochs
    )


def test_a_dataset_gives_the_same_metrics_as_arrays(digits):
    _, _, (xt, yt) = split(digits)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return int(np.ceil(len(xt) / 100))

        def __getitem__(self, i):
            return xt[i * 100 : (i + 1) * 100], yt[i * 100 : (i + 1) * 100]

    arrays = fit(digits, lambda ticket: [ticket], epochs=2)
    dataset = fit(digits, lambda ticket: [ticket], epochs=2, test_data=Batches())
    for row, other in zip(arrays.results, dataset.results, strict=True):
        assert other["test"]["accuracy"] == pytest.approx(row["test"]["accuracy"])


def test_without_test_data_rows_have_no_test_entry(digits):
    ticket = fit(digits, lambda ticket: [ticket], epochs=1, test_data=None)
    assert all("test" not in row for row in ticket.results)


def test_table_csv_and_plot_show_the_test_metrics(digits, tmp_path):
    ticket = fit(digits, lambda ticket: [ticket], epochs=1)
    assert "test_accuracy" in ticket.results_table().splitlines()[0]
    ticket.save_results_csv(tmp_path / "r.csv")
    header = (tmp_path / "r.csv").read_text().splitlines()[0].split(",")
    assert "test_accuracy" in header and "best_val_loss" in header
    assert default_metric(ticket.results) == "test_accuracy"


def test_a_resumed_run_keeps_the_best_epochs_test_metrics(digits, tmp_path):
    class StopAt(keras.callbacks.Callback):
        def __init__(self, epoch):
            super().__init__()
            self.epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            if epoch == self.epoch:
                self.model.stop_training = True

    whole = fit(digits, lambda ticket: [ticket])
    folder = str(tmp_path / "ckpt")
    # Stopped inside round 1, after its first epoch: its best so far is kept
    # in the state file, and the resumed run must not lose it.
    fit(digits, lambda ticket: [ticket, StopAt(EPOCHS)], checkpoint_dir=folder)
    resumed = fit(digits, lambda ticket: [ticket], checkpoint_dir=folder)
    assert [r["round"] for r in resumed.results] == list(range(ROUNDS))
    for row, other in zip(whole.results, resumed.results, strict=True):
        assert other["best_epoch"] == row["best_epoch"]
        assert other["test"]["accuracy"] == pytest.approx(row["test"]["accuracy"])


@pytest.mark.parametrize(
    ("test_data", "error", "match"),
    [
        (np.zeros((4, 64)), TypeError, "without labels"),
        ((np.zeros((4, 64)),), ValueError, "a tuple of 1 items"),
        ([1, 2, 3, 4], ValueError, "a list of 4 items"),
    ],
)
def test_bad_test_data_is_refused_naming_what_was_received(test_data, error, match):
    with pytest.raises(error, match=match):
        lth.LotteryTicket(2, 1, test_data=test_data)
