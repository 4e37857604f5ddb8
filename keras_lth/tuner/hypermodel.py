"""Search for the best lottery ticket with keras-tuner.

`TicketHyperModel` is a `keras_tuner.HyperModel` whose every trial runs a
whole `keras_lth.LotteryTicket` search (iterative magnitude pruning, IMP) in
one `model.fit`, and scores the trial by the tickets it found. It works with
the stock `keras_tuner.RandomSearch`, `BayesianOptimization` and `Hyperband`;
`make_tuner` builds one with the right objective.

```python
import keras_tuner
import keras_lth.tuner

def build(hp):  # The user's model, compiled; may use its own hyperparameters.
    model = keras.Sequential([keras.Input((64,)),
                              keras.layers.Dense(hp.Choice("units", [100, 300]),
                                                 activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(hp.Choice("lr", [1e-3, 3e-3])),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model   # made prunable with keras_lth.mask_model if it isn't

hypermodel = keras_lth.tuner.TicketHyperModel(
    build, target_weights_remaining=0.2, prune_rate=[0.2, 0.4],
    rewind=["init", "epoch:1"], epochs_per_round=2, log_dir="logs/tune")
tuner = keras_lth.tuner.make_tuner("bayesian", hypermodel, max_trials=10,
                                   directory="runs", project_name="tune")
tuner.search(x, y, validation_data=(xv, yv), batch_size=60)
ticket = keras_lth.tuner.best_ticket(tuner)   # masked, the final ticket
plain = keras_lth.strip_masks(ticket)
```

**The objective.** Each trial runs IMP and gets `LotteryTicket.results`, one
row per round. Its score is the best value of `metric` (default
`"val_accuracy"`) at the round's early-stopping point (`row["best"][metric]`,
the epoch where the ticket's `monitor` was best), among the rows with
`row["weights_remaining"] <= target_weights_remaining`: the max for a metric
to maximize, the min for one to minimize. The oracle sees it as
`"ticket_<metric>"` (`hypermodel.objective`, direction `"max"` for
accuracy-like names). A trial none of whose rounds reaches the target is
marked `"FAILED"` (`keras_tuner.errors.FailedTrialError`) with a message
saying how far it got. `score_results` computes the score from saved rows.

**Rounds.** With `rounds=None` (the default) each trial runs just enough
rounds to reach the target: the fewest pruning steps `s` whose exact
per-tensor counts (the output layer at half the rate, `layer_rates`, the
global threshold) leave at most the target, plus round 0:
`rounds_for_target`. For a uniform rate this is
`ceil(log(target) / log(1 - prune_rate)) + 1`; the half-rate output layer can
add one. So only the last round is at or below the target, and the trial's
score is that of its final ticket. A fixed or searched `rounds` that falls
short makes the trial fail.

**Hyperband.** Its budget is the training length of each round:
`tuner/epochs` is the trial's `epochs_per_round`, and `max_epochs` the most
epochs per round (`make_tuner` sets it from `epochs_per_round`). Every
trial, short or long, runs all the rounds it needs to reach the target,
since a ticket above it cannot be scored: a trial costs `rounds *
tuner/epochs` epochs. When Hyperband promotes a configuration
(`tuner/trial_id` set), the trial runs IMP again from the same fresh
initialization with longer rounds instead of continuing the earlier trial
(`tuner/initial_epoch` is ignored, and the weights Hyperband loads from the
earlier trial are replaced by the freshly built ones): the mask of every round
depends on how long the rounds before it trained, so a run with longer rounds
shares nothing with a shorter one.

**Files.** keras-tuner keeps each trial in
`<directory>/<project_name>/trial_<id>/`: `trial.json` and
`checkpoint.weights.h5`, which holds the final ticket (the last round's trained
masked model, masks included) because the `ticket_*` objective is never in the
epoch logs, so keras-tuner saves the weights at every epoch end and the last
save wins. `TicketHyperModel` adds `lottery_ticket/results.json` and
`results.csv` there (every round's row), `lottery_ticket/hyperparameters.json`
(the trial's values) and, while the trial runs, the IMP checkpoint
`lottery_ticket/lottery_ticket_state.npz` (`resume_trials`; it holds the model,
the optimizer and the rewind point, so about four times the model's size,
rewritten at every epoch end). With
`log_dir`, each trial writes TensorBoard summaries
(`keras_lth.SparsitySummaries`: sparsity, weight histograms, each round's
metrics and the ticket plot) to `<log_dir>/<trial_id>/`. With
`executions_per_trial > 1`, each execution has its own `execution<k>/`
sub-folder in both places.

**Resuming.** A tuner created again on the same directory with
`overwrite=False` (keras-tuner's default) reloads its oracle and runs only the
trials still to do. A trial that was interrupted is run again, and with
`resume_trials=True` (the default) its `LotteryTicket` restores the
checkpoint and continues after the last finished epoch. keras-tuner writes its
tuner file when a trial ends, so a search stopped during its very first trial
starts afresh (and a checkpoint left with other hyperparameters is ignored,
with a warning).

**Callbacks.** keras-tuner deep-copies the `callbacks` given to `search` for
every trial; `LotteryTicket` and `SparsitySummaries` are deep-copyable, but
this hypermodel adds its own `LotteryTicket`, so do not pass one. Keep
`EarlyStopping` out of the search too: IMP decides when each round ends.

This module needs keras-tuner (`pip install "keras-lth[tuner]"`) and is not
imported by `import keras_lth`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import warnings
import weakref
from collections.abc import Callable
from collections.abc import Sequence

try:
    import keras_tuner
except ImportError as err:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "keras_lth.tuner needs keras-tuner, which is not installed. Install "
        'it with the `tuner` extra: pip install "keras-lth[tuner]" (or pip '
        'install "keras-tuner>=1.4").'
    ) from err

import keras
import numpy as np
from keras import ops

# The CLI hook lives in a module that imports keras-tuner only when run, so
# that `keras-lth --help` works without it; re-exported here.
from keras_lth._tuner_cli import add_cli_arguments
from keras_lth._tuner_cli import run_cli
from keras_lth.callbacks.lottery_ticket import CHECKPOINT_NAME
from keras_lth.callbacks.lottery_ticket import LotteryTicket
from keras_lth.callbacks.lottery_ticket import _target
from keras_lth.masking import get_masks
from keras_lth.masking import mask_model
from keras_lth.masking import prunable_tensors
from keras_lth.masking import sparsity
from keras_lth.pruning import STRATEGIES
from keras_lth.saving import atomic_write_text

__all__ = [
    "TicketHyperModel",
    "add_cli_arguments",
    "best_ticket",
    "load_trial_results",
    "make_tuner",
    "rounds_for_target",
    "run_cli",
    "score_results",
]

#: keras-tuner trial sub-folder where each trial's IMP files go.
TRIAL_SUBDIR = "lottery_ticket"

#: File beside the IMP checkpoint naming the trial's hyperparameter values.
HP_FILE = "hyperparameters.json"

#: Names of the hyperparameters `TicketHyperModel` registers.
HP_NAMES = ("prune_rate", "rewind", "strategy", "block", "rounds", "epochs_per_round")

# Arguments of `LotteryTicket` that `TicketHyperModel` sets itself.
_MANAGED = ("rounds", "epochs_per_round", "prune_rate", "strategy", "rewind")
_MANAGED += ("block", "checkpoint_dir", "log_dir")

_MAX_STEPS = 10_000
_TOLERANCE = 1e-12
_TUNERS = ("random", "bayesian", "hyperband")


class TicketHyperModel(keras_tuner.HyperModel):
    """A keras-tuner `HyperModel` whose trials each find a lottery ticket.

    `build(hp)` registers the IMP hyperparameters, calls the user's
    `build_model(hp)` (which may register its own: widths, learning rate...)
    and makes the model prunable with `keras_lth.mask_model` if it is not.
    `fit(hp, model, ...)` runs `keras_lth.LotteryTicket` over as many rounds as
    the target needs and returns the trial's score. See the module docstring
    for the objective, the Hyperband budget, the files and resuming.

    Each IMP argument takes one value (recorded as a `Fixed` hyperparameter,
    so every trial lists its full configuration) or a list of values to
    search (a `Choice`, in the given order).

    Args:
        build_model: `build_model(hp) -> keras.Model`, compiled with the
            metric the objective needs (`metrics=["accuracy"]` for
            `"val_accuracy"`); or a `keras_tuner.HyperModel`, whose `fit` then
            trains (it must pass `epochs` and `callbacks` on to `model.fit`).
            An uncompiled model is accepted when the tuner compiles it
            (keras-tuner's `optimizer=` and `loss=`).
        target_weights_remaining: The sparsity target, as the fraction of
            prunable weights left, in (0, 1]. Defaults to `0.2`.
        metric: The logged metric that scores a ticket. Defaults to
            `"val_accuracy"`, which needs validation data.
        direction: `"max"`, `"min"`, or None to infer it from `metric` (max
            for accuracy, AUC, precision and recall). Defaults to None.
        prune_rate: `LotteryTicket`'s `prune_rate`, or a list to search.
            Defaults to `0.2`.
        rewind: `LotteryTicket`'s `rewind` (`"init"`, an int step,
            `"epoch:K"`, `"reinit"`, `"lr"`, `"none"`), or a list to search.
            Defaults to `"init"`.
        strategy: `"layerwise"`, `"global"` or `"random"`, or a list.
            Defaults to `"layerwise"`.
        block: None, a `(rows, cols)` block for block-sparse tickets, or a
            list of these to search. Defaults to None.
        rounds: None to run just enough rounds to reach the target (see
            `rounds_for_target`), an int, or a list of ints to search.
            Defaults to None.
        max_rounds: With `rounds=None`, a trial that would need more rounds
            fails before training. Defaults to None (no limit).
        epochs_per_round: Epochs per round, or a list to search. Under
            Hyperband, `tuner/epochs` sets it instead, and a list is refused.
            Defaults to `2`.
        log_dir: Optional TensorBoard folder; trial `t` writes its
            `SparsitySummaries` to `<log_dir>/<t>`. Defaults to None.
        seed: If set, `keras.utils.set_random_seed(seed)` runs before every
            build, so that every trial starts from the same initialization
            (for a given architecture), and it is `LotteryTicket`'s seed.
            Defaults to None.
        resume_trials: Keep each trial's IMP checkpoint in its trial folder
            at every epoch end, so that an interrupted trial continues where
            it stopped when the search resumes. Removed when the trial
            ends. Defaults to True.
        name: The hypermodel's name. Defaults to None.
        tunable: As in `keras_tuner.HyperModel`. Defaults to True.
        **ticket_kwargs: Further `LotteryTicket` arguments, the same in every
            trial: `layer_rates`, `one_shot`, `early_bird`, `monitor`,
            `mode`, `verbose`...

    Attributes:
        objective: The `keras_tuner.Objective` to give the tuner.
        objective_name: Its name, `"ticket_<metric>"`.

    Example:

    ```python
    hypermodel = TicketHyperModel(build, prune_rate=[0.2, 0.4])
    tuner = keras_tuner.RandomSearch(hypermodel, objective=hypermodel.objective,
                                     max_trials=4, directory="runs")
    tuner.search(x, y, validation_data=(xv, yv))
    ```
    """

    def __init__(
        self,
        build_model: Callable | keras_tuner.HyperModel,
        *,
        target_weights_remaining: float = 0.2,
        metric: str = "val_accuracy",
        direction: str | None = None,
        prune_rate: float | Sequence[float] = 0.2,
        rewind: str | int | Sequence[str | int] = "init",
        strategy: str | Sequence[str] = "layerwise",
        block: tuple[int, int] | None | Sequence[tuple[int, int] | None] = None,
        rounds: int | Sequence[int] | None = None,
        max_rounds: int | None = None,
        epochs_per_round: int | Sequence[int] = 2,
        log_dir: str | os.PathLike | None = None,
        seed: int | None = None,
        resume_trials: bool = True,
        name: str | None = None,
        tunable: bool = True,
        **ticket_kwargs,
    ):
        super().__init__(name=name, tunable=tunable)
        if isinstance(build_model, keras_tuner.HyperModel):
            self._user = build_model
        elif callable(build_model):
            self._user = None
        else:
            raise TypeError(
                "Expected `build_model` to be a function `build(hp)` returning "
                "a compiled Keras model, or a keras_tuner.HyperModel. "
                f"Received: {build_model!r}"
            )
        self.build_model = build_model
        self.target_weights_remaining = _check_target(target_weights_remaining)
        if not isinstance(metric, str) or not metric:
            raise TypeError(
                f"Expected `metric` to be a metric name. Received: {metric!r}"
            )
        self.metric = metric
        if direction not in (None, "max", "min"):
            raise ValueError(
                "Expected `direction` to be 'max', 'min' or None. Received: "
                f"direction={direction!r}"
            )
        self.direction = direction or _infer_direction(metric)
        self.objective_name = f"ticket_{metric}"
        self.objective = keras_tuner.Objective(self.objective_name, self.direction)

        managed = sorted(set(ticket_kwargs) & set(_MANAGED))
        if managed:
            raise TypeError(
                f"TicketHyperModel sets {managed} of each trial's LotteryTicket "
                "itself: pass prune_rate, rewind, strategy, block, rounds and "
                "epochs_per_round as its own arguments, and log_dir for "
                "TensorBoard (trial folders hold the checkpoints)."
            )
        self.ticket_kwargs = dict(ticket_kwargs)

        self.prune_rate = _values(prune_rate, "prune_rate", _check_rate)
        self.rewind = _values(rewind, "rewind", _rewind_token)
        self.strategy = _values(strategy, "strategy", _check_strategy)
        self.block = _values(block, "block", _block_token, none_is_value=True)
        self.rounds = None if rounds is None else _values(rounds, "rounds", _check_int)
        self.max_rounds = (
            None if max_rounds is None else _check_int(max_rounds, "max_rounds")
        )
        self.epochs_per_round = _values(
            epochs_per_round, "epochs_per_round", _check_int
        )
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"Expected `seed` to be an int or None. Received: {seed!r}")
        self.seed = seed
        self.resume_trials = bool(resume_trials)
        self._check_combinations()
        self._fresh = None  # Hyperband promotions: (weakref to model, values).
        self._executions = {}  # trial_id: (weakref to run marker, count).

    # --------------------------------------------------------------- search

    @property
    def max_epochs_per_round(self) -> int:
        """The most epochs per round searched: Hyperband's `max_epochs`."""
        return max(self.epochs_per_round)

    def declare_hyperparameters(self, hp):
        """Registers the IMP hyperparameters (keras-tuner calls it first)."""
        self._declare(hp)

    def _declare(self, hp):
        for name in ("prune_rate", "rewind", "strategy", "block"):
            _register(hp, name, getattr(self, name))
        if self.rounds is not None:
            _register(hp, "rounds", self.rounds)
        if len(self.epochs_per_round) > 1:
            hp.Choice("epochs_per_round", self.epochs_per_round)

    def build(self, hp):
        """Builds the user's model, prunable, and registers the IMP space."""
        self._declare(hp)
        model = self._build_user_model(hp)
        if "tuner/trial_id" in hp.values:
            # Hyperband loads the promoted trial's checkpoint into this model
            # after `build`; `fit` puts these fresh values back.
            self._fresh = (weakref.ref(model), _variable_values(model))
        return model

    def _build_user_model(self, hp):
        if self.seed is not None:
            keras.utils.set_random_seed(self.seed)
        build = self._user.build if self._user is not None else self.build_model
        model = build(hp)
        if not isinstance(model, keras.Model):
            raise keras_tuner.errors.FatalTypeError(
                "Expected `build_model(hp)` to return a Keras model. "
                f"Received: {model!r} of type {type(model).__name__}"
            )
        if get_masks(model):
            return model
        compiled = bool(getattr(model, "compiled", False))
        config = model.get_compile_config() if compiled else None
        masked = mask_model(model)
        if config is not None:
            masked.compile_from_config(config)
        return masked

    def fit(self, hp, model, *args, **kwargs):
        """Runs IMP on `model` and returns the trial's score.

        Called by the tuner with the arguments of `search`. `epochs` is set
        here, from the rounds and the epochs per round.

        Returns:
            A dict: the objective (`"ticket_<metric>"`), `"ticket_round"` and
            `"ticket_weights_remaining"` (the round that scored),
            `"final_weights_remaining"` (of the last round: the saved
            model), `"rounds"` and `"epochs_per_round"`.

        Raises:
            keras_tuner.errors.FailedTrialError: If no round reaches the
                target (the tuner marks the trial FAILED), or the settings
                cannot run with this budget.
        """
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if any(isinstance(c, LotteryTicket) for c in callbacks):
            raise keras_tuner.errors.FatalValueError(
                "TicketHyperModel runs its own LotteryTicket in every trial; "
                "remove the LotteryTicket from the `callbacks` given to "
                "`search`, and pass its settings to TicketHyperModel."
            )
        trial, tuner = _find_trial(callbacks)
        trial_id = None if trial is None else str(trial.trial_id)
        if tuner is not None:
            self._check_objective(tuner.oracle.objective)
        epochs_per_round = self._epochs_per_round(hp, kwargs)
        if "tuner/trial_id" in hp.values:
            self._restore_fresh(model)
        if not getattr(model, "compiled", False):
            raise keras_tuner.errors.FatalValueError(
                "The model is not compiled. Compile it in `build_model(hp)` "
                "(or give the tuner `optimizer=` and `loss=`)."
            )

        settings = {
            "prune_rate": hp.get("prune_rate"),
            "rewind": _parse_rewind(hp.get("rewind")),
            "strategy": hp.get("strategy"),
            "block": _parse_block(hp.get("block")),
        }
        rounds = self._rounds(hp, model, settings)
        folder = log_dir = None
        execution = self._execution_index(trial_id, callbacks)
        several = tuner is not None and getattr(tuner, "executions_per_trial", 1) > 1
        if trial_id is not None:
            parts = [TRIAL_SUBDIR] + ([f"execution{execution}"] if several else [])
            folder = os.path.join(tuner.get_trial_dir(trial_id), *parts)
            if self.log_dir is not None:
                log_dir = os.path.join(self.log_dir, trial_id, *parts[1:])
        elif self.log_dir is not None:
            log_dir = self.log_dir

        if folder is not None and self.resume_trials:
            _claim_folder(folder, hp.values)
        ticket_kwargs = dict(self.ticket_kwargs)
        ticket_kwargs.setdefault("verbose", 1 if kwargs.get("verbose", 1) else 0)
        if self.seed is not None:
            ticket_kwargs.setdefault("seed", self.seed)
        try:
            ticket = LotteryTicket(
                rounds,
                epochs_per_round,
                **settings,
                log_dir=log_dir,
                checkpoint_dir=folder if self.resume_trials else None,
                **ticket_kwargs,
            )
        except ValueError as e:
            raise keras_tuner.errors.FailedTrialError(
                f"These settings cannot run with {rounds} rounds of "
                f"{epochs_per_round} epochs: {e}"
            ) from e
        _insert_before_tuner_callbacks(callbacks, ticket)
        kwargs.pop("initial_epoch", None)
        kwargs["epochs"] = ticket.total_epochs
        kwargs["callbacks"] = callbacks
        if self._user is not None:
            self._user.fit(hp, model, *args, **kwargs)
        else:
            model.fit(*args, **kwargs)

        results = ticket.results
        if folder is not None:
            ticket.save_results_json(os.path.join(folder, "results.json"))
            ticket.save_results_csv(os.path.join(folder, "results.csv"))
            state = os.path.join(folder, CHECKPOINT_NAME)
            if os.path.exists(state):
                os.remove(state)
        return self._score(results, rounds, epochs_per_round, settings)

    # -------------------------------------------------------------- helpers

    def _check_objective(self, objective):
        names = getattr(objective, "name_to_direction", None) or {
            objective.name: objective.direction
        }
        if names.get(self.objective_name) != self.direction:
            raise keras_tuner.errors.FatalValueError(
                f"The tuner's objective is {objective}, but TicketHyperModel "
                f"reports '{self.objective_name}' (direction "
                f"'{self.direction}'). Create the tuner with "
                "objective=hypermodel.objective, or with "
                "keras_lth.tuner.make_tuner."
            )

    def _epochs_per_round(self, hp, kwargs):
        budget = hp.values.get("tuner/epochs")
        if budget is not None:
            if len(self.epochs_per_round) > 1:
                raise keras_tuner.errors.FatalValueError(
                    "Under Hyperband, `tuner/epochs` is the number of epochs "
                    "per round, so epochs_per_round cannot be searched too. "
                    f"Received: epochs_per_round={self.epochs_per_round}"
                )
            return int(budget)
        for key in ("epochs", "initial_epoch"):
            if key in kwargs:
                raise keras_tuner.errors.FatalValueError(
                    f"Do not pass `{key}` to `search`: each trial runs "
                    "rounds * epochs_per_round epochs. Set epochs_per_round "
                    "on TicketHyperModel."
                )
        if "epochs_per_round" in hp.values:
            return int(hp.get("epochs_per_round"))
        return self.epochs_per_round[0]

    def _restore_fresh(self, model):
        fresh = self._fresh
        self._fresh = None
        if fresh is None or fresh[0]() is not model:
            raise keras_tuner.errors.FatalRuntimeError(
                "This Hyperband trial continues another one, but its model "
                "was not built by this TicketHyperModel's `build`, so its "
                "initial weights are unknown."
            )
        values = fresh[1]
        for variable, value in zip(model.variables, values["model"], strict=True):
            variable.assign(value)
        optimizer = model.optimizer
        if values["optimizer"] is not None and optimizer is not None:
            for variable, value in zip(
                optimizer.variables, values["optimizer"], strict=True
            ):
                variable.assign(value)

    def _rounds(self, hp, model, settings):
        if self.rounds is not None:
            return int(hp.get("rounds"))
        needed = rounds_for_target(
            model,
            self.target_weights_remaining,
            prune_rate=settings["prune_rate"],
            strategy=settings["strategy"],
            layer_rates=self.ticket_kwargs.get("layer_rates"),
            block=settings["block"],
        )
        if needed is None or (self.max_rounds and needed > self.max_rounds):
            reach = "never reaches" if needed is None else f"needs {needed} rounds for"
            raise keras_tuner.errors.FailedTrialError(
                f"Not run: prune_rate={settings['prune_rate']} with "
                f"strategy={settings['strategy']!r} {reach} the target of "
                f"{self.target_weights_remaining:.2%} of weights remaining"
                + (f", above max_rounds={self.max_rounds}." if needed else ".")
            )
        return needed

    def _execution_index(self, trial_id, callbacks):
        # keras-tuner's `run_trial` shares one `SaveBestEpoch` between the
        # executions of a trial and makes a new one for each run of it.
        marker = next(
            (c for c in callbacks if type(c).__name__ == "SaveBestEpoch"), None
        )
        if trial_id is None or marker is None:
            return 0
        ref, count = self._executions.get(trial_id, (None, -1))
        count = count + 1 if ref is not None and ref() is marker else 0
        self._executions[trial_id] = (weakref.ref(marker), count)
        return count

    def _score(self, results, rounds, epochs_per_round, settings):
        try:
            scored = score_results(
                results,
                target_weights_remaining=self.target_weights_remaining,
                metric=self.metric,
                direction=self.direction,
            )
        except ValueError as e:
            raise keras_tuner.errors.FatalValueError(str(e)) from e
        if scored is None:
            last = results[-1] if results else None
            got = (
                "no round finished"
                if last is None
                else f"the sparsest ticket, round {last['round']}, kept "
                f"{last['weights_remaining']:.2%}"
            )
            advice = (
                "Raise `rounds`, or pass rounds=None to size it from prune_rate."
                if self.rounds is not None
                else "Check `layer_rates` and `max_rounds`."
            )
            raise keras_tuner.errors.FailedTrialError(
                f"No ticket reached the target of "
                f"{self.target_weights_remaining:.2%} of weights remaining: "
                f"{got} after {rounds} rounds at "
                f"prune_rate={settings['prune_rate']}. {advice}"
            )
        return {
            self.objective_name: scored["score"],
            "ticket_round": scored["round"],
            "ticket_weights_remaining": scored["weights_remaining"],
            "final_weights_remaining": results[-1]["weights_remaining"],
            "rounds": rounds,
            "epochs_per_round": epochs_per_round,
        }

    def _check_combinations(self):
        """Every combination of the searched values is a valid LotteryTicket."""
        combos = itertools.product(
            self.prune_rate, self.rewind, self.strategy, self.block
        )
        for prune_rate, rewind, strategy, block in combos:
            try:
                LotteryTicket(
                    2,
                    self.max_epochs_per_round,
                    prune_rate=prune_rate,
                    rewind=_parse_rewind(rewind),
                    strategy=strategy,
                    block=_parse_block(block),
                    **{**self.ticket_kwargs, "verbose": 0, "seed": 0},
                )
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"The combination prune_rate={prune_rate}, rewind="
                    f"{rewind!r}, strategy={strategy!r}, block={block!r} is not "
                    f"a valid LotteryTicket: {e}"
                ) from e


