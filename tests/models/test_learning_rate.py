"""Tests for `keras_lth.models.learning_rate`: `WarmupStepDecay`."""

import keras
import numpy as np
import pytest

import keras_lth
from keras_lth import models
from tests.models._helpers import kernel_sizes


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
    assert list(kernel_sizes(loaded)) == ["fc1", "fc2", "output"]
