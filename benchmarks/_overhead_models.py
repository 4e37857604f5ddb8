"""The models `overhead.py` times, and the pieces that time them.

Each `ModelSpec` builds a plain Keras model from `keras`; `overhead.py`'s
module docstring describes the architectures. `training_data`,
`compile_model` and `prune_half` prepare the plain model and its masked
copies alike; `stopwatch_class` times each `fit`, and `torch_sqrt_note` what
Adam's square root of zeros costs on PyTorch (the note under its table).
Nothing here imports Keras until it is called, so that `overhead.py` can
choose the backend first.
"""

import dataclasses
import statistics
import time

__all__ = [
    "MODELS",
    "OPTIMIZERS",
    "ModelSpec",
    "compile_model",
    "prune_half",
    "stopwatch_class",
    "torch_sqrt_note",
    "training_data",
]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One architecture to time: how to build it and how long to time it."""

    name: str
    input_shape: tuple
    learning_rate: float
    steps: int  # Steps per timed `fit` by default.
    quick_steps: int  # Steps per timed `fit` with `--quick`.
    build: object  # `keras -> keras.Model`, the plain model.
    batch_size: int = 60
    vocabulary: int = 0  # Token ids in [0, vocabulary) as inputs; 0: floats.


def _build_lenet(keras):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((784,)),
            layers.Dense(300, activation="relu"),
            layers.Dense(100, activation="relu"),
            layers.Dense(10),
        ],
        name="lenet_300_100",
    )


def _build_conv4(keras):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, padding="same", activation="relu"),
            layers.Conv2D(128, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(256, activation="relu"),
            layers.Dense(256, activation="relu"),
            layers.Dense(10),
        ],
        name="conv4",
    )


def _build_transformer(keras):
    layers = keras.layers
    tokens = keras.Input((64,), dtype="int32")
    x = layers.Embedding(1000, 128)(tokens)
    attention = layers.MultiHeadAttention(num_heads=4, key_dim=32)(x, x)
    x = layers.LayerNormalization()(layers.Add()([x, attention]))
    feed_forward = layers.Dense(256, activation="relu")(x)
    feed_forward = layers.Dense(128)(feed_forward)
    x = layers.LayerNormalization()(layers.Add()([x, feed_forward]))
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, layers.Dense(10)(x), name="transformer_block")


def _build_lstm(keras):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((64,), dtype="int32"),
            layers.Embedding(1000, 64),
            layers.Bidirectional(layers.LSTM(64, return_sequences=True)),
            layers.GRU(64),
            layers.Dense(10),
        ],
        name="bilstm_gru",
    )


MODELS = {
    "lenet": ModelSpec("lenet", (784,), 1.2e-3, 100, 5, _build_lenet),
    "conv4": ModelSpec("conv4", (16, 16, 3), 3e-4, 5, 1, _build_conv4),
    "transformer": ModelSpec(
        "transformer", (64,), 1e-3, 10, 1, _build_transformer, 32, 1000
    ),
    "lstm": ModelSpec("lstm", (64,), 1e-3, 4, 1, _build_lstm, 32, 1000),
}

#: Optimizers `--optimizer` offers: name -> (what the notes call it, factory
#: `(keras, learning_rate) -> optimizer`). Each model's learning rate is used
#: for either; it does not change the time of a step.
OPTIMIZERS = {
    "adam": ("Adam", lambda keras, rate: keras.optimizers.Adam(rate)),
    "sgd": (
        "SGD with momentum 0.9",
        lambda keras, rate: keras.optimizers.SGD(rate, momentum=0.9),
    ),
}


def training_data(spec, steps, seed):
    """Random inputs and labels for `steps` batches, as `fit` arguments."""
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (steps * spec.batch_size, *spec.input_shape)
    if spec.vocabulary:
        x = rng.integers(0, spec.vocabulary, size=shape).astype("int32")
    else:
        x = rng.random(shape, dtype=np.float32)
    y = rng.integers(0, 10, size=steps * spec.batch_size).astype("int32")
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensor_slices((x, y))
        dataset = dataset.batch(spec.batch_size, drop_remainder=True)
        return {"x": dataset.cache().repeat(), "steps_per_epoch": steps}
    return {"x": x, "y": y, "batch_size": spec.batch_size}


def prune_half(model):
    """Prunes 50% of every prunable tensor of `model` by magnitude.

    Returns:
        The model's global sparsity afterwards.
    """
    import keras_lth

    weights = keras_lth.get_prunable_weights(model)
    masks = keras_lth.get_masks(model)
    keras_lth.set_masks(model, keras_lth.prune(weights, masks, 0.5))
    return keras_lth.sparsity(model)["global"]


def compile_model(model, learning_rate, optimizer):
    """Compiles `model` with `OPTIMIZERS[optimizer]`, as every variant is."""
    import keras

    _, make_optimizer = OPTIMIZERS[optimizer]
    model.compile(
        optimizer=make_optimizer(keras, learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def stopwatch_class(keras):
    """Returns a callback that times the training loop of each `fit`.

    It brackets `on_train_begin` to `on_train_end`, so `fit`'s set-up (data
    adapter, iterator, callback list) stays out, and runs the callbacks it
    wraps (the `LotteryTicket`) itself, timing their per-epoch hooks apart.
    Their `on_train_batch_begin` runs within the step and is timed with it.
    It defines no batch *end* hook, so Keras dispatches batches as it would
    without it.
    """

    class Stopwatch(keras.callbacks.Callback):
        def __init__(self, wrapped=()):
            super().__init__()
            self.wrapped = list(wrapped)
            default = keras.callbacks.Callback.on_train_batch_end
            for callback in self.wrapped:
                hook = getattr(callback.on_train_batch_end, "__func__", None)
                if hook is not default:
                    raise ValueError(
                        "The stopwatch forwards per-epoch hooks only. Expected "
                        "callbacks without `on_train_batch_end`. Received: "
                        f"{callback!r}"
                    )

        def set_model(self, model):
            super().set_model(model)
            for callback in self.wrapped:
                callback.set_model(model)

        def set_params(self, params):
            super().set_params(params)
            for callback in self.wrapped:
                callback.set_params(params)

        def _run_wrapped(self, hook, *args):
            wall, cpu = time.perf_counter(), time.process_time()
            for callback in self.wrapped:
                getattr(callback, hook)(*args)
            self.hook_wall += time.perf_counter() - wall
            self.hook_cpu += time.process_time() - cpu

        def on_train_begin(self, logs=None):
            self.hook_wall = self.hook_cpu = 0.0
            self.start_wall, self.start_cpu = time.perf_counter(), time.process_time()
            self._run_wrapped("on_train_begin", logs)

        def on_epoch_begin(self, epoch, logs=None):
            self._run_wrapped("on_epoch_begin", epoch, logs)

        def on_train_batch_begin(self, batch, logs=None):
            for callback in self.wrapped:  # Part of the step, timed with it.
                callback.on_train_batch_begin(batch, logs)

        def on_epoch_end(self, epoch, logs=None):
            self._run_wrapped("on_epoch_end", epoch, logs)

        def on_train_end(self, logs=None):
            self._run_wrapped("on_train_end", logs)
            self.wall = time.perf_counter() - self.start_wall
            self.cpu = time.process_time() - self.start_cpu

    return Stopwatch


def torch_sqrt_note(size=266_200, repeats=200):
    """Times PyTorch's `sqrt` on exact zeros against ones, as a note.

    Adam's second moment is exactly zero wherever the gradient always was:
    at every pruned weight. Keras's Adam on PyTorch takes its square root on
    every step, and PyTorch's CPU `sqrt` is much slower on exact zeros, which
    is why `LotteryTicket` fills those entries with 1.0 on PyTorch. `size`
    defaults to LeNet-300-100's kernel entries.
    """
    import torch

    values = {"zeros": torch.zeros(size), "ones": torch.ones(size)}
    times = {name: [] for name in values}
    for _ in range(repeats):
        for name, tensor in values.items():
            start = time.perf_counter()
            torch.sqrt(tensor)
            times[name].append(time.perf_counter() - start)
    zeros, ones = (statistics.median(times[name]) * 1e6 for name in values)
    return (
        f"PyTorch sqrt of {size:,} float32 (median of {repeats}): zeros "
        f"{zeros:.0f} us, ones {ones:.0f} us ({zeros / ones:.1f}x). Adam takes "
        "it of its second moment on every step, which is exactly zero at "
        "pruned weights unless LotteryTicket fills them (it does on PyTorch)."
    )
