"""The keras-tuner tuner of a ticket search, and the ticket it found."""

from __future__ import annotations

import os
import warnings

import keras
import keras_tuner

from keras_lth._checks import check_choice
from keras_lth.masking import get_masks
from keras_lth.masking import sparsity
from keras_lth.tuner.hypermodel import TicketHyperModel

__all__ = ["TUNERS", "best_ticket", "make_tuner"]

#: The kinds of tuner `make_tuner` builds.
TUNERS = ("random", "bayesian", "hyperband")


def make_tuner(
    kind: str,
    hypermodel: TicketHyperModel,
    *,
    max_trials: int | None = 10,
    directory: str | os.PathLike | None = None,
    project_name: str = "keras_lth_tune",
    overwrite: bool = False,
    seed: int | None = None,
    **kwargs,
) -> keras_tuner.Tuner:
    """Builds a keras-tuner tuner for `hypermodel`, with its objective.

    Under Hyperband the budget is the training length of each round:
    `tuner/epochs` is the trial's `epochs_per_round`, and every trial runs
    all the rounds it needs (a ticket above the target cannot be scored). A
    promoted configuration runs IMP again from the same initialization with
    longer rounds, since a round's mask depends on how long the rounds before
    it trained.

    Args:
        kind: `"random"` (`keras_tuner.RandomSearch`), `"bayesian"`
            (`BayesianOptimization`) or `"hyperband"` (`Hyperband`, with
            `max_epochs` defaulting to `hypermodel.max_epochs_per_round` and
            `factor` to 3).
        hypermodel: The `TicketHyperModel`.
        max_trials: Most trials; also caps Hyperband's (it sets the oracle's
            `max_trials`). None for no cap (Hyperband only). Defaults to 10.
        directory: The tuner's folder. Defaults to the current one.
        project_name: Sub-folder for this search. Defaults to
            `"keras_lth_tune"`.
        overwrite: If False (the default), a search already in
            `directory/project_name` is resumed: finished trials are kept.
        seed: The oracle's seed. Defaults to None.
        **kwargs: Other arguments of the tuner class.

    Returns:
        The tuner. Call `search(x, y, validation_data=..., batch_size=...)`.

    Example:

    ```python
    tuner = make_tuner("hyperband", hypermodel, max_trials=20, directory="runs")
    ```
    """
    if not isinstance(hypermodel, TicketHyperModel):
        raise TypeError(
            "Expected `hypermodel` to be a TicketHyperModel. Received: "
            f"hypermodel={hypermodel!r} of type {type(hypermodel).__name__}"
        )
    check_choice(kind, "kind", TUNERS)
    common = dict(
        objective=hypermodel.objective,
        seed=seed,
        directory=None if directory is None else os.fspath(directory),
        project_name=project_name,
        overwrite=overwrite,
        **kwargs,
    )
    if kind == "random":
        return keras_tuner.RandomSearch(hypermodel, max_trials=max_trials, **common)
    if kind == "bayesian":
        return keras_tuner.BayesianOptimization(
            hypermodel, max_trials=max_trials, **common
        )
    common.setdefault("max_epochs", hypermodel.max_epochs_per_round)
    common.setdefault("factor", 3)
    tuner = keras_tuner.Hyperband(hypermodel, **common)
    tuner.oracle.max_trials = max_trials
    return tuner


def best_ticket(tuner: keras_tuner.Tuner) -> keras.Model:
    """The best trial's ticket: a masked model, as the search left it.

    The final ticket of the best completed trial (the last round's trained
    model, masks included), rebuilt and loaded from the trial's checkpoint
    with `tuner.load_model`; `tuner.get_best_models()` gives the same model
    but may return a failed trial's when none completed. Ready for
    `keras_lth.strip_masks`, `keras_lth.save_model` or export.

    Raises:
        ValueError: If no trial has completed, or the checkpoint's sparsity
            is not that of the trial's final ticket.

    Example:

    ```python
    ticket = best_ticket(tuner)
    plain = keras_lth.strip_masks(ticket)
    ```
    """
    trials = tuner.oracle.get_best_trials(1)
    if not trials or trials[0].status != "COMPLETED":
        raise ValueError(
            f"No trial of the search in '{tuner.project_dir}' has completed, "
            "so there is no ticket to return. Failed trials say why in "
            "`trial.message` (`tuner.results_summary()`)."
        )
    trial = trials[0]
    with warnings.catch_warnings():
        # keras-tuner saves weights with the optimizer's state and loads them
        # into a model whose optimizer is not built yet.
        warnings.filterwarnings(
            "ignore", message="Skipping variable loading for optimizer"
        )
        model = tuner.load_model(trial)
    if not get_masks(model):
        raise ValueError(
            f"The model of trial {trial.trial_id} has no masks: it was not "
            "built by a TicketHyperModel."
        )
    optimizer = model.optimizer
    if optimizer is not None and not optimizer.built:
        # A fresh state, so that the model saves and loads without warnings.
        optimizer.build(model.trainable_variables)
    expected = trial.metrics.get_last_value("final_weights_remaining")
    remaining = 1.0 - sparsity(model)["global"]
    if expected is not None and abs(remaining - expected) > 1e-6:
        raise ValueError(
            f"The checkpoint of trial {trial.trial_id} keeps {remaining:.4%} of "
            f"its weights, but the trial's final ticket kept {expected:.4%}: "
            "it is not the final ticket."
        )
    return model
