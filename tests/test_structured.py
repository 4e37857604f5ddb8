"""Property tests for structured pruning, `keras_lth.structured`.

Plain numpy arrays, no model. A unit is a slice of a tensor along its unit
axes (the last axis by default); a tensor with `n` live units asked to lose a
fraction `r` of them loses exactly `floor(r * n + 0.5)` whole units, the
smallest L2 norms of their kept weights first, ties in order of unit index.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_lth import pruning
from keras_lth.callbacks import imp_step
from keras_lth.structured import count_live_units
from keras_lth.structured import default_unit_axes
from keras_lth.structured import is_unit_sparse
from keras_lth.structured import prune_units
from keras_lth.structured import resolve_unit_axes

FAST = settings(max_examples=40, deadline=None)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Overrides the conftest fixture: these tests build no Keras objects."""
    yield


_values = st.one_of(
    st.floats(-8, 8, width=32, allow_nan=False, allow_infinity=False),
    st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0]),  # Ties are common.
)
_rates = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def tensors(draw, min_dims=1, max_dims=4):
    """`(weights, mask, axes)`: a tensor, a mask, and its unit axes."""
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, max_side=5))
    weights = draw(hnp.arrays(np.float32, shape, elements=_values))
    ndim = len(shape)
    axes = tuple(sorted(draw(st.sets(st.integers(0, ndim - 1), min_size=1))))
    aligned = draw(st.booleans())
    if aligned:  # Whole units alive or pruned, as IMP with units leaves them.
        rows = _rows(np.ones(shape, np.float32), axes)
        live = draw(hnp.arrays(bool, rows.shape[0], elements=st.booleans()))
        mask = _unrows(rows * live[:, None], shape, axes)
    else:
        mask = draw(hnp.arrays(np.float32, shape, elements=st.sampled_from([0, 1])))
    return weights, mask.astype(np.float32), axes


def _rows(values, axes):
    """The reference view: one row per unit, units in C order over `axes`."""
    rest = [a for a in range(values.ndim) if a not in axes]
    moved = np.transpose(values, (*axes, *rest))
    return moved.reshape(math.prod(values.shape[a] for a in axes), -1)


def _unrows(rows, shape, axes):
    rest = [a for a in range(len(shape)) if a not in axes]
    order = (*axes, *rest)
    moved = rows.reshape([shape[a] for a in order])
    return np.transpose(moved, np.argsort(order))


def _norms(weights, mask, axes):
    kept = _rows(np.where(mask == 1, weights.astype(np.float64), 0.0), axes)
    return np.sqrt((kept**2).sum(axis=1))


def _live(mask, axes):
    return np.flatnonzero(_rows(mask, axes).any(axis=1))


@FAST
@given(tensors(), _rates)
def test_layerwise_prunes_exactly_the_smallest_whole_units(tensor, rate):
    weights, mask, axes = tensor
    key = "t/kernel"
    new = prune_units({key: weights}, {key: mask}, rate, unit_axes={key: axes})[key]
    live = _live(mask, axes)
    count = math.floor(rate * live.size + 0.5)
    assert count_live_units(new, axes) == live.size - count
    assert np.all(new <= mask)  # Monotone.
    old_rows, new_rows = _rows(mask, axes), _rows(new, axes)
    pruned = [u for u in live if not new_rows[u].any()]
    kept = [u for u in live if new_rows[u].any()]
    assert len(pruned) == count
    for u in kept:  # A kept unit keeps its mask as it was.
        np.testing.assert_array_equal(new_rows[u], old_rows[u])
    norms = _norms(weights, mask, axes)
    if pruned and kept:
        assert max(norms[pruned]) <= min(norms[kept]) * (1 + 1e-6)
    # Ties go in unit order: among equal norms, lower indices first.
    for u in pruned:
        assert not [k for k in kept if norms[k] == norms[u] and k < u]


def test_ties_are_pruned_in_unit_order():
    weights = {"d/kernel": np.ones((3, 6))}
    masks = {"d/kernel": np.ones((3, 6))}
    new = prune_units(weights, masks, 0.5)["d/kernel"]
    np.testing.assert_array_equal(new[0], [0, 0, 0, 1, 1, 1])
    assert np.all(new == new[0])


