"""Tests for IMP in custom training loops (`keras_lth.masking`).

An optimizer that is not `model.optimizer` is passed to `set_masks`, which
zeroes its slots of pruned entries (Keras optimizers, and `torch.optim` ones
on the torch backend); snapshots from `get_weights` restore weights under
the current masks (`restore_weights`); `pruned_nonzero` checks the masks
held. The in-process tests run on the current backend (train with
`tests.backends.gradients` and `optimizer.apply`); the slow ones run
`examples/custom_loop.py` on each backend, each in its own process.
"""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

import keras_lth
from keras_lth.masking import get_prunable_weights
from keras_lth.masking import prunable_tensors
from keras_lth.masking import pruned_nonzero
from keras_lth.masking import restore_weights
from tests import backends

ROOT = pathlib.Path(__file__).resolve().parents[1]


def masked_mlp(name="mlp"):
    keras.utils.set_random_seed(0)
    plain = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(3, name="output"),
        ],
        name=name,
    )
    return keras_lth.mask_model(plain)


def data(seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(32, 8)).astype("float32"),
        rng.integers(0, 3, size=32).astype("int32"),
    )


def train(model, optimizer, steps, seed=0):
    """`steps` full-batch steps of a custom loop: gradients, `apply`."""
    x, y = data(seed)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables
    for _ in range(steps):
        grads = backends.gradients(
            lambda: loss_fn(y, model(x, training=True)), variables
        )
        optimizer.apply([ops.convert_to_tensor(g) for g in grads], variables)


def half_masks(model):
    weights = get_prunable_weights(model)
    return keras_lth.prune(weights, keras_lth.get_masks(model), 0.5)


def slots_of(optimizer, variable):
    prefix = variable.path.replace("/", "_") + "_"
    return [
        slot
        for slot in optimizer.variables
        if slot.path.split("/")[-1].startswith(prefix)
    ]


# --- set_masks(..., optimizer=...) with Keras optimizers ----------------------


@pytest.mark.parametrize("passed", [False, True], ids=["not_passed", "passed"])
def test_a_custom_loops_adam_regrows_pruned_weights_unless_passed(passed):
    # The masked gradient of a pruned weight is zero, but Adam's first
    # moment is not: it keeps moving the weight unless its slot is zeroed.
    model = masked_mlp()
    optimizer = keras.optimizers.Adam(1e-2)
    train(model, optimizer, steps=5)
    keras_lth.set_masks(
        model, half_masks(model), optimizer=optimizer if passed else None
    )
    assert pruned_nonzero(model) == {}
    train(model, optimizer, steps=3)
    moved = pruned_nonzero(model)
    if passed:
        assert moved == {}
    else:
        assert sum(moved.values()) > 0


def test_set_masks_zeroes_exactly_the_pruned_entries_of_every_slot():
    model = masked_mlp()
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(1)
    for variable in optimizer.variables:
        variable.assign(rng.uniform(1, 2, size=variable.shape).astype(variable.dtype))
    before = [ops.convert_to_numpy(v) for v in optimizer.variables]
    masks = half_masks(model)
    keras_lth.set_masks(model, masks, optimizer=optimizer)

    after = dict(zip([id(v) for v in optimizer.variables], before, strict=True))
    masked = set()
    for key, (layer, name) in prunable_tensors(model).items():
        slots = slots_of(optimizer, layer.prunable_variable(name))
        assert len(slots) == 2  # Adam's momentum and velocity.
        for slot in slots:
            value = ops.convert_to_numpy(slot)
            np.testing.assert_array_equal(value, after[id(slot)] * masks[key])
            masked.add(id(slot))
    for slot in optimizer.variables:  # Biases' slots, the iteration count.
        if id(slot) not in masked:
            np.testing.assert_array_equal(ops.convert_to_numpy(slot), after[id(slot)])


def test_set_masks_accepts_an_optimizer_not_built_yet():
    model = masked_mlp()
    optimizer = keras.optimizers.Adam()
    keras_lth.set_masks(model, half_masks(model), optimizer=optimizer)
    train(model, optimizer, steps=3)  # Builds it: zero slots.
    assert pruned_nonzero(model) == {}


def test_set_masks_refuses_an_optimizer_built_for_another_model():
    model, other = masked_mlp(), masked_mlp("other")
    optimizer = keras.optimizers.Adam(name="other_adam")
    optimizer.build(other.trainable_variables)
    with pytest.raises(ValueError, match=r"'other_adam' was built for other"):
        keras_lth.set_masks(model, half_masks(model), optimizer=optimizer)


class _UnnamedSlots(keras.optimizers.SGD):
    """Slots made with `add_variable`, not named after their variables."""

    def build(self, variables):
        super().build(variables)
        self.slots = [
            self.add_variable(tuple(v.shape), name=f"slot_{i}")
            for i, v in enumerate(variables)
        ]


def test_set_masks_refuses_slots_it_cannot_match():
    model = masked_mlp()
    optimizer = _UnnamedSlots()
    optimizer.build(model.trainable_variables)
    with pytest.raises(ValueError, match=r"slot_0.*cannot tell whose slots"):
        keras_lth.set_masks(model, half_masks(model), optimizer=optimizer)


