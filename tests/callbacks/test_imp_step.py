"""IMP's pruning step on plain arrays: exact cumulative counts, no model."""

from types import SimpleNamespace

import numpy as np
import pytest

from keras_lth import pruning
from keras_lth.callbacks import imp_step


def _tensors(seed=0):
    rng = np.random.default_rng(seed)
    weights = {"a/kernel": rng.normal(size=(8, 5)), "b/kernel": rng.normal(size=12)}
    masks = {k: np.ones(w.shape, np.float32) for k, w in weights.items()}
    return weights, masks


def _steps(weights, masks, steps, **kwargs):
    """Prunes `steps` times in a row, as IMP does; yields each step's masks."""
    kept = imp_step.count_kept(masks, kwargs.get("block"))
    for step in range(1, steps + 1):
        new = imp_step.next_masks(
            weights, masks, initial_kept=kept, step=step, seed=0, **kwargs
        )
        masks = {**masks, **new}
        yield step, masks


@pytest.mark.parametrize("strategy", ["layerwise", "random"])
def test_each_tensor_reaches_its_cumulative_target(strategy):
    weights, masks = _tensors()
    rates = {"a/kernel": 0.2, "b/kernel": 0.5}
    previous = masks
    for step, now in _steps(
        weights, masks, 4, rates=rates, strategy=strategy, prune_rate=0.2
    ):
        for key, mask in now.items():
            assert mask.sum() == pruning.target_count(mask.size, rates[key], step)
            assert np.all(mask <= previous[key])  # Monotone.
        previous = now


def test_global_counts_all_pruned_tensors_together_and_skips_rate_zero():
    weights, masks = _tensors()
    rates = {"a/kernel": 0.2, "b/kernel": 0.0}
    for step, now in _steps(
        weights, masks, 3, rates=rates, strategy="global", prune_rate=0.2
    ):
        assert now["a/kernel"].sum() == pruning.target_count(40, 0.2, step)
        assert now["b/kernel"].all()  # Rate 0: never pruned.


def test_blocks_are_counted_in_blocks():
    weights = {"a/kernel": np.random.default_rng(1).normal(size=(8, 4))}
    masks = {"a/kernel": np.ones((8, 4), np.float32)}
    assert imp_step.count_kept(masks, (1, 4)) == {"a/kernel": 8}  # 2 x 4 blocks.
    for step, now in _steps(
        weights,
        masks,
        3,
        rates={"a/kernel": 0.3},
        strategy="layerwise",
        prune_rate=0.3,
        block=(1, 4),
    ):
        mask = now["a/kernel"]
        assert pruning.is_block_sparse(mask, (1, 4))
        assert pruning.surviving_blocks(mask, (1, 4)) == pruning.target_count(
            8, 0.3, step
        )


def test_masks_settled():
    a = np.array([True, True, False, False])
    b = np.array([True, False, False, False])
    assert imp_step.masks_settled([a, a, a], 0.1)
    assert not imp_step.masks_settled([b, a], 0.1)  # 1 of 4 differs: 0.25.
    assert imp_step.masks_settled([b, a], 0.3)
    flat = imp_step.flat_mask({"x": np.ones((2, 2)), "y": np.zeros(3)})
    assert flat.tolist() == [True] * 4 + [False] * 3


def test_layer_rates_and_blocks_are_checked():
    assert imp_step.check_layer_rates(None, "layerwise") == {}
    assert imp_step.check_layer_rates({"d": 0}, "global") == {"d": 0.0}
    with pytest.raises(ValueError, match=r"layer 'd'.*\[0, 1\).*1\.5"):
        imp_step.check_layer_rates({"d": 1.5}, "layerwise")
    with pytest.raises(TypeError, match="layer 'd'.*'0.1'"):
        imp_step.check_layer_rates({"d": "0.1"}, "layerwise")
    with pytest.raises(TypeError, match="keys"):
        imp_step.check_layer_rates({3: 0.1}, "layerwise")
    with pytest.raises(ValueError, match="global"):
        imp_step.check_layer_rates({"d": 0.3}, "global")
    assert imp_step.check_block_option([1, 4]) == (1, 4)
    assert imp_step.check_block_option({"a/kernel": [1, 16], "b/kernel": None}) == {
        "a/kernel": (1, 16),
        "b/kernel": None,
    }
    with pytest.raises(ValueError, match=r"`block` for 'a/kernel'.*\(4,\)"):
        imp_step.check_block_option({"a/kernel": (4,)})


