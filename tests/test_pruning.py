"""Property tests for the pure pruning functions in `keras_lth.pruning`.

Plain numpy arrays only, no model. Shapes and values come from hypothesis.

Rounding rule under test: a tensor with `n` surviving weights asked to lose a
fraction `r` of them loses exactly `floor(r * n + 0.5)` weights, i.e. `r * n`
rounded half *up* (not Python's `round`, which rounds half to even: 5
survivors at rate 0.5 lose 3, not 2; 1 survivor at rate 0.5 loses 1, not 0).
"""

import copy
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_lth import pruning
from keras_lth.pruning import prune
from keras_lth.pruning import prune_global
from keras_lth.pruning import prune_layerwise
from keras_lth.pruning import prune_random

FAST = settings(max_examples=50, deadline=None)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Overrides the conftest fixture of the same name.

    These tests build no Keras objects, so they skip its `clear_session`,
    which costs ~0.15 s per test.
    """
    yield


# Few distinct magnitudes mixed into arbitrary floats, so ties are common.
_values = st.one_of(
    st.floats(-8, 8, width=32, allow_nan=False, allow_infinity=False),
    st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0]),
)
_rates = st.floats(0.0, 1.0, allow_nan=False)
_seeds = st.integers(0, 2**32 - 1)


def expected_count(rate, surviving):
    """The documented count: `rate * surviving` rounded half up."""
    return math.floor(rate * surviving + 0.5)


@st.composite
def tensor_pair(draw, max_dims=3, max_side=6):
    """One `(weights, mask)` pair of the same (possibly empty or 0-d) shape."""
    shape = draw(
        hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side)
    )
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    weights = draw(hnp.arrays(dtype, shape, elements=_values))
    mask = draw(hnp.arrays(np.float32, shape, elements=st.sampled_from([0.0, 1.0])))
    return weights, mask


@st.composite
def tensor_dicts(draw, min_size=1, max_size=4):
    """`(weights, masks)` dicts over 1-4 tensors, keys in arbitrary order."""
    names = ["dense/kernel", "conv/kernel", "sep/depthwise_kernel", "emb/embeddings"]
    keys = draw(
        st.lists(
            st.sampled_from(names), min_size=min_size, max_size=max_size, unique=True
        )
    )
    weights, masks = {}, {}
    for key in keys:
        weights[key], masks[key] = draw(tensor_pair())
    return weights, masks


def survivors(mask):
    return np.flatnonzero(np.asarray(mask).ravel())


def newly_pruned(old_mask, new_mask):
    """Flat indices that were kept by `old_mask` and are pruned by `new_mask`."""
    old, new = np.asarray(old_mask).ravel(), np.asarray(new_mask).ravel()
    return np.flatnonzero((old == 1) & (new == 0))


def kept(new_mask):
    return np.flatnonzero(np.asarray(new_mask).ravel() == 1)


def abs_flat(weights):
    return np.abs(np.asarray(weights).ravel())


# --- Exact counts -------------------------------------------------------------


def test_rounding_is_half_up():
    w = {"t": np.arange(1.0, 6.0)}  # 5 survivors
    m = {"t": np.ones(5)}
    # 0.5 * 5 = 2.5 -> 3 (Python's round(2.5) would give 2).
    assert np.sum(prune_layerwise(w, m, 0.5)["t"] == 0) == 3
    assert np.sum(prune_random(w, m, 0.5, seed=0)["t"] == 0) == 3
    assert np.sum(prune_global(w, m, 0.5)["t"] == 0) == 3
    # 0.5 * 1 = 0.5 -> 1 (Python's round(0.5) would give 0).
    one = {"t": np.array([3.0])}
    assert prune_layerwise(one, {"t": np.ones(1)}, 0.5)["t"].tolist() == [0.0]
    # 0.2 * 7 = 1.4 -> 1, 0.3 * 5 = 1.5 -> 2.
    seven = {"t": np.arange(1.0, 8.0)}
    assert np.sum(prune_layerwise(seven, {"t": np.ones(7)}, 0.2)["t"] == 0) == 1
    assert np.sum(prune_layerwise(w, m, 0.3)["t"] == 0) == 2


@FAST
@given(tensor_dicts(), _rates)
def test_layerwise_prunes_exact_count_per_tensor(data, rate):
    weights, masks = data
    new = prune_layerwise(weights, masks, rate)
    for key, mask in masks.items():
        n = survivors(mask).size
        assert newly_pruned(mask, new[key]).size == expected_count(rate, n)
        assert kept(new[key]).size == n - expected_count(rate, n)


@FAST
@given(tensor_dicts(), _rates, _seeds)
def test_random_prunes_same_per_tensor_counts_as_layerwise(data, rate, seed):
    weights, masks = data
    random_masks = prune_random(weights, masks, rate, seed=seed)
    layerwise_masks = prune_layerwise(weights, masks, rate)
    for key, mask in masks.items():
        n = survivors(mask).size
        assert newly_pruned(mask, random_masks[key]).size == expected_count(rate, n)
        assert (
            newly_pruned(mask, random_masks[key]).size
            == newly_pruned(mask, layerwise_masks[key]).size
        )


@FAST
@given(tensor_dicts(), _rates)
def test_global_prunes_exact_total_count(data, rate):
    weights, masks = data
    new = prune_global(weights, masks, rate)
    total = sum(survivors(mask).size for mask in masks.values())
    pruned = sum(newly_pruned(masks[key], new[key]).size for key in masks)
    assert pruned == expected_count(rate, total)


# --- Which weights: smallest magnitude, monotone, ties ------------------------


@FAST
@given(tensor_dicts(), _rates)
def test_layerwise_prunes_the_smallest_survivors(data, rate):
    weights, masks = data
    new = prune_layerwise(weights, masks, rate)
    for key, mask in masks.items():
        magnitudes = abs_flat(weights[key])
        gone = magnitudes[newly_pruned(mask, new[key])]
        stay = magnitudes[kept(new[key])]
        if gone.size and stay.size:
            assert gone.max() <= stay.min()


@FAST
@given(tensor_dicts(), _rates, _seeds, st.sampled_from(pruning.STRATEGIES))
def test_pruned_weights_stay_pruned(data, rate, seed, strategy):
    weights, masks = data
    new = prune(weights, masks, rate, strategy=strategy, seed=seed)
    for key, mask in masks.items():
        was_pruned = np.asarray(mask) == 0
        assert np.all(new[key][was_pruned] == 0)
        assert np.all(new[key] <= mask)


@pytest.mark.parametrize("strategy", pruning.STRATEGIES)
@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_pruned_weight_with_huge_magnitude_stays_pruned(strategy, rate):
    weights = {"t": np.array([1e30, -1e30, 1.0, 2.0, 3.0], dtype=np.float32)}
    masks = {"t": np.array([0.0, 0.0, 1.0, 1.0, 1.0], dtype=np.float32)}
    new = prune(weights, masks, rate, strategy=strategy, seed=0)["t"]
    assert new[0] == 0.0 and new[1] == 0.0
    assert np.sum(new[2:] == 0) == expected_count(rate, 3)


@FAST
@given(tensor_dicts(), _rates)
def test_layerwise_ties_pruned_in_flat_index_order(data, rate):
    weights, masks = data
    new = prune_layerwise(weights, masks, rate)
    for key, mask in masks.items():
        alive = survivors(mask)
        magnitudes = abs_flat(weights[key])
        # Reference: survivors ranked by (|w|, flat index), smallest first.
        ranked = sorted(alive, key=lambda i: (magnitudes[i], i))
        expected = sorted(ranked[: expected_count(rate, alive.size)])
        assert newly_pruned(mask, new[key]).tolist() == expected


def test_layerwise_ties_example():
    weights = {"t": np.array([[2.0, -1.0, 1.0], [1.0, 0.5, -1.0]])}
    masks = {"t": np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]])}
    # Survivors 0..5 except 4. |w| = 1 at flat indices 1, 2, 3, 5; 0.5 at 4 is
    # already pruned. Losing round(0.4 * 5) = 2 takes indices 1 and 2.
    new = prune_layerwise(weights, masks, 0.4)["t"]
    np.testing.assert_array_equal(new, [[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]])


def test_global_ties_pruned_in_dict_order_then_flat_index():
    weights = {"b": np.array([1.0, -1.0, 1.0]), "a": np.array([-1.0, 1.0, 1.0])}
    masks = {"b": np.array([1.0, 0.0, 1.0]), "a": np.ones(3)}
    # 5 survivors, all |w| = 1: lose round(0.6 * 5) = 3, in the order
    # b[0], b[2], a[0], a[1], a[2].
    new = prune_global(weights, masks, 0.6)
    np.testing.assert_array_equal(new["b"], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(new["a"], [0.0, 1.0, 1.0])
    # Swapping the dict order swaps who loses.
    swapped = prune_global(
        {"a": weights["a"], "b": weights["b"]}, {"a": masks["a"], "b": masks["b"]}, 0.6
    )
    np.testing.assert_array_equal(swapped["a"], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(swapped["b"], [1.0, 0.0, 1.0])


@FAST
@given(tensor_dicts(), _rates)
def test_global_ties_follow_dict_order_then_flat_index(data, rate):
    weights, masks = data
    new = prune_global(weights, masks, rate)
    ranked = sorted(
        (
            (abs_flat(weights[key])[i], position, i)
            for position, key in enumerate(masks)
            for i in survivors(masks[key])
        ),
    )
    total = sum(survivors(mask).size for mask in masks.values())
    expected = {key: [] for key in masks}
    keys = list(masks)
    for _, position, i in ranked[: expected_count(rate, total)]:
        expected[keys[position]].append(i)
    for key in masks:
        assert newly_pruned(masks[key], new[key]).tolist() == sorted(expected[key])


@FAST
@given(tensor_dicts(), _rates, st.sampled_from(pruning.STRATEGIES), _seeds)
def test_same_inputs_give_same_outputs(data, rate, strategy, seed):
    weights, masks = data
    first = prune(weights, masks, rate, strategy=strategy, seed=seed)
    second = prune(
        copy.deepcopy(weights), copy.deepcopy(masks), rate, strategy=strategy, seed=seed
    )
    assert list(first) == list(second)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


# --- Global -------------------------------------------------------------------


@FAST
@given(tensor_dicts(), _rates)
def test_global_uses_one_threshold(data, rate):
    weights, masks = data
    new = prune_global(weights, masks, rate)
    gone = np.concatenate(
        [abs_flat(weights[k])[newly_pruned(masks[k], new[k])] for k in masks]
    )
    stay = np.concatenate([abs_flat(weights[k])[kept(new[k])] for k in masks])
    if gone.size and stay.size:
        assert gone.max() <= stay.min()


@FAST
@given(tensor_pair(), _rates)
def test_global_with_one_tensor_equals_layerwise(pair, rate):
    weights, mask = pair
    global_masks = prune_global({"t": weights}, {"t": mask}, rate)
    layerwise_masks = prune_layerwise({"t": weights}, {"t": mask}, rate)
    np.testing.assert_array_equal(global_masks["t"], layerwise_masks["t"])


def test_global_and_layerwise_differ_when_one_tensor_is_much_smaller():
    rng = np.random.default_rng(0)
    weights = {
        "small": rng.uniform(0.001, 0.01, size=(4, 5)),
        "large": rng.uniform(1.0, 10.0, size=(4, 5)),
    }
    masks = {key: np.ones((4, 5)) for key in weights}
    global_masks = prune_global(weights, masks, 0.5)
    layerwise_masks = prune_layerwise(weights, masks, 0.5)
    # Global: the 20 pruned weights are exactly the small tensor.
    np.testing.assert_array_equal(global_masks["small"], np.zeros((4, 5)))
    np.testing.assert_array_equal(global_masks["large"], np.ones((4, 5)))
    # Layerwise: half of each.
    assert np.sum(layerwise_masks["small"] == 0) == 10
    assert np.sum(layerwise_masks["large"] == 0) == 10


def test_global_ignores_weights_that_have_no_mask():
    weights = {"a": np.array([5.0, 6.0]), "b": np.array([1.0, 2.0]), "x": np.zeros(2)}
    masks = {"a": np.ones(2), "b": np.ones(2)}
    new = prune_global(weights, masks, 0.5)
    assert list(new) == ["a", "b"]
    np.testing.assert_array_equal(new["a"], [1.0, 1.0])
    np.testing.assert_array_equal(new["b"], [0.0, 0.0])


# --- Random -------------------------------------------------------------------


@FAST
@given(tensor_dicts(), _rates, _seeds)
def test_random_is_reproducible_with_a_seed(data, rate, seed):
    weights, masks = data
    first = prune_random(weights, masks, rate, seed=seed)
    second = prune_random(weights, masks, rate, seed=seed)
    for key in masks:
        np.testing.assert_array_equal(first[key], second[key])


def test_random_different_seeds_give_different_masks():
    weights = {"t": np.ones((40, 25))}
    masks = {"t": np.ones((40, 25))}
    results = [prune_random(weights, masks, 0.5, seed=seed)["t"] for seed in range(4)]
    for i in range(len(results)):
        for j in range(i + 1, len(results)):
            assert not np.array_equal(results[i], results[j])


@FAST
@given(tensor_dicts(), _rates, _seeds)
def test_random_only_chooses_survivors(data, rate, seed):
    weights, masks = data
    new = prune_random(weights, masks, rate, seed=seed)
    for key, mask in masks.items():
        gone = newly_pruned(mask, new[key])
        assert np.all(np.asarray(mask).ravel()[gone] == 1)
        # Whatever was pruned before is still pruned, nothing else changed.
        was_pruned = np.asarray(mask).ravel() == 0
        assert np.all(new[key].ravel()[was_pruned] == 0)


def test_random_ignores_magnitudes_and_reaches_every_survivor():
    weights = {"t": np.arange(10.0)}
    masks = {"t": np.array([1.0] * 8 + [0.0] * 2)}
    chosen = set()
    for seed in range(200):
        new = prune_random(weights, masks, 0.125, seed=seed)["t"]
        gone = newly_pruned(masks["t"], new)
        assert gone.size == 1
        chosen.update(gone.tolist())
    # Not just the smallest |w|: every one of the 8 survivors gets picked.
    assert chosen == set(range(8))


# --- Rates --------------------------------------------------------------------


@FAST
@given(
    tensor_dicts(min_size=2), _rates, _seeds, st.sampled_from(["layerwise", "random"])
)
def test_dict_rate_missing_keys_are_not_pruned(data, rate, seed, strategy):
    weights, masks = data
    first, *rest = list(masks)
    new = prune(weights, masks, {first: rate}, strategy=strategy, seed=seed)
    n = survivors(masks[first]).size
    assert newly_pruned(masks[first], new[first]).size == expected_count(rate, n)
    for key in rest:
        np.testing.assert_array_equal(new[key], masks[key])


@FAST
@given(tensor_dicts(), _seeds, st.sampled_from(pruning.STRATEGIES))
def test_rate_zero_prunes_nothing(data, seed, strategy):
    weights, masks = data
    new = prune(weights, masks, 0.0, strategy=strategy, seed=seed)
    for key in masks:
        np.testing.assert_array_equal(new[key], masks[key])
    if strategy != "global":
        new = prune(
            weights, masks, dict.fromkeys(masks, 0.0), strategy=strategy, seed=seed
        )
        for key in masks:
            np.testing.assert_array_equal(new[key], masks[key])


@FAST
@given(tensor_dicts(), _seeds, st.sampled_from(pruning.STRATEGIES))
def test_rate_one_prunes_every_survivor(data, seed, strategy):
    weights, masks = data
    new = prune(weights, masks, 1.0, strategy=strategy, seed=seed)
    for key in masks:
        np.testing.assert_array_equal(new[key], np.zeros(np.shape(masks[key])))
    if strategy != "global":
        new = prune(
            weights, masks, dict.fromkeys(masks, 1.0), strategy=strategy, seed=seed
        )
        for key in masks:
            np.testing.assert_array_equal(new[key], np.zeros(np.shape(masks[key])))


def test_dict_rate_applies_each_tensors_own_rate():
    weights = {"a": np.arange(1.0, 11.0), "b": np.arange(1.0, 11.0)}
    masks = {"a": np.ones(10), "b": np.ones(10)}
    new = prune_layerwise(weights, masks, {"a": 0.2, "b": 0.7})
    np.testing.assert_array_equal(new["a"], [0.0] * 2 + [1.0] * 8)
    np.testing.assert_array_equal(new["b"], [0.0] * 7 + [1.0] * 3)


@pytest.mark.parametrize("strategy", pruning.STRATEGIES)
@pytest.mark.parametrize("rate", [0, 1])
def test_int_rates_zero_and_one_are_accepted(strategy, rate):
    weights = {"t": np.array([3.0, 1.0, 2.0])}
    masks = {"t": np.ones(3)}
    new = prune(weights, masks, rate, strategy=strategy, seed=0)["t"]
    assert np.sum(new == 0) == 3 * rate


@pytest.mark.parametrize(
    ("strategy", "scalar"),
    [
        ("layerwise", np.float32),
        ("layerwise", np.float64),
        ("random", np.float32),
        ("random", np.float64),
        ("global", np.float64),
        ("global", np.float32),
    ],
)
def test_numpy_float_rates_are_accepted(strategy, scalar):
    weights = {"t": np.array([4.0, 1.0, 3.0, 2.0])}
    masks = {"t": np.ones(4)}
    new = prune(weights, masks, scalar(0.5), strategy=strategy, seed=0)["t"]
    assert np.sum(new == 0) == 2


# --- Returned values ----------------------------------------------------------


@FAST
@given(tensor_dicts(), _rates, _seeds, st.sampled_from(pruning.STRATEGIES))
def test_returns_float32_masks_of_input_shapes_without_mutating(
    data, rate, seed, strategy
):
    weights, masks = data
    weights_before = copy.deepcopy(weights)
    masks_before = copy.deepcopy(masks)
    new = prune(weights, masks, rate, strategy=strategy, seed=seed)
    assert list(new) == list(masks)
    for key in masks:
        assert isinstance(new[key], np.ndarray)
        assert new[key].dtype == np.float32
        assert new[key].shape == np.shape(masks[key])
        assert not np.shares_memory(new[key], masks[key])
        np.testing.assert_array_equal(weights[key], weights_before[key])
        assert weights[key].dtype == weights_before[key].dtype
        np.testing.assert_array_equal(masks[key], masks_before[key])
        assert masks[key].dtype == masks_before[key].dtype


@pytest.mark.parametrize("strategy", pruning.STRATEGIES)
@pytest.mark.parametrize("mask_dtype", [bool, np.int32, np.float64])
def test_non_float32_masks_give_float32_masks(strategy, mask_dtype):
    weights = {"t": np.array([[1.0, -4.0], [3.0, 2.0]])}
    masks = {"t": np.array([[1, 1], [0, 1]], dtype=mask_dtype)}
    new = prune(weights, masks, 0.5, strategy=strategy, seed=0)["t"]
    assert new.dtype == np.float32
    assert new.shape == (2, 2)
    assert new[1, 0] == 0.0
    assert np.sum(new == 0) == 1 + expected_count(0.5, 3)
    if strategy != "random":
        np.testing.assert_array_equal(new, [[0.0, 1.0], [0.0, 0.0]])


@pytest.mark.parametrize("strategy", pruning.STRATEGIES)
def test_empty_dicts_give_empty_dict(strategy):
    assert prune({}, {}, 0.5, strategy=strategy, seed=0) == {}


# --- Errors -------------------------------------------------------------------


def _one_tensor():
    return {"dense/kernel": np.array([1.0, 2.0])}, {"dense/kernel": np.ones(2)}


def test_unknown_strategy_is_named():
    weights, masks = _one_tensor()
    with pytest.raises(ValueError, match="strategy='magnitude'"):
        prune(weights, masks, 0.5, strategy="magnitude")


@pytest.mark.parametrize("strategy", pruning.STRATEGIES)
def test_shape_mismatch(strategy):
    weights = {"dense/kernel": np.zeros((2, 3))}
    masks = {"dense/kernel": np.ones((3, 2))}
    with pytest.raises(ValueError, match=r"dense/kernel.*\(2, 3\) and \(3, 2\)"):
        prune(weights, masks, 0.5, strategy=strategy, seed=0)


@pytest.mark.parametrize("strategy", pruning.STRATEGIES)
@pytest.mark.parametrize(
    ("bad", "shown"), [(0.5, r"0\.5"), (2.0, r"2\."), (-1.0, r"-1\."), (np.nan, "nan")]
)
def test_masks_must_hold_only_zero_and_one(strategy, bad, shown):
    weights = {"dense/kernel": np.array([1.0, 2.0, 3.0])}
    masks = {"dense/kernel": np.array([1.0, bad, 0.0])}
    with pytest.raises(ValueError, match=rf"dense/kernel.*0 and 1.*{shown}"):
        prune(weights, masks, 0.5, strategy=strategy, seed=0)


@pytest.mark.parametrize("strategy", pruning.STRATEGIES)
@pytest.mark.parametrize("rate", [-0.1, 1.5, np.nan, np.inf])
def test_rate_out_of_range(strategy, rate):
    weights, masks = _one_tensor()
    with pytest.raises(ValueError, match=rf"\[0, 1\]. Received: {rate!r}"):
        prune(weights, masks, rate, strategy=strategy, seed=0)


@pytest.mark.parametrize("strategy", ["layerwise", "random"])
def test_rate_out_of_range_in_dict(strategy):
    weights, masks = _one_tensor()
    with pytest.raises(ValueError, match=r"dense/kernel.*\[0, 1\]. Received: 1.5"):
        prune(weights, masks, {"dense/kernel": 1.5}, strategy=strategy, seed=0)


@pytest.mark.parametrize("strategy", pruning.STRATEGIES)
@pytest.mark.parametrize(
    ("rate", "shown"),
    [("0.5", r"'0\.5' of type str"), (None, "None of type NoneType"), (True, "bool")],
)
def test_rate_that_is_not_a_number(strategy, rate, shown):
    weights, masks = _one_tensor()
    with pytest.raises(TypeError, match=shown):
        prune(weights, masks, rate, strategy=strategy, seed=0)


@pytest.mark.parametrize("strategy", ["layerwise", "random"])
def test_rate_that_is_not_a_number_in_dict(strategy):
    weights, masks = _one_tensor()
    with pytest.raises(TypeError, match=r"dense/kernel.*'half' of type str"):
        prune(weights, masks, {"dense/kernel": "half"}, strategy=strategy, seed=0)


@pytest.mark.parametrize("strategy", ["layerwise", "global"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(strategy, bad):
    weights = {"dense/kernel": np.array([1.0, bad, 3.0])}
    masks = {"dense/kernel": np.ones(3)}
    with pytest.raises(ValueError, match="'dense/kernel' hold NaN or infinite"):
        prune(weights, masks, 0.5, strategy=strategy)


@pytest.mark.parametrize("strategy", ["layerwise", "random"])
def test_dict_rate_naming_unknown_tensors(strategy):
    weights, masks = _one_tensor()
    with pytest.raises(ValueError, match=r"no mask: \['conv/kernel'\]"):
        prune(
            weights,
            masks,
            {"dense/kernel": 0.5, "conv/kernel": 0.5},
            strategy=strategy,
            seed=0,
        )


def test_global_with_a_dict_rate():
    weights, masks = _one_tensor()
    with pytest.raises(TypeError, match=r"one float.*\{'dense/kernel': 0\.5\}.*dict"):
        prune(weights, masks, {"dense/kernel": 0.5}, strategy="global")
    with pytest.raises(TypeError, match="of type dict"):
        prune_global(weights, masks, {"dense/kernel": 0.5})


@pytest.mark.parametrize("strategy", pruning.STRATEGIES)
def test_masks_without_weights(strategy):
    weights, masks = _one_tensor()
    masks["conv/kernel"] = np.ones(2)
    with pytest.raises(ValueError, match=r"Missing weights for: \['conv/kernel'\]"):
        prune(weights, masks, 0.5, strategy=strategy, seed=0)


@pytest.mark.parametrize("strategy", pruning.STRATEGIES)
def test_weights_and_masks_must_be_dicts(strategy):
    with pytest.raises(TypeError, match="Received: list and list"):
        prune([np.ones(2)], [np.ones(2)], 0.5, strategy=strategy, seed=0)
