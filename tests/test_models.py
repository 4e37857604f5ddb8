"""Tests for `keras_lth.models`: the paper's reference networks and presets."""

import dataclasses
import math

import keras
import numpy as np
import pytest

import keras_lth
from keras_lth import models
from keras_lth.masking import prunable_layers


def _kernels(model):
    """`{layer name: kernel size}` of the masked layers, in order."""
    return {
        layer.name: int(np.prod(layer.kernel.shape)) for layer in prunable_layers(model)
    }


def _trainable_count(model):
    # `count_params` would include the masks, which are non-trainable weights.
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _forward(model, batch=2):
    x = np.random.default_rng(0).random((batch, *model.input_shape[1:]))
    y = keras.ops.convert_to_numpy(model(x.astype("float32"), training=False))
    assert y.shape == (batch, 10)
    assert np.all(np.isfinite(y))
    return y


# ------------------------------------------------------------------ builders


def test_lenet_300_100_layers_and_the_papers_weight_count():
    model = models.lenet_300_100()
    assert model.name == "lenet_300_100"
    assert model.input_shape == (None, 784)
    kernels = _kernels(model)
    assert kernels == {"fc1": 784 * 300, "fc2": 300 * 100, "output": 100 * 10}
    # Figure 2: "266K" weights; with the 410 biases, 266,610 parameters.
    assert sum(kernels.values()) == 266_200
    assert _trainable_count(model) == 266_610
    _forward(model)


def test_lenet_300_100_flattens_image_inputs_and_builds_stock_layers():
    model = models.lenet_300_100(input_shape=(28, 28, 1), masked=False)
    assert [layer.name for layer in model.layers] == [
        "flatten",
        "fc1",
        "fc2",
        "output",
    ]
    assert not list(prunable_layers(model))
    assert model.count_params() == 266_610  # No masks in a stock model.
    _forward(model)


@pytest.mark.parametrize(
    "builder, num_convs, conv_weights, all_weights",
    [
        # Figure 2: "4.3M / 38K", "2.4M / 260K", and "1.1M" convolution weights
        # for Conv-6 (whose "1.7M" total the described layers do not add up to).
        (models.conv2, 2, 38_592, 4_300_992),
        (models.conv4, 4, 259_776, 2_425_024),
        (models.conv6, 6, 1_144_512, 2_261_184),
    ],
)
def test_conv_nets_layers_and_weight_counts(
    builder, num_convs, conv_weights, all_weights
):
    model = builder()
    convs = [f"conv{i}" for i in range(1, num_convs + 1)]
    kernels = _kernels(model)
    assert list(kernels) == [*convs, "fc1", "fc2", "output"]
    assert sum(kernels[name] for name in convs) == conv_weights
    assert sum(kernels.values()) == all_weights
    assert kernels["fc2"] == 256 * 256 and kernels["output"] == 256 * 10
    pools = [layer.name for layer in model.layers if "pool" in layer.name]
    assert pools == [f"pool{i}" for i in range(1, num_convs // 2 + 1)]
    _forward(model)


def test_vgg19_layers_and_the_papers_weight_counts():
    model = models.vgg19()
    kernels = _kernels(model)
    convs = [f"conv{i}" for i in range(1, 17)]
    assert list(kernels) == [*convs, "output"]
    # Section 4: the first two convolutions have 1,728 and 36,864
    # parameters, the last 2.35 million; Figure 2: 20.0M in all.
    assert kernels["conv1"] == 1_728 and kernels["conv2"] == 36_864
    assert kernels["conv16"] == 2_359_296
    assert sum(kernels[name] for name in convs) == 20_018_880
    assert kernels["output"] == 5_120  # Appendix I.2: "the 5120 parameters".
    names = {layer.name for layer in model.layers}
    assert {f"bn{i}" for i in range(1, 17)} <= names
    assert {"pool1", "pool2", "pool3", "pool4", "avg_pool"} <= names
    _forward(model)


def test_resnet20_layers_and_the_papers_weight_counts():
    model = models.resnet20()
    kernels = _kernels(model)
    shortcuts = ["stage2_block1_shortcut_conv", "stage3_block1_shortcut_conv"]
    assert set(shortcuts) <= set(kernels)
    assert list(kernels)[0] == "conv1" and list(kernels)[-1] == "output"
    blocks = [
        f"stage{s}_block{b}_conv{c}"
        for s in (1, 2, 3)
        for b in (1, 2, 3)
        for c in (1, 2)
    ]
    assert set(kernels) == {"conv1", *blocks, *shortcuts, "output"}
    # 1 + 18 convolutions + the output layer: 20 layers. Appendix I.3: 2,560
    # shortcut and 640 output parameters; Section 4: 271,000 in all.
    assert sum(kernels[name] for name in shortcuts) == 2_560
    assert kernels["output"] == 640
    assert sum(kernels[name] for name in ["conv1", *blocks]) == 267_696
    assert sum(kernels.values()) == 270_896
    _forward(model)


def test_stock_builds_keep_the_names_so_mask_model_gives_the_same_layers():
    for builder in (models.lenet_300_100, models.resnet20):
        plain = builder(masked=False)
        assert not list(prunable_layers(plain))
        masked = keras_lth.mask_model(plain)
        assert list(_kernels(masked)) == list(_kernels(builder()))


def test_kernels_are_untruncated_gaussian_glorot():
    kernel = keras.ops.convert_to_numpy(models.lenet_300_100().get_layer("fc1").kernel)
    std = math.sqrt(2.0 / (784 + 300))
    assert abs(kernel.mean()) < 5 * std / math.sqrt(kernel.size)  # 5 std errors.
    assert kernel.std() == pytest.approx(std, rel=0.01)
    # Keras' "glorot_normal" cuts at 2 std; a Gaussian has ~1.2% of its
    # 235,200 draws beyond 2.5 std.
    assert np.mean(np.abs(kernel) > 2.5 * std) > 0.008


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: models.conv2(input_shape=(784,)), ValueError, "height, width"),
        (lambda: models.lenet_300_100(input_shape=(0,)), ValueError, "positive"),
        (lambda: models.vgg19(input_shape="32x32"), ValueError, "input_shape"),
        (lambda: models.resnet20(num_classes=0), ValueError, "num_classes"),
        (lambda: models.conv4(num_classes="10"), TypeError, "num_classes"),
        (lambda: models.conv6(masked="yes"), TypeError, "masked"),
    ],
)
def test_builders_reject_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_num_classes_sets_the_output_layer():
    model = models.conv2(input_shape=(28, 28, 1), num_classes=3)
    assert model.output_shape == (None, 3)
    assert _kernels(model)["output"] == 256 * 3


