"""Tests of `keras_lth.pruning_at_init`: SNIP, SynFlow, random, exact counts."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from keras import ops

import keras_lth as lth
from keras_lth._saliency import snip_scores
from keras_lth.masking import get_masks
from keras_lth.masking import get_prunable_weights
from keras_lth.pruning_at_init import prune_to_sparsity
from keras_lth.pruning_at_init import random_init_mask
from keras_lth.pruning_at_init import snip
from keras_lth.pruning_at_init import synflow
from tests import backends

FAST = settings(max_examples=50, deadline=None)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def pruned(mask):
    return int(np.sum(np.asarray(mask) == 0))


def count(sparsity, size):
    return int(np.floor(sparsity * size + 0.5))


def mlp(widths=(16,), batch_norm=False, inputs=8, outputs=3, activation=None):
    layers = [keras.Input((inputs,))]
    for i, width in enumerate(widths):
        layers.append(keras.layers.Dense(width, activation="relu", name=f"h{i}"))
        if batch_norm:
            layers.append(keras.layers.BatchNormalization(name=f"bn{i}"))
    layers.append(keras.layers.Dense(outputs, activation=activation, name="out"))
    return lth.mask_model(keras.Sequential(layers))


def batch(n=32, inputs=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n, inputs)).astype("float32"),
        rng.integers(0, classes, n).astype("int32"),
    )


def all_values(model):
    return [ops.convert_to_numpy(v).copy() for v in model.variables]


def assert_unchanged(model, before):
    after = all_values(model)
    assert len(after) == len(before)
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)


# --- JAX, in its own process (this one runs TensorFlow or PyTorch) ------------

# TensorFlow is blocked in this process: the JAX path must not need it (and
# Keras would import it just to check it is there, which takes seconds).
_JAX_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.modules["tensorflow"] = None
    import keras, numpy as np
    import keras_lth
    from keras_lth import pruning_at_init
    from keras_lth._saliency import snip_scores
    from keras_lth.masking import prunable_tensors

    assert keras.backend.backend() == "jax"
    folder = sys.argv[1]
    model = keras.models.load_model(os.path.join(folder, "model.keras"))
    data = np.load(os.path.join(folder, "batch.npz"))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    scores = snip_scores(
        model, prunable_tensors(model), data["x"], data["y"], loss)
    snip = pruning_at_init.snip(model, data["x"], data["y"], loss, sparsity=0.8)
    synflow = pruning_at_init.synflow(model, sparsity=0.9, iterations=10)
    arrays = {}
    for name, masks in (("scores", scores), ("snip", snip), ("synflow", synflow)):
        for key, value in masks.items():
            arrays[name + ":" + key] = value
    np.savez(os.path.join(folder, "jax.npz"), **arrays)
    print("DONE")
    """
)


@pytest.fixture(scope="module")
def jax_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("snip_jax")