@pytest.mark.parametrize("optimizer", [object(), "adam"])
def test_set_masks_refuses_what_is_not_an_optimizer(optimizer):
    model = masked_mlp()
    with pytest.raises(TypeError, match=r"keras\.optimizers\.Optimizer.*torch"):
        keras_lth.set_masks(model, {}, optimizer=optimizer)


# --- set_masks(..., optimizer=...) with torch.optim ---------------------------


@pytest.mark.skipif(backends.BACKEND != "torch", reason="torch.optim needs torch")
@pytest.mark.parametrize("passed", [False, True], ids=["not_passed", "passed"])
def test_a_torch_optimizers_state_is_zeroed_when_passed(passed):
    import torch

    model = masked_mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = data()

    def steps(count):
        for _ in range(count):
            optimizer.zero_grad()
            logits = model(x, training=True)
            labels = ops.convert_to_tensor(y, "int64")
            torch.nn.functional.cross_entropy(logits, labels).backward()
            optimizer.step()

    steps(5)
    masks = half_masks(model)
    keras_lth.set_masks(model, masks, optimizer=optimizer if passed else None)
    if passed:
        for key, (layer, name) in prunable_tensors(model).items():
            state = optimizer.state[layer.prunable_variable(name).value]
            moment = state["exp_avg"].detach().cpu().numpy()
            assert np.all(moment[masks[key] == 0] == 0)
            assert np.any(moment[masks[key] == 1] != 0)
    steps(3)
    assert (pruned_nonzero(model) == {}) is passed


@pytest.mark.skipif(backends.BACKEND != "torch", reason="torch.optim needs torch")
def test_set_masks_refuses_a_torch_optimizer_of_other_parameters():
    import torch

    model, other = masked_mlp(), masked_mlp("other")
    optimizer = torch.optim.Adam(other.parameters())
    with pytest.raises(ValueError, match=r"trains none of model 'mlp''s"):
        keras_lth.set_masks(model, {}, optimizer=optimizer)


# --- Rewinding with a snapshot of the weights ---------------------------------


def test_a_snapshot_restores_weights_under_the_current_masks():
    # The README's rewind by hand: before, the snapshot held the all-ones
    # masks of its time, and restoring it silently undid the pruning.
    model = masked_mlp()
    snapshot = model.get_weights()
    optimizer = keras.optimizers.Adam(1e-2)
    train(model, optimizer, steps=3)
    masks = half_masks(model)
    keras_lth.set_masks(model, masks, optimizer=optimizer)
    assert keras_lth.sparsity(model)["global"] == pytest.approx(0.5, abs=0.01)

    model.set_weights(snapshot)
    keras_lth.set_masks(model, {})
    assert keras_lth.sparsity(model)["global"] == pytest.approx(0.5, abs=0.01)
    for key, mask in keras_lth.get_masks(model).items():
        np.testing.assert_array_equal(mask, masks[key])


def test_restore_weights_rewinds_and_re_zeroes_pruned_entries():
    model = masked_mlp()
    snapshot = model.get_weights()
    initial = get_prunable_weights(model)
    optimizer = keras.optimizers.Adam(1e-2)
    train(model, optimizer, steps=3)
    masks = half_masks(model)
    keras_lth.set_masks(model, masks, optimizer=optimizer)

    restore_weights(model, snapshot, optimizer=optimizer)
    assert pruned_nonzero(model) == {}
    rewound = get_prunable_weights(model)
    for key, mask in masks.items():
        np.testing.assert_array_equal(rewound[key], initial[key] * mask)
    train(model, optimizer, steps=3)
    assert pruned_nonzero(model) == {}


def test_pruned_nonzero_counts_pruned_weights_written_off_zero():
    model = masked_mlp()
    masks = half_masks(model)
    keras_lth.set_masks(model, masks)
    assert pruned_nonzero(model) == {}
    kernel = model.get_layer("hidden").kernel
    kernel.assign(np.ones(kernel.shape, "float32"))
    pruned = int(np.sum(masks["hidden/kernel"] == 0))
    assert pruned_nonzero(model) == {"hidden/kernel": pruned}
    keras_lth.set_masks(model, {})
    assert pruned_nonzero(model) == {}


# --- examples/custom_loop.py on each backend ----------------------------------


def run_example(*args):
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "custom_loop.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)},
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["--backend", "tensorflow"],
        ["--backend", "jax"],
        ["--backend", "torch"],
        ["--backend", "tensorflow", "--rewind", "none"],
    ],
    ids=["tensorflow", "jax", "torch", "tensorflow-rewind-none"],
)
def test_custom_loop_example(args):
    out = run_example(*args, "--epochs", "2")
    lines = out.splitlines()
    assert lines[0] == f"IMP by hand on {args[1]}: 2 rounds of 2 epochs"
    rows = [line.split() for line in lines[2:4]]
    assert [row[0] for row in rows] == ["0", "1"]
    # The output layer is pruned at half the rate, as `LotteryTicket` does:
    # (8192 * 0.5 + 1280 * 0.75) / 9472 = 53.38% remain.
    assert [row[1] for row in rows] == ["100.00%", "53.38%"]
    assert all(float(row[2]) > 0.5 for row in rows)  # Validation accuracy.
    assert [row[5] for row in rows] == ["0", "0"]  # Pruned weights off zero.
    assert lines[-1] == "The masks held: every pruned weight stayed exactly 0.0."
