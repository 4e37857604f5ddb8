"""`keras_lth.unit_holding.hold_pruned_units`: pruned units output exactly 0.

With `LotteryTicket(granularity="unit")`, a pruned filter's bias and the
`beta` and `gamma` of the BatchNormalization reading it are 0 and stay 0
through training, so that `keras_lth.shrink` removes the filter even where
a `"same"` convolution reads it. Weight granularity touches no bias.
"""

import keras
import numpy as np
import pytest

import keras_lth as lth
from keras_lth.structured import count_live_units
from keras_lth.unit_holding import hold_pruned_units

RATES = {"conv": 0.5, "conv_2": 0.4}


def build_model():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(
        8,
        3,
        padding="same",
        bias_initializer=keras.initializers.Constant(0.3),
        name="conv",
    )(inputs)
    x = keras.layers.BatchNormalization(
        beta_initializer=keras.initializers.Constant(0.2), name="norm"
    )(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(
        6,
        3,
        padding="same",
        bias_initializer=keras.initializers.Constant(0.1),
        name="conv_2",
    )(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, name="output")(x)
    return keras.Model(inputs, outputs)


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 6, 3)).astype("float32")
    y = rng.integers(0, 3, size=64).astype("int32")
    return x, y


def fit(granularity, *, masks=None, rounds=3, callbacks=(), **kwargs):
    keras.utils.set_random_seed(7)
    model = lth.mask_model(build_model())
    if masks is not None:
        lth.set_masks(model, masks)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    ticket = lth.LotteryTicket(
        rounds,
        1,
        layer_rates=RATES,
        granularity=granularity,
        monitor="loss",
        seed=0,
        verbose=0,
        **kwargs,
    )
    x, y = data()
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=ticket.total_epochs,
        callbacks=[ticket, *callbacks],
        verbose=0,
    )
    return model


def dead_filters(model, name):
    mask = lth.get_masks(model)[f"{name}/kernel"]
    return ~np.any(mask != 0, axis=(0, 1, 2))


def value(variable):
    return keras.ops.convert_to_numpy(variable)


@pytest.fixture(scope="module")
def unit_model():
    return fit("unit")


def test_pruned_filters_bias_beta_and_gamma_are_exactly_zero(unit_model):
    dead = dead_filters(unit_model, "conv")
    assert dead.sum() == 6  # 8 -> 4 -> 2 live filters.
    assert dead_filters(unit_model, "conv_2").sum() == 4  # 6 -> 4 -> 2.
    norm = unit_model.get_layer("norm")
    for variable in (unit_model.get_layer("conv").bias, norm.beta, norm.gamma):
        assert np.all(value(variable)[dead] == 0)
        assert np.all(value(variable)[~dead] != 0)  # Live ones trained.
    bias = value(unit_model.get_layer("conv_2").bias)
    assert np.all(bias[dead_filters(unit_model, "conv_2")] == 0)


def test_shrink_removes_every_pruned_filter_and_keeps_outputs(unit_model, tmp_path):
    masks = lth.get_masks(unit_model)
    small, report = lth.shrink(unit_model, return_report=True)
    for name in ("conv", "conv_2"):
        live = count_live_units(masks[f"{name}/kernel"], (3,))
        assert report.units[name] == (unit_model.get_layer(name).filters, live)
        assert small.get_layer(name).filters == live
    x, _ = data()
    expected = unit_model.predict(x, verbose=0)
    np.testing.assert_allclose(small.predict(x, verbose=0), expected, rtol=1e-5)
    # The constraints live on the masked model's variables only.
    for model in (small, lth.strip_masks(unit_model)):
        assert all(v.constraint is None for v in model.trainable_variables)
    path = tmp_path / "small.keras"
    small.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5)
    assert loaded.get_layer("conv").get_config()["bias_constraint"] is None