# ------------------------------------------------------------- functions


def score_results(
    results: list[dict],
    *,
    target_weights_remaining: float,
    metric: str = "val_accuracy",
    direction: str = "max",
) -> dict | None:
    """Scores IMP results as `TicketHyperModel` does.

    Among the rows with `weights_remaining <= target_weights_remaining`, the
    best `row["best"][metric]` (the metric at the round's early-stopping
    point): the max if `direction="max"`, else the min. A tie goes to the
    sparser ticket.

    Args:
        results: `LotteryTicket.results`, or rows read back with
            `keras_lth.load_results`.
        target_weights_remaining: The target fraction of weights left.
        metric: The metric. Defaults to `"val_accuracy"`.
        direction: `"max"` or `"min"`. Defaults to `"max"`.

    Returns:
        `{"score": ..., "round": ..., "weights_remaining": ...}` of the
        winning row, or None if no row reaches the target.

    Raises:
        ValueError: If a row at or below the target lacks `metric`.
    """
    target = _check_target(target_weights_remaining)
    if direction not in ("max", "min"):
        raise ValueError(f"Expected direction 'max' or 'min'. Received: {direction!r}")
    eligible = [r for r in results if r["weights_remaining"] <= target + _TOLERANCE]
    if not eligible:
        return None
    for row in eligible:
        if metric not in row["best"]:
            raise ValueError(
                f"The objective's metric {metric!r} was not logged in round "
                f"{row['round']}. Logged: {sorted(row['best'])}. Compile the "
                "model with that metric (metrics=['accuracy'] for "
                "'val_accuracy') and pass validation data to `search`."
            )
    sign = 1.0 if direction == "max" else -1.0
    best = max(
        eligible,
        key=lambda r: (sign * float(r["best"][metric]), -r["weights_remaining"]),
    )
    return {
        "score": float(best["best"][metric]),
        "round": int(best["round"]),
        "weights_remaining": float(best["weights_remaining"]),
    }


