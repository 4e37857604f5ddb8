"""`keras_lth.IMPRounds`: IMP's round logic in a loop of your own."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_lth
from keras_lth import IMPRounds
from keras_lth import get_masks
from keras_lth import pruned_nonzero
from keras_lth.pruning import target_count


def masked_mlp(seed=0):
    keras.utils.set_random_seed(seed)
    plain = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(3, name="output"),
        ]
    )
    return keras_lth.mask_model(plain)


def train(model, optimizer, steps=5):
    """A few steps of a loop of our own: `fit` with a given optimizer."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8)).astype("float32")
    y = rng.integers(0, 3, size=32)
    if not model.compiled or model.optimizer is not optimizer:
        model.compile(
            optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
    model.fit(x, y, batch_size=8, epochs=steps // 4 or 1, verbose=0)


def test_end_round_prunes_at_exact_cumulative_counts():
    model = masked_mlp()
    optimizer = keras.optimizers.Adam(1e-2)
    imp = IMPRounds(model, prune_rate=0.2, optimizer=optimizer, seed=0)
    for step in (1, 2, 3):
        train(model, optimizer)
        row = imp.end_round({"val_accuracy": 0.5})
        assert row["round"] == step - 1 and row["best"] == {"val_accuracy": 0.5}
        assert row["pruned_nonzero"] == 0
        kept = {key: int(mask.sum()) for key, mask in get_masks(model).items()}
        # The output layer at half the rate, as `LotteryTicket` prunes it.
        assert kept == {
            "hidden/kernel": target_count(128, 0.2, step),
            "output/kernel": target_count(48, 0.1, step),
        }
    assert [row["round"] for row in imp.results] == [0, 1, 2]
    assert imp.results[1]["weights_remaining"] == pytest.approx(
        (target_count(128, 0.2, 1) + target_count(48, 0.1, 1)) / 176
    )
    np.testing.assert_array_equal(imp.masks_at(0)["hidden/kernel"], np.ones((8, 16)))
    with pytest.raises(ValueError, match=r"Expected a round in \[0, 3\]"):
        imp.masks_at(4)


def test_end_round_rewinds_weights_and_the_optimizer():
    model = masked_mlp()
    optimizer = keras.optimizers.Adam(1e-2)
    optimizer.build(model.trainable_variables)
    theta0 = [ops.convert_to_numpy(w) for w in model.weights]
    imp = IMPRounds(model, prune_rate=0.5, optimizer=optimizer)
    train(model, optimizer)
    assert int(ops.convert_to_numpy(optimizer.iterations)) > 0
    imp.end_round()
    masks = get_masks(model)
    assert int(ops.convert_to_numpy(optimizer.iterations)) == 0
    for variable in optimizer.variables:  # Adam's moments start at zero.
        if variable.name not in ("iteration", "learning_rate"):
            assert not np.any(ops.convert_to_numpy(variable)), variable.path
    for weight, start in zip(model.weights, theta0, strict=True):
        expected = start
        key = {"hidden": "hidden/kernel", "output": "output/kernel"}.get(
            weight.path.split("/")[-2]
        )
        if key and weight.name == "kernel":
            expected = start * masks[key]
        np.testing.assert_array_equal(ops.convert_to_numpy(weight), expected)
    train(model, optimizer)
    assert pruned_nonzero(model) == {}


def test_without_rewinding_the_survivors_keep_their_trained_values():
    model = masked_mlp()
    optimizer = keras.optimizers.SGD(1e-1)
    imp = IMPRounds(model, rewind="none", optimizer=optimizer)
    train(model, optimizer)
    trained = ops.convert_to_numpy(model.get_layer("hidden").kernel)
    imp.end_round()
    mask = get_masks(model)["hidden/kernel"]
    np.testing.assert_array_equal(
        ops.convert_to_numpy(model.get_layer("hidden").kernel), trained * mask
    )


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch.optim")
def test_a_torch_optimizers_state_is_rewound():
    import torch

    model = masked_mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    imp = IMPRounds(model, prune_rate=0.5, optimizer=optimizer)
    x = torch.randn(16, 8)
    for _ in range(3):
        optimizer.zero_grad()
        model(x, training=True).square().mean().backward()
        optimizer.step()
    assert optimizer.state_dict()["state"]
    imp.end_round()
    assert not optimizer.state_dict()["state"]  # As it was: no steps taken.


def test_bad_arguments_are_refused():
    model = masked_mlp()
    with pytest.raises(ValueError, match=r"rewind=\"init\".*Received: rewind='late'"):
        IMPRounds(model, rewind="late")
    with pytest.raises(TypeError, match="keras.optimizers.Optimizer"):
        IMPRounds(model, optimizer="adam")
    with pytest.raises(ValueError, match="prune_rate"):
        IMPRounds(model, prune_rate=1.5)