@FAST
@given(tensors(min_dims=2), st.floats(0.05, 0.6), st.integers(1, 6))
def test_cumulative_unit_targets_are_exact_over_rounds(tensor, rate, rounds):
    weights, mask, axes = tensor
    key = "t/kernel"
    units = {key: axes}
    masks = {key: mask}
    initial = imp_step.count_kept(masks, units=units)
    assert initial[key] == count_live_units(mask, axes)
    rng = np.random.default_rng(0)
    for step in range(1, rounds + 1):
        trained = {key: weights + rng.normal(size=weights.shape).astype(np.float32)}
        masks = imp_step.next_masks(
            trained,
            masks,
            initial_kept=initial,
            rates={key: rate},
            step=step,
            strategy="layerwise",
            prune_rate=rate,
            seed=0,
            units=units,
        )
        expected = pruning.target_count(initial[key], rate, step)
        assert count_live_units(masks[key], axes) == expected


def test_global_targets_count_the_units_of_all_tensors():
    rng = np.random.default_rng(1)
    shapes = {"a/kernel": (6, 12), "b/kernel": (3, 3, 4, 8), "out/kernel": (8, 3)}
    masks = {key: np.ones(shape, np.float32) for key, shape in shapes.items()}
    units = resolve_unit_axes(masks)
    initial = imp_step.count_kept(masks, units=units)
    rates = {"a/kernel": 0.2, "b/kernel": 0.2, "out/kernel": 0.0}
    for step in range(1, 6):
        weights = {k: rng.normal(size=s) for k, s in shapes.items()}
        masks.update(
            imp_step.next_masks(
                weights,
                masks,
                initial_kept=initial,
                rates=rates,
                step=step,
                strategy="global",
                prune_rate=0.2,
                seed=0,
                units=units,
            )
        )
        live = {k: count_live_units(m, units[k]) for k, m in masks.items()}
        assert live["a/kernel"] + live["b/kernel"] == pruning.target_count(
            20, 0.2, step
        )
        assert live["out/kernel"] == 3
        assert all(is_unit_sparse(m, units[k]) for k, m in masks.items())


@FAST
@given(st.lists(tensors(min_dims=2), min_size=1, max_size=3), _rates)
def test_global_and_lamp_prune_an_exact_total(tensors_, rate):
    weights = {f"t{i}/kernel": t[0] for i, t in enumerate(tensors_)}
    masks = {f"t{i}/kernel": t[1] for i, t in enumerate(tensors_)}
    axes = {f"t{i}/kernel": t[2] for i, t in enumerate(tensors_)}
    live = {k: count_live_units(m, axes[k]) for k, m in masks.items()}
    total = sum(live.values())
    new = prune_units(weights, masks, rate, strategy="global", unit_axes=axes)
    after = sum(count_live_units(m, axes[k]) for k, m in new.items())
    assert after == total - math.floor(rate * total + 0.5)
    lamp = prune_units(weights, masks, rate, strategy="lamp", unit_axes=axes)
    for key, mask in lamp.items():  # LAMP keeps one unit of every tensor.
        assert count_live_units(mask, axes[key]) >= min(live[key], 1)
        assert np.all(mask <= masks[key])


def test_global_ranks_units_by_their_root_mean_square():
    # Units of 4 weights of 1.0 and of 1 weight of 1.5: norms 2.0 and 1.5,
    # but root mean squares 1.0 and 1.5, so the wide units go first.
    weights = {"wide/kernel": np.ones((4, 2)), "narrow/kernel": np.full((1, 2), 1.5)}
    masks = {key: np.ones(w.shape) for key, w in weights.items()}
    new = prune_units(weights, masks, 0.5, strategy="global")
    assert count_live_units(new["wide/kernel"], (1,)) == 0
    assert count_live_units(new["narrow/kernel"], (1,)) == 2


@FAST
@given(tensors(), _rates, st.integers(0, 2**31))
def test_random_prunes_as_many_units_and_repeats_with_a_seed(tensor, rate, seed):
    weights, mask, axes = tensor
    key = "t/kernel"
    args = ({key: weights}, {key: mask}, rate)
    kwargs = {"unit_axes": {key: axes}, "seed": seed}
    new = prune_units(*args, strategy="random", **kwargs)[key]
    live = _live(mask, axes).size
    assert count_live_units(new, axes) == live - math.floor(rate * live + 0.5)
    again = prune_units(*args, strategy="random", **kwargs)[key]
    np.testing.assert_array_equal(new, again)