def rounds_for_target(
    model: keras.Model,
    target_weights_remaining: float,
    *,
    prune_rate: float = 0.2,
    strategy: str = "layerwise",
    layer_rates: dict | None = None,
    block=None,
    limit: int = _MAX_STEPS,
) -> int | None:
    """The fewest IMP rounds whose last ticket keeps at most the target.

    Follows `LotteryTicket`'s exact counts for `model`'s prunable tensors:
    each tensor keeps `floor(n * (1 - rate) ** s + 0.5)` after `s` pruning
    steps, at its own rate (the output layer at half `prune_rate` unless
    `layer_rates` names it), or one count across the tensors with
    `strategy="global"`. For a uniform rate it is
    `ceil(log(target) / log(1 - prune_rate)) + 1`. With `block`, blocks are
    counted, and the fraction of weights is estimated from them.

    Args:
        model: A masked model (its current masks are the start).
        target_weights_remaining: Target fraction of prunable weights left.
        prune_rate, strategy, layer_rates, block: As for `LotteryTicket`.
        limit: Most pruning steps to try. Defaults to 10,000.

    Returns:
        `steps + 1` (round 0 trains the dense network), or None if the
        target is out of reach (every layer's rate is 0, or over `limit`).
    """
    target = _check_target(target_weights_remaining)
    ticket = LotteryTicket(
        1,
        1,
        prune_rate=prune_rate,
        strategy=strategy,
        layer_rates=layer_rates,
        block=block,
        seed=0,
        verbose=0,
    )
    tensors = prunable_tensors(model)
    if not tensors:
        raise ValueError(
            f"Model '{model.name}' has no prunable layers. Make it prunable "
            "with `keras_lth.mask_model(model)`."
        )
    rates = ticket._tensor_rates(tensors)
    masks = get_masks(model)
    total = sum(m.size for m in masks.values())
    weights = {k: float(np.sum(m)) for k, m in masks.items()}
    units = {k: ticket._units(k, m) for k, m in masks.items()}

    def kept(step):
        if strategy == "global":
            included = [k for k in masks if rates[k] > 0]
            start = sum(units[k] for k in included)
            left = _target(start, prune_rate, step) / start if start else 1.0
            return sum(weights[k] * (left if rates[k] > 0 else 1.0) for k in masks)
        return sum(
            weights[k]
            * (_target(units[k], rates[k], step) / units[k] if units[k] else 0)
            for k in masks
        )

    # Tensors at rate 0 are never pruned: what they hold is the floor.
    floor = sum(weights[k] for k in masks if rates[k] == 0) / total
    if floor > target + _TOLERANCE:
        return None
    for step in range(limit + 1):
        if kept(step) / total <= target + _TOLERANCE:
            return step + 1
    return None


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

    Args:
        kind: `"random"` (`keras_tuner.RandomSearch`), `"bayesian"`
            (`BayesianOptimization`) or `"hyperband"` (`Hyperband`, with
            `max_epochs` defaulting to `hypermodel.max_epochs_per_round` and
            `factor` to 3; see the module docstring for its budget).
        hypermodel: The `TicketHyperModel`.
        max_trials: Most trials. keras-tuner's Hyperband has no such
            argument; here it caps the trials all the same (it sets the
            oracle's `max_trials`). None for no cap (Hyperband only).
            Defaults to 10.
        directory: The tuner's folder. Defaults to the current one.
        project_name: Sub-folder for this search. Defaults to
            `"keras_lth_tune"`.
        overwrite: If False (the default), a search already in
            `directory/project_name` is resumed: finished trials are kept.
        seed: The oracle's seed. Defaults to None.
        **kwargs: Other arguments of the tuner class.

    Returns:
        The tuner. Call `search(x, y, validation_data=..., batch_size=...)`.
    """
    if not isinstance(hypermodel, TicketHyperModel):
        raise TypeError(
            f"Expected a TicketHyperModel. Received: {type(hypermodel).__name__}"
        )
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
    if kind == "hyperband":
        common.setdefault("max_epochs", hypermodel.max_epochs_per_round)
        common.setdefault("factor", 3)
        tuner = keras_tuner.Hyperband(hypermodel, **common)
        tuner.oracle.max_trials = max_trials
        return tuner
    raise ValueError(f"Expected `kind` to be one of {_TUNERS}. Received: kind={kind!r}")


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


def load_trial_results(
    tuner: keras_tuner.Tuner, trial_id: str, execution: int | None = None
) -> list[dict]:
    """The `LotteryTicket.results` rows a trial saved in its folder.

    Args:
        tuner: The tuner.
        trial_id: The trial's id (`trial.trial_id`).
        execution: With `executions_per_trial > 1`, which execution.

    Returns:
        The rows, as `keras_lth.load_results` reads them.
    """
    from keras_lth.results import load_results

    parts = [TRIAL_SUBDIR] + ([] if execution is None else [f"execution{execution}"])
    path = os.path.join(tuner.get_trial_dir(trial_id), *parts, "results.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No IMP results for trial {trial_id} at '{path}': the trial did "
            "not finish, or ran several executions (pass `execution`)."
        )
    return load_results(path)


# ------------------------------------------------------------ internals


def _find_trial(callbacks):
    """The keras-tuner trial and tuner of this `fit`, or (None, None).

    `Tuner.run_trial` adds a callback holding both (`TunerCallback`).
    """
    for callback in callbacks:
        trial = getattr(callback, "trial", None)
        tuner = getattr(callback, "tuner", None)
        if trial is not None and hasattr(tuner, "get_trial_dir"):
            return trial, tuner
    return None, None


def _claim_folder(folder, values):
    """Removes an IMP checkpoint left in `folder` by a trial with other values.

    keras-tuner reuses a trial id when a search stopped before saving its
    tuner (during its first trial) starts again: the folder may then hold the
    checkpoint of another configuration, which must not be resumed.
    """
    path = os.path.join(folder, HP_FILE)
    state = os.path.join(folder, CHECKPOINT_NAME)
    values = json.loads(json.dumps(values))
    saved = None
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    if os.path.exists(state) and saved != values:
        warnings.warn(
            f"TicketHyperModel: ignoring the IMP checkpoint '{state}', saved for "
            f"other hyperparameters ({saved}); this trial has {values}.",
            stacklevel=3,
        )
        os.remove(state)
    atomic_write_text(path, json.dumps(values, indent=2) + "\n")


def _insert_before_tuner_callbacks(callbacks, ticket):
    """The ticket goes after the user's callbacks (`BackupAndRestore` must
    come first) and before keras-tuner's, which save the model."""
    for i, callback in enumerate(callbacks):
        if type(callback).__name__ in ("TunerCallback", "SaveBestEpoch"):
            callbacks.insert(i, ticket)
            return
    callbacks.append(ticket)