@pytest.fixture(scope="module", autouse=True)
def jax_process(request, jax_folder):
    """Starts the JAX run before this module's first test, so it overlaps them.

    Only when the test that reads it is selected.
    """
    wanted = backends.BACKEND != "jax" and any(
        item.name == "test_this_backend_and_jax_agree" for item in request.session.items
    )
    if not wanted:
        yield None
        return
    keras.utils.set_random_seed(7)
    model = mlp(widths=(16, 12))
    model.save(os.path.join(jax_folder, "model.keras"))
    x, y = batch(seed=7)
    np.savez(os.path.join(jax_folder, "batch.npz"), x=x, y=y)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    process = subprocess.Popen(
        [sys.executable, "-c", _JAX_SCRIPT, str(jax_folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate()


# --- prune_to_sparsity: the absolute-sparsity conversion ----------------------


@st.composite
def weights_and_masks(draw):
    keys = draw(
        st.lists(
            st.sampled_from(["a/kernel", "b/kernel", "c/kernel"]),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    weights, masks = {}, {}
    for key in keys:
        shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, max_side=7))
        weights[key] = draw(
            hnp.arrays(np.float32, shape, elements=st.floats(-10, 10, width=32))
        )
        masks[key] = draw(
            hnp.arrays(np.float32, shape, elements=st.sampled_from([0.0, 1.0]))
        )
    return weights, masks


@FAST
@given(weights_and_masks(), st.floats(0, 1), st.integers(0, 2**31))
def test_prune_to_sparsity_reaches_exact_counts(data, sparsity, seed):
    weights, masks = data
    for strategy in ("layerwise", "random"):
        new = prune_to_sparsity(weights, masks, sparsity, strategy=strategy, seed=seed)
        for key, mask in masks.items():
            # Exactly the target, unless more were pruned already.
            assert pruned(new[key]) == max(count(sparsity, mask.size), pruned(mask))
            assert np.all(new[key] <= mask)  # Monotone.
    new = prune_to_sparsity(weights, masks, sparsity, strategy="global")
    size = sum(m.size for m in masks.values())
    already = sum(pruned(m) for m in masks.values())
    assert sum(pruned(m) for m in new.values()) == max(count(sparsity, size), already)
    assert all(np.all(new[k] <= masks[k]) for k in masks)


@FAST
@given(
    weights_and_masks(),
    st.floats(0, 1),
    st.tuples(st.integers(1, 3), st.integers(1, 3)),
    st.sampled_from(["layerwise", "global", "random"]),
)
def test_prune_to_sparsity_counts_blocks_with_block(data, sparsity, block, strategy):
    weights, masks = data
    new = prune_to_sparsity(
        weights, masks, sparsity, strategy=strategy, seed=0, block=block
    )

    def blocks(mask):  # (all blocks, blocks pruned whole)
        whole = lth.pruning.surviving_blocks(np.ones(mask.shape), block)
        return whole, whole - lth.pruning.surviving_blocks(mask, block)

    if strategy == "global":
        size = sum(blocks(m)[0] for m in masks.values())
        already = sum(blocks(m)[1] for m in masks.values())
        after = sum(blocks(m)[1] for m in new.values())
        assert after == max(count(sparsity, size), already)
    else:
        for key, mask in masks.items():
            size, already = blocks(mask)
            assert blocks(new[key])[1] == max(count(sparsity, size), already)
    assert all(np.all(new[k] <= masks[k]) for k in masks)


def test_prune_to_sparsity_by_magnitude_and_per_tensor():
    weights = {"a": np.array([5.0, -1.0, 3.0, 0.5]), "b": np.array([2.0, 4.0])}
    masks = {"a": np.array([1, 1, 1, 0]), "b": np.ones(2)}
    # a: 0.75 of 4 -> 3 pruned (one already): drops |-1| then |3|.
    new = prune_to_sparsity(weights, masks, {"a": 0.75})
    assert new["a"].tolist() == [1, 0, 0, 0] and new["b"].tolist() == [1, 1]
    # Global: 0.5 of 6 -> 3 pruned: 0.5 (already), then |-1| and |2|.
    new = prune_to_sparsity(weights, masks, 0.5, strategy="global")
    assert new["a"].tolist() == [1, 0, 1, 0] and new["b"].tolist() == [0, 1]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(sparsity=1.5), ValueError, r"\[0, 1\]. Received: 1.5"),
        (dict(sparsity="half"), TypeError, "'half'"),
        (dict(sparsity={"nope": 0.5}), ValueError, r"\['nope'\]"),
        (dict(sparsity={"a": 0.5}, strategy="global"), TypeError, "one float"),
        (dict(sparsity=0.5, strategy="n:m"), ValueError, "strategy='n:m'"),
    ],
)
def test_prune_to_sparsity_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        prune_to_sparsity({"a": np.ones(4)}, {"a": np.ones(4)}, **kwargs)


# --- SNIP ---------------------------------------------------------------------


def toy_linear_model(kernel):
    model = lth.mask_model(
        keras.Sequential(
            [keras.Input((3,)), keras.layers.Dense(2, use_bias=False, name="d")]
        )
    )
    model.get_layer("d").kernel.assign(kernel)
    return model


