"""Tests for `MaskedEmbedding` (`keras_lth/layers/embedding.py`).

Pruning with `set_mask` stores the pruned entries of the table as exact
zeros, like every masked layer; unlike the others, `call` also multiplies the
looked-up rows by their mask rows, so the output is exact even when the mask
variable is assigned directly.
"""

import keras
import numpy as np
import pytest

import keras_lth
from keras_lth.layers import MaskedEmbedding

requires_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="uses tf.GradientTape",
)

INPUT_DIM = 10
OUTPUT_DIM = 4
KWARGS = {"input_dim": INPUT_DIM, "output_dim": OUTPUT_DIM}
# Every row of the table is looked up, some of them twice.
INDICES = np.array([[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 1, 6]], dtype="int32")


def _build(**kwargs):
    layer = MaskedEmbedding(**{**KWARGS, **kwargs})
    layer.build(INDICES.shape)
    return layer


def _random_mask(rng):
    mask = (rng.random((INPUT_DIM, OUTPUT_DIM)) < 0.5).astype("float32")
    mask.flat[0] = 0.0
    mask.flat[-1] = 1.0
    return mask


def _randomize(layer, rng):
    table = rng.normal(size=(INPUT_DIM, OUTPUT_DIM)).astype("float32")
    layer.prunable_variable("embeddings").assign(table)
    return table


def _prune(layer, mask):
    """Prunes with `set_mask`, checking that pruned entries are stored as 0."""
    table = np.asarray(layer.prunable_variable("embeddings"))
    layer.set_mask("embeddings", mask)
    stored = np.asarray(layer.prunable_variable("embeddings"))
    np.testing.assert_array_equal(np.asarray(layer.mask_variable("embeddings")), mask)
    np.testing.assert_array_equal(stored, table * mask)
    assert np.all(stored[mask == 0] == 0.0)


def _stock_with_table(table, **kwargs):
    stock = keras.layers.Embedding(**{**KWARGS, **kwargs})
    stock.build(INDICES.shape)
    stock.set_weights([table])
    return stock


def test_weights_are_the_table_plus_its_mask():
    layer = _build()
    stock = keras.layers.Embedding(**KWARGS)
    stock.build(INDICES.shape)

    assert [(v.name, tuple(v.shape)) for v in layer.trainable_weights] == [
        (v.name, tuple(v.shape)) for v in stock.trainable_weights
    ]
    assert [v.name for v in layer.non_trainable_weights] == ["embeddings_mask"]
    assert len(layer.weights) == len(stock.weights) + 1

    mask = layer.mask_variable("embeddings")
    assert mask is layer.embeddings_mask
    assert mask.path == f"{layer.name}/embeddings_mask"
    assert not mask.trainable
    assert mask.dtype == layer.prunable_variable("embeddings").dtype == "float32"
    np.testing.assert_array_equal(np.asarray(mask), np.ones((INPUT_DIM, OUTPUT_DIM)))


@pytest.mark.parametrize("index_dtype", ["int32", "int64", "float32"])
def test_output_equals_stock_layer_with_masked_table(index_dtype):
    rng = np.random.default_rng(0)
    layer = _build()
    table = _randomize(layer, rng)
    indices = INDICES.astype(index_dtype)

    dense_output = np.asarray(layer(indices))
    np.testing.assert_array_equal(
        dense_output, np.asarray(_stock_with_table(table)(indices))
    )

    mask = _random_mask(rng)
    _prune(layer, mask)
    pruned_output = np.asarray(layer(indices))
    np.testing.assert_array_equal(
        pruned_output, np.asarray(_stock_with_table(table * mask)(indices))
    )
    assert not np.array_equal(pruned_output, dense_output)
    np.testing.assert_array_equal(
        np.asarray(layer.masked_weight("embeddings")), table * mask
    )


def test_output_is_exact_even_when_the_mask_is_assigned_directly():
    # Unlike the other masked layers, the embedding multiplies the looked-up
    # rows by their mask rows in `call`: the stale entries of a table whose
    # mask variable was assigned without `set_mask` contribute nothing.
    rng = np.random.default_rng(5)
    layer = _build()
    table = _randomize(layer, rng)
    mask = _random_mask(rng)
    layer.mask_variable("embeddings").assign(mask)
    np.testing.assert_array_equal(
        np.asarray(layer.prunable_variable("embeddings")), table
    )
    np.testing.assert_array_equal(
        np.asarray(layer(INDICES)),
        np.asarray(_stock_with_table(table * mask)(INDICES)),
    )

    layer.apply_masks()
    np.testing.assert_array_equal(
        np.asarray(layer.prunable_variable("embeddings")), table * mask
    )


