"""`keras_lth.tuner.trials`: each trial's files, and resuming a search."""

import json

import pytest

kt = pytest.importorskip("keras_tuner")
pytest.importorskip("sklearn")

import keras  # noqa: E402

from keras_lth import tuner as lth_tuner  # noqa: E402
from keras_lth.tuner import trials  # noqa: E402
from tests.tuner._helpers import FILTERS  # noqa: E402
from tests.tuner._helpers import FITS  # noqa: E402
from tests.tuner._helpers import TARGET  # noqa: E402
from tests.tuner._helpers import build  # noqa: E402
from tests.tuner._helpers import expected_score  # noqa: E402
from tests.tuner._helpers import search  # noqa: E402

pytestmark = FILTERS


class _Interrupted(BaseException):
    """Stands for a kill: not an `Exception`, so keras-tuner lets it through."""


class _InterruptOnce(keras.callbacks.Callback):
    """Raises once, at the end of epoch `at[1]` of the `at[0]`-th fit."""

    at = (1, 1)
    fired = []  # Class level: shared by keras-tuner's deep copies.
    fits = []

    def on_train_begin(self, logs=None):
        self.fits.append(None)

    def on_epoch_end(self, epoch, logs=None):
        if (len(self.fits), epoch) == self.at and not self.fired:
            self.fired.append(epoch)
            raise _Interrupted()


@pytest.mark.slow
def test_bayesian_search_resumes_finished_and_interrupted_trials(tmp_path, data):
    def make(max_trials):
        hypermodel = lth_tuner.TicketHyperModel(
            build,
            target_weights_remaining=TARGET,
            prune_rate=[0.5, 0.6],
            epochs_per_round=1,
            seed=0,
            verbose=0,
        )
        return lth_tuner.make_tuner(
            "bayesian",
            hypermodel,
            max_trials=max_trials,
            num_initial_points=2,
            directory=tmp_path,
            project_name="p",
            seed=3,
        )

    start = len(FITS)
    first = make(2)
    search(first, data)
    assert len(FITS) - start == 2
    scores = {i: t.score for i, t in first.oracle.trials.items()}

    # A new tuner object on the same folder (overwrite=False) runs only the
    # third trial, suggested by the Gaussian process. It is killed at the end
    # of its epoch 1, before that epoch's checkpoint.
    _InterruptOnce.fired.clear()
    _InterruptOnce.fits.clear()
    _InterruptOnce.at = (1, 1)
    second = make(3)
    assert {i: t.score for i, t in second.oracle.trials.items()} == scores
    with pytest.raises(_Interrupted):
        search(second, data, callbacks=[_InterruptOnce()])
    assert len(FITS) - start == 3
    state = tmp_path / "p" / "trial_2" / "lottery_ticket" / "lottery_ticket_state.npz"
    assert state.exists()

    # Once more: trial 2 runs again and continues after its epoch 0.
    resumed = make(3)
    search(resumed, data, callbacks=[_InterruptOnce()])
    assert len(FITS) - start == 4
    interrupted, continued = FITS[start + 2 :]
    found = resumed.oracle.trials
    assert sorted(found) == ["0", "1", "2"]
    assert all(t.status == "COMPLETED" for t in found.values())
    assert {i: found[i].score for i in scores} == scores
    rows = lth_tuner.load_trial_results(resumed, "2")
    assert interrupted["epochs_run"] == [0, 1]
    assert continued["epochs_run"] == list(range(1, len(rows)))  # Epoch 0 kept.
    assert [r["round"] for r in rows] == list(range(len(rows)))
    assert not state.exists()
    for trial_id, trial in found.items():
        rows = lth_tuner.load_trial_results(resumed, trial_id)
        assert trial.score == pytest.approx(expected_score(rows), abs=1e-12)

    # Nothing is left to do.
    search(make(3), data)
    assert len(FITS) - start == 4


@pytest.mark.slow
def test_a_checkpoint_left_by_other_hyperparameters_is_not_resumed(tmp_path, data):
    # keras-tuner saves its tuner file when a trial ends, so a search killed
    # in its first trial starts afresh and reuses trial id 0, whose folder
    # holds the IMP checkpoint of another configuration. (Unreadable here:
    # resuming it would fail the trial.)
    folder = tmp_path / "p" / "trial_0" / "lottery_ticket"
    folder.mkdir(parents=True)
    (folder / "lottery_ticket_state.npz").write_bytes(b"another configuration")
    (folder / "hyperparameters.json").write_text('{"units": 7}')
    hypermodel = lth_tuner.TicketHyperModel(
        build,
        target_weights_remaining=TARGET,
        prune_rate=0.5,
        epochs_per_round=1,
        verbose=0,
    )
    tuner = lth_tuner.make_tuner(
        "random", hypermodel, max_trials=1, directory=tmp_path, project_name="p"
    )
    with pytest.warns(UserWarning, match="ignoring the IMP checkpoint"):
        search(tuner, data)
    (trial,) = tuner.oracle.trials.values()
    assert trial.status == "COMPLETED", trial.message
    with open(folder / "hyperparameters.json") as f:
        assert json.load(f) == trial.hyperparameters.values


def test_claim_folder_drops_a_checkpoint_without_recorded_values(tmp_path):
    state = tmp_path / "lottery_ticket_state.npz"
    state.write_bytes(b"checkpoint")
    with pytest.warns(UserWarning, match="ignoring the IMP checkpoint"):
        trials.claim_folder(tmp_path, {"prune_rate": 0.2})
    assert not state.exists()
    assert json.loads((tmp_path / trials.HP_FILE).read_text()) == {"prune_rate": 0.2}


def test_claim_folder_drops_only_a_checkpoint_of_other_values(tmp_path):
    state = tmp_path / "lottery_ticket_state.npz"
    trials.claim_folder(tmp_path, {"prune_rate": 0.2})
    state.write_bytes(b"checkpoint")
    trials.claim_folder(tmp_path, {"prune_rate": 0.2})
    assert state.read_bytes() == b"checkpoint"
    with pytest.warns(UserWarning, match="ignoring the IMP checkpoint"):
        trials.claim_folder(tmp_path, {"prune_rate": 0.4})
    assert not state.exists()
    assert json.loads((tmp_path / trials.HP_FILE).read_text()) == {"prune_rate": 0.4}


def test_imp_folder_and_missing_results(tmp_path):
    assert trials.imp_folder("t") == f"t/{trials.TRIAL_SUBDIR}"
    assert trials.imp_folder("t", 2) == f"t/{trials.TRIAL_SUBDIR}/execution2"

    class Tuner:
        def get_trial_dir(self, trial_id):
            return str(tmp_path / f"trial_{trial_id}")

    with pytest.raises(FileNotFoundError, match="No IMP results for trial 7"):
        trials.load_trial_results(Tuner(), "7")
