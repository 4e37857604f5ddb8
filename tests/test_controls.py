"""`keras_lth.controls`: the paper's controls as branches of an IMP level."""

import keras
import numpy as np
import pytest

import keras_lth as lth
from keras_lth import controls
from keras_lth.callbacks.ticket_options import unit_axes_of
from keras_lth.pruning import prune
from keras_lth.structured import count_live_units
from keras_lth.structured import is_unit_sparse
from keras_lth.structured import prune_units


def _lenet(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(100, activation="relu", name="hidden"),
            keras.layers.Dense(10, name="output"),
        ]
    )
    return lth.mask_model(model)


def _ticket_masks(model):
    """Masks as IMP's pruning gives them: 80% of each tensor pruned."""
    weights = {
        key: np.random.default_rng(1).normal(size=m.shape)
        for key, m in lth.get_masks(model).items()
    }
    return prune(weights, lth.get_masks(model), 0.8)


def _kernels(model):
    return {k: np.array(v) for k, v in lth.masking.get_prunable_weights(model).items()}


def test_reinit_keeps_exactly_the_ticket_mask_with_new_weights():
    model = _lenet()
    theta0 = _kernels(model)
    biases = [np.array(layer.bias) for layer in model.layers]
    masks = _ticket_masks(model)

    control = controls.reinit(model, masks, seed=7)

    assert control is model
    got = lth.get_masks(control)
    for key, mask in masks.items():
        np.testing.assert_array_equal(got[key], mask)
        weights = _kernels(control)[key]
        assert np.all(weights[mask == 0] == 0)  # Pruned entries: exact zeros.
        survivors, initial = weights[mask == 1], theta0[key][mask == 1]
        assert np.all(survivors != initial)
        # Drawn afresh, from the same distribution: uncorrelated with θ0, with
        # the initializer's scale.
        assert abs(np.corrcoef(survivors, initial)[0, 1]) < 0.1
        assert 0.7 < survivors.std() / initial.std() < 1.3
    for layer, bias in zip(model.layers, biases, strict=True):
        np.testing.assert_array_equal(np.array(layer.bias), bias)


def test_reinit_draws_by_seed():
    masks = _ticket_masks(_lenet())
    first = _kernels(controls.reinit(_lenet(), masks, seed=3))
    again = _kernels(controls.reinit(_lenet(), masks, seed=3))
    other = _kernels(controls.reinit(_lenet(), masks, seed=4))
    for key in masks:
        np.testing.assert_array_equal(first[key], again[key])
        assert not np.array_equal(first[key], other[key])


def test_random_prune_keeps_the_counts_per_tensor_and_the_initial_weights():
    model = _lenet()
    theta0 = _kernels(model)
    masks = _ticket_masks(model)

    control = controls.random_prune(model, masks, seed=5)

    got = lth.get_masks(control)
    weights = _kernels(control)
    for key, mask in masks.items():
        assert np.sum(got[key]) == np.sum(mask)  # Exactly the same count.
        assert not np.array_equal(got[key], mask)  # But other weights.
        np.testing.assert_array_equal(
            weights[key], theta0[key] * got[key]
        )  # θ0 at the survivors, zeros elsewhere.
    again = lth.get_masks(controls.random_prune(_lenet(), masks, seed=5))
    for key in masks:
        np.testing.assert_array_equal(again[key], got[key])


@pytest.mark.parametrize("control", [controls.reinit, controls.random_prune])
def test_a_control_trains_with_a_plain_fit_and_its_mask_holds(control, digits):
    x, y, xv, yv = digits
    masks = _ticket_masks(_lenet())
    model = control(_lenet(), masks, seed=0)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = lth.get_masks(model)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    weights = _kernels(model)
    for key, mask in lth.get_masks(model).items():
        np.testing.assert_array_equal(mask, before[key])
        assert np.all(weights[key][mask == 0] == 0)


@pytest.mark.parametrize("control", [controls.reinit, controls.random_prune])
def test_masks_that_do_not_fit_the_model_are_refused(control):
    model = _lenet()
    masks = _ticket_masks(model)
    with pytest.raises(ValueError, match=r"exactly the prunable tensors"):
        control(model, {"hidden/kernel": masks["hidden/kernel"]}, seed=0)
    with pytest.raises(ValueError, match=r"mask of 'output/kernel' to have the same"):
        control(model, {**masks, "output/kernel": np.ones((3, 3))}, seed=0)
    with pytest.raises(ValueError, match=r"only 0 and 1"):
        control(model, {**masks, "hidden/kernel": masks["hidden/kernel"] * 2}, seed=0)
    with pytest.raises(TypeError, match=r"Expected `masks` to be a dict"):
        control(model, [masks], seed=0)
    with pytest.raises(TypeError, match=r"Expected `seed` to be an int"):
        control(model, masks, seed=0.5)
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"no prunable layers"):
        control(plain, {}, seed=0)