def _variable_values(model):
    optimizer = model.optimizer
    built = optimizer is not None and optimizer.built
    return {
        "model": [ops.convert_to_numpy(v) for v in model.variables],
        "optimizer": (
            [ops.convert_to_numpy(v) for v in optimizer.variables] if built else None
        ),
    }


def _register(hp, name, values):
    if len(values) == 1:
        hp.Fixed(name, values[0])
    else:
        hp.Choice(name, values)


def _values(value, name, check, none_is_value=False):
    if isinstance(value, (list, tuple)) and not (
        name == "block" and _is_block_pair(value)
    ):
        values = [check(v, name) for v in value]
        if not values:
            raise ValueError(f"Expected at least one value for `{name}`.")
        if len(set(values)) != len(values):
            raise ValueError(f"`{name}` lists a value twice: {list(value)}")
        return values
    if value is None and not none_is_value:
        raise ValueError(f"Expected a value for `{name}`. Received None.")
    return [check(value, name)]


def _is_block_pair(value):
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def _check_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Expected `{name}` to be an int. Received: {value!r}")
    if value < 1:
        raise ValueError(f"Expected `{name}` >= 1. Received: {value}")
    return int(value)


def _check_rate(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"Expected `{name}` to be a float. Received: {value!r}")
    if not 0.0 < value < 1.0:
        raise ValueError(f"Expected `{name}` in (0, 1). Received: {value}")
    return float(value)


