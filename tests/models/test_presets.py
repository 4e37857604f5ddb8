"""Tests for `keras_lth.models.presets`: the paper's settings per network."""

import dataclasses

import keras
import numpy as np
import pytest

import keras_lth
from keras_lth import models
from keras_lth.masking import prunable_layers
from tests.models._helpers import kernel_sizes


def test_available_and_presets_list_every_network():
    assert models.available() == sorted(models.PRESETS)
    assert set(models.available()) == {
        "lenet_300_100",
        "conv2",
        "conv4",
        "conv6",
        "vgg19",
        "vgg19_warmup",
        "resnet20",
        "resnet20_warmup",
    }
    for name, preset in models.PRESETS.items():
        assert preset.name == name
        assert preset.reference


def test_get_preset_rejects_an_unknown_name_listing_the_valid_ones():
    with pytest.raises(ValueError, match="'lenet'.*lenet_300_100.*resnet20"):
        models.get_preset("lenet")


# Figure 2 of the paper (and Appendix I for the SGD networks):
# optimizer, learning rate, batch size, iterations, strategy and rates.
PAPER = {
    "lenet_300_100": ("adam", 1.2e-3, 60, 50_000, "layerwise", 0.2),
    "conv2": ("adam", 2e-4, 60, 20_000, "layerwise", 0.2),
    "conv4": ("adam", 3e-4, 60, 25_000, "layerwise", 0.2),
    "conv6": ("adam", 3e-4, 60, 30_000, "layerwise", 0.2),
    "vgg19": ("sgd", 0.1, 64, 112_480, "global", 0.2),
    "vgg19_warmup": ("sgd", 0.1, 64, 112_480, "global", 0.2),
    "resnet20": ("sgd", 0.1, 128, 30_000, "global", 0.2),
    "resnet20_warmup": ("sgd", 0.03, 128, 30_000, "global", 0.2),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_presets_hold_the_papers_settings(name):
    preset = models.get_preset(name)
    optimizer, lr, batch, iterations, strategy, rate = PAPER[name]
    assert (preset.optimizer, preset.batch_size, preset.iterations) == (
        optimizer,
        batch,
        iterations,
    )
    assert preset.learning_rate == pytest.approx(lr)
    assert (preset.strategy, preset.prune_rate) == (strategy, rate)
    if optimizer == "sgd":
        assert (preset.momentum, preset.weight_decay) == (0.9, 1e-4)
        assert preset.lr_decay == 0.1 and len(preset.lr_boundaries) == 2


def test_layerwise_presets_rates_per_layer_kind():
    conv_rates = {"conv2": 0.1, "conv4": 0.1, "conv6": 0.15}
    for name, conv_rate in conv_rates.items():
        rates = models.get_preset(name).layer_rates
        convs = {k: v for k, v in rates.items() if k.startswith("conv")}
        assert len(convs) == int(name[-1]) and set(convs.values()) == {conv_rate}
        assert rates["output"] == 0.1
        assert "fc1" not in rates and "fc2" not in rates  # At prune_rate, 20%.
    assert dict(models.get_preset("lenet_300_100").layer_rates) == {"output": 0.1}


def test_sgd_schedules_follow_the_paper():
    vgg = models.get_preset("vgg19")
    # 160 epochs of 703 steps, divided by 10 after 80 and 120 epochs.
    assert vgg.lr_boundaries == (56_240, 84_360) and vgg.warmup_steps == 0
    assert models.get_preset("vgg19_warmup").warmup_steps == 10_000
    resnet = models.get_preset("resnet20")
    assert resnet.lr_boundaries == (20_000, 25_000) and resnet.warmup_steps == 0
    assert models.get_preset("resnet20_warmup").warmup_steps == 20_000


def test_warmup_presets_prune_like_their_base():
    for name in ("vgg19", "resnet20"):
        base = models.get_preset(name)
        warmup = models.get_preset(f"{name}_warmup")
        assert warmup.ticket_kwargs() == base.ticket_kwargs()
        assert warmup.build is base.build


@pytest.mark.parametrize(
    "name", ["lenet_300_100", "conv2", "conv4", "conv6", "vgg19", "resnet20"]
)
def test_ticket_kwargs_are_accepted_and_name_prunable_layers(name):
    preset = models.get_preset(name)
    kwargs = preset.ticket_kwargs()
    assert set(kwargs) == {"prune_rate", "strategy", "layer_rates"}
    ticket = keras_lth.LotteryTicket(rounds=2, epochs_per_round=1, **kwargs)
    assert ticket.strategy == preset.strategy
    prunable = set(kernel_sizes(preset.build_model()))
    assert kwargs["layer_rates"] and set(kwargs["layer_rates"]) <= prunable
    if preset.strategy == "global":
        assert set(kwargs["layer_rates"].values()) == {0.0}


def test_lenet_preset_runs_two_rounds_of_imp_at_the_papers_rates():
    preset = models.get_preset("lenet_300_100")
    model = preset.build_model()
    model.compile(
        optimizer=preset.make_optimizer(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = rng.random((120, 784)).astype("float32")
    y = rng.integers(0, 10, 120).astype("int32")
    ticket = keras_lth.LotteryTicket(
        rounds=2, epochs_per_round=1, seed=0, verbose=0, **preset.ticket_kwargs()
    )
    model.fit(
        x,
        y,
        validation_data=(x[:20], y[:20]),
        batch_size=preset.batch_size,
        epochs=ticket.total_epochs,
        callbacks=[ticket],
        verbose=0,
    )
    assert [r["round"] for r in ticket.results] == [0, 1]
    assert ticket.results[1]["layers"] == pytest.approx(
        {"fc1/kernel": 0.8, "fc2/kernel": 0.8, "output/kernel": 0.9}
    )


def test_make_optimizer_returns_a_fresh_optimizer_each_call():
    preset = models.get_preset("lenet_300_100")
    first, second = preset.make_optimizer(), preset.make_optimizer()
    assert first is not second
    assert isinstance(first, keras.optimizers.Adam)
    assert float(first.learning_rate) == pytest.approx(1.2e-3)

    sgd = models.get_preset("vgg19_warmup").make_optimizer()
    assert isinstance(sgd, keras.optimizers.SGD)
    config = sgd.get_config()
    assert config["momentum"] == pytest.approx(0.9)
    assert config["weight_decay"] == pytest.approx(1e-4)
    schedule = keras.optimizers.schedules.deserialize(config["learning_rate"])
    assert isinstance(schedule, models.WarmupStepDecay)
    assert schedule.get_config() == {
        "initial_learning_rate": 0.1,
        "boundaries": [56_240, 84_360],
        "decay": 0.1,
        "warmup_steps": 10_000,
    }


def test_build_model_passes_its_arguments_to_the_builder():
    model = models.get_preset("conv2").build_model(
        input_shape=(28, 28, 1), num_classes=5, masked=False
    )
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 5)
    assert not list(prunable_layers(model))


def test_epochs_cover_the_papers_iterations():
    lenet = models.get_preset("lenet_300_100")
    assert lenet.epochs(55_000) == 55  # 917 steps per epoch; 50,000 / 917.
    assert lenet.epochs(8_000) == 374  # 134 steps per epoch.
    assert models.get_preset("vgg19").epochs(45_000) == 160  # 704 steps.
    assert lenet.epochs(10**9) == 1
    with pytest.raises(ValueError, match="num_train_examples"):
        lenet.epochs(0)
    with pytest.raises(TypeError, match="num_train_examples"):
        lenet.epochs(5.5)


def test_presets_are_read_only_and_replace_validates():
    preset = models.get_preset("lenet_300_100")
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.learning_rate = 1.0
    with pytest.raises(TypeError):
        preset.layer_rates["output"] = 0.5
    assert hash(preset) == hash(models.get_preset("lenet_300_100"))
    changed = dataclasses.replace(preset, learning_rate=1e-3, layer_rates={"fc1": 0})
    assert changed.learning_rate == 1e-3 and changed.ticket_kwargs()["layer_rates"] == {
        "fc1": 0
    }
    assert models.get_preset("lenet_300_100").learning_rate == 1.2e-3
    with pytest.raises(ValueError, match="optimizer.*'rmsprop'"):
        dataclasses.replace(preset, optimizer="rmsprop")
    with pytest.raises(ValueError, match="strategy.*'magnitude'"):
        dataclasses.replace(preset, strategy="magnitude")


def test_resnet20_preset_prunes_globally_keeping_shortcuts_and_output_dense():
    preset = models.get_preset("resnet20")
    # Small images keep this fast; the layers and their names are the same.
    model = preset.build_model(input_shape=(8, 8, 3))
    model.compile(
        optimizer=preset.make_optimizer(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,  # Tracing a ResNet costs seconds; two steps do not.
    )
    rng = np.random.default_rng(0)
    x = rng.random((16, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 10, 16).astype("int32")
    ticket = keras_lth.LotteryTicket(
        rounds=2,
        epochs_per_round=1,
        monitor="loss",
        seed=0,
        verbose=0,
        **preset.ticket_kwargs(),
    )
    model.fit(
        x, y, batch_size=16, epochs=ticket.total_epochs, callbacks=[ticket], verbose=0
    )
    layers = ticket.results[1]["layers"]
    kept = {"stage2_block1_shortcut_conv", "stage3_block1_shortcut_conv", "output"}
    assert all(layers[f"{name}/kernel"] == 1.0 for name in kept)
    pruned = {k: v for k, v in layers.items() if k.split("/")[0] not in kept}
    sizes = kernel_sizes(model)
    remaining = sum(v * sizes[k.split("/")[0]] for k, v in pruned.items())
    total = sum(sizes[k.split("/")[0]] for k in pruned)
    assert remaining / total == pytest.approx(0.8, abs=1e-5)  # 20% globally.
    assert len(set(np.round(list(pruned.values()), 3))) > 1  # Not layer by layer.
