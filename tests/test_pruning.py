"""Property tests for the pure pruning functions in `keras_lth.pruning`.

Plain numpy arrays only, no model. Shapes and values come from hypothesis.

Rounding rule under test: a tensor with `n` surviving weights asked to lose a
fraction `r` of them loses exactly `floor(r * n + 0.5)` weights, i.e. `r * n`
rounded half *up* (not Python's `round`, which rounds half to even: 5
survivors at rate 0.5 lose 3, not 2; 1 survivor at rate 0.5 loses 1, not 0).

With `block=(rows, cols)` the same rule holds in blocks: `rows` output units
by `cols` consecutive inputs (LiteRT's `(out, in)` orientation), on a tensor
read as `(..., in, out)`, with a smaller last block where a side does not
divide. A reference computed from coordinates checks the implementation.
`prune_n_m` keeps the `n` largest survivors of every `m` consecutive inputs.
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
from keras_lth.pruning import prune_lamp
from keras_lth.pruning import prune_layerwise
from keras_lth.pruning import prune_n_m
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


def expected_one_tensor_count(strategy, rate, surviving):
    """`expected_count` for one tensor; `"lamp"` always keeps one survivor."""
    count = expected_count(rate, surviving)
    return min(count, max(surviving - 1, 0)) if strategy == "lamp" else count


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
    assert np.sum(new[2:] == 0) == expected_one_tensor_count(strategy, rate, 3)


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


# --- LAMP ---------------------------------------------------------------------


def reference_lamp_scores(values):
    """The paper's definition, written out: `w_u^2 / sum_{v >= u} w_v^2` with
    the weights sorted by (|w|, flat index), ascending."""
    flat = np.abs(np.asarray(values, dtype=np.float64)).ravel()
    ranked = sorted(range(flat.size), key=lambda i: (flat[i], i))
    scores = np.zeros(flat.size)
    for position, i in enumerate(ranked):
        below = sum(flat[j] ** 2 for j in ranked[position:])
        scores[i] = flat[i] ** 2 / below if below > 0 else 0.0
    return scores.reshape(np.shape(values))


def lamp_survivor_scores(weights, mask):
    """`{flat index: LAMP score}` of a tensor's survivors, among survivors."""
    alive = survivors(mask)
    scores = pruning.lamp_scores(abs_flat(weights)[alive])
    return dict(zip(alive.tolist(), scores.tolist(), strict=True))


@FAST
@given(tensor_pair())
def test_lamp_scores_follow_the_papers_definition(pair):
    weights, _ = pair
    scores = pruning.lamp_scores(weights)
    assert scores.shape == np.shape(weights) and scores.dtype == np.float64
    np.testing.assert_allclose(scores, reference_lamp_scores(weights), rtol=1e-9)


def test_lamp_scores_example():
    # Sorted: 1, 2, 3. Scores 1/(1+4+9), 4/(4+9), 9/9.
    np.testing.assert_allclose(
        pruning.lamp_scores(np.array([[3.0, -1.0], [2.0, 0.0]])),
        [[1.0, 1 / 14], [4 / 13, 0.0]],
    )
    assert pruning.lamp_scores(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]


@FAST
@given(tensor_dicts(), _rates)
def test_lamp_prunes_exact_total_count_but_one_per_tensor(data, rate):
    weights, masks = data
    new = prune_lamp(weights, masks, rate)
    total = sum(survivors(mask).size for mask in masks.values())
    nonempty = sum(survivors(mask).size > 0 for mask in masks.values())
    pruned = sum(newly_pruned(masks[key], new[key]).size for key in masks)
    assert pruned == min(expected_count(rate, total), total - nonempty)


@FAST
@given(tensor_dicts(), _rates)
def test_lamp_keeps_each_tensors_largest_weight(data, rate):
    weights, masks = data
    new = prune_lamp(weights, masks, rate)
    for key, mask in masks.items():
        alive = survivors(mask)
        if alive.size:
            largest = max(alive, key=lambda i: (abs_flat(weights[key])[i], i))
            assert new[key].ravel()[largest] == 1


@FAST
@given(tensor_dicts(), _rates)
def test_lamp_uses_one_threshold_on_lamp_scores(data, rate):
    weights, masks = data
    new = prune_lamp(weights, masks, rate)
    gone, stay = [], []
    for key, mask in masks.items():
        scores = lamp_survivor_scores(weights[key], mask)
        gone += [scores[i] for i in newly_pruned(mask, new[key])]
        # Each tensor's largest survivor is kept whatever its score.
        top = max(scores, key=lambda i: (abs_flat(weights[key])[i], i), default=-1)
        stay += [scores[i] for i in kept(new[key]) if i != top]
    if gone and stay:
        assert max(gone) <= min(stay) + 1e-12


@FAST
@given(tensor_dicts(), _rates)
def test_lamp_prunes_each_tensors_smallest_survivors(data, rate):
    weights, masks = data
    new = prune_lamp(weights, masks, rate)
    for key, mask in masks.items():
        magnitudes = abs_flat(weights[key])
        gone = magnitudes[newly_pruned(mask, new[key])]
        stay = magnitudes[kept(new[key])]
        if gone.size and stay.size:
            assert gone.max() <= stay.min()


@FAST
@given(tensor_dicts(), _rates, st.integers(-20, 20))
def test_lamp_ignores_rescaling_a_tensor_by_a_power_of_two(data, rate, power):
    weights, masks = data
    first = next(iter(masks))
    scaled = {**weights, first: weights[first] * np.float64(2.0**power)}
    before, after = prune_lamp(weights, masks, rate), prune_lamp(scaled, masks, rate)
    for key in masks:
        np.testing.assert_array_equal(before[key], after[key])


