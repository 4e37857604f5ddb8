"""Masked layers under `tf.distribute.MirroredStrategy` and mixed precision.

The strategy needs two logical CPUs, which can only be configured before
TensorFlow initialises its devices. Other tests have done that by the time
this module runs, so the distributed scenario runs once in a fresh Python
process and reports what it observed as JSON; the tests below assert on it.
"""

import textwrap

import keras
import numpy as np
import pytest

import keras_lth
from tests import backends
from tests.layers import _cases
from tests.two_cpus import run_scenario

pytestmark = [
    pytest.mark.slow,
    backends.requires_tensorflow("tf.distribute and mixed precision under it"),
]

DISTRIBUTED_SCENARIO = textwrap.dedent(
    """

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
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-2),
            loss="mse",
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

    def random_mask(shape, keep=0.5):
        mask = (rng.random(shape) < keep).astype("float32")
        mask.flat[0] = 0.0
        mask.flat[-1] = 1.0
        return mask


    x = rng.normal(size=(16, 6, 6, 2)).astype("float32")
    y = rng.normal(size=(16, 2)).astype("float32")

    # Prune before training with `set_mask`, in cross-replica context, as a
    # callback between epochs would.
    with strategy.scope():
        result["cross_replica"] = tf.distribute.in_cross_replica_context()
        for name in ("conv", "dense"):
            layer = model.get_layer(name)
            new_mask = random_mask(layer.kernel_mask.shape)
            entry = result["layers"][name]
            entry["kernel_before_prune"] = local_values(layer.kernel)
            layer.set_mask("kernel", new_mask)
            entry["assigned"] = new_mask.tolist()
            entry["after_assign"] = local_values(layer.kernel_mask)
            entry["kernel_after_assign"] = local_values(layer.kernel)

    def record(stage):
        # Each layer's mask, kernel and kernel momentum, one value a replica.
        optimizer = model.optimizer
        for name in ("conv", "dense"):
            layer = model.get_layer(name)
            entry = result["layers"][name]
            momentum = optimizer.momentums[optimizer._get_variable_index(layer.kernel)]
            entry[f"mask_after_{stage}"] = local_values(layer.kernel_mask)
            entry[f"kernel_after_{stage}"] = local_values(layer.kernel)
            entry[f"momentum_after_{stage}"] = local_values(momentum)
            distributed = isinstance(momentum.value, tf.distribute.DistributedValues)
            entry["momentum_distributed"] = (
                entry.get("momentum_distributed", True) and distributed
            )


    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    record("fit")

    # Prune further after training with `keras_lth.set_masks`, which zeroes
    # the (nonzero) momentum of the newly pruned entries too.
    with strategy.scope():
        more = {}
        for name in ("conv", "dense"):
            assigned = np.asarray(result["layers"][name]["assigned"], "float32")
            more[name] = assigned * random_mask(assigned.shape, keep=0.7)
            result["layers"][name]["more"] = more[name].tolist()
        keras_lth.set_masks(model, {f"{n}/kernel": m for n, m in more.items()})
    record("set_masks")

    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    record("second_fit")

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
    result = run_scenario(DISTRIBUTED_SCENARIO)
    for entry in result["layers"].values():
        for key, value in entry.items():
            if isinstance(value, list) and key != "devices":
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


def _assert_replicas_identical(values):
    assert values.shape[0] == 2
    np.testing.assert_array_equal(values[0], values[1])


def _assert_every_replica_holds(values, expected):
    assert values.shape[0] == 2
    for value in values:
        np.testing.assert_array_equal(value, expected)


def _assert_training_kept_pruned_entries_zero(entry, mask, stage, before):
    """After `stage`: `mask` on every replica, and the same kernel on every
    replica, zero where pruned and trained elsewhere (it moved from `before`)."""
    pruned = mask == 0
    _assert_every_replica_holds(entry[f"mask_after_{stage}"], mask)
    kernels = entry[f"kernel_after_{stage}"]
    _assert_replicas_identical(kernels)
    for kernel in kernels:
        assert np.all(kernel[pruned] == 0.0)
    assert np.any(kernels[0][~pruned] != before[~pruned])


@LAYERS
def test_cross_replica_set_mask_reaches_every_replica(distributed, name, masked_class):
    assert distributed["cross_replica"]
    entry = distributed["layers"][name]
    mask = entry["assigned"]
    _assert_every_replica_holds(entry["after_assign"], mask)
    # `set_mask` zeroed the pruned entries of the kernel on both replicas.
    _assert_replicas_identical(entry["kernel_before_prune"])
    _assert_replicas_identical(entry["kernel_after_assign"])
    for kernel in entry["kernel_after_assign"]:
        np.testing.assert_array_equal(kernel, entry["kernel_before_prune"][0] * mask)
        assert np.all(kernel[mask == 0] == 0.0)


@LAYERS
def test_fit_keeps_replicas_identical_and_pruned_weights_zero(
    distributed, name, masked_class
):
    entry = distributed["layers"][name]
    _assert_training_kept_pruned_entries_zero(
        entry, entry["assigned"], "fit", before=entry["kernel_after_assign"][0]
    )


@LAYERS
def test_set_masks_after_training_zeroes_momentum_on_every_replica(
    distributed, name, masked_class
):
    entry = distributed["layers"][name]
    more = entry["more"]
    newly_pruned = (entry["assigned"] == 1) & (more == 0)
    assert np.any(newly_pruned)
    assert entry["momentum_distributed"]
    momentum_before = entry["momentum_after_fit"]
    _assert_replicas_identical(momentum_before)
    assert np.any(momentum_before[0][newly_pruned] != 0.0)

    _assert_every_replica_holds(entry["mask_after_set_masks"], more)
    _assert_every_replica_holds(
        entry["kernel_after_set_masks"], entry["kernel_after_fit"][0] * more
    )
    _assert_every_replica_holds(
        entry["momentum_after_set_masks"], momentum_before[0] * more
    )


@LAYERS
def test_pruned_weights_stay_zero_on_every_replica_after_set_masks(
    distributed, name, masked_class
):
    entry = distributed["layers"][name]
    more = entry["more"]
    _assert_training_kept_pruned_entries_zero(
        entry, more, "second_fit", before=entry["kernel_after_set_masks"][0]
    )
    momenta = entry["momentum_after_second_fit"]
    _assert_replicas_identical(momenta)
    for momentum in momenta:
        assert np.all(momentum[more == 0] == 0.0)


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
    x = rng.normal(size=(8, 6, 6, 2)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")

    def kernels():
        return [np.asarray(layer.prunable_variable("kernel")) for layer in masked]

    def fit():
        history = model.fit(x, y, batch_size=4, shuffle=False, verbose=0)  # 2 steps.
        assert np.all(np.isfinite(history.history["loss"]))

    def check(masks, before):
        for layer, mask, kernel_before in zip(masked, masks, before):
            assert layer.mask_variable("kernel").dtype == "float32"
            assert layer.prunable_variable("kernel").dtype == "float32"
            _cases.assert_pruned_entries_stayed_zero(
                layer, {"kernel": mask}, {"kernel": kernel_before}
            )

    # Pruned before training (even through the loss scaling of mixed_float16,
    # a pruned entry gets a zero gradient and stays zero).
    masks = []
    for layer in masked:
        assert layer.dtype_policy.name == mixed_policy.name
        masks.append(_cases.random_mask(layer.kernel_mask.shape, rng))
    dense = kernels()
    keras_lth.set_masks(model, {"conv/kernel": masks[0], "dense/kernel": masks[1]})
    for kernel, kernel_before, mask in zip(kernels(), dense, masks):
        np.testing.assert_array_equal(kernel, kernel_before * mask)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    before = kernels()
    fit()
    check(masks, before)

    # Pruned further after training: `set_masks` reaches the Adam moments
    # (held by the inner optimizer under mixed_float16's loss scaling).
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    slots = [
        _cases.slots(optimizer, layer.prunable_variable("kernel")) for layer in masked
    ]
    more = [mask * _cases.random_mask(mask.shape, rng, keep=0.7) for mask in masks]
    slots_before = [[np.asarray(slot) for slot in pair] for pair in slots]
    for pair, mask, mask_more in zip(slots_before, masks, more):
        newly_pruned = (mask == 1) & (mask_more == 0)
        for slot in pair:
            assert np.any(slot[newly_pruned] != 0.0)
    keras_lth.set_masks(model, {"conv/kernel": more[0], "dense/kernel": more[1]})
    for pair, pair_before, mask in zip(slots, slots_before, more):
        for slot, slot_before in zip(pair, pair_before):
            np.testing.assert_array_equal(np.asarray(slot), slot_before * mask)
    before = kernels()
    fit()
    check(more, before)

    conv_out = model.get_layer("conv")(x)
    dense_out = model.get_layer("dense")(model.get_layer("flatten")(conv_out))
    for outputs in (conv_out, dense_out, model(x)):
        assert keras.backend.standardize_dtype(outputs.dtype) == compute_dtype
