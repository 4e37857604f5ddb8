"""Attention, recurrent and in-place masked models under MirroredStrategy.

The twins of `MultiHeadAttention` and the recurrent layers, and a layer
masked in place (which reads its weights through attributes set while its
`call` runs), must keep one mask per tensor, identical on both replicas, and
keep pruned weights at zero while two replicas train.
"""

import textwrap

import pytest

from tests.two_cpus import requires_tensorflow
from tests.two_cpus import run_scenario

pytestmark = [pytest.mark.slow, requires_tensorflow]

SCENARIO = textwrap.dedent(
    """
    import keras
    import numpy as np

    import keras_lth
    from keras_lth.masking import prunable_layers


    class Scale(keras.layers.Layer):
        # A custom layer with a kernel of its own: masked in place.
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], 8), name="kernel")

        def call(self, x):
            return keras.ops.matmul(x, self.kernel)


    def build():
        tokens = keras.Input((6,), dtype="int32")
        x = keras.layers.Embedding(30, 8)(tokens)
        x = x + keras.layers.MultiHeadAttention(2, 4)(x, x)
        x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))(x)
        x = keras.layers.GRU(8)(x)
        x = Scale(name="scale")(x)
        return keras.Model(tokens, keras.layers.Dense(3)(x))


    rng = np.random.default_rng(0)
    x = rng.integers(0, 30, size=(128, 6)).astype("int32")
    y = (x[:, 0] % 3).astype("int32")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras_lth.mask_model(build(), layers=lambda l: l.name != "scale")
        keras_lth.mask_model(model, in_place=True)  # What the copy left: Scale.
        model.compile(
            keras.optimizers.Adam(1e-2),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    ticket = keras_lth.LotteryTicket(2, 2, prune_rate=0.5, verbose=0, seed=0)
    model.fit(x, y, batch_size=32, epochs=4, callbacks=[ticket], verbose=0)
    replicas = {}
    for layer in prunable_layers(model):
        for name in layer.prunable_weight_names:
            for kind, variable in (
                ("mask", layer.mask_variable(name)),
                ("kernel", layer.prunable_variable(name)),
            ):
                values = [
                    np.asarray(v)
                    for v in strategy.experimental_local_results(variable.value)
                ]
                replicas[f"{layer.name}/{name}/{kind}"] = [
                    len(values),
                    all(np.array_equal(values[0], v) for v in values[1:]),
                ]
    result = {
        "keys": sorted(keras_lth.get_masks(model)),
        "dense": keras_lth.sparsity(model)["dense"],
        "remaining": [row["weights_remaining"] for row in ticket.results],
        "pruned_nonzero": keras_lth.pruned_nonzero(model),
        "replicas": replicas,
    }
    print("RESULT " + json.dumps(result))
    """
)


@pytest.fixture(scope="module")
def scenario():
    return run_scenario(SCENARIO)


def test_every_kernel_is_masked_and_pruned_under_the_strategy(scenario):
    assert scenario["dense"] == {}
    assert "scale/kernel" in scenario["keys"]
    assert any(key.endswith("query/kernel") for key in scenario["keys"])
    assert any("lstm_cell/recurrent_kernel" in key for key in scenario["keys"])
    assert scenario["remaining"][0] == 1.0 > scenario["remaining"][1]
    assert scenario["pruned_nonzero"] == {}


def test_masks_and_kernels_are_identical_on_both_replicas(scenario):
    for key, (count, identical) in scenario["replicas"].items():
        assert count == 2, key
        assert identical, key