# ------------------------------------------------------------------- presets


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
    prunable = set(_kernels(preset.build_model()))
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


# ----------------------------------------------------------------- schedule


def test_warmup_step_decay_follows_its_formula():
    schedule = models.WarmupStepDecay(0.1, boundaries=[20_000, 25_000])
    values = [float(schedule(step)) for step in (0, 19_999, 20_000, 24_999, 25_000)]
    assert values == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])

    warm = models.WarmupStepDecay(0.1, boundaries=[56_240], warmup_steps=10_000)
    values = [float(warm(step)) for step in (0, 2_500, 10_000, 30_000, 56_240)]
    assert values == pytest.approx([0.0, 0.025, 0.1, 0.1, 0.01])


def test_warmup_step_decay_rejects_bad_arguments():
    with pytest.raises(ValueError, match="increasing"):
        models.WarmupStepDecay(0.1, boundaries=[25_000, 20_000])
    with pytest.raises(ValueError, match="warmup_steps"):
        models.WarmupStepDecay(0.1, warmup_steps=-1)


def test_a_model_compiled_with_a_preset_optimizer_saves_and_loads(tmp_path):
    model = models.lenet_300_100()
    model.compile(
        optimizer=models.get_preset("resnet20_warmup").make_optimizer(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(np.zeros((4, 784)), np.zeros(4), epochs=1, verbose=0)
    path = tmp_path / "lenet.keras"
    keras_lth.save_model(model, path)
    loaded = keras.models.load_model(path)  # No custom_objects needed.
    config = loaded.optimizer.get_config()["learning_rate"]
    schedule = keras.optimizers.schedules.deserialize(config)
    assert isinstance(schedule, models.WarmupStepDecay)
    assert schedule.warmup_steps == 20_000
    assert list(_kernels(loaded)) == ["fc1", "fc2", "output"]


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
    sizes = _kernels(model)
    remaining = sum(v * sizes[k.split("/")[0]] for k, v in pruned.items())
    total = sum(sizes[k.split("/")[0]] for k in pruned)
    assert remaining / total == pytest.approx(0.8, abs=1e-5)  # 20% globally.
    assert len(set(np.round(list(pruned.values()), 3))) > 1  # Not layer by layer.