@pytest.mark.parametrize("factor", [10.0, 1e-3, 7.3])
def test_lamp_masks_do_not_change_when_one_tensor_is_rescaled(factor):
    rng = np.random.default_rng(0)
    weights = {
        "emb/embeddings": rng.normal(0, 0.05, size=(50, 16)),
        "dense/kernel": rng.normal(0, 0.3, size=(16, 32)),
        "head/kernel": rng.normal(0, 0.3, size=(32, 4)),
    }
    masks = {key: np.ones(w.shape) for key, w in weights.items()}
    for rate in (0.2, 0.5, 0.9):
        before = prune_lamp(weights, masks, rate)
        scaled = {**weights, "emb/embeddings": weights["emb/embeddings"] * factor}
        after = prune_lamp(scaled, masks, rate)
        for key in masks:
            np.testing.assert_array_equal(before[key], after[key])
    # Global pruning, by contrast, moves with the scale.
    scaled = {**weights, "emb/embeddings": weights["emb/embeddings"] * 10.0}
    assert not np.array_equal(
        prune_global(weights, masks, 0.5)["emb/embeddings"],
        prune_global(scaled, masks, 0.5)["emb/embeddings"],
    )


def test_lamp_spares_the_small_scale_tensor_that_global_empties():
    rng = np.random.default_rng(1)
    weights = {
        "emb/embeddings": rng.normal(0, 0.01, size=(100, 8)),
        "dense/kernel": rng.normal(0, 0.1, size=(8, 100)),
    }
    masks = {key: np.ones(w.shape) for key, w in weights.items()}
    by_global = prune_global(weights, masks, 0.75)
    by_lamp = prune_lamp(weights, masks, 0.75)
    assert by_global["emb/embeddings"].mean() < 0.05
    assert 0.15 < by_lamp["emb/embeddings"].mean() < 0.35
    assert sum(m.sum() for m in by_lamp.values()) == 400  # 1600 - 1200.


@FAST
@given(tensor_pair(), _rates)
def test_lamp_with_one_tensor_equals_layerwise_but_keeps_one(pair, rate):
    weights, mask = pair
    alive = survivors(mask).size
    capped = min(expected_count(rate, alive), max(alive - 1, 0))
    lamp = prune_lamp({"t": weights}, {"t": mask}, rate)["t"]
    layerwise = prune_layerwise(
        {"t": weights}, {"t": mask}, capped / alive if alive else 0
    )
    np.testing.assert_array_equal(lamp, layerwise["t"])


