"""Tests for `MaskedEmbedding` (`keras_lth/layers/embedding.py`).

What every masked class promises (weights, masks, output, gradients, no
regrowth in training, serialization, LoRA) is tested for the embedding by the
generic tests in `test_base.py`, on indices that look up every row of the
table (a batch of more lookups than rows: `call` masks the table's gradient
as a whole). Here: what is particular to it. Its indices may come in several
dtypes; and a batch of fewer lookups than rows takes another path, where
`call` multiplies the looked-up rows by their mask rows: both give the same
outputs and gradients, and that path is exact even when the mask variable is
assigned directly.
"""

import dataclasses

import keras
import numpy as np
import pytest
from keras import ops

from tests import backends
from tests.layers import _cases

CASE = _cases.BY_NAME["Embedding"]

VARIANTS = [
    dataclasses.replace(CASE, input_dtype="int64"),
    dataclasses.replace(CASE, input_dtype="float32"),
    dataclasses.replace(
        CASE,
        kwargs={**CASE.kwargs, "mask_zero": True, "embeddings_initializer": "zeros"},
    ),
]


@_cases.parametrize_cases(VARIANTS)
def test_output_and_config_match_the_stock_layer(case):
    _cases.check_output_equals_stock_layer_with_masked_weights(case)
    _cases.check_config_round_trip(case)


def _random_table(rng):
    """A built layer with a random table, the table, and indices of every row."""
    layer = _cases.build(CASE)
    _cases.randomize_weights(layer, rng)
    return (
        layer,
        ops.convert_to_numpy(layer.prunable_variable("embeddings")),
        CASE.inputs(rng),
    )


def test_a_small_batch_is_exact_even_when_the_mask_is_assigned_directly():
    # Fewer lookups than rows: `call` multiplies the looked-up rows by their
    # mask rows, so the stale entries of a table whose mask variable was
    # assigned without `set_mask` contribute nothing.
    rng = np.random.default_rng(5)
    layer, table, indices = _random_table(rng)
    indices = indices[:1]
    assert indices.size < table.shape[0]
    mask = _cases.random_mask(table.shape, rng)
    layer.mask_variable("embeddings").assign(mask)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer.prunable_variable("embeddings")), table
    )
    stock = _cases.stock_holding(CASE, layer, {"embeddings": table * mask})
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer(indices)), ops.convert_to_numpy(stock(indices))
    )

    layer.apply_masks()
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer.prunable_variable("embeddings")), table * mask
    )


@pytest.mark.parametrize("lookups", ["fewer_than_rows", "more_than_rows"])
def test_both_paths_give_masked_outputs_and_gradients(lookups):
    rng = np.random.default_rng(9)
    layer, table, indices = _random_table(rng)
    mask = _cases.prune_randomly(layer, CASE, rng)[0]["embeddings"]
    if lookups == "fewer_than_rows":
        indices = indices[:1]
        assert indices.size < table.shape[0]
    else:
        assert indices.size >= table.shape[0]
    weights = rng.normal(size=(*indices.shape, table.shape[1])).astype("float32")
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer(indices)), (table * mask)[indices]
    )

    (gradient,) = backends.gradients(
        lambda: ops.sum(ops.multiply(layer(indices), weights)),
        [layer.prunable_variable("embeddings")],
    )
    expected = np.zeros_like(table)
    np.add.at(expected, indices, weights)
    np.testing.assert_allclose(gradient, expected * mask, rtol=1e-6, atol=1e-6)
    assert not np.any(gradient[mask == 0])


def test_mask_zero_gives_the_stock_keras_mask():
    indices = CASE.inputs(np.random.default_rng(7))
    layer = _cases.build(CASE, mask_zero=True)
    stock = keras.layers.Embedding(**CASE.kwargs, mask_zero=True)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer.compute_mask(indices)),
        ops.convert_to_numpy(stock.compute_mask(indices)),
    )
    assert not np.all(ops.convert_to_numpy(layer.compute_mask(indices)))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_a_full_precision_mask(policy):
    keras.mixed_precision.set_global_policy(policy)
    rng = np.random.default_rng(4)
    layer, table, indices = _random_table(rng)
    # Checks that the pruned entries are stored as zeros.
    mask = _cases.prune_randomly(layer, CASE, rng)[0]["embeddings"]

    outputs = layer(indices)
    compute_dtype = keras.mixed_precision.Policy(policy).compute_dtype
    assert keras.backend.standardize_dtype(outputs.dtype) == compute_dtype
    assert layer.mask_variable("embeddings").dtype == backends.mask_dtype("float32")
    expected = (table * mask)[indices].astype(compute_dtype)
    np.testing.assert_array_equal(ops.convert_to_numpy(outputs), expected)


# Arguments of the stock layer that the masked twin must accept too.


def test_initial_weights_argument_is_accepted():
    input_dim, output_dim = CASE.kwargs["input_dim"], CASE.kwargs["output_dim"]
    table = np.arange(input_dim * output_dim, dtype="float32").reshape(
        input_dim, output_dim
    )
    indices = CASE.inputs(np.random.default_rng(8))
    layer = CASE.masked(**CASE.kwargs, weights=table)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer.prunable_variable("embeddings")), table
    )
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer.mask_variable("embeddings")), np.ones_like(table)
    )
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(indices)), table[indices])