@FAST
@given(tensors(min_dims=2), _rates)
def test_refill_keeps_whole_units_holding_the_weights_requested(tensor, rate):
    weights, _, axes = tensor
    key = "t/kernel"
    mask = np.ones(weights.shape, np.float32)
    new = prune_units(
        {key: weights}, {key: mask}, rate, unit_axes={key: axes}, refill=True
    )[key]
    n = _rows(mask, axes).shape[0]
    size = mask.size // n
    kept = n - math.floor(rate * n + 0.5)
    assert count_live_units(new, axes) == kept
    assert is_unit_sparse(new, axes)
    assert new.sum() == kept * size  # The weights of unstructured IMP's step.


def test_refill_can_choose_other_units_than_their_norms():
    # Column 0: one huge weight (norm 10). Column 1: three weights of 2
    # (norm 3.46). Unstructured pruning to 3 weights keeps 10, 2, 2 (ties
    # in flat order), so column 1 has more survivors and is refilled.
    weights = np.array([[10.0, 2.0], [0.0, 2.0], [0.0, 2.0]], dtype=np.float32)
    masks = {"d/kernel": np.ones((3, 2))}
    by_norm = prune_units({"d/kernel": weights}, masks, 0.5)["d/kernel"]
    refilled = prune_units({"d/kernel": weights}, masks, 0.5, refill=True)
    np.testing.assert_array_equal(by_norm[:, 0], [1, 1, 1])
    np.testing.assert_array_equal(by_norm[:, 1], [0, 0, 0])
    np.testing.assert_array_equal(refilled["d/kernel"][:, 1], [1, 1, 1])
    np.testing.assert_array_equal(refilled["d/kernel"][:, 0], [0, 0, 0])


def test_default_unit_axes():
    assert default_unit_axes("dense/kernel", (64, 10)) == (1,)
    assert default_unit_axes("conv/kernel", (3, 3, 8, 16)) == (3,)
    assert default_unit_axes("dw/depthwise_kernel", (3, 3, 8, 2)) == (2, 3)
    assert default_unit_axes("mha/value/kernel", (32, 4, 8)) == (1,)
    assert default_unit_axes("key/kernel", (32, 4, 8)) == (1,)
    assert default_unit_axes("mha/attention_output/kernel", (4, 8, 32)) is None
    assert default_unit_axes("embedding/embeddings", (100, 8)) is None
    assert default_unit_axes("scalar/kernel", ()) is None


def test_tensors_without_units_are_refused_unless_left_alone():
    weights = {"emb/embeddings": np.ones((5, 4)), "d/kernel": np.ones((4, 2))}
    masks = {key: np.ones(w.shape) for key, w in weights.items()}
    with pytest.raises(ValueError, match="'emb/embeddings'.*no output units"):
        prune_units(weights, masks, 0.5)
    new = prune_units(weights, masks, {"d/kernel": 0.5})
    np.testing.assert_array_equal(new["emb/embeddings"], masks["emb/embeddings"])
    assert count_live_units(new["d/kernel"], (1,)) == 1
    # Or it gets units of its own: rows of the table, say.
    new = prune_units(weights, masks, 0.4, unit_axes={"emb/embeddings": 0})
    assert count_live_units(new["emb/embeddings"], (0,)) == 3


@pytest.mark.parametrize(
    ("unit_axes", "error", "match"),
    [
        ({"d/kernel": 2}, ValueError, "unit axes of 'd/kernel'"),
        ({"d/kernel": (0, -2)}, ValueError, "distinct axes"),
        ({"d/kernel": ()}, ValueError, "unit axes"),
        ({"other/kernel": 0}, ValueError, "no mask"),
        ([0], TypeError, "dict"),
    ],
)
def test_bad_unit_axes_are_refused(unit_axes, error, match):
    with pytest.raises(error, match=match):
        resolve_unit_axes({"d/kernel": np.ones((3, 4))}, unit_axes)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"strategy": "global", "refill": True}, ValueError, "layerwise"),
        ({"refill": 1}, TypeError, "bool"),
        ({"strategy": "unknown"}, ValueError, "strategy"),
        ({"min_density": 0.5}, ValueError, "min_density"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        prune_units(
            {"d/kernel": np.ones((2, 2))}, {"d/kernel": np.ones((2, 2))}, 0.5, **kwargs
        )