def test_lamp_ties_pruned_in_dict_order_then_flat_index():
    weights = {"b": np.array([1.0, -1.0, 1.0, 2.0]), "a": np.array([-1.0, 1.0, 2.0])}
    masks = {"b": np.ones(4), "a": np.ones(3)}
    # LAMP scores: b = 1/7, 1/6, 1/5, 1 and a = 1/6, 1/5, 1. Losing
    # round(3 / 7 * 7) = 3 takes b[0] (1/7), then the 1/6 tie: b[1], a[0].
    new = prune_lamp(weights, masks, 3 / 7)
    np.testing.assert_array_equal(new["b"], [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(new["a"], [0.0, 1.0, 1.0])


# --- min_density --------------------------------------------------------------

_densities = st.floats(0.0, 0.99, allow_nan=False)


@FAST
@given(tensor_dicts(), _rates, _densities, st.sampled_from(pruning.GLOBAL_STRATEGIES))
def test_min_density_is_a_floor_under_every_tensor(data, rate, density, strategy):
    weights, masks = data
    new = prune(weights, masks, rate, strategy=strategy, min_density=density)
    room = 0
    for key, mask in masks.items():
        alive = survivors(mask).size
        floor = min(expected_count(density, np.size(mask)), alive)
        floor = max(floor, min(alive, 1)) if strategy == "lamp" else floor
        assert kept(new[key]).size >= floor
        assert np.all(new[key] <= mask)
        room += alive - floor
    total = sum(survivors(mask).size for mask in masks.values())
    pruned = sum(newly_pruned(masks[key], new[key]).size for key in masks)
    assert pruned == min(expected_count(rate, total), room)


def test_min_density_example():
    weights = {"small": np.arange(1.0, 11.0) / 100, "large": np.arange(1.0, 11.0)}
    masks = {key: np.ones(10) for key in weights}
    # 10 of 20 go. Global alone takes all of "small"; a floor of 3 keeps its
    # 3 largest, and the threshold moves on to "large".
    new = prune_global(weights, masks, 0.5, min_density=0.3)
    np.testing.assert_array_equal(new["small"], [0.0] * 7 + [1.0] * 3)
    np.testing.assert_array_equal(new["large"], [0.0] * 3 + [1.0] * 7)
    # Floors that leave too little room: only what they allow goes.
    new = prune_global(weights, masks, 1.0, min_density=0.3)
    assert new["small"].sum() == 3 and new["large"].sum() == 3


def test_min_density_counts_blocks_with_block():
    weights = {"t": np.arange(1.0, 9.0).reshape(8, 1)}
    masks = {"t": np.ones((8, 1))}
    # 4 blocks of (1, 2) along the input axis; a floor of 0.5 keeps 2 of them.
    new = prune_global(weights, masks, 1.0, block=(1, 2), min_density=0.5)["t"]
    np.testing.assert_array_equal(new.ravel(), [0, 0, 0, 0, 1, 1, 1, 1])


@pytest.mark.parametrize("strategy", pruning.GLOBAL_STRATEGIES)
def test_prune_to_sparsity_with_lamp_and_min_density(strategy):
    rng = np.random.default_rng(2)
    weights = {"a": rng.normal(0, 0.01, size=40), "b": rng.normal(size=60)}
    masks = {key: np.ones(w.shape) for key, w in weights.items()}
    new = pruning.prune_to_sparsity(weights, masks, 0.8, strategy=strategy)
    assert sum(m.sum() for m in new.values()) == 20
    new = pruning.prune_to_sparsity(
        weights, masks, 0.8, strategy=strategy, min_density=0.25
    )
    assert new["a"].sum() >= 10 and new["b"].sum() >= 15
    assert sum(m.sum() for m in new.values()) == 25 if strategy == "global" else 20


@pytest.mark.parametrize(
    "bad, error, shown",
    [
        (1.0, ValueError, r"`min_density` in \[0, 1\). Received: min_density=1.0"),
        (-0.1, ValueError, r"Received: min_density=-0.1"),
        (np.nan, ValueError, r"Received: min_density=nan"),
        ("0.1", TypeError, r"min_density='0.1' of type str"),
        (True, TypeError, r"min_density=True of type bool"),
    ],
)
@pytest.mark.parametrize("strategy", pruning.GLOBAL_STRATEGIES)
def test_bad_min_density(strategy, bad, error, shown):
    weights, masks = _one_tensor()
    with pytest.raises(error, match=shown):
        prune(weights, masks, 0.5, strategy=strategy, min_density=bad)
    with pytest.raises(error, match=shown):
        pruning.prune_to_sparsity(
            weights, masks, 0.5, strategy=strategy, min_density=bad
        )


@pytest.mark.parametrize("strategy", ["layerwise", "random"])
def test_min_density_needs_a_strategy_across_tensors(strategy):
    weights, masks = _one_tensor()
    with pytest.raises(ValueError, match=rf"strategy='{strategy}'.*min_density=0"):
        prune(weights, masks, 0.5, strategy=strategy, min_density=0.1)
    prune(weights, masks, 0.5, strategy=strategy, min_density=0.0)  # Accepted.


def test_lamp_with_a_dict_rate_or_sparsity():
    weights, masks = _one_tensor()
    with pytest.raises(TypeError, match=r"one float.*of type dict"):
        prune(weights, masks, {"dense/kernel": 0.5}, strategy="lamp")
    with pytest.raises(TypeError, match=r"one float for strategy='lamp'"):
        pruning.prune_to_sparsity(
            weights, masks, {"dense/kernel": 0.5}, strategy="lamp"
        )


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
    if strategy not in pruning.GLOBAL_STRATEGIES:
        new = prune(
            weights, masks, dict.fromkeys(masks, 0.0), strategy=strategy, seed=seed
        )
        for key in masks:
            np.testing.assert_array_equal(new[key], masks[key])


@FAST
@given(tensor_dicts(), _seeds, st.sampled_from(["layerwise", "global", "random"]))
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
    assert np.sum(new == 0) == expected_one_tensor_count(strategy, rate, 3)


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
    with pytest.raises(ValueError, match=rf"\[0, 1\]. Received: (rate=)?{rate!r}"):
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


# --- Blocks: reference helpers ------------------------------------------------
#
# The reference finds each weight's block from its coordinates, with no padding
# or reshaping, independently of the implementation in `keras_lth.pruning`.

# Small sides, so ragged last blocks are common in the <= 6-wide shapes.
_blocks = st.tuples(st.integers(1, 3), st.integers(1, 4))
# Powers of two and zero: squares, sums and norms are exact in float64, so
# blocks of equal norm tie exactly.
_dyadic = st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])


