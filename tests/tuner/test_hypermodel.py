"""`keras_lth.tuner.hypermodel`: `TicketHyperModel`'s settings and its trials."""

import copy

import pytest

kt = pytest.importorskip("keras_tuner")
pytest.importorskip("sklearn")

import keras_lth as lth  # noqa: E402
from keras_lth import tuner as lth_tuner  # noqa: E402
from tests.tuner._helpers import BATCH  # noqa: E402
from tests.tuner._helpers import FILTERS  # noqa: E402
from tests.tuner._helpers import FITS  # noqa: E402
from tests.tuner._helpers import TARGET  # noqa: E402
from tests.tuner._helpers import build  # noqa: E402
from tests.tuner._helpers import expected_score  # noqa: E402
from tests.tuner._helpers import model_loss  # noqa: E402
from tests.tuner._helpers import search  # noqa: E402

pytestmark = FILTERS


# ------------------------------------------------------------ hyperband


class _UserHyperModel(kt.HyperModel):
    """A user HyperModel whose own `fit` tunes the batch size."""

    def build(self, hp):
        return build(hp)

    def fit(self, hp, model, *args, **kwargs):
        return model.fit(*args, batch_size=hp.Choice("batch_size", [BATCH]), **kwargs)


@pytest.mark.slow
def test_hyperband_budget_is_epochs_per_round_from_a_fresh_start(tmp_path, data):
    hypermodel = lth_tuner.TicketHyperModel(
        _UserHyperModel(),
        target_weights_remaining=TARGET,
        prune_rate=[0.5, 0.6],
        rewind=["init", "epoch:1"],
        seed=0,
        verbose=0,
    )
    tuner = lth_tuner.make_tuner(
        "hyperband",
        hypermodel,
        max_trials=3,
        max_epochs=2,
        factor=2,
        directory=tmp_path,
        project_name="p",
        seed=0,
    )
    start = len(FITS)
    search(tuner, data, batch_size=None)
    fits = FITS[start:]
    trials = tuner.oracle.trials
    assert sorted(trials) == ["0", "1", "2"]
    assert all(t.status == "COMPLETED" for t in trials.values())
    for trial_id, trial in trials.items():
        epochs = trial.hyperparameters.values["tuner/epochs"]
        rows = lth_tuner.load_trial_results(tuner, trial_id)
        assert [r["epochs"] for r in rows] == [epochs] * len(rows)
        assert fits[int(trial_id)]["epochs"] == epochs * len(rows)
        assert fits[int(trial_id)]["epochs_run"] == list(range(epochs * len(rows)))
        assert trial.score == pytest.approx(expected_score(rows), abs=1e-12)

    # The third trial continues the better of the first two with 2 epochs per
    # round: it runs IMP again from the dense network and the same
    # initialization, not from the earlier trial's ticket.
    promoted = trials["2"].hyperparameters.values
    assert promoted["tuner/epochs"] == 2
    source = promoted["tuner/trial_id"]
    assert trials[source].hyperparameters.values["tuner/epochs"] == 1
    assert fits[2]["dense"]
    assert fits[2]["checksum"] == pytest.approx(fits[int(source)]["checksum"], rel=1e-6)

    ticket = lth_tuner.best_ticket(tuner)
    best = tuner.oracle.get_best_trials(1)[0]
    rows = lth_tuner.load_trial_results(tuner, best.trial_id)
    assert 1.0 - lth.sparsity(ticket)["global"] == pytest.approx(
        rows[-1]["weights_remaining"], abs=1e-12
    )


# -------------------------------------------------------------- failures


@pytest.mark.slow
def test_a_trial_that_misses_the_target_is_marked_failed(tmp_path, data):
    hypermodel = lth_tuner.TicketHyperModel(
        build,
        target_weights_remaining=TARGET,
        rounds=1,  # Round 0 only: the dense network, never pruned.
        epochs_per_round=1,
        verbose=0,
    )
    tuner = lth_tuner.make_tuner(
        "random", hypermodel, max_trials=1, directory=tmp_path, project_name="p"
    )
    search(tuner, data)
    (trial,) = tuner.oracle.trials.values()
    assert trial.status == "FAILED"
    assert "No ticket reached the target of 50.00% of weights remaining" in (
        trial.message
    )
    assert "round 0, kept 100.00%" in trial.message
    # Its results are still saved, for a look at what happened.
    assert len(lth_tuner.load_trial_results(tuner, trial.trial_id)) == 1
    with pytest.raises(ValueError, match="No trial of the search"):
        lth_tuner.best_ticket(tuner)


@pytest.mark.slow
def test_a_trial_over_max_rounds_fails_before_training(tmp_path, data):
    hypermodel = lth_tuner.TicketHyperModel(
        build, target_weights_remaining=0.1, prune_rate=0.2, max_rounds=5, verbose=0
    )
    tuner = lth_tuner.make_tuner(
        "random", hypermodel, max_trials=1, directory=tmp_path, project_name="p"
    )
    start = len(FITS)
    search(tuner, data)
    (trial,) = tuner.oracle.trials.values()
    assert trial.status == "FAILED"
    assert "above max_rounds=5" in trial.message
    assert len(FITS) == start


