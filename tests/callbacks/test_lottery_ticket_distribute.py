"""`LotteryTicket` under `tf.distribute.MirroredStrategy` on two logical CPUs.

Two logical CPUs can only be configured before TensorFlow initialises its
devices, which other tests have done by the time this module runs. So the
scenario runs once in a fresh Python process: the same IMP run (same initial
weights, same batches) once under the strategy and once on one device, and it
reports both as JSON. The tests assert that the strategy finds the same ticket.
"""

import textwrap

import numpy as np
import pytest

from tests.two_cpus import requires_tensorflow
from tests.two_cpus import run_scenario

pytestmark = [pytest.mark.slow, requires_tensorflow]

SCENARIO = textwrap.dedent(
    """

    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    import keras_lth
    from keras_lth.masking import prunable_layers

    BATCH = 64  # Even, so both replicas get equal halves of every batch.

    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    x_train, y_train, x_val, y_val = x[:1437], y[:1437], x[1437:], y[1437:]


    def batches(x, y):
        # Not shuffled, remainder dropped: both runs see identical batches.
        dataset = tf.data.Dataset.from_tensor_slices((x, y))
        return dataset.batch(BATCH, drop_remainder=True)


    def build():
        return keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(48, activation="relu", name="hidden_1"),
                keras.layers.Dense(32, activation="relu", name="hidden_2"),
                keras.layers.Dense(10, name="output"),
            ]
        )


    keras.utils.set_random_seed(0)
    initial_weights = build().get_weights()


    def make_model():
        plain = build()
        plain.set_weights(initial_weights)
        model = keras_lth.mask_model(plain)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return model


    def run(strategy):
        keras.utils.set_random_seed(0)
        if strategy is None:
            model = make_model()
        else:
            with strategy.scope():
                model = make_model()
        ticket = keras_lth.LotteryTicket(3, 2, verbose=0, seed=0)
        model.fit(
            batches(x_train, y_train),
            validation_data=batches(x_val, y_val),
            epochs=ticket.total_epochs,
            shuffle=False,
            callbacks=[ticket],
            verbose=0,
        )
        masks = keras_lth.get_masks(model)
        return model, {
            "masks": {key: mask.astype(int).tolist() for key, mask in masks.items()},
            "results": ticket.results,
        }


    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    mirrored_model, mirrored = run(strategy)
    _, single = run(None)

    # A Keras variable keeps its backend variable in `.value`; under the
    # strategy that is a tf.distribute MirroredVariable, one copy a device.
    replicas = {}
    for layer in prunable_layers(mirrored_model):
        for name in layer.prunable_weight_names:
            for kind, variable in (
                ("mask", layer.mask_variable(name)),
                ("kernel", layer.prunable_variable(name)),
            ):
                values = [
                    np.asarray(value)
                    for value in strategy.experimental_local_results(variable.value)
                ]
                replicas[f"{layer.name}/{name}/{kind}"] = {
                    "class": type(variable.value).__name__,
                    "devices": [value.device for value in
                                strategy.experimental_local_results(variable.value)],
                    "count": len(values),
                    "identical": all(
                        np.array_equal(values[0], other) for other in values[1:]
                    ),
                    "max_difference": max(
                        float(np.max(np.abs(values[0] - other)))
                        for other in values[1:]
                    ),
                }

    result = {
        "replicas": strategy.num_replicas_in_sync,
        "mirrored": mirrored,
        "single": single,
        "per_replica": replicas,
    }
    print("RESULT " + json.dumps(result))
    """
)


@pytest.fixture(scope="module")
def scenario():
    """What the scenario observed, run once in a fresh process."""
    return run_scenario(SCENARIO)


def test_runs_on_two_replicas(scenario):
    assert scenario["replicas"] == 2
    for key, entry in scenario["per_replica"].items():
        assert entry["class"] == "MirroredVariable", key
        assert entry["count"] == 2, key


def test_mirrored_masks_match_one_device_masks(scenario):
    mirrored = scenario["mirrored"]["masks"]
    single = scenario["single"]["masks"]
    assert (
        sorted(mirrored)
        == sorted(single)
        == [
            "hidden_1/kernel",
            "hidden_2/kernel",
            "output/kernel",
        ]
    )
    agree = total = 0
    for key in single:
        a, b = np.asarray(mirrored[key]), np.asarray(single[key])
        assert a.shape == b.shape, key
        assert 0 < b.sum() < b.size, key  # Pruned, but not emptied.
        agree += int(np.sum(a == b))
        total += a.size
    fraction = agree / total
    print(f"mask agreement: {agree}/{total} = {fraction:.6f}")
    assert fraction >= 0.999


def test_per_replica_masks_and_kernels_are_identical(scenario):
    for key, entry in scenario["per_replica"].items():
        print(f"{key}: max per-replica difference {entry['max_difference']}")
        assert entry["identical"], (key, entry["max_difference"])


def test_results_match_round_by_round(scenario):
    mirrored = scenario["mirrored"]["results"]
    single = scenario["single"]["results"]
    assert [r["round"] for r in mirrored] == [r["round"] for r in single] == [0, 1, 2]
    for m, s in zip(mirrored, single):
        assert m["weights_remaining"] == s["weights_remaining"]
        assert abs(m["best_epoch"] - s["best_epoch"]) <= 1
        assert m["monitor"] == s["monitor"] == "val_loss"
    assert mirrored[-1]["weights_remaining"] < mirrored[0]["weights_remaining"] == 1.0