def _check_strategy(value, name):
    if value not in STRATEGIES:
        raise ValueError(f"Expected `{name}` in {STRATEGIES}. Received: {value!r}")
    return value


def _check_target(value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(
            f"Expected `target_weights_remaining` to be a float. Received: {value!r}"
        )
    if not 0.0 < value <= 1.0:
        raise ValueError(
            "Expected `target_weights_remaining`, the fraction of prunable "
            f"weights left, in (0, 1]. Received: {value}"
        )
    return float(value)


def _rewind_token(value, name):
    """Rewind specs as hyperparameter strings: 100 -> "100"."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"Expected a rewind step >= 0. Received: {value}")
        return str(int(value))
    if isinstance(value, str):
        return value
    raise TypeError(f"Expected `{name}` to be a str or an int. Received: {value!r}")


def _parse_rewind(token):
    return int(token) if token.isdigit() else token


def _block_token(value, name):
    """Blocks as hyperparameter strings: None -> "none", (1, 4) -> "1x4"."""
    if value is None or value == "none":
        return "none"
    if isinstance(value, str) and re.fullmatch(r"\d+x\d+", value):
        return value
    if _is_block_pair(value) or (isinstance(value, list) and len(value) == 2):
        rows, cols = value
        return f"{int(rows)}x{int(cols)}"
    raise TypeError(
        f"Expected `{name}` to be None, a (rows, cols) tuple or a list of them "
        f"(per-tensor dicts cannot be searched). Received: {value!r}"
    )


def _parse_block(token):
    if token == "none":
        return None
    rows, cols = token.split("x")
    return (int(rows), int(cols))


def _infer_direction(metric):
    name = metric.lower()
    maximize = any(w in name for w in ("acc", "auc", "precision", "recall"))
    return "max" if maximize and not name.endswith("loss") else "min"
