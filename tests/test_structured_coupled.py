"""Property tests for coupled unit pruning: `prune_units(coupled=...)`.

Plain numpy arrays, no model. Units of different tensors that share a label
are one unit of a group: live while any of them is, ranked by the L2 norm of
all their kept weights, pruned together, and a group loses exactly
`floor(rate * live + 0.5)` of its units.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_lth.callbacks import imp_step
from keras_lth.pruning import target_count
from keras_lth.structured import count_live_units
from keras_lth.structured import prune_units

FAST = settings(max_examples=40, deadline=None)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Overrides the conftest fixture: these tests build no Keras objects."""
    yield


@st.composite
def coupled_tensors(draw):
    """`(weights, masks, labels)`: 1-3 Dense-like kernels `(in, out)` whose
    output units carry labels drawn from one small set."""
    count = draw(st.integers(1, 3))
    labels_in_use = draw(st.integers(1, 5))
    weights, masks, labels = {}, {}, {}
    for i in range(count):
        shape = (draw(st.integers(1, 4)), draw(st.integers(1, 5)))
        key = f"t{i}/kernel"
        weights[key] = draw(
            hnp.arrays(np.float32, shape, elements=st.sampled_from([0.0, 0.5, -1, 2]))
        )
        masks[key] = draw(
            hnp.arrays(np.float32, shape, elements=st.sampled_from([0.0, 1.0]))
        )
        labels[key] = draw(
            st.lists(
                st.integers(0, labels_in_use - 1),
                min_size=shape[1],
                max_size=shape[1],
            )
        )
    return weights, masks, labels


def _components(labels):
    """The sets of labels tied together through shared tensors."""
    parent = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for values in labels.values():
        for x in values:
            parent[find(x)] = find(values[0])
    groups = {}
    for x in {x for values in labels.values() for x in values}:
        groups.setdefault(find(x), set()).add(x)
    return list(groups.values())


def _label_facts(weights, masks, labels):
    """`({label: live}, {label: joint norm})`."""
    live, squares = {}, {}
    for key, values in labels.items():
        kept = np.where(masks[key] == 1, weights[key].astype(np.float64), 0.0)
        for unit, x in enumerate(values):
            live[x] = live.get(x, False) or bool(masks[key][:, unit].any())
            squares[x] = squares.get(x, 0.0) + float((kept[:, unit] ** 2).sum())
    return live, {x: np.sqrt(s) for x, s in squares.items()}


@FAST
@given(coupled_tensors(), st.floats(0.0, 1.0))
def test_coupled_units_go_together_smallest_joint_norm_first(tensors, rate):
    weights, masks, labels = tensors
    new = prune_units(weights, masks, rate, coupled=labels)
    live, norms = _label_facts(weights, masks, labels)
    dropped = set()
    for key, values in labels.items():
        for unit, x in enumerate(values):
            before, after = masks[key][:, unit], new[key][:, unit]
            if after.any():
                np.testing.assert_array_equal(after, before)  # Kept whole.
            elif before.any():
                dropped.add(x)
    for key, values in labels.items():  # A dropped label is gone everywhere.
        for unit, x in enumerate(values):
            if x in dropped:
                assert not new[key][:, unit].any()
    for group in _components(labels):
        alive = [x for x in group if live[x]]
        lost = [x for x in alive if x in dropped]
        assert len(lost) == int(np.floor(rate * len(alive) + 0.5))
        kept = [x for x in alive if x not in dropped]
        if lost and kept:
            assert max(norms[x] for x in lost) <= min(norms[x] for x in kept)


@FAST
@given(coupled_tensors(), st.floats(0.0, 1.0))
def test_labels_no_tensor_shares_change_nothing(tensors, rate):
    weights, masks, labels = tensors
    own = {key: [(key, unit) for unit in range(len(v))] for key, v in labels.items()}
    coupled = prune_units(weights, masks, rate, coupled=own)
    alone = prune_units(weights, masks, rate)
    for key in masks:
        np.testing.assert_array_equal(coupled[key], alone[key])


def test_a_group_is_ranked_by_its_joint_norm():
    # Unit 0 is the largest in "a" but the smallest jointly.
    weights = {
        "a/kernel": np.array([[3.0, 2.0, 1.0]]),
        "b/kernel": np.array([[0.0, 3.0, 3.0]]),
    }
    masks = {key: np.ones((1, 3)) for key in weights}
    coupled = {"a/kernel": [0, 1, 2], "b/kernel": [0, 1, 2]}
    new = prune_units(weights, masks, 1 / 3, coupled=coupled)
    for key in weights:
        np.testing.assert_array_equal(new[key], [[0.0, 1.0, 1.0]])
    assert prune_units(weights, masks, 1 / 3)["a/kernel"].tolist() == [[1, 1, 0]]