def test_mask_zero_gives_the_stock_keras_mask():
    layer = _build(mask_zero=True)
    stock = keras.layers.Embedding(**KWARGS, mask_zero=True)
    np.testing.assert_array_equal(
        np.asarray(layer.compute_mask(INDICES)), np.asarray(stock.compute_mask(INDICES))
    )
    assert not np.all(np.asarray(layer.compute_mask(INDICES)))


@requires_tensorflow
def test_gradient_is_exactly_zero_at_pruned_positions():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    layer = _build()
    _randomize(layer, rng)
    mask = _random_mask(rng)
    _prune(layer, mask)
    upstream = rng.normal(size=(*INDICES.shape, OUTPUT_DIM)).astype("float32")
    stock = _stock_with_table(np.asarray(layer.prunable_variable("embeddings")))

    def gradient(layer, variable):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(INDICES) * upstream)
        # Densified from IndexedSlices.
        return np.asarray(tf.convert_to_tensor(tape.gradient(loss, variable)))

    masked_gradient = gradient(layer, layer.prunable_variable("embeddings"))
    stock_gradient = gradient(stock, stock.embeddings)
    assert masked_gradient.shape == mask.shape
    assert np.all(masked_gradient[mask == 0] == 0.0)
    assert np.any(masked_gradient[mask == 1] != 0.0)
    # Kept entries get the gradient the stock layer would give them.
    np.testing.assert_array_equal(masked_gradient, stock_gradient * mask)


def _optimizer(name):
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=1e-2)
    return keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, weight_decay=1e-2)


def _slots(optimizer, variable):
    """The per-entry slots (momentum, Adam's moments) of `variable`.

    Found through the optimizer's own index of its variables, not by name,
    so that the test does not share `keras_lth.set_masks`'s way of finding them.
    """
    index = optimizer._get_variable_index(variable)
    if isinstance(optimizer, keras.optimizers.Adam):
        return [optimizer._momentums[index], optimizer._velocities[index]]
    return [optimizer.momentums[index]]


def _assert_pruned_entries_stayed_zero(layer, mask, before):
    pruned = mask == 0
    table = np.asarray(layer.prunable_variable("embeddings"))
    np.testing.assert_array_equal(np.asarray(layer.mask_variable("embeddings")), mask)
    assert np.all(table[pruned] == 0.0)
    assert np.all(np.asarray(layer.masked_weight("embeddings"))[pruned] == 0.0)
    assert np.any(table[~pruned] != before[~pruned])  # Training happened.