def test_controls_branch_off_a_level_of_a_real_imp_run(digits, tmp_path):
    """`reinit` keeps exactly `ticket.masks_at(r)`; `random_prune` its counts."""
    x, y, xv, yv = digits

    def compiled(model):
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        return model

    model = compiled(_lenet())
    theta0 = _kernels(model)
    ticket = lth.LotteryTicket(3, 1, seed=0, verbose=0, checkpoint_dir=tmp_path)
    model.fit(
        x, y, validation_data=(xv, yv), epochs=ticket.total_epochs,
        batch_size=128, callbacks=[ticket], verbose=0,
    )  # fmt: skip
    level = ticket.masks_at(2)
    for key, mask in level.items():
        assert np.mean(mask) == pytest.approx(
            ticket.results[2]["layers"][key], abs=1e-9
        )

    control = controls.reinit(compiled(_lenet()), level, seed=11)
    weights = _kernels(control)
    for key, mask in lth.get_masks(control).items():
        np.testing.assert_array_equal(mask, level[key])
        survivors = weights[key][mask == 1]
        assert abs(np.corrcoef(survivors, theta0[key][mask == 1])[0, 1]) < 0.1

    pruned = controls.random_prune(compiled(_lenet()), level, seed=11)
    for key, mask in lth.get_masks(pruned).items():
        assert np.sum(mask) == np.sum(level[key])


def _structured_model(seed=0):
    """Dense units, conv filters and ConvTranspose filters (axis -2)."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(12, 3, name="conv"),
            keras.layers.Conv2DTranspose(10, 3, name="up"),
            keras.layers.Flatten(),
            keras.layers.Dense(20, activation="relu", name="hidden"),
            keras.layers.Dense(10, name="output"),
        ]
    )
    return lth.mask_model(model)


def _unit_ticket_masks(model):
    """Masks as structured IMP gives them: whole units pruned, per tensor."""
    axes = unit_axes_of(lth.masking.prunable_tensors(model))
    masks = lth.get_masks(model)
    weights = {
        k: np.random.default_rng(1).normal(size=m.shape) for k, m in masks.items()
    }
    rates = {"conv/kernel": 0.5, "up/kernel": 0.3, "hidden/kernel": 0.75}
    return prune_units(weights, masks, rates, unit_axes=axes), axes


def test_random_prune_of_a_unit_ticket_draws_whole_units_of_the_same_counts():
    model = _structured_model()
    theta0 = _kernels(model)
    masks, axes = _unit_ticket_masks(model)
    assert axes["up/kernel"] == (2,)  # ConvTranspose kernels: (h, w, out, in).
    counts = {k: count_live_units(m, axes[k]) for k, m in masks.items()}
    assert counts == {
        "conv/kernel": 6,
        "up/kernel": 7,
        "hidden/kernel": 5,
        "output/kernel": 10,
    }

    control = controls.random_prune(model, masks, seed=5, granularity="unit")

    got = lth.get_masks(control)
    weights = _kernels(control)
    for key, mask in got.items():
        assert is_unit_sparse(mask, axes[key]), key
        assert count_live_units(mask, axes[key]) == counts[key], key
        assert np.sum(mask) == np.sum(masks[key])  # Whole units: same weights.
        np.testing.assert_array_equal(weights[key], theta0[key] * mask)
    for key in ("conv/kernel", "up/kernel", "hidden/kernel"):
        assert not np.array_equal(got[key], masks[key]), key  # Other units.
    again = lth.get_masks(
        controls.random_prune(_structured_model(), masks, seed=5, granularity="unit")
    )
    for key in masks:
        np.testing.assert_array_equal(again[key], got[key])
    # By weight (the default), the same masks give unstructured random masks.
    unstructured = lth.get_masks(
        controls.random_prune(_structured_model(), masks, seed=5)
    )
    assert not is_unit_sparse(unstructured["hidden/kernel"], (1,))


def test_reinit_of_a_unit_ticket_keeps_its_units_with_new_weights():
    model = _structured_model()
    theta0 = _kernels(model)
    masks, axes = _unit_ticket_masks(model)
    control = controls.reinit(model, masks, seed=3)
    weights = _kernels(control)
    for key, mask in lth.get_masks(control).items():
        np.testing.assert_array_equal(mask, masks[key])
        assert is_unit_sparse(mask, axes[key])
        assert np.all(weights[key][mask == 0] == 0)
        assert np.all(weights[key][mask == 1] != theta0[key][mask == 1])


def test_random_prune_by_unit_refuses_masks_that_split_units():
    model = _lenet()
    masks = _ticket_masks(model)  # Unstructured.
    with pytest.raises(ValueError, match=r"'hidden/kernel' to keep or prune whole"):
        controls.random_prune(model, masks, seed=0, granularity="unit")
    with pytest.raises(ValueError, match=r"granularity"):
        controls.random_prune(model, masks, seed=0, granularity="block")
