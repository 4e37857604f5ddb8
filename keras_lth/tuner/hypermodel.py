"""`TicketHyperModel`: a keras-tuner `HyperModel` whose trials find tickets.

Each trial runs a whole IMP search (`keras_lth.LotteryTicket`) in one
`model.fit` and reports the score of `keras_lth.tuner.objective`. keras-tuner
deep-copies the `callbacks` given to `search` for every trial; do not pass a
`LotteryTicket` there (the hypermodel adds its own), nor `EarlyStopping`
(IMP decides when each round ends).
"""

from __future__ import annotations

import itertools
import os
import weakref
from collections.abc import Callable
from collections.abc import Sequence

import keras
import keras_tuner
from keras import ops

from keras_lth._checks import check_choice
from keras_lth._checks import check_count
from keras_lth._checks import check_fraction
from keras_lth._checks import is_int
from keras_lth.callbacks.lottery_ticket import LotteryTicket
from keras_lth.masking import get_masks
from keras_lth.masking import mask_model
from keras_lth.pruning import block_text
from keras_lth.pruning import check_strategy
from keras_lth.pruning import parse_block
from keras_lth.results import metric_direction
from keras_lth.rewind import Rewind
from keras_lth.tuner.objective import DIRECTIONS
from keras_lth.tuner.objective import check_target
from keras_lth.tuner.objective import rounds_for_target
from keras_lth.tuner.objective import score_results
from keras_lth.tuner.trials import claim_folder
from keras_lth.tuner.trials import find_trial
from keras_lth.tuner.trials import imp_folder
from keras_lth.tuner.trials import remove_checkpoint

__all__ = ["HP_NAMES", "TicketHyperModel"]

#: Names of the hyperparameters `TicketHyperModel` registers.
HP_NAMES = ("prune_rate", "rewind", "strategy", "block", "rounds", "epochs_per_round")

# Arguments of `LotteryTicket` that `TicketHyperModel` sets itself.
_MANAGED = ("rounds", "epochs_per_round", "prune_rate", "strategy", "rewind")
_MANAGED += ("block", "checkpoint_dir", "log_dir")