def test_snip_saliency_matches_the_analytic_gradient():
    # y = x @ W, L = mean((y - t)^2): dL/dW = 2 / (B * 2) * x^T (x @ W - t).
    # Input 0 is always zero, so W[0] gets no gradient: SNIP prunes it first
    # although it holds the largest weights, which magnitude pruning keeps.
    kernel = np.array([[9.0, -8.0], [0.5, -0.2], [1.5, 0.1]], "float32")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    x[:, 0] = 0.0
    t = rng.normal(size=(16, 2)).astype("float32")
    model = toy_linear_model(kernel)
    grad = 2.0 / (16 * 2) * x.T @ (x @ kernel - t)
    expected = np.abs(grad * kernel)

    scores = snip_scores(model, lth.masking.prunable_tensors(model), x, t, "mse")
    np.testing.assert_allclose(scores["d/kernel"], expected, rtol=1e-5)
    assert np.all(expected[0] == 0) and np.all(expected[1:] > 0)

    masks = snip(model, x, t, keras.losses.MeanSquaredError(), sparsity=0.5)
    keep = np.zeros(6)
    keep[np.argsort(-expected.ravel(), kind="stable")[:3]] = 1
    np.testing.assert_array_equal(masks["d/kernel"].ravel(), keep)
    assert masks["d/kernel"][0].tolist() == [0.0, 0.0]  # The dead input's.
    by_magnitude = prune_to_sparsity(get_prunable_weights(model), get_masks(model), 0.5)
    assert by_magnitude["d/kernel"][0].tolist() == [1.0, 1.0]


def test_snip_is_global_exact_and_leaves_the_model_alone():
    model = mlp(widths=(16, 12), batch_norm=True)
    x, y = batch()
    before = all_values(model)
    masks = snip(model, x, y, LOSS, sparsity=0.8)
    assert_unchanged(model, before)
    total = sum(m.size for m in masks.values())
    assert sum(pruned(m) for m in masks.values()) == count(0.8, total)
    assert len({round(float(np.mean(m == 0)), 3) for m in masks.values()}) > 1
    # Apply: pruned weights become zeros, the model runs.
    lth.set_masks(model, masks)
    weights = get_prunable_weights(model)
    assert all(np.all(weights[k][m == 0] == 0) for k, m in masks.items())
    assert lth.sparsity(model)["global"] == pytest.approx(count(0.8, total) / total)


def test_snip_keeps_pruned_weights_pruned_and_accepts_a_loss_name():
    model = mlp()
    x, y = batch()
    first = random_init_mask(model, sparsity=0.5, seed=0)
    lth.set_masks(model, first)
    masks = snip(model, x, y, "sparse_categorical_crossentropy", sparsity=0.7)
    for key, mask in masks.items():
        assert np.all(mask[first[key] == 0] == 0)
    total = sum(m.size for m in masks.values())
    assert sum(pruned(m) for m in masks.values()) == count(0.7, total)


@pytest.mark.slow  # Starts a JAX process.
@backends.not_on("jax", "compares this backend with a JAX process")
def test_this_backend_and_jax_agree(jax_process, jax_folder):
    assert keras.backend.backend() in ("tensorflow", "torch")
    model = keras.models.load_model(os.path.join(jax_folder, "model.keras"))
    data = np.load(os.path.join(jax_folder, "batch.npz"))
    scores = snip_scores(
        model, lth.masking.prunable_tensors(model), data["x"], data["y"], LOSS
    )
    ours = {
        "scores": scores,
        "snip": snip(model, data["x"], data["y"], LOSS, sparsity=0.8),
        "synflow": synflow(model, sparsity=0.9, iterations=10),
    }
    # The threshold is not a near-tie, so equal masks are a fair demand.
    flat = np.sort(np.concatenate([s.ravel() for s in scores.values()]))
    k = count(0.8, flat.size)
    assert flat[k] - flat[k - 1] > 1e-4 * flat[k]

    out, err = jax_process.communicate(timeout=300)
    assert jax_process.returncode == 0 and "DONE" in out, err[-3000:]
    theirs = np.load(os.path.join(jax_folder, "jax.npz"))
    for name, masks in ours.items():
        for key, value in masks.items():
            other = theirs[f"{name}:{key}"]
            if name == "scores":
                np.testing.assert_allclose(value, other, rtol=1e-4, atol=1e-9)
            else:
                np.testing.assert_array_equal(value, other, err_msg=f"{name} {key}")


# --- SynFlow ------------------------------------------------------------------


