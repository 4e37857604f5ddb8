"""Masked layers under `tf.distribute.MirroredStrategy` and mixed precision.

The strategy needs two logical CPUs, which can only be configured before
TensorFlow initialises its devices. Other tests have done that by the time
this module runs, so the distributed scenario runs once in a fresh Python
process and reports what it observed as JSON; the tests below assert on it.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_lth

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.distribute and these mixed precision checks need TensorFlow",
)

DISTRIBUTED_SCENARIO = textwrap.dedent(
    """
    import json

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )

    import keras
    import numpy as np

    import keras_lth

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


    def local(variable):
        # A Keras variable keeps its backend variable in `.value`; under the
        # strategy that is a tf.distribute MirroredVariable.
        return strategy.experimental_local_results(variable.value)


    def local_values(variable):
        return [np.asarray(value).tolist() for value in local(variable)]


    with strategy.scope():
        stock = keras.Sequential(
            [
                keras.Input((6, 6, 2)),
                keras.layers.Conv2D(3, 3, name="conv"),
                keras.layers.Flatten(),
                keras.layers.Dense(2, name="dense"),
            ]
        )
        model = keras_lth.mask_model(stock)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse"
        )

    result = {"replicas": strategy.num_replicas_in_sync, "layers": {}}
    for name in ("conv", "dense"):
        layer = model.get_layer(name)
        mask = layer.mask_variable("kernel")
        result["layers"][name] = {
            "class": type(layer).__name__,
            "distributed": isinstance(mask.value, tf.distribute.DistributedValues),
            "backend_class": type(mask.value).__name__,
            "devices": [value.device for value in local(mask)],
            "tf_aggregation": str(mask.value.aggregation),
            "initial": local_values(mask),
        }

    # Prune in cross-replica context, as a callback between epochs would.
    with strategy.scope():
        result["cross_replica"] = tf.distribute.in_cross_replica_context()
        for name in ("conv", "dense"):
            layer = model.get_layer(name)
            mask = layer.mask_variable("kernel")
            new_mask = (rng.random(mask.shape) < 0.5).astype("float32")
            new_mask.flat[0] = 0.0
            new_mask.flat[-1] = 1.0
            mask.assign(new_mask)
            entry = result["layers"][name]
            entry["assigned"] = new_mask.tolist()
            entry["after_assign"] = local_values(mask)
            entry["kernel_before_fit"] = local_values(layer.prunable_variable("kernel"))

    x = rng.normal(size=(16, 6, 6, 2)).astype("float32")
    y = rng.normal(size=(16, 2)).astype("float32")
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)

    for name in ("conv", "dense"):
        layer = model.get_layer(name)
        entry = result["layers"][name]
        entry["mask_after_fit"] = local_values(layer.mask_variable("kernel"))
        entry["kernel_after_fit"] = local_values(layer.prunable_variable("kernel"))

    # An assign from inside the replicas: the mask aggregates with
    # ONLY_FIRST_REPLICA, so every replica must end up with replica 0's value.
    mask = model.get_layer("dense").mask_variable("kernel")


    @tf.function
    def assign_replica_id():
        context = tf.distribute.get_replica_context()
        replica = tf.cast(context.replica_id_in_sync_group, "float32")
        mask.assign(tf.fill(mask.shape, replica + 2.0))


    strategy.run(assign_replica_id)
    result["replica_context_assign"] = local_values(mask)

    print("RESULT " + json.dumps(result))
    """
)


@pytest.fixture(scope="module")
def distributed():
    """What the distributed scenario observed, run once in a fresh process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    process = subprocess.run(
        [sys.executable, "-c", DISTRIBUTED_SCENARIO],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    assert process.returncode == 0 and len(lines) == 1, (
        f"The distributed scenario failed (exit code {process.returncode}).\n"
        f"stdout:\n{process.stdout[-3000:]}\nstderr:\n{process.stderr[-6000:]}"
    )
    result = json.loads(lines[0].removeprefix("RESULT "))
    for entry in result["layers"].values():
        for key, value in entry.items():
            if key in ("assigned", "initial", "after_assign") or key.endswith("_fit"):
                entry[key] = np.asarray(value, dtype="float32")
    result["replica_context_assign"] = np.asarray(result["replica_context_assign"])
    return result


LAYERS = pytest.mark.parametrize(
    "name, masked_class", [("conv", "MaskedConv2D"), ("dense", "MaskedDense")]
)


@LAYERS
def test_masks_are_mirrored_on_both_devices(distributed, name, masked_class):
    assert distributed["replicas"] == 2
    entry = distributed["layers"][name]
    assert entry["class"] == masked_class
    assert entry["distributed"]
    assert entry["backend_class"] == "MirroredVariable"
    assert [device.rsplit(":", 2)[-2:] for device in entry["devices"]] == [
        ["CPU", "0"],
        ["CPU", "1"],
    ]
    assert entry["tf_aggregation"].endswith("ONLY_FIRST_REPLICA")
    assert entry["initial"].shape[0] == 2
    np.testing.assert_array_equal(entry["initial"], np.ones_like(entry["initial"]))


@LAYERS
def test_cross_replica_assign_reaches_every_replica(distributed, name, masked_class):
    assert distributed["cross_replica"]
    entry = distributed["layers"][name]
    for replica_mask in entry["after_assign"]:
        np.testing.assert_array_equal(replica_mask, entry["assigned"])


@LAYERS
def test_fit_keeps_replicas_identical_and_pruned_weights_zero(
    distributed, name, masked_class
):
    entry = distributed["layers"][name]
    mask = entry["assigned"]
    pruned = mask == 0
    kernel_replica_0, kernel_replica_1 = entry["kernel_after_fit"]

    for replica_mask in entry["mask_after_fit"]:
        np.testing.assert_array_equal(replica_mask, mask)
    np.testing.assert_array_equal(kernel_replica_0, kernel_replica_1)
    for kernel in entry["kernel_after_fit"]:
        assert np.all((kernel * mask)[pruned] == 0.0)
    # SGD without weight decay: a pruned entry gets no update at all.
    before = entry["kernel_before_fit"][0]
    np.testing.assert_array_equal(kernel_replica_0[pruned], before[pruned])
    assert np.any(kernel_replica_0[~pruned] != before[~pruned])


def test_replica_context_assign_keeps_the_first_replicas_value(distributed):
    values = distributed["replica_context_assign"]
    assert values.shape[0] == 2
    np.testing.assert_array_equal(values, np.full_like(values, 2.0))


# Mixed precision, in this process.


@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def mixed_policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_training_keeps_float32_masks_and_zero_pruned_weights(
    mixed_policy,
):
    rng = np.random.default_rng(0)
    compute_dtype = mixed_policy.compute_dtype
    stock = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(3, 3, name="conv"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(2, name="dense"),
        ]
    )
    model = keras_lth.mask_model(stock)
    masked = [model.get_layer("conv"), model.get_layer("dense")]
    assert [type(layer) for layer in masked] == [
        keras_lth.layers.MaskedConv2D,
        keras_lth.layers.MaskedDense,
    ]

    masks, before = [], []
    for layer in masked:
        assert layer.dtype_policy.name == mixed_policy.name
        mask = (rng.random(layer.kernel_mask.shape) < 0.5).astype("float32")
        mask.flat[0] = 0.0
        mask.flat[-1] = 1.0
        layer.mask_variable("kernel").assign(mask)
        masks.append(mask)
        before.append(np.asarray(layer.prunable_variable("kernel")))

    x = rng.normal(size=(8, 6, 6, 2)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))

    for layer, mask, kernel_before in zip(masked, masks, before):
        pruned = mask == 0
        mask_variable = layer.mask_variable("kernel")
        kernel = np.asarray(layer.prunable_variable("kernel"))
        assert mask_variable.dtype == "float32"
        assert layer.prunable_variable("kernel").dtype == "float32"
        np.testing.assert_array_equal(np.asarray(mask_variable), mask)
        assert np.all((kernel * mask)[pruned] == 0.0)
        assert np.all(np.asarray(layer.masked_weight("kernel"))[pruned] == 0.0)
        # Adam gives a zero-gradient entry a zero update (even through the
        # loss scaling of mixed_float16).
        np.testing.assert_array_equal(kernel[pruned], kernel_before[pruned])
        assert np.any(kernel[~pruned] != kernel_before[~pruned])

    conv_out = model.get_layer("conv")(x)
    dense_out = model.get_layer("dense")(model.get_layer("flatten")(conv_out))
    for outputs in (conv_out, dense_out, model(x)):
        assert keras.backend.standardize_dtype(outputs.dtype) == compute_dtype