# --- Across tensors: "lamp" and min_density -------------------------------------


def test_lamp_counts_all_pruned_tensors_together_and_keeps_one_each():
    weights, masks = _tensors()
    weights["b/kernel"] = weights["b/kernel"] * 1e-3  # A small-scale tensor.
    rates = {"a/kernel": 0.2, "b/kernel": 0.2}
    previous = masks
    for step, now in _steps(
        weights, masks, 12, rates=rates, strategy="lamp", prune_rate=0.2
    ):
        total = sum(int(mask.sum()) for mask in now.values())
        assert total == max(pruning.target_count(52, 0.2, step), 2)
        assert all(mask.sum() >= 1 for mask in now.values())
        assert all(np.all(now[k] <= previous[k]) for k in now)  # Monotone.
        previous = now
    # Global pruning by magnitude empties the small tensor first.
    by_global = dict(
        _steps(weights, masks, 3, rates=rates, strategy="global", prune_rate=0.2)
    )
    assert by_global[3]["b/kernel"].sum() == 0
    assert by_global[3]["a/kernel"].sum() == pruning.target_count(52, 0.2, 3)


def test_lamp_skips_rate_zero():
    weights, masks = _tensors()
    rates = {"a/kernel": 0.2, "b/kernel": 0.0}
    for step, now in _steps(
        weights, masks, 3, rates=rates, strategy="lamp", prune_rate=0.2
    ):
        assert now["a/kernel"].sum() == pruning.target_count(40, 0.2, step)
        assert now["b/kernel"].all()


@pytest.mark.parametrize("strategy", pruning.GLOBAL_STRATEGIES)
def test_min_density_floors_each_tensor_over_rounds(strategy):
    weights, masks = _tensors()
    weights["b/kernel"] = weights["b/kernel"] * 1e-3
    rates = {"a/kernel": 0.2, "b/kernel": 0.2}
    floors = {"a/kernel": 10, "b/kernel": 3}  # 0.25 of 40 and of 12.
    for step, now in _steps(
        weights,
        masks,
        10,
        rates=rates,
        strategy=strategy,
        prune_rate=0.2,
        min_density=0.25,
    ):
        for key, mask in now.items():
            assert mask.sum() >= floors[key]
        total = sum(int(mask.sum()) for mask in now.values())
        assert total == max(pruning.target_count(52, 0.2, step), 13)


def test_lamp_refuses_layer_rates_and_gives_the_output_layer_no_half_rate():
    assert imp_step.check_layer_rates({"d": 0}, "lamp") == {"d": 0.0}
    with pytest.raises(ValueError, match=r"strategy='lamp'.*\{'d': 0.3\}"):
        imp_step.check_layer_rates({"d": 0.3}, "lamp")
    tensors = {f"{n}/kernel": (SimpleNamespace(name=n), None) for n in ("h", "o")}
    for strategy, output_rate in (("layerwise", 0.1), ("global", 0.2), ("lamp", 0.2)):
        rates = imp_step.tensor_rates(
            tensors, prune_rate=0.2, layer_rates={}, strategy=strategy
        )
        assert rates == {"h/kernel": 0.2, "o/kernel": output_rate}


def test_default_seed_is_keras_global_seed_when_set(monkeypatch):
    import keras
    from keras.src.utils import rng_utils

    keras.utils.set_random_seed(77)
    assert imp_step.default_seed() == 77
    keras.utils.set_random_seed(3)
    assert imp_step.default_seed() == 3
    monkeypatch.setattr(rng_utils, "get_random_seed", lambda: None)  # None set.
    seeds = {imp_step.default_seed() for _ in range(5)}
    assert len(seeds) > 1 and all(0 <= s < 2**31 for s in seeds)
