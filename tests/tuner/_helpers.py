"""Shared pieces of the tuner tests: a tiny model, its search, and fit logs."""

import keras
import numpy as np
import pytest

import keras_lth as lth

TARGET = 0.5
BATCH = 128  # 1,297 training digits: 11 steps per epoch.

#: keras-tuner 1.4's oracle lock, and the Gaussian process of its Bayesian
#: oracle on a two-trial history.
FILTERS = pytest.mark.filterwarnings(
    "ignore:currentThread:DeprecationWarning",
    "ignore:getName:DeprecationWarning",
    "ignore::sklearn.exceptions.ConvergenceWarning",
)

#: One entry per `fit` of any trial, written by `FitLog` (keras-tuner
#: deep-copies the callbacks of `search`, so the log lives at module level).
FITS = []


class FitLog(keras.callbacks.Callback):
    """Records each fit: its epochs, and the model as the fit starts."""

    def on_train_begin(self, logs=None):
        masks = lth.get_masks(self.model)
        FITS.append(
            {
                "epochs": self.params["epochs"],
                "dense": all(bool(np.all(m == 1)) for m in masks.values()),
                "checksum": float(
                    sum(np.sum(np.abs(w)) for w in self.model.get_weights())
                ),
                "epochs_run": [],
            }
        )

    def on_epoch_begin(self, epoch, logs=None):
        FITS[-1]["epochs_run"].append(epoch)


def build(hp):
    """The user's model: unmasked, compiled, with its own hyperparameters."""
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(hp.Choice("units", [24, 32]), activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Choice("learning_rate", [3e-3, 1e-2])),
        loss=model_loss(),
        metrics=["accuracy"],
    )
    return model


def model_loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def search(tuner, data, **kwargs):
    kwargs.setdefault("batch_size", BATCH)
    if kwargs["batch_size"] is None:
        del kwargs["batch_size"]  # The user's HyperModel.fit chooses it.
    tuner.search(
        *data.train,
        validation_data=data.validation,
        verbose=0,
        callbacks=[FitLog()] + kwargs.pop("callbacks", []),
        **kwargs,
    )


def expected_score(rows, target=TARGET):
    """The documented objective, written out again."""
    eligible = [
        r["best"]["val_accuracy"] for r in rows if r["weights_remaining"] <= target
    ]
    return max(eligible)