class TicketHyperModel(keras_tuner.HyperModel):
    """A keras-tuner `HyperModel` whose every trial finds a lottery ticket.

    `build(hp)` registers the IMP hyperparameters, calls `build_model(hp)`
    (which may register its own) and makes the model prunable with
    `keras_lth.mask_model` if it is not. `fit` runs a `keras_lth.LotteryTicket`
    over as many rounds as the target needs and returns the trial's score,
    `"ticket_<metric>"` (`objective`, to give the tuner). Each IMP argument
    takes one value (a `Fixed` hyperparameter) or a list to search (a `Choice`).

    Args:
        build_model: `build_model(hp) -> keras.Model`, compiled with the
            objective's metric; or a `keras_tuner.HyperModel` whose `fit`
            passes `epochs` and `callbacks` on to `model.fit`.
        target_weights_remaining: Fraction of prunable weights a scored ticket
            keeps at most, in (0, 1]. Defaults to `0.2`.
        metric: The logged metric that scores a ticket. Defaults to
            `"val_accuracy"`, which needs validation data.
        direction: `"max"`, `"min"`, or None (the default) to infer it from
            `metric` (`keras_lth.results.metric_direction`).
        prune_rate, rewind, strategy, block: As for `LotteryTicket`, or lists
            to search. Default to `0.2`, `"init"`, `"layerwise"` and None.
        rounds: None (the default) for just enough rounds to reach the target
            (`rounds_for_target`), an int, or a list of ints.
        max_rounds: With `rounds=None`, a trial needing more rounds fails
            before training. Defaults to None (no limit).
        epochs_per_round: An int or a list; Hyperband's `tuner/epochs` sets it
            instead. Defaults to `2`.
        log_dir: TensorBoard folder; trial `t` writes to `<log_dir>/<t>`.
        seed: Seeds every build (so every trial starts from the same weights)
            and each `LotteryTicket`. Defaults to None.
        resume_trials: Checkpoint IMP in the trial folder at every epoch end,
            so an interrupted trial continues. Defaults to True.
        name, tunable: As for `keras_tuner.HyperModel`.
        **ticket_kwargs: Further `LotteryTicket` arguments, the same in every
            trial (`layer_rates`, `one_shot`, `monitor`, `verbose`...).

    Example:

    >>> from keras_lth.tuner import make_tuner
    >>> def build(hp):
    ...     model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(
    ...         hp.Choice("units", [100, 300]), activation="relu"),
    ...         keras.layers.Dense(10)])
    ...     model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
    ...         from_logits=True), metrics=["accuracy"])
    ...     return model
    >>> hypermodel = TicketHyperModel(build, prune_rate=[0.2, 0.4])
    >>> tuner = make_tuner("random", hypermodel, max_trials=4, directory="runs")
    >>> tuner.oracle.objective.name
    'ticket_val_accuracy'

    `tuner.search(x, y, validation_data=(xv, yv))` then runs the trials.
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
        self.target_weights_remaining = check_target(target_weights_remaining)
        if not isinstance(metric, str) or not metric:
            raise TypeError(
                f"Expected `metric` to be a metric name. Received: {metric!r}"
            )
        self.metric = metric
        if direction is not None:
            check_choice(direction, "direction", DIRECTIONS)
        self.direction = direction or metric_direction(metric)
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

        self.prune_rate = _values(prune_rate, "prune_rate", check_fraction)
        self.rewind = _values(rewind, "rewind", _rewind_text)
        self.strategy = _values(strategy, "strategy", _strategy)
        self.block = _values(block, "block", _block_text)
        self.rounds = None if rounds is None else _values(rounds, "rounds", check_count)
        self.max_rounds = (
            None if max_rounds is None else check_count(max_rounds, "max_rounds")
        )
        self.epochs_per_round = _values(
            epochs_per_round, "epochs_per_round", check_count
        )
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        if seed is not None and not is_int(seed):
            raise TypeError(
                f"Expected `seed` to be an int or None. Received: seed={seed!r}"
            )
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
        trial, tuner = find_trial(callbacks)
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
            "rewind": Rewind.parse(hp.get("rewind")).value,
            "strategy": hp.get("strategy"),
            "block": parse_block(hp.get("block")),
        }
        rounds = self._rounds(hp, model, settings)
        folder = log_dir = None
        execution = self._execution_index(trial_id, callbacks)
        several = tuner is not None and getattr(tuner, "executions_per_trial", 1) > 1
        if trial_id is not None:
            execution = execution if several else None
            folder = imp_folder(tuner.get_trial_dir(trial_id), execution)
            if self.log_dir is not None:
                sub = [] if execution is None else [f"execution{execution}"]
                log_dir = os.path.join(self.log_dir, trial_id, *sub)
        elif self.log_dir is not None:
            log_dir = self.log_dir

        if folder is not None and self.resume_trials:
            claim_folder(folder, hp.values)
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
            remove_checkpoint(folder)
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
            min_density=self.ticket_kwargs.get("min_density", 0.0),
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
                    rewind=Rewind.parse(rewind).value,
                    strategy=strategy,
                    block=parse_block(block),
                    **{**self.ticket_kwargs, "verbose": 0, "seed": 0},
                )
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"The combination prune_rate={prune_rate}, rewind="
                    f"{rewind!r}, strategy={strategy!r}, block={block!r} is not "
                    f"a valid LotteryTicket: {e}"
                ) from e


# ------------------------------------------------------------- internals


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


def _values(value, name, check):
    """The values to search: `value`, or each value of a list, through `check`.

    A tuple of ints given as `block` is one block, not a list of values.
    """
    one_block = name == "block" and isinstance(value, tuple)
    if one_block and value and all(is_int(side) for side in value):
        return [check(value, name)]
    if isinstance(value, (list, tuple)):
        values = [check(v, name) for v in value]
        if not values:
            raise ValueError(
                f"Expected at least one value for `{name}`. Received: {name}={value!r}"
            )
        if len(set(values)) != len(values):
            raise ValueError(f"`{name}` lists a value twice: {list(value)}")
        return values
    return [check(value, name)]


# Hyperparameter values are strings for rewind points and blocks, in the
# spellings `Rewind.parse` and `parse_block` read back.


def _rewind_text(value, name):
    return str(Rewind.parse(value))


def _strategy(value, name):
    return check_strategy(value, name=name)


def _block_text(value, name):
    if isinstance(value, dict):
        raise TypeError(
            f"Expected `{name}` to be None, a (rows, cols) tuple or a list of "
            "them: per-tensor dicts cannot be searched. Received: "
            f"{name}={value!r}"
        )
    return block_text(parse_block(value))