def test_imp_counts_stay_exact_for_tied_tensors():
    rng = np.random.default_rng(0)
    keys = ("stem/kernel", "block_1/kernel", "block_2/kernel", "free/kernel")
    masks = {key: np.ones((6, 20), np.float32) for key in keys}
    coupled = {key: list(range(20)) for key in keys[:3]}
    initial = imp_step.count_kept(masks, units=dict.fromkeys(keys, (1,)))
    rates = dict.fromkeys(keys, 0.3)
    for step in range(1, 5):
        weights = {key: rng.normal(size=(6, 20)) for key in keys}
        masks = imp_step.next_masks(
            weights,
            masks,
            initial_kept=initial,
            rates=rates,
            step=step,
            strategy="layerwise",
            prune_rate=0.3,
            seed=0,
            units=dict.fromkeys(keys, (1,)),
            coupled=coupled,
        )
        for key in keys:
            assert count_live_units(masks[key], (1,)) == target_count(20, 0.3, step)
        tied = [masks[key].any(axis=0) for key in keys[:3]]
        np.testing.assert_array_equal(tied[0], tied[1])
        np.testing.assert_array_equal(tied[0], tied[2])


def test_a_group_prunes_at_the_mean_rate_of_its_tensors():
    weights = {key: np.arange(1.0, 11.0)[None] for key in ("a/kernel", "b/kernel")}
    masks = {key: np.ones((1, 10)) for key in weights}
    coupled = {key: list(range(10)) for key in weights}
    new = prune_units(
        weights, masks, {"a/kernel": 0.2, "b/kernel": 0.4}, coupled=coupled
    )
    for key in weights:
        assert count_live_units(new[key], (1,)) == 7  # 10 - floor(0.3 * 10 + .5)


def test_global_counts_a_group_once():
    weights = {
        "a/kernel": np.array([[1.0, 5.0]]),
        "b/kernel": np.array([[1.0, 5.0]]),
        "c/kernel": np.array([[2.0, 3.0]]),
    }
    masks = {key: np.ones((1, 2)) for key in weights}
    coupled = {"a/kernel": [0, 1], "b/kernel": [0, 1]}
    # Four units: the group's two and c's two. Half of them go: the group's
    # unit 0 (root mean square 1.0) and c's unit 0 (2.0).
    new = prune_units(weights, masks, 0.5, strategy="global", coupled=coupled)
    assert {key: mask.tolist() for key, mask in new.items()} == {
        "a/kernel": [[0.0, 1.0]],
        "b/kernel": [[0.0, 1.0]],
        "c/kernel": [[0.0, 1.0]],
    }


def test_refill_counts_the_survivors_of_every_tied_tensor():
    # Unit 0 has the larger norm in "a", but unit 1 keeps more weights of
    # the unstructured ranking across both tensors.
    weights = {
        "a/kernel": np.array([[9.0, 1.0], [0.0, 1.0]]),
        "b/kernel": np.array([[0.1, 2.0], [0.1, 2.0]]),
    }
    masks = {key: np.ones((2, 2)) for key in weights}
    coupled = {key: [0, 1] for key in weights}
    new = prune_units(weights, masks, 0.5, coupled=coupled, refill=True)
    for key in weights:
        assert new[key].tolist() == [[0.0, 1.0], [0.0, 1.0]]
    plain = prune_units(weights, masks, 0.5, coupled=coupled)
    assert plain["a/kernel"].tolist() == [[1.0, 0.0], [1.0, 0.0]]


@pytest.mark.parametrize(
    "coupled, error, match",
    [
        ([0, 1], TypeError, "Expected `coupled` to be a dict"),
        ({"nope/kernel": [0, 1]}, ValueError, "names tensors that have no mask"),
        ({"a/kernel": [0]}, ValueError, "one label per unit of 'a/kernel'"),
    ],
)
def test_bad_labels_are_refused(coupled, error, match):
    weights = {"a/kernel": np.ones((2, 2))}
    with pytest.raises(error, match=match):
        prune_units(weights, {"a/kernel": np.ones((2, 2))}, 0.5, coupled=coupled)


def test_a_tensor_without_units_cannot_be_coupled():
    weights = {"emb/embeddings": np.ones((3, 2))}
    with pytest.raises(ValueError, match="has no output units"):
        prune_units(
            weights,
            {"emb/embeddings": np.ones((3, 2))},
            0.0,
            coupled={"emb/embeddings": [0, 1]},
        )