def test_synflow_exact_sparsity_and_model_unchanged():
    model = mlp(widths=(16, 12), batch_norm=True)
    # Non-trivial BatchNorm statistics and a mask already in place.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.linspace(-1, 1, layer.moving_mean.shape[0]))
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 2.0))
    first = random_init_mask(model, sparsity=0.3, seed=1)
    lth.set_masks(model, first)
    before = all_values(model)
    masks = synflow(model, sparsity=0.9, iterations=8)
    assert_unchanged(model, before)  # Weights, signs, masks, BN statistics.
    total = sum(m.size for m in masks.values())
    assert sum(pruned(m) for m in masks.values()) == count(0.9, total)
    for key, mask in masks.items():
        assert np.all(mask[first[key] == 0] == 0)


def test_synflow_avoids_layer_collapse():
    # A wide first layer with small initial weights: global magnitude pruning
    # empties it at this sparsity, cutting every path through the network.
    model = mlp(widths=(256, 64, 16, 16), inputs=64, outputs=10)
    sparsity = 0.99
    magnitude = prune_to_sparsity(
        get_prunable_weights(model), get_masks(model), sparsity, strategy="global"
    )
    assert min(int(np.sum(m)) for m in magnitude.values()) == 0  # Collapse.
    masks = synflow(model, sparsity=sparsity, iterations=20)
    kept = {key: int(np.sum(m)) for key, m in masks.items()}
    assert min(kept.values()) > 0, kept
    total = sum(m.size for m in masks.values())
    assert sum(pruned(m) for m in masks.values()) == count(sparsity, total)
    # Every layer still passes signal: some input reaches every output layer
    # unit through kept connections (a path exists end to end).
    reach = np.ones(64, bool)
    for key in masks:
        reach = (reach.astype(float) @ masks[key]) > 0
    assert reach.any()


def test_synflow_is_data_free_and_ignores_signs():
    model = mlp(widths=(16, 12))
    masks = synflow(model, sparsity=0.8, iterations=5)
    # Same masks with every weight's sign flipped: only |w| matters...
    for variable in model.trainable_variables:
        variable.assign(-ops.convert_to_numpy(variable))
    flipped = synflow(model, sparsity=0.8, iterations=5, input_shape=(8,))
    # ...and with an explicit input shape instead of the model's.
    for key in masks:
        np.testing.assert_array_equal(masks[key], flipped[key])


def test_synflow_refuses_a_softmax_output():
    model = mlp(activation="softmax")
    with pytest.raises(ValueError, match="softmax"):
        synflow(model, sparsity=0.5, iterations=2)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(sparsity=1.0), ValueError, r"\[0, 1\)"),
        (dict(sparsity=0.5, iterations=0), ValueError, "iterations` >= 1"),
        (dict(sparsity=0.5, iterations=2.0), TypeError, "iterations=2.0"),
        (dict(sparsity=0.5, input_shape=(None,)), ValueError, r"\(None,\)"),
    ],
)
def test_synflow_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        synflow(mlp(), **kwargs)


# --- Random, and what every method refuses ------------------------------------


def test_random_init_mask_exact_per_tensor_and_seeded():
    model = mlp(widths=(16, 12))
    masks = random_init_mask(model, sparsity=0.75, seed=3)
    for mask in masks.values():
        assert pruned(mask) == count(0.75, mask.size)
    again = random_init_mask(model, sparsity=0.75, seed=3)
    other = random_init_mask(model, sparsity=0.75, seed=4)
    assert all(np.array_equal(masks[k], again[k]) for k in masks)
    assert not all(np.array_equal(masks[k], other[k]) for k in masks)


@pytest.mark.parametrize(
    "method",
    [
        lambda model: snip(model, *batch(), LOSS, sparsity=0.5),
        lambda model: synflow(model, sparsity=0.5, iterations=1),
        lambda model: random_init_mask(model, sparsity=0.5),
    ],
    ids=["snip", "synflow", "random"],
)
def test_every_method_needs_a_built_masked_model(method):
    plain = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="no prunable layers"):
        method(plain)
    unbuilt = lth.layers.MaskedDense(3)
    with pytest.raises(TypeError, match="expects a `keras.Model`"):
        method(unbuilt)
    with pytest.raises(ValueError, match="not built"):
        method(keras.Sequential([lth.layers.MaskedDense(3)]))


def test_snip_rejects_a_bad_loss_and_sparsity():
    model = mlp()
    with pytest.raises(TypeError, match="Received: 3"):
        snip(model, *batch(), 3, sparsity=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\). Received: sparsity=1.0"):
        snip(model, *batch(), LOSS, sparsity=1.0)
