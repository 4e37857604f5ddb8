"""`keras_lth.tuner.search`: `make_tuner` and `best_ticket`, on a real search."""

import glob
import json
import os

import keras
import numpy as np
import pytest

kt = pytest.importorskip("keras_tuner")
pytest.importorskip("sklearn")

from tensorboard.backend.event_processing import event_accumulator  # noqa: E402

import keras_lth as lth  # noqa: E402
from keras_lth import tuner as lth_tuner  # noqa: E402
from tests.tuner._helpers import BATCH  # noqa: E402
from tests.tuner._helpers import FILTERS  # noqa: E402
from tests.tuner._helpers import FITS  # noqa: E402
from tests.tuner._helpers import TARGET  # noqa: E402
from tests.tuner._helpers import build  # noqa: E402
from tests.tuner._helpers import expected_score  # noqa: E402
from tests.tuner._helpers import search  # noqa: E402

pytestmark = FILTERS


@pytest.fixture(scope="module")
def random_search(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("random")
    keras.utils.set_random_seed(0)
    hypermodel = lth_tuner.TicketHyperModel(
        build,
        target_weights_remaining=TARGET,
        prune_rate=[0.5, 0.6],
        rewind=["init", "epoch:1"],
        epochs_per_round=1,
        log_dir=root / "logs",
        seed=0,
        verbose=0,
    )
    tuner = lth_tuner.make_tuner(
        "random", hypermodel, max_trials=2, directory=root, project_name="p", seed=1
    )
    start = len(FITS)
    search(tuner, data)
    return {
        "root": root,
        "tuner": tuner,
        "hypermodel": hypermodel,
        "fits": FITS[start:],
    }


@pytest.mark.slow
def test_random_search_completes_trials_with_their_folders(random_search):
    tuner = random_search["tuner"]
    trials = tuner.oracle.trials
    assert len(trials) == 2 and len(random_search["fits"]) == 2
    for trial_id, trial in trials.items():
        assert trial.status == "COMPLETED", trial.message
        folder = tuner.get_trial_dir(trial_id)
        assert os.path.isfile(os.path.join(folder, "trial.json"))
        assert os.path.isfile(os.path.join(folder, "checkpoint.weights.h5"))
        assert os.path.isfile(os.path.join(folder, "lottery_ticket", "results.json"))
        assert os.path.isfile(os.path.join(folder, "lottery_ticket", "results.csv"))
        # The IMP checkpoint is removed once the trial is over.
        assert not os.path.exists(
            os.path.join(folder, "lottery_ticket", "lottery_ticket_state.npz")
        )
        # The user's hyperparameters and the IMP ones are all recorded.
        values = trial.hyperparameters.values
        assert {"units", "learning_rate", "prune_rate", "rewind", "strategy"} <= set(
            values
        )
        assert values["block"] == "none"


@pytest.mark.slow
def test_objective_is_recomputed_from_the_trials_results(random_search):
    tuner = random_search["tuner"]
    for trial_id, trial in tuner.oracle.trials.items():
        with open(
            os.path.join(
                tuner.get_trial_dir(trial_id), "lottery_ticket", "results.json"
            )
        ) as f:
            rows = json.load(f)
        assert rows == lth_tuner.load_trial_results(tuner, trial_id)
        assert trial.score == pytest.approx(expected_score(rows), abs=1e-12)
        assert trial.metrics.get_last_value("ticket_val_accuracy") == trial.score
        assert (
            trial.metrics.get_last_value("final_weights_remaining")
            == (rows[-1]["weights_remaining"])
        )
        # rounds=None: just enough rounds, so only the last one is at the target.
        assert rows[-1]["weights_remaining"] <= TARGET < rows[-2]["weights_remaining"]
        assert trial.metrics.get_last_value("rounds") == len(rows)
    assert tuner.oracle.objective.direction == "max"
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.score == max(t.score for t in tuner.oracle.trials.values())


@pytest.mark.slow
def test_each_trial_writes_tensorboard_summaries(random_search):
    logs = random_search["root"] / "logs"
    assert sorted(os.listdir(logs)) == sorted(random_search["tuner"].oracle.trials)
    for trial_id in random_search["tuner"].oracle.trials:
        for run in ("train", "validation"):
            events = glob.glob(str(logs / trial_id / run / "events.out.tfevents.*"))
            assert events and all(os.path.getsize(e) > 0 for e in events)
        acc = event_accumulator.EventAccumulator(str(logs / trial_id / "train"))
        acc.Reload()
        tags = acc.Tags()["tensors"]
        assert "sparsity/global" in tags and "lottery/weights_remaining" in tags


@pytest.mark.slow
def test_best_ticket_is_the_masked_final_ticket(random_search, data):
    tuner = random_search["tuner"]
    best = tuner.oracle.get_best_trials(1)[0]
    rows = lth_tuner.load_trial_results(tuner, best.trial_id)
    ticket = lth_tuner.best_ticket(tuner)
    assert lth.get_masks(ticket)
    remaining = 1.0 - lth.sparsity(ticket)["global"]
    assert remaining == pytest.approx(rows[-1]["weights_remaining"], abs=1e-12)
    assert remaining <= TARGET
    # The weights are those at the end of the last round: its final metrics.
    loss, accuracy = ticket.evaluate(*data.validation, batch_size=BATCH, verbose=0)
    assert accuracy == pytest.approx(rows[-1]["final"]["val_accuracy"], abs=1e-6)
    assert loss == pytest.approx(rows[-1]["final"]["val_loss"], rel=1e-4)
    # keras-tuner's own accessor gives the same ticket.
    (model,) = tuner.get_best_models(1)
    for key, mask in lth.get_masks(model).items():
        np.testing.assert_array_equal(mask, lth.get_masks(ticket)[key])
    plain = lth.strip_masks(ticket)
    assert not lth.masking.prunable_tensors(plain)


@pytest.mark.slow
def test_a_search_set_up_wrong_stops_before_training(random_search, data):
    tuner = lth_tuner.make_tuner(
        "random",
        random_search["hypermodel"],
        max_trials=1,
        directory=random_search["root"],
        project_name="refused",
    )
    start = len(FITS)
    with pytest.raises(kt.errors.FatalValueError, match="its own LotteryTicket"):
        search(tuner, data, callbacks=[lth.LotteryTicket(1, 1)])
    # A stock tuner given another objective is told which one to use.
    tuner = kt.RandomSearch(
        random_search["hypermodel"],
        objective="val_accuracy",
        max_trials=1,
        directory=random_search["root"],
        project_name="objective",
    )
    with pytest.raises(kt.errors.FatalValueError, match="hypermodel.objective"):
        search(tuner, data)
    assert len(FITS) == start


def test_make_tuner_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        lth_tuner.make_tuner("grid", lth_tuner.TicketHyperModel(build))


def test_make_tuner_builds_each_kind_with_the_hypermodels_objective(tmp_path):
    hypermodel = lth_tuner.TicketHyperModel(build, epochs_per_round=[1, 3])
    classes = {
        "random": kt.RandomSearch,
        "bayesian": kt.BayesianOptimization,
        "hyperband": kt.Hyperband,
    }
    for kind, cls in classes.items():
        tuner = lth_tuner.make_tuner(
            kind, hypermodel, max_trials=3, directory=tmp_path, project_name=kind
        )
        assert isinstance(tuner, cls)
        assert tuner.oracle.objective.name == "ticket_val_accuracy"
        assert tuner.oracle.objective.direction == "max"
        assert tuner.oracle.max_trials == 3
    assert tuner.oracle.max_epochs == 3  # Hyperband: the most epochs per round.
    with pytest.raises(TypeError, match="TicketHyperModel"):
        lth_tuner.make_tuner("random", kt.HyperModel())