def test_weight_granularity_leaves_biases_of_empty_columns_alone():
    mask = np.ones((3, 3, 3, 8), "float32")
    mask[..., 0] = 0.0  # A filter with no weights, under weight pruning.
    model = fit("weight", masks={"conv/kernel": mask}, rounds=2)
    assert value(model.get_layer("conv").bias)[0] != 0
    assert value(model.get_layer("norm").beta)[0] != 0
    assert all(v.constraint is None for v in model.trainable_variables)


def test_a_resumed_run_holds_the_pruned_units_again(tmp_path):
    class StopAt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:  # After the second pruning step.
                self.model.stop_training = True

    folder = tmp_path / "ckpt"
    fit("unit", checkpoint_dir=folder, callbacks=[StopAt()])
    model = fit("unit", checkpoint_dir=folder)  # A new model: no constraints.
    dead = dead_filters(model, "conv_2")
    assert dead.sum() == 4
    assert np.all(value(model.get_layer("conv_2").bias)[dead] == 0)
    assert model.get_layer("conv_2").bias.constraint is not None


def test_a_batch_norm_after_a_dense_layer_is_held_through_later_prunes():
    model = lth.mask_model(
        keras.Sequential(
            [
                keras.Input((5,)),
                keras.layers.Dense(4, bias_initializer="ones", name="hidden"),
                keras.layers.BatchNormalization(beta_initializer="ones", name="norm"),
                keras.layers.Dense(2, name="out"),
            ]
        )
    )
    mask = np.ones((5, 4), "float32")
    mask[:, 1] = 0.0
    lth.set_masks(model, {"hidden/kernel": mask})
    assert hold_pruned_units(model) == 1
    norm = model.get_layer("norm")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 5)).astype("float32")
    y = np.ones((32, 2), "float32")
    model.fit(x, y, epochs=2, verbose=0)
    for variable in (model.get_layer("hidden").bias, norm.beta, norm.gamma):
        assert value(variable)[1] == 0
    assert np.all(value(norm.beta)[[0, 2, 3]] != 1.0)  # The others trained.
    # A later prune (after the step was compiled) is held too.
    mask[:, 3] = 0.0
    lth.set_masks(model, {"hidden/kernel": mask})
    assert hold_pruned_units(model) == 2
    model.fit(x, y, epochs=2, verbose=0)
    for variable in (model.get_layer("hidden").bias, norm.beta, norm.gamma):
        assert np.all(value(variable)[[1, 3]] == 0)
        assert value(variable)[0] != 0


def test_hold_pruned_units_in_a_subclassed_model_holds_only_biases():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(4, bias_initializer="ones", name="hidden")
            self.norm = keras.layers.BatchNormalization(name="norm")
            self.out = keras.layers.Dense(2, name="out")

        def call(self, x):
            return self.out(self.norm(self.hidden(x)))

    model = Net()
    model(np.zeros((2, 5), "float32"))
    lth.mask_model(model, in_place=True)
    mask = np.ones((5, 4), "float32")
    mask[:, 1] = 0.0
    lth.set_masks(model, {"hidden/kernel": mask})
    assert hold_pruned_units(model) == 1
    np.testing.assert_array_equal(value(model.hidden.bias), [1.0, 0.0, 1.0, 1.0])
    assert np.all(value(model.norm.beta) == 0) and np.all(value(model.norm.gamma))
    assert model.norm.gamma.constraint is None
    # Training keeps the pruned unit's bias at 0, on every backend.
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 5)).astype("float32")
    model.fit(x, np.ones((32, 2), "float32"), epochs=2, verbose=0)
    bias = value(model.hidden.bias)
    assert bias[1] == 0 and np.all(bias[[0, 2, 3]] != 1.0)
    # A later prune updates the held units without a new constraint.
    constraint = model.hidden.bias.constraint
    mask[:, 3] = 0.0
    lth.set_masks(model, {"hidden/kernel": mask})
    assert hold_pruned_units(model) == 2
    assert model.hidden.bias.constraint is constraint
    model.fit(x, np.ones((32, 2), "float32"), epochs=1, verbose=0)
    bias = value(model.hidden.bias)
    assert bias[1] == 0 and bias[3] == 0 and bias[0] != 0
