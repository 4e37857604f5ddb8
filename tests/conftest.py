"""Shared helpers for the keras_lth tests."""

import gzip
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

TESTS = pathlib.Path(__file__).resolve().parent
# ../shared beside the project root, as in CI.
MNIST_DIR = TESTS.parents[1] / "shared" / "data" / "mnist"

#: The modules that test keras_lth's backend-agnostic core: masked layers,
#: `mask_model` / `strip_masks` / `sparsity`, saving, `LotteryTicket` (every
#: rewind mode, one-shot, early-bird, blocks, checkpoints, TensorBoard logs),
#: `GradualPruning` and pruning at init. They get the `core` marker, and
#: `.ci/run` runs `-m core` again under KERAS_BACKEND=jax and =torch (the
#: backend comes from the environment). The other modules test pure-Python
#: parts (`pruning`, `schedules`, `results`, `plotting`, `datasets`), the
#: TensorFlow-only parts (`tf.distribute`, LiteRT export), or start their own
#: processes with a backend of their choosing; they run once, on TensorFlow.
CORE_MODULES = (
    "layers/test_base.py",
    "layers/test_convolutional.py",
    "layers/test_dense.py",
    "layers/test_embedding.py",
    "layers/test_attention.py",
    "layers/test_recurrent.py",
    "test_masking.py",
    "test_conversion.py",
    "test_custom_loops.py",
    "test_rounds.py",
    "test_shrinking.py",
    "test_unit_biases.py",
    "test_coupling.py",
    "test_square_root_slots.py",
    "test_saving.py",
    "models/test_architectures.py",
    "models/test_learning_rate.py",
    "models/test_presets.py",
    "test_pruning_at_init.py",
    "test_controls.py",
    "test_branches.py",
    "datasets/test_batches.py",
    "callbacks/test_lottery_ticket.py",
    "callbacks/test_lottery_ticket_methods.py",
    "callbacks/test_lottery_ticket_checkpoint.py",
    "callbacks/test_lottery_ticket_test_data.py",
    "callbacks/test_lottery_ticket_structured.py",
    "callbacks/test_checkpoint.py",
    "callbacks/test_rewind_state.py",
    "callbacks/test_gradual_pruning.py",
    "callbacks/test_sparsity_summaries.py",
)


def pytest_collection_modifyitems(config, items):
    core = {TESTS / module for module in CORE_MODULES}
    for item in items:
        if pathlib.Path(item.fspath) in core:
            item.add_marker(pytest.mark.core)


@pytest.fixture
def digits():
    """scikit-learn's bundled 8x8 digits: (x_train, y_train, x_val, y_val).

    1,437 training and 360 validation images, flattened to 64 floats in
    [0, 1]. Always available offline.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("int32")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    return x[:1437], y[:1437], x[1437:], y[1437:]


@pytest.fixture
def mnist_test_set():
    """The official MNIST test set from ../shared/data/mnist, or a skip."""
    images = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    labels = MNIST_DIR / "t10k-labels-idx1-ubyte.gz"
    if not (images.exists() and labels.exists()):
        pytest.skip(f"MNIST test set not found in {MNIST_DIR}")
    with gzip.open(images) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(labels) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return x.astype("float32") / 255.0, y.astype("int32")


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Every test starts from a clean Keras session and fixed seeds."""
    # free_memory=False skips a gc.collect() that costs ~0.2 s per test.
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(1234)
    yield
    keras.mixed_precision.set_global_policy("float32")
