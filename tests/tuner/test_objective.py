"""`keras_lth.tuner.objective`: the trial's score and the rounds it needs."""

import math

import keras
import pytest

pytest.importorskip("keras_tuner")

import keras_lth as lth  # noqa: E402
from keras_lth import tuner as lth_tuner  # noqa: E402


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


def test_score_results_checks_its_arguments():
    rows = [_row(0, 1.0, 0.99)]
    score = lth_tuner.score_results
    with pytest.raises(ValueError, match="direction='up'"):
        score(rows, target_weights_remaining=0.5, direction="up")
    with pytest.raises(ValueError, match=r"target_weights_remaining.*\(0, 1\]"):
        score(rows, target_weights_remaining=0.0)
    with pytest.raises(TypeError, match="target_weights_remaining"):
        score(rows, target_weights_remaining="half")
    # The docstring's example.
    doc = [
        {"round": 0, "weights_remaining": 1.0, "best": {"acc": 0.9}},
        {"round": 1, "weights_remaining": 0.5, "best": {"acc": 0.8}},
    ]
    assert score(doc, target_weights_remaining=0.5, metric="acc") == {
        "score": 0.8,
        "round": 1,
        "weights_remaining": 0.5,
    }


def _lenet_like():
    return lth.mask_model(
        keras.Sequential(
            [keras.Input((64,)), keras.layers.Dense(300), keras.layers.Dense(10)]
        )
    )


def test_rounds_for_target_follows_the_exact_counts():
    model = _lenet_like()
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


def test_rounds_for_target_with_lamp_and_min_density():
    model = _lenet_like()  # 19,200 + 3,000 weights.
    # "lamp" shares one count across the tensors, as "global" does.
    for target in (0.2, 0.05):
        assert lth_tuner.rounds_for_target(
            model, target, strategy="lamp"
        ) == lth_tuner.rounds_for_target(model, target, strategy="global")
    # A floor of 10% of each tensor: 10% in all can be reached, 9% cannot.
    for strategy in ("global", "lamp"):
        kwargs = {"strategy": strategy, "min_density": 0.1}
        assert lth_tuner.rounds_for_target(model, 0.1, **kwargs) == 12
        assert lth_tuner.rounds_for_target(model, 0.09, **kwargs) is None
        assert lth_tuner.rounds_for_target(model, 0.09, strategy=strategy) == 12
    with pytest.raises(ValueError, match=r"strategy='layerwise'.*min_density=0"):
        lth_tuner.rounds_for_target(model, 0.2, min_density=0.1)


def test_rounds_for_target_checks_its_arguments_as_lottery_ticket_does():
    model = _lenet_like()
    # The docstring's example.
    assert (
        lth_tuner.rounds_for_target(model, 0.2, prune_rate=0.2, strategy="global") == 9
    )
    with pytest.raises(ValueError, match="prune_rate"):
        lth_tuner.rounds_for_target(model, 0.2, prune_rate=1.5)
    with pytest.raises(ValueError, match="strategy"):
        lth_tuner.rounds_for_target(model, 0.2, strategy="magnitude")
    with pytest.raises(ValueError, match="not prunable"):
        lth_tuner.rounds_for_target(model, 0.2, layer_rates={"nope": 0.1})
    with pytest.raises(ValueError, match=r"target_weights_remaining.*\(0, 1\]"):
        lth_tuner.rounds_for_target(model, 0.0)
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="has no prunable layers"):
        lth_tuner.rounds_for_target(plain, 0.5)
