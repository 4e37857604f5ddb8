"""`keras_lth.tuner`: real keras-tuner searches of tiny models on digits."""

import argparse
import copy
import glob
import json
import math
import os

import keras
import numpy as np
import pytest

kt = pytest.importorskip("keras_tuner")
pytest.importorskip("sklearn")

from tensorboard.backend.event_processing import event_accumulator  # noqa: E402

import keras_lth as lth  # noqa: E402
from keras_lth import tuner as lth_tuner  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    # keras-tuner 1.4's oracle lock, and the Gaussian process of its Bayesian
    # oracle on a two-trial history.
    "ignore:currentThread:DeprecationWarning",
    "ignore:getName:DeprecationWarning",
    "ignore::sklearn.exceptions.ConvergenceWarning",
)

TARGET = 0.5
BATCH = 128  # 1,297 training digits: 11 steps per epoch.

#: One entry per `fit` of any trial, written by `_FitLog` (keras-tuner
#: deep-copies the callbacks of `search`, so the log lives at module level).
FITS = []


class _FitLog(keras.callbacks.Callback):
    """Records each fit: its epochs, and the model as the fit starts."""

    def on_train_begin(self, logs=None):
        masks = lth.get_masks(self.model)
        FITS.append(
            {
                "epochs": self.params["epochs"],
                "dense": all(bool(np.all(m == 1)) for m in masks.values()),
                "checksum": float(
                    sum(np.sum(np.abs(w)) for w in self.model.get_weights())
                ),
                "epochs_run": [],
            }
        )

    def on_epoch_begin(self, epoch, logs=None):
        FITS[-1]["epochs_run"].append(epoch)


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


@pytest.fixture(scope="module")
def data():
    return lth.datasets.load("digits", seed=0)


def build(hp):
    """The user's model: unmasked, compiled, with its own hyperparameters."""
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(hp.Choice("units", [24, 32]), activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Choice("learning_rate", [3e-3, 1e-2])),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def search(tuner, data, **kwargs):
    kwargs.setdefault("batch_size", BATCH)
    if kwargs["batch_size"] is None:
        del kwargs["batch_size"]  # The user's HyperModel.fit chooses it.
    tuner.search(
        *data.train,
        validation_data=data.validation,
        verbose=0,
        callbacks=[_FitLog()] + kwargs.pop("callbacks", []),
        **kwargs,
    )


def expected_score(rows, target=TARGET):
    """The documented objective, written out again."""
    eligible = [
        r["best"]["val_accuracy"] for r in rows if r["weights_remaining"] <= target
    ]
    return max(eligible)


# ---------------------------------------------------------- random search


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


# ------------------------------------------------- bayesian, and resuming


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
    trials = resumed.oracle.trials
    assert sorted(trials) == ["0", "1", "2"]
    assert all(t.status == "COMPLETED" for t in trials.values())
    assert {i: trials[i].score for i in scores} == scores
    rows = lth_tuner.load_trial_results(resumed, "2")
    assert interrupted["epochs_run"] == [0, 1]
    assert continued["epochs_run"] == list(range(1, len(rows)))  # Epoch 0 kept.
    assert [r["round"] for r in rows] == list(range(len(rows)))
    assert not state.exists()
    for trial_id, trial in trials.items():
        rows = lth_tuner.load_trial_results(resumed, trial_id)
        assert trial.score == pytest.approx(expected_score(rows), abs=1e-12)

    # Nothing is left to do.
    search(make(3), data)
    assert len(FITS) - start == 4


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


# ------------------------------------------------------------ hyperband


class _UserHyperModel(kt.HyperModel):
    """A user HyperModel whose own `fit` tunes the batch size."""

    def build(self, hp):
        return build(hp)

    def fit(self, hp, model, *args, **kwargs):
        return model.fit(*args, batch_size=hp.Choice("batch_size", [BATCH]), **kwargs)


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


def test_settings_are_checked_before_any_search():
    with pytest.raises(TypeError, match="sets .*checkpoint_dir"):
        lth_tuner.TicketHyperModel(build, checkpoint_dir="x")
    with pytest.raises(ValueError, match="rewind='lr'.*one_shot=True"):
        lth_tuner.TicketHyperModel(build, rewind=["init", "lr"], one_shot=True)
    with pytest.raises(ValueError, match="target_weights_remaining"):
        lth_tuner.TicketHyperModel(build, target_weights_remaining=0.0)
    with pytest.raises(ValueError, match="lists a value twice"):
        lth_tuner.TicketHyperModel(build, prune_rate=[0.2, 0.2])
    with pytest.raises(ValueError, match="kind"):
        lth_tuner.make_tuner("grid", lth_tuner.TicketHyperModel(build))
    hypermodel = lth_tuner.TicketHyperModel(build, metric="val_loss")
    assert hypermodel.objective.name == "ticket_val_loss"
    assert hypermodel.objective.direction == "min"


# ------------------------------------------------------- pure functions


def _row(index, remaining, accuracy):
    return {
        "round": index,
        "weights_remaining": remaining,
        "best": {"val_accuracy": accuracy, "val_loss": 1.0 - accuracy},
    }