# -------------------------------------------------------------- settings


def test_settings_are_checked_before_any_search():
    with pytest.raises(TypeError, match="sets .*checkpoint_dir"):
        lth_tuner.TicketHyperModel(build, checkpoint_dir="x")
    with pytest.raises(ValueError, match="rewind='lr'.*one_shot=True"):
        lth_tuner.TicketHyperModel(build, rewind=["init", "lr"], one_shot=True)
    with pytest.raises(ValueError, match="target_weights_remaining"):
        lth_tuner.TicketHyperModel(build, target_weights_remaining=0.0)
    with pytest.raises(ValueError, match="lists a value twice"):
        lth_tuner.TicketHyperModel(build, prune_rate=[0.2, 0.2])
    hypermodel = lth_tuner.TicketHyperModel(build, metric="val_loss")
    assert hypermodel.objective.name == "ticket_val_loss"
    assert hypermodel.objective.direction == "min"


def test_values_are_recorded_in_the_spellings_that_read_back():
    hypermodel = lth_tuner.TicketHyperModel(
        build,
        prune_rate=(0.2, 0.4),
        rewind=["init", 100, "epoch:1"],
        strategy=["layerwise", "global"],
        block=[None, (1, 4), "2x2"],
        epochs_per_round=[1, 2],
    )
    assert hypermodel.prune_rate == [0.2, 0.4]
    assert hypermodel.rewind == ["init", "100", "epoch:1"]
    assert hypermodel.block == ["none", "1x4", "2x2"]
    assert hypermodel.max_epochs_per_round == 2
    # A tuple of ints is one block, not two values to search.
    assert lth_tuner.TicketHyperModel(build, block=(1, 4)).block == ["1x4"]
    hp = kt.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    assert hp.values["rewind"] == "init" and hp.values["block"] == "none"
    assert {"prune_rate", "strategy", "epochs_per_round"} <= set(hp.values)
    assert set(hp.values) <= set(lth_tuner.HP_NAMES)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"prune_rate": 1.0}, ValueError, r"`prune_rate` in \(0, 1\)"),
        ({"prune_rate": "0.2"}, TypeError, "prune_rate"),
        ({"rewind": "later"}, ValueError, "rewind='later'"),
        ({"rewind": 100}, None, None),
        ({"rewind": "100"}, None, None),
        ({"rewind": [100, "100"]}, ValueError, "lists a value twice"),
        ({"strategy": "magnitude"}, ValueError, "strategy='magnitude'"),
        ({"strategy": ["global", "lamp"], "min_density": 0.1}, None, None),
        (
            {"strategy": ["layerwise", "lamp"], "min_density": 0.1},
            ValueError,
            r"strategy='layerwise'.*min_density=0",
        ),
        ({"block": "1y4"}, ValueError, "block"),
        ({"block": (0, 4)}, ValueError, "block"),
        ({"block": {"dense/kernel": (1, 4)}}, TypeError, "cannot be searched"),
        ({"rounds": 0}, ValueError, "rounds"),
        ({"epochs_per_round": 1.5}, TypeError, "epochs_per_round"),
        ({"epochs_per_round": []}, ValueError, "at least one value"),
        ({"max_rounds": 0}, ValueError, "max_rounds"),
        ({"direction": "up"}, ValueError, "direction='up'"),
        ({"metric": ""}, TypeError, "metric"),
        ({"seed": 1.0}, TypeError, "seed"),
        ({"target_weights_remaining": 1.0}, None, None),
        ({"target_weights_remaining": 1.5}, ValueError, r"\(0, 1\]"),
    ],
)
def test_each_argument_is_checked_by_the_shared_rule(kwargs, error, match):
    if error is None:
        lth_tuner.TicketHyperModel(build, **kwargs)
        return
    with pytest.raises(error, match=match):
        lth_tuner.TicketHyperModel(build, **kwargs)


def test_build_model_must_be_callable():
    with pytest.raises(TypeError, match="build_model"):
        lth_tuner.TicketHyperModel("not a function")


@pytest.mark.slow
def test_the_ticket_a_trial_uses_is_deep_copyable_after_a_fit(tmp_path, data):
    model = lth.mask_model(build(kt.HyperParameters()))
    model.compile(optimizer="adam", loss=model_loss(), metrics=["accuracy"])
    ticket = lth.LotteryTicket(
        2,
        1,
        monitor="loss",
        log_dir=tmp_path / "logs",
        checkpoint_dir=tmp_path / "ckpt",
        verbose=0,
    )
    model.fit(*data.train, epochs=2, batch_size=BATCH, callbacks=[ticket], verbose=0)
    clone = copy.deepcopy(ticket)
    assert clone.model is None and clone.results == ticket.results
    assert clone._summaries._writers == {}