def block_index(shape, block):
    """The flat block index of every weight of a tensor of `shape`."""
    rows, cols = block
    if len(shape) >= 2:
        lead, n_in, n_out = math.prod(shape[:-2]), shape[-2], shape[-1]
    else:
        lead, n_in, n_out = 1, math.prod(shape), 1
    lead_i, in_i, out_i = np.indices((lead, n_in, n_out))
    in_blocks, out_blocks = -(-n_in // cols), -(-n_out // rows)
    index = (lead_i * in_blocks + in_i // cols) * out_blocks + out_i // rows
    return index.reshape(shape)


def blocks_of(shape, block):
    """`{block index: flat indices of its weights}` for every block."""
    index = block_index(shape, block).ravel()
    return {b: np.flatnonzero(index == b) for b in np.unique(index).tolist()}


def live_blocks(mask, block):
    """Indices of the blocks that keep at least one weight, in order."""
    flat = np.asarray(mask).ravel()
    return [b for b, ix in blocks_of(np.shape(mask), block).items() if flat[ix].any()]


def block_norms(weights, mask, block):
    """`{block index: L2 norm of its surviving weights}`, in float64."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    alive = np.asarray(mask).ravel() == 1
    return {
        b: math.sqrt(sum(w[i] ** 2 for i in ix if alive[i]))
        for b, ix in blocks_of(np.shape(mask), block).items()
    }


def pruned_blocks(old_mask, new_mask, block):
    """Blocks alive in `old_mask` and wholly pruned in `new_mask`, in order."""
    after = set(live_blocks(new_mask, block))
    return [b for b in live_blocks(old_mask, block) if b not in after]


def assert_whole_blocks(old_mask, new_mask, block):
    """Each block is either untouched or wholly pruned; nothing grew back."""
    old, new = np.asarray(old_mask).ravel(), np.asarray(new_mask).ravel()
    assert np.all(new <= old)
    for ix in blocks_of(np.shape(old_mask), block).values():
        assert np.array_equal(new[ix], old[ix]) or not new[ix].any()


@st.composite
def block_tensor_dicts(draw, values=_values, structured=False, min_size=1):
    """`(weights, masks, block)`. `structured` masks keep or prune whole blocks."""
    block = draw(_blocks)
    names = ["dense/kernel", "conv/kernel", "sep/depthwise_kernel", "emb/embeddings"]
    keys = draw(
        st.lists(st.sampled_from(names), min_size=min_size, max_size=4, unique=True)
    )
    weights, masks = {}, {}
    for key in keys:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
        dtype = draw(st.sampled_from([np.float32, np.float64]))
        weights[key] = draw(hnp.arrays(dtype, shape, elements=values))
        if structured:
            index = block_index(shape, block)
            keep = draw(
                hnp.arrays(
                    np.float32,
                    int(index.max()) + 1 if index.size else 0,
                    elements=st.sampled_from([0.0, 1.0]),
                )
            )
            masks[key] = keep[index] if index.size else np.zeros(shape, np.float32)
        else:
            masks[key] = draw(
                hnp.arrays(np.float32, shape, elements=st.sampled_from([0.0, 1.0]))
            )
    return weights, masks, block


def test_reference_block_index_example():
    # A Dense kernel (in=6, out=2) with LiteRT (1, 4) blocks: per output unit
    # (column), inputs 0-3 form one block and the ragged inputs 4-5 another.
    np.testing.assert_array_equal(
        block_index((6, 2), (1, 4)), [[0, 1]] * 4 + [[2, 3]] * 2
    )
    # A (2, 1) block groups 2 output units for each single input.
    np.testing.assert_array_equal(block_index((2, 3), (2, 1)), [[0, 0, 1], [2, 2, 3]])


# --- Blocks: orientation and definitions --------------------------------------


def test_block_runs_along_the_input_axis_of_a_dense_kernel():
    # Keras Dense kernel (in=8, out=2). LiteRT's (1, 4) block is 4 consecutive
    # inputs of one output unit: a (4, 1) patch down axis 0.
    kernel = np.array(
        [[1.0, 9.0], [1.0, 9.0], [1.0, 9.0], [1.0, 9.0]]
        + [[5.0, 0.1], [5.0, 0.1], [5.0, 0.1], [5.0, 0.1]]
    )
    new = prune_layerwise({"k": kernel}, {"k": np.ones((8, 2))}, 0.5, block=(1, 4))
    # 4 blocks, norms 2, 18, 10 and 0.2: the 2 smallest go.
    expected = np.array([[0.0, 1.0]] * 4 + [[1.0, 0.0]] * 4)
    np.testing.assert_array_equal(new["k"], expected)
    assert pruning.is_block_sparse(new["k"], (1, 4))
    # The transposed reading, (4, 1) in LiteRT terms, is another structure.
    assert not pruning.is_block_sparse(new["k"], (4, 1))


def test_block_rows_run_along_the_output_axis():
    # Kernel (in=1, out=4): (2, 1) blocks pair output units 0-1 and 2-3.
    kernel = np.array([[1.0, 1.0, 3.0, 0.5]])
    new = prune_layerwise({"k": kernel}, {"k": np.ones((1, 4))}, 0.5, block=(2, 1))
    np.testing.assert_array_equal(new["k"], [[0.0, 0.0, 1.0, 1.0]])


def test_conv_kernel_blocks_run_along_input_channels_per_position():
    # (kh, kw, in, out) = (1, 2, 4, 1): one (1, 2) block pair per position.
    kernel = np.array([1.0, 1.0, 3.0, 3.0, 2.0, 2.0, 0.1, 0.1]).reshape(1, 2, 4, 1)
    new = prune_layerwise(
        {"conv/kernel": kernel},
        {"conv/kernel": np.ones_like(kernel)},
        0.5,
        block=(1, 2),
    )
    np.testing.assert_array_equal(new["conv/kernel"].ravel(), [0, 0, 1, 1, 1, 1, 0, 0])


def test_ragged_last_block_is_its_own_block():
    # 6 inputs with (1, 4) blocks: one block of 4 and one of 2 per output.
    kernel = np.array([[3.0], [3.0], [3.0], [3.0], [1.0], [1.0]])
    masks = {"k": np.ones((6, 1))}
    assert pruning.surviving_blocks(masks["k"], (1, 4)) == 2
    new = prune_layerwise({"k": kernel}, masks, 0.5, block=(1, 4))
    np.testing.assert_array_equal(new["k"].ravel(), [1, 1, 1, 1, 0, 0])
    # A block wider than the dimension is the whole column.
    new = prune_layerwise({"k": kernel}, masks, 0.5, block=(1, 16))
    np.testing.assert_array_equal(new["k"].ravel(), [0] * 6)


def test_one_and_zero_dimensional_tensors():
    # (n,) reads as (n, 1): `cols` groups consecutive entries, `rows` is moot.
    weights = {"v": np.array([1.0, 1.0, 5.0, 5.0, 2.0]), "s": np.array(7.0)}
    masks = {"v": np.ones(5), "s": np.array(1.0)}
    new = prune_layerwise(weights, masks, 0.5, block=(3, 2))
    # Blocks [1, 1], [5, 5] and the ragged [2]: 2 of the 3 go.
    np.testing.assert_array_equal(new["v"], [0, 0, 1, 1, 0])
    assert new["s"].shape == () and new["s"] == 0.0  # 1 block at 0.5 -> 1 pruned


def test_partially_pruned_block_is_alive_and_ranked_by_its_survivors():
    kernel = np.array([[9.0], [1.0], [2.0], [2.0]])
    # Block 0 (inputs 0-1) already lost its 9; its survivors have norm 1.
    masks = {"k": np.array([[0.0], [1.0], [1.0], [1.0]])}
    assert pruning.surviving_blocks(masks["k"], (1, 2)) == 2
    new = prune_layerwise({"k": kernel}, masks, 0.5, block=(1, 2))
    np.testing.assert_array_equal(new["k"].ravel(), [0, 0, 1, 1])
    # Unpruned, it stays partial: the pruned 9 never comes back.
    new = prune_layerwise({"k": kernel}, masks, 0.0, block=(1, 2))
    np.testing.assert_array_equal(new["k"].ravel(), [0, 1, 1, 1])
    assert not pruning.is_block_sparse(new["k"], (1, 2))


def test_block_ties_example():
    # Columns are blocks (1, 3); all norms equal: lower block index first.
    kernel = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    new = prune_layerwise({"k": kernel}, {"k": np.ones((3, 3))}, 0.6, block=(1, 3))
    np.testing.assert_array_equal(new["k"], [[0.0, 0.0, 1.0]] * 3)


def test_block_norm_is_l2_not_l1_or_max():
    # Norms: 5 (3, 4) against 5.2 (5.2, 0): L1 or max would rank them the
    # other way round (7 > 5.2, 4 < 5.2).
    kernel = np.array([[3.0, 5.2], [4.0, 0.0]])
    new = prune_layerwise({"k": kernel}, {"k": np.ones((2, 2))}, 0.5, block=(1, 2))
    np.testing.assert_array_equal(new["k"], [[0.0, 1.0], [0.0, 1.0]])


def test_block_norm_neither_overflows_nor_underflows():
    for big, small in [(1e200, 1e199), (3e-200, 1e-200)]:
        kernel = np.array([[big, small], [big, small]])
        new = prune_layerwise({"k": kernel}, {"k": np.ones((2, 2))}, 0.5, block=(1, 2))
        np.testing.assert_array_equal(new["k"], [[1.0, 0.0], [1.0, 0.0]])


# --- Blocks: exact counts, whole blocks, monotone -----------------------------


@FAST
@given(block_tensor_dicts(), _rates, _seeds, st.sampled_from(["layerwise", "random"]))
def test_block_prunes_exact_block_count_per_tensor(data, rate, seed, strategy):
    weights, masks, block = data
    new = prune(weights, masks, rate, strategy=strategy, seed=seed, block=block)
    for key, mask in masks.items():
        n = len(live_blocks(mask, block))
        assert pruning.surviving_blocks(mask, block) == n
        assert len(pruned_blocks(mask, new[key], block)) == expected_count(rate, n)
        assert pruning.surviving_blocks(new[key], block) == n - expected_count(rate, n)


@FAST
@given(block_tensor_dicts(), _rates)
def test_block_global_prunes_exact_total_block_count(data, rate):
    weights, masks, block = data
    new = prune_global(weights, masks, rate, block=block)
    total = sum(len(live_blocks(mask, block)) for mask in masks.values())
    pruned = sum(len(pruned_blocks(masks[k], new[k], block)) for k in masks)
    assert pruned == expected_count(rate, total)


@FAST
@given(block_tensor_dicts(), _rates, _seeds, st.sampled_from(pruning.STRATEGIES))
def test_block_pruned_blocks_are_wholly_pruned(data, rate, seed, strategy):
    weights, masks, block = data
    new = prune(weights, masks, rate, strategy=strategy, seed=seed, block=block)
    for key, mask in masks.items():
        assert_whole_blocks(mask, new[key], block)


@FAST
@given(
    block_tensor_dicts(structured=True),
    st.lists(_rates, min_size=1, max_size=4),
    _seeds,
    st.sampled_from(pruning.STRATEGIES),
)
def test_block_monotone_and_structured_over_repeated_pruning(
    data, rates, seed, strategy
):
    weights, masks, block = data
    for step, rate in enumerate(rates):
        new = prune(
            weights, masks, rate, strategy=strategy, seed=seed + step, block=block
        )
        for key, mask in masks.items():
            assert_whole_blocks(mask, new[key], block)
            assert pruning.is_block_sparse(new[key], block)
        masks = new


@FAST
@given(block_tensor_dicts())
def test_block_rate_zero_and_one(data):
    weights, masks, block = data
    for strategy in pruning.STRATEGIES:
        kept_all = prune(weights, masks, 0.0, strategy=strategy, seed=0, block=block)
        pruned_all = prune(weights, masks, 1.0, strategy=strategy, seed=0, block=block)
        for key in masks:
            np.testing.assert_array_equal(kept_all[key], masks[key])
            left = live_blocks(pruned_all[key], block)
            alive = live_blocks(masks[key], block)
            assert len(left) == (min(len(alive), 1) if strategy == "lamp" else 0)


# --- Blocks: which blocks, ties ----------------------------------------------


@FAST
@given(block_tensor_dicts(), _rates)
def test_block_layerwise_prunes_the_smallest_norm_blocks(data, rate):
    weights, masks, block = data
    new = prune_layerwise(weights, masks, rate, block=block)
    for key, mask in masks.items():
        norms = block_norms(weights[key], mask, block)
        gone = [norms[b] for b in pruned_blocks(mask, new[key], block)]
        stay = [norms[b] for b in live_blocks(new[key], block)]
        if gone and stay:
            assert max(gone) <= min(stay) * (1 + 1e-12)


@FAST
@given(block_tensor_dicts(values=_dyadic), _rates)
def test_block_layerwise_ties_in_flat_block_index_order(data, rate):
    weights, masks, block = data
    new = prune_layerwise(weights, masks, rate, block=block)
    for key, mask in masks.items():
        norms = block_norms(weights[key], mask, block)
        alive = live_blocks(mask, block)
        ranked = sorted(alive, key=lambda b: (norms[b], b))
        expected = sorted(ranked[: expected_count(rate, len(alive))])
        assert pruned_blocks(mask, new[key], block) == expected


@FAST
@given(block_tensor_dicts(values=_dyadic), _rates)
def test_block_global_ties_follow_dict_order_then_block_index(data, rate):
    weights, masks, block = data
    new = prune_global(weights, masks, rate, block=block)
    keys = list(masks)
    ranked = sorted(
        (block_norms(weights[key], masks[key], block)[b], position, b)
        for position, key in enumerate(keys)
        for b in live_blocks(masks[key], block)
    )
    expected = {key: [] for key in keys}
    for _, position, b in ranked[: expected_count(rate, len(ranked))]:
        expected[keys[position]].append(b)
    for key in keys:
        assert pruned_blocks(masks[key], new[key], block) == sorted(expected[key])


@FAST
@given(block_tensor_dicts(), _rates)
def test_block_global_uses_one_threshold(data, rate):
    weights, masks, block = data
    new = prune_global(weights, masks, rate, block=block)
    gone, stay = [], []
    for key, mask in masks.items():
        norms = block_norms(weights[key], mask, block)
        gone += [norms[b] for b in pruned_blocks(mask, new[key], block)]
        stay += [norms[b] for b in live_blocks(new[key], block)]
    if gone and stay:
        assert max(gone) <= min(stay) * (1 + 1e-12)


@FAST
@given(block_tensor_dicts(), _rates)
def test_block_global_with_one_tensor_equals_layerwise(data, rate):
    weights, masks, block = data
    key = next(iter(masks))
    one_w, one_m = {key: weights[key]}, {key: masks[key]}
    np.testing.assert_array_equal(
        prune_global(one_w, one_m, rate, block=block)[key],
        prune_layerwise(one_w, one_m, rate, block=block)[key],
    )


def test_block_global_and_layerwise_differ_when_one_tensor_is_much_smaller():
    rng = np.random.default_rng(0)
    weights = {
        "small": rng.uniform(0.001, 0.01, size=(8, 3)),
        "large": rng.uniform(1.0, 10.0, size=(8, 3)),
    }
    masks = {key: np.ones((8, 3)) for key in weights}
    # 6 blocks of (1, 4) per tensor, 12 in all: global drops the small 6.
    global_masks = prune_global(weights, masks, 0.5, block=(1, 4))
    np.testing.assert_array_equal(global_masks["small"], np.zeros((8, 3)))
    np.testing.assert_array_equal(global_masks["large"], np.ones((8, 3)))
    layerwise_masks = prune_layerwise(weights, masks, 0.5, block=(1, 4))
    for key in weights:
        assert pruning.surviving_blocks(layerwise_masks[key], (1, 4)) == 3


# --- Blocks: (1, 1), random, dicts --------------------------------------------


@FAST
@given(tensor_dicts(), _rates, _seeds, st.sampled_from(pruning.STRATEGIES))
def test_block_one_by_one_equals_unstructured(data, rate, seed, strategy):
    weights, masks = data
    unstructured = prune(weights, masks, rate, strategy=strategy, seed=seed)
    blocked = prune(weights, masks, rate, strategy=strategy, seed=seed, block=(1, 1))
    for key in masks:
        np.testing.assert_array_equal(blocked[key], unstructured[key])
        assert (
            pruning.surviving_blocks(masks[key], (1, 1)) == survivors(masks[key]).size
        )


@FAST
@given(block_tensor_dicts(), _rates, _seeds)
def test_block_random_is_reproducible_and_only_chooses_live_blocks(data, rate, seed):
    weights, masks, block = data
    first = prune_random(weights, masks, rate, seed=seed, block=block)
    second = prune_random(weights, masks, rate, seed=seed, block=block)
    for key, mask in masks.items():
        np.testing.assert_array_equal(first[key], second[key])
        assert set(pruned_blocks(mask, first[key], block)) <= set(
            live_blocks(mask, block)
        )


def test_block_random_ignores_norms_and_reaches_every_live_block():
    weights = {"t": np.arange(24.0).reshape(12, 2)}
    masks = {"t": np.ones((12, 2))}
    masks["t"][8:, 1] = 0.0  # Block 5 (inputs 8-11 of output 1) is dead.
    chosen = set()
    for seed in range(200):
        new = prune_random(weights, masks, 0.2, seed=seed, block=(1, 4))["t"]
        gone = pruned_blocks(masks["t"], new, (1, 4))
        assert len(gone) == 1  # 0.2 * 5 live blocks
        chosen.update(gone)
    assert chosen == {0, 1, 2, 3, 4}


@FAST
@given(tensor_dicts(min_size=2), _blocks, _rates, _seeds)
def test_dict_block_applies_each_tensors_own_block(data, block, rate, seed):
    weights, masks = data
    first, *rest = list(masks)
    for strategy in ["layerwise", "random"]:
        new = prune(
            weights, masks, rate, strategy=strategy, seed=seed, block={first: block}
        )
        # Tensors are pruned one by one, so the first (which also draws
        # first from the random generator) matches a call of its own.
        alone = prune(
            {first: weights[first]},
            {first: masks[first]},
            rate,
            strategy=strategy,
            seed=seed,
            block=block,
        )
        np.testing.assert_array_equal(new[first], alone[first])
        if strategy == "layerwise":
            for key in rest:  # Missing from the dict: pruned weight by weight.
                plain = prune_layerwise({key: weights[key]}, {key: masks[key]}, rate)
                np.testing.assert_array_equal(new[key], plain[key])


def test_dict_block_none_value_is_unstructured():
    weights = {"a": np.array([[1.0], [3.0]]), "b": np.array([[1.0], [3.0]])}
    masks = {"a": np.ones((2, 1)), "b": np.ones((2, 1))}
    new = prune_layerwise(weights, masks, 0.5, block={"a": (1, 2), "b": None})
    np.testing.assert_array_equal(new["a"].ravel(), [0, 0])
    np.testing.assert_array_equal(new["b"].ravel(), [0, 1])


# --- Blocks: returned values and errors ---------------------------------------


@FAST
@given(block_tensor_dicts(), _rates, _seeds, st.sampled_from(pruning.STRATEGIES))
def test_block_returns_float32_masks_without_mutating(data, rate, seed, strategy):
    weights, masks, block = data
    weights_before = copy.deepcopy(weights)
    masks_before = copy.deepcopy(masks)
    new = prune(weights, masks, rate, strategy=strategy, seed=seed, block=block)
    assert list(new) == list(masks)
    for key in masks:
        assert isinstance(new[key], np.ndarray)
        assert new[key].dtype == np.float32
        assert new[key].shape == masks[key].shape
        assert not np.shares_memory(new[key], masks[key])
        np.testing.assert_array_equal(weights[key], weights_before[key])
        np.testing.assert_array_equal(masks[key], masks_before[key])


@pytest.mark.parametrize("strategy", pruning.STRATEGIES)
@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_block_pruned_weight_with_huge_or_infinite_value_stays_pruned(strategy, rate):
    weights = {"t": np.array([[np.inf], [1e30], [1.0], [2.0], [3.0], [4.0]])}
    masks = {"t": np.array([[0.0], [0.0], [1.0], [1.0], [1.0], [1.0]])}
    new = prune(weights, masks, rate, strategy=strategy, seed=0, block=(1, 2))["t"]
    assert new[0, 0] == 0.0 and new[1, 0] == 0.0
    expected = expected_one_tensor_count(strategy, rate, 2)
    assert len(pruned_blocks(masks["t"], new, (1, 2))) == expected


@pytest.mark.parametrize("strategy", ["layerwise", "global"])
def test_block_non_finite_surviving_weights(strategy):
    weights = {"dense/kernel": np.array([[1.0], [np.nan], [3.0], [4.0]])}
    masks = {"dense/kernel": np.ones((4, 1))}
    with pytest.raises(ValueError, match="'dense/kernel' hold NaN or infinite"):
        prune(weights, masks, 0.5, strategy=strategy, block=(1, 2))


_BAD_BLOCKS = [
    ((0, 4), r"\(0, 4\)"),
    ((1, -4), r"\(1, -4\)"),
    ((1,), r"\(1,\)"),
    ((1, 4, 1), r"\(1, 4, 1\)"),
    ((1.0, 4), r"\(1\.0, 4\)"),
    ((True, 4), r"\(True, 4\)"),
    (4, "4"),
    ("1x4", "'1x4'"),
]


@pytest.mark.parametrize("strategy", pruning.STRATEGIES)
@pytest.mark.parametrize(("bad", "shown"), _BAD_BLOCKS)
def test_bad_block(strategy, bad, shown):
    weights, masks = _one_tensor()
    with pytest.raises(
        ValueError,
        match=rf"`block` to be a tuple of 2 positive ints.*Received: {shown}",
    ):
        prune(weights, masks, 0.5, strategy=strategy, seed=0, block=bad)
    # Checked even when there is nothing to prune.
    with pytest.raises(ValueError, match="tuple of 2 positive ints"):
        prune({}, {}, 0.5, strategy=strategy, seed=0, block=bad)


@pytest.mark.parametrize("strategy", pruning.STRATEGIES)
def test_bad_block_in_dict_names_the_tensor_and_its_shape(strategy):
    weights = {"dense/kernel": np.zeros((784, 300)), "out/kernel": np.zeros((300, 10))}
    masks = {key: np.ones(w.shape) for key, w in weights.items()}
    with pytest.raises(
        ValueError,
        match=r"`block` for 'out/kernel' \(shape \(300, 10\)\).*Received: \(1, 0\)",
    ):
        prune(
            weights,
            masks,
            0.5,
            strategy=strategy,
            seed=0,
            block={"dense/kernel": (1, 4), "out/kernel": (1, 0)},
        )


@pytest.mark.parametrize("strategy", pruning.STRATEGIES)
def test_dict_block_naming_unknown_tensors(strategy):
    weights, masks = _one_tensor()
    with pytest.raises(ValueError, match=r"`block` names tensors.*\['conv/kernel'\]"):
        prune(
            weights,
            masks,
            0.5,
            strategy=strategy,
            seed=0,
            block={"conv/kernel": (1, 4)},
        )


def test_numpy_int_and_list_blocks_are_accepted():
    weights = {"t": np.array([[1.0], [2.0], [3.0], [4.0]])}
    masks = {"t": np.ones((4, 1))}
    expected = prune_layerwise(weights, masks, 0.5, block=(1, 2))["t"]
    for block in [[1, 2], (np.int64(1), np.int32(2))]:
        new = prune_layerwise(weights, masks, 0.5, block=block)["t"]
        np.testing.assert_array_equal(new, expected)


# --- Structure checks ---------------------------------------------------------


@FAST
@given(tensor_pair(), _blocks)
def test_is_block_sparse_and_surviving_blocks_match_the_reference(pair, block):
    _, mask = pair
    flat = mask.ravel()
    uniform = all(
        flat[ix].all() or not flat[ix].any()
        for ix in blocks_of(mask.shape, block).values()
    )
    assert pruning.is_block_sparse(mask, block) is uniform
    assert pruning.surviving_blocks(mask, block) == len(live_blocks(mask, block))
    # Nonzero entries count as kept: a stripped kernel works as well.
    assert pruning.is_block_sparse(mask * 3.5, block) is uniform


@pytest.mark.parametrize("bad", [(0, 4), (1,), None])
def test_structure_checks_reject_bad_blocks(bad):
    with pytest.raises(ValueError, match="tuple of 2 positive ints"):
        pruning.is_block_sparse(np.ones((4, 4)), bad)
    with pytest.raises(ValueError, match="tuple of 2 positive ints"):
        pruning.surviving_blocks(np.ones((4, 4)), bad)


# --- N:M ----------------------------------------------------------------------

_n_m = st.integers(1, 4).flatmap(lambda n: st.tuples(st.just(n), st.integers(n, 6)))


@FAST
@given(tensor_dicts(), _n_m)
def test_n_m_keeps_the_largest_n_survivors_of_every_group(data, n_m):
    weights, masks = data
    n, m = n_m
    new = prune_n_m(weights, masks, n=n, m=m)
    assert list(new) == list(masks)
    for key, mask in masks.items():
        magnitudes = abs_flat(weights[key])
        old, got = mask.ravel(), new[key].ravel()
        assert np.all(got <= old)
        for ix in blocks_of(mask.shape, (1, m)).values():
            alive = [i for i in ix if old[i] == 1]
            # Smallest |w| first, ties by flat index: the first k - n go.
            ranked = sorted(alive, key=lambda i: (magnitudes[i], i))
            expected_kept = sorted(ranked[max(len(alive) - n, 0) :])
            assert np.flatnonzero(got[ix]).tolist() == [
                ix.tolist().index(i) for i in expected_kept
            ]
        assert pruning.is_n_m_sparse(new[key], n, m)
        assert new[key].dtype == np.float32 and new[key].shape == mask.shape


@FAST
@given(tensor_dicts(), _n_m, _rates, st.sampled_from(pruning.STRATEGIES))
def test_n_m_is_monotone_idempotent_and_survives_later_pruning(
    data, n_m, rate, strategy
):
    weights, masks = data
    n, m = n_m
    once = prune_n_m(weights, masks, n=n, m=m)
    twice = prune_n_m(weights, once, n=n, m=m)
    later = prune(weights, once, rate, strategy=strategy, seed=0)
    for key, mask in masks.items():
        assert np.all(once[key] <= mask)
        np.testing.assert_array_equal(twice[key], once[key])
        assert pruning.is_n_m_sparse(later[key], n, m)


def test_n_m_example_along_the_input_axis():
    # Dense kernel (in=8, out=2): groups of 4 consecutive inputs per column.
    kernel = np.array(
        [[1.0, 8.0], [4.0, 7.0], [3.0, 6.0], [2.0, 5.0]]
        + [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    )
    masks = {"k": np.ones((8, 2))}
    masks["k"][1, 0] = 0.0  # the 4 is already pruned
    new = prune_n_m({"k": kernel}, masks, n=2, m=4)["k"]
    np.testing.assert_array_equal(
        new,
        [[0, 1], [0, 1], [1, 0], [1, 0]] + [[0, 0], [0, 0], [1, 1], [1, 1]],
    )
    assert pruning.is_n_m_sparse(new, 2, 4)
    assert not pruning.is_n_m_sparse(new, 1, 4)


def test_n_m_ragged_group_keeps_at_most_n():
    # 6 inputs, 2:4: a group of 4 and a group of 2 (which keeps both).
    weights = {"k": np.arange(1.0, 7.0).reshape(6, 1)}
    new = prune_n_m(weights, {"k": np.ones((6, 1))}, n=2, m=4)["k"]
    np.testing.assert_array_equal(new.ravel(), [0, 0, 1, 1, 1, 1])
    new = prune_n_m(weights, {"k": np.ones((6, 1))}, n=1, m=4)["k"]
    np.testing.assert_array_equal(new.ravel(), [0, 0, 0, 1, 0, 1])


def test_n_m_with_n_equal_to_m_changes_nothing():
    weights, masks = _one_tensor()
    new = prune_n_m(weights, masks, n=3, m=3)
    np.testing.assert_array_equal(new["dense/kernel"], masks["dense/kernel"])


@FAST
@given(tensor_pair(), _n_m)
def test_is_n_m_sparse_matches_the_reference(pair, n_m):
    _, mask = pair
    n, m = n_m
    flat = mask.ravel()
    valid = all(
        np.count_nonzero(flat[ix]) <= n for ix in blocks_of(mask.shape, (1, m)).values()
    )
    assert pruning.is_n_m_sparse(mask, n, m) is valid


@pytest.mark.parametrize(
    ("n", "m"), [(0, 4), (3, 2), (-1, 4), (2.0, 4), (True, 4), ("2", 4), (2, None)]
)
def test_bad_n_m(n, m):
    weights, masks = _one_tensor()
    shown = rf"Received: n={n!r}, m={m!r}".replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=rf"1 <= n <= m.*{shown}"):
        prune_n_m(weights, masks, n=n, m=m)
    with pytest.raises(ValueError, match="1 <= n <= m"):
        pruning.is_n_m_sparse(np.ones(4), n, m)


def test_n_m_errors_shared_with_the_other_functions():
    weights = {"dense/kernel": np.array([1.0, np.inf, 3.0])}
    with pytest.raises(ValueError, match="'dense/kernel' hold NaN or infinite"):
        prune_n_m(weights, {"dense/kernel": np.ones(3)})
    # A pruned weight is not ranked, so its value does not matter.
    new = prune_n_m(weights, {"dense/kernel": np.array([1.0, 0.0, 1.0])}, n=1, m=3)
    np.testing.assert_array_equal(new["dense/kernel"], [0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(3, 2\)"):
        prune_n_m({"t": np.zeros((2, 3))}, {"t": np.ones((3, 2))})
    assert prune_n_m({}, {}) == {}