def test_score_results():
    rows = [
        _row(0, 1.0, 0.99),
        _row(1, 0.5, 0.9),
        _row(2, 0.25, 0.95),
        _row(3, 0.125, 0.95),
    ]
    score = lth_tuner.score_results
    # Rows above the target do not count, however good; a tie goes to the sparser.
    assert score(rows, target_weights_remaining=0.5) == {
        "score": 0.95,
        "round": 3,
        "weights_remaining": 0.125,
    }
    assert score(rows, target_weights_remaining=0.3)["round"] == 3
    assert score(rows, target_weights_remaining=0.1) is None
    low = score(rows, target_weights_remaining=0.5, metric="val_loss", direction="min")
    assert low["score"] == pytest.approx(0.05) and low["round"] == 3
    with pytest.raises(ValueError, match="'val_auc' was not logged"):
        score(rows, target_weights_remaining=0.5, metric="val_auc")


def test_rounds_for_target_follows_the_exact_counts():
    model = lth.mask_model(
        keras.Sequential(
            [keras.Input((64,)), keras.layers.Dense(300), keras.layers.Dense(10)]
        )
    )
    for target, rate in [(0.2, 0.2), (0.1, 0.4), (0.05, 0.5), (0.5, 0.3)]:
        # One global threshold: the uniform-rate formula.
        assert (
            lth_tuner.rounds_for_target(
                model, target, prune_rate=rate, strategy="global"
            )
            == math.ceil(math.log(target) / math.log(1 - rate)) + 1
        )
    # The output layer at half the rate (the paper's default) needs a round
    # more here: 2 steps leave 0.5**2 of the hidden weights but 0.75**2 of
    # the output's, 29.2% in all; 3 steps leave 16.5%.
    assert lth_tuner.rounds_for_target(model, 0.25, prune_rate=0.5) == 4
    assert (
        lth_tuner.rounds_for_target(model, 0.25, prune_rate=0.5, strategy="global") == 3
    )
    assert lth_tuner.rounds_for_target(model, 1.0, prune_rate=0.5) == 1
    never = {"dense": 0.0, "dense_1": 0.0}
    assert lth_tuner.rounds_for_target(model, 0.5, layer_rates=never) is None
    # A tensor whose count stalls for a step (3 weights at 10%: 3, 3, 2, ...)
    # still gets there.
    tiny = lth.mask_model(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]))
    assert lth_tuner.rounds_for_target(tiny, 0.7, prune_rate=0.2) == 3


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


def model_loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


# ------------------------------------------------------------------- CLI


def _cli(tmp_path, *extra):
    parser = argparse.ArgumentParser()
    lth_tuner.add_cli_arguments(parser)
    return parser.parse_args(
        [
            "--max-trials", "1",
            "--epochs-per-round", "1",
            "--prune-rates", "0.5",
            "--rewinds", "init,epoch:1",
            "--learning-rates", "0.003",
            "--target", "0.5",
            "--directory", str(tmp_path),
            "--verbose", "0",
            *extra,
        ]
    )  # fmt: skip


def test_run_cli_searches_saves_and_resumes(tmp_path, capsys):
    assert lth_tuner.run_cli(_cli(tmp_path, "--overwrite")) == 0
    out = capsys.readouterr().out
    project = tmp_path / "keras_lth_tune"
    output = project / "best_ticket.keras"
    assert "1 trial (1 completed, 0 failed)" in out
    assert "Best trial: trial_" in out and "rewind: " in out and "Score " in out
    assert f"plain model) to {output}" in out
    ticket = keras.models.load_model(output)
    assert lth.get_masks(ticket)
    assert 1.0 - lth.sparsity(ticket)["global"] <= 0.5
    assert glob.glob(str(project / "logs" / "*" / "train" / "events.out.tfevents.*"))

    # Resumed with the same settings: the trial is done and does not run again.
    checkpoints = sorted(glob.glob(str(project / "trial_*" / "checkpoint.weights.h5")))
    assert len(checkpoints) == 1
    written = [os.stat(path).st_mtime_ns for path in checkpoints]
    assert lth_tuner.run_cli(_cli(tmp_path, "--resume")) == 0
    assert "1 trial (1 completed, 0 failed)" in capsys.readouterr().out
    assert [os.stat(path).st_mtime_ns for path in checkpoints] == written
    # Other search settings on the same project are refused.
    assert lth_tuner.run_cli(_cli(tmp_path, "--target", "0.4")) == 2
    assert "other settings" in capsys.readouterr().err


def test_without_keras_tuner_the_import_names_the_extra(tmp_path, monkeypatch, capsys):
    import importlib
    import sys

    import keras_lth
    from keras_lth import _tuner_cli

    monkeypatch.setitem(sys.modules, "keras_tuner", None)
    monkeypatch.delitem(sys.modules, "keras_lth.tuner")
    monkeypatch.delattr(keras_lth, "tuner")
    with pytest.raises(ImportError, match=r'pip install "keras-lth\[tuner\]"'):
        importlib.import_module("keras_lth.tuner")
    # The CLI hook still adds its arguments, and says what is missing.
    parser = argparse.ArgumentParser()
    _tuner_cli.add_cli_arguments(parser)
    args = parser.parse_args(["--directory", str(tmp_path)])
    assert _tuner_cli.run_cli(args) == 1
    assert not os.listdir(tmp_path)
    assert "keras-lth[tuner]" in capsys.readouterr().err