@pytest.mark.parametrize("optimizer", ["adam", "sgd_momentum_weight_decay"])
def test_pruned_entries_never_grow_back(optimizer):
    rng = np.random.default_rng(2)
    layer = MaskedEmbedding(**KWARGS)
    model = keras.Sequential([keras.Input((INDICES.shape[1],), dtype="int32"), layer])
    _randomize(layer, rng)
    x = np.concatenate([INDICES, INDICES[::-1]])
    y = rng.normal(size=(*x.shape, OUTPUT_DIM)).astype("float32")
    table = layer.prunable_variable("embeddings")

    def fit():
        model.fit(x, y, batch_size=2, shuffle=False, verbose=0)  # 2 steps.

    # Pruned before training: the optimizer has no slots yet.
    mask = _random_mask(rng)
    _prune(layer, mask)
    model.compile(optimizer=_optimizer(optimizer), loss="mse")
    before = np.asarray(table)
    fit()
    _assert_pruned_entries_stayed_zero(layer, mask, before)

    # Pruned further after training, when the slots of the entries about to
    # be pruned hold nonzero moments: `set_masks` zeroes them too.
    slots = _slots(model.optimizer, table)
    more = mask.copy()
    kept = np.flatnonzero(mask)
    more.flat[rng.choice(kept, size=len(kept) // 2, replace=False)] = 0.0
    newly_pruned = (mask == 1) & (more == 0)
    slots_before = [np.asarray(slot) for slot in slots]
    for slot in slots_before:
        assert np.all(slot[newly_pruned] != 0.0)
    keras_lth.set_masks(model, {f"{layer.name}/embeddings": more})
    for slot, slot_before in zip(slots, slots_before):
        np.testing.assert_array_equal(np.asarray(slot), slot_before * more)
    assert np.all(np.asarray(table)[more == 0] == 0.0)
    before = np.asarray(table)
    fit()
    _assert_pruned_entries_stayed_zero(layer, more, before)
    for slot in slots:
        assert np.all(np.asarray(slot)[more == 0] == 0.0)

    stock = _stock_with_table(np.asarray(table))
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(stock(x)))


def test_config_round_trip():
    layer = MaskedEmbedding(**KWARGS, mask_zero=True, embeddings_initializer="zeros")
    config = layer.get_config()

    clone = MaskedEmbedding.from_config(config)
    assert type(clone) is MaskedEmbedding
    assert clone.get_config() == config

    stock_config = keras.layers.Embedding(
        **KWARGS, mask_zero=True, embeddings_initializer="zeros"
    ).get_config()
    stock_config.pop("name")
    assert {k: v for k, v in config.items() if k != "name"} == stock_config


def test_keras_file_round_trip_without_custom_objects(tmp_path):
    rng = np.random.default_rng(3)
    model = keras.Sequential(
        [keras.Input((INDICES.shape[1],), dtype="int32"), MaskedEmbedding(**KWARGS)]
    )
    layer = model.layers[0]
    table = _randomize(layer, rng)
    mask = _random_mask(rng)
    _prune(layer, mask)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)

    loaded_layer = loaded.layers[0]
    assert type(loaded_layer) is MaskedEmbedding
    assert loaded_layer.get_config() == layer.get_config()
    assert not loaded_layer.mask_variable("embeddings").trainable
    loaded_table = np.asarray(loaded_layer.prunable_variable("embeddings"))
    np.testing.assert_array_equal(loaded_table, table * mask)
    assert np.all(loaded_table[mask == 0] == 0.0)
    np.testing.assert_array_equal(
        np.asarray(loaded_layer.mask_variable("embeddings")), mask
    )
    np.testing.assert_array_equal(
        np.asarray(loaded(INDICES)), np.asarray(model(INDICES))
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_a_float32_mask(policy):
    keras.mixed_precision.set_global_policy(policy)
    rng = np.random.default_rng(4)
    layer = _build()
    table = _randomize(layer, rng)
    mask = _random_mask(rng)
    _prune(layer, mask)

    outputs = layer(INDICES)
    compute_dtype = keras.mixed_precision.Policy(policy).compute_dtype
    assert keras.backend.standardize_dtype(outputs.dtype) == compute_dtype
    assert layer.mask_variable("embeddings").dtype == "float32"
    expected = (table * mask)[INDICES].astype(compute_dtype)
    np.testing.assert_array_equal(np.asarray(outputs), expected)


# Arguments of the stock layer that the masked twin must accept too.


def test_initial_weights_argument_is_accepted():
    table = np.arange(INPUT_DIM * OUTPUT_DIM, dtype="float32").reshape(
        INPUT_DIM, OUTPUT_DIM
    )
    layer = MaskedEmbedding(**KWARGS, weights=table)
    np.testing.assert_array_equal(
        np.asarray(layer.prunable_variable("embeddings")), table
    )
    np.testing.assert_array_equal(
        np.asarray(layer.mask_variable("embeddings")), np.ones_like(table)
    )
    np.testing.assert_array_equal(np.asarray(layer(INDICES)), table[INDICES])


def test_lora_rank_is_accepted():
    layer = _build(lora_rank=2)
    np.testing.assert_array_equal(
        np.asarray(layer.mask_variable("embeddings")),
        np.ones((INPUT_DIM, OUTPUT_DIM)),
    )
    stock = keras.layers.Embedding(**KWARGS, lora_rank=2)
    stock.build(INDICES.shape)
    by_name = {v.name: np.asarray(v) for v in layer.weights}
    stock.set_weights([by_name[v.name] for v in stock.weights])
    np.testing.assert_array_equal(
        np.asarray(layer(INDICES)), np.asarray(stock(INDICES))
    )


def test_lora_update_is_masked_in_call():
    # With LoRA the effective table is `embeddings + scale * a @ b`; the
    # low-rank part is not stored in the table, and is masked all the same.
    rng = np.random.default_rng(6)
    layer = _build(lora_rank=2)
    assert layer.lora_enabled
    for variable in layer.weights:
        if variable.name != "embeddings_mask":
            variable.assign(rng.normal(size=variable.shape).astype("float32"))
    mask = _random_mask(rng)
    _prune(layer, mask)

    effective = np.asarray(layer.embeddings)
    assert np.all(effective[mask == 0] != 0.0)
    np.testing.assert_array_equal(
        np.asarray(layer(INDICES)), (effective * mask)[INDICES]
    )
