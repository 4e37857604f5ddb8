"""`LotteryTicket`: iterative magnitude pruning with rewinding in `model.fit`.

The round state machine lives here; the rewind point is taken and restored
by `keras_lth.callbacks.rewind_state`, and the run is saved to and read from
the file format of `keras_lth.callbacks.checkpoint`.
"""

import copy
import os
import warnings

import keras
import numpy as np
from keras import ops

from keras_lth import optimizer_slots
from keras_lth import pruning
from keras_lth import results as results_lib
from keras_lth._checks import check_choice
from keras_lth._checks import check_count
from keras_lth._checks import check_fraction
from keras_lth._compat import refuse_tf_distribute_off_tensorflow
from keras_lth._compat import sync_backend_state
from keras_lth.callbacks import checkpoint
from keras_lth.callbacks import imp_step
from keras_lth.callbacks import rewind_state
from keras_lth.callbacks import ticket_options
from keras_lth.callbacks.checkpoint import CHECKPOINT_NAME
from keras_lth.callbacks.imp_step import OUTPUT_LAYER_RATE_FACTOR
from keras_lth.callbacks.imp_step import tensor_rates
from keras_lth.callbacks.round_results import best_epoch_index
from keras_lth.callbacks.round_results import monitor_in_logs
from keras_lth.callbacks.round_results import plain_logs
from keras_lth.callbacks.round_results import round_line
from keras_lth.callbacks.round_results import round_row
from keras_lth.callbacks.sparsity_summaries import SparsitySummaries
from keras_lth.callbacks.test_metrics import check_test_data
from keras_lth.callbacks.test_metrics import evaluate_test
from keras_lth.coupling import coupled_units
from keras_lth.masking import get_masks
from keras_lth.masking import get_prunable_weights
from keras_lth.masking import require_prunable_tensors
from keras_lth.masking import set_masks
from keras_lth.masking import sparsity
from keras_lth.rewind import Rewind
from keras_lth.unit_holding import hold_pruned_units

__all__ = [
    "CHECKPOINT_NAME",
    "OUTPUT_LAYER_RATE_FACTOR",
    "LotteryTicket",
    "tensor_rates",
]


class LotteryTicket(keras.callbacks.Callback):
    """Finds a winning ticket by iterative magnitude pruning (IMP) in one `fit`.

    Frankle & Carbin (2019): train, prune the smallest-magnitude survivors,
    rewind them to their early values, repeat. Each round trains
    `epochs_per_round` epochs; at the end of every round but the last the
    callback records the round in `results`, prunes, and rewinds the model
    and the optimizer, so that round `r` trains the ticket with
    `(1 - rate) ** r` of each tensor's weights. The model must hold masked
    layers (see `keras_lth.mask_model`).

    Args:
        rounds: Number of training rounds; `rounds - 1` pruning steps.
        epochs_per_round: Epochs of training in each round.
        prune_rate: Fraction of the survivors pruned at each step, in (0, 1).
        strategy: `"layerwise"`, `"global"`, `"lamp"` or `"random"`.
        min_density: With `"global"`/`"lamp"`, the fraction of its weights
            each tensor keeps at least, in [0, 1) (`pruning.prune_global`).
        layer_rates: Optional `{layer_name: rate}` in [0, 1); `0` never prunes.
            The last prunable layer defaults to half of `prune_rate`.
        block: Optional `(rows, cols)` block, or `{"layer/weight": block}`;
            see `keras_lth.pruning` for the orientation.
        granularity: `"weight"`, or `"unit"` to prune and count whole output
            units (Dense columns, filters, heads; `keras_lth.structured`).
            The output layer then defaults to a rate of 0.
        refill: With `"unit"`, choose units by refilling (Chen et al. 2022).
        coupled: With `"unit"`, prune together the units an `Add` ties, such
            as a residual stream's channels (`keras_lth.coupling`).
        rewind: `"init"`, a step `k`, `"epoch:K"`, `"reinit_each_round"`,
            `"lr"` or `"none"`; see `keras_lth.rewind`. The paper's
            random-reinit control is `keras_lth.controls.reinit`.
        one_shot: Prune round 0's weights straight to each round's target.
        early_bird: End each round but the last once the mask settles.
        early_bird_distance: Mask distance under which it settles, in (0, 1).
        early_bird_window: Earlier epochs' masks the newest is compared with.
        monitor: Metric whose best epoch is a round's early-stopping point.
        mode: `"min"`, `"max"` or `"auto"` (`keras_lth.results.metric_direction`).
        test_data: Optional `(x, y)` or dataset: each round's row gets
            `test`, the metrics of its early-stopping epoch's weights on it
            (see `keras_lth.callbacks.test_metrics`).
        seed: Seed for `"random"` and `"reinit_each_round"`. If None, the
            seed of `keras.utils.set_random_seed` if set, else drawn at random.
        checkpoint_dir: Folder where the run is saved at every epoch end and
            resumed from, or a `keras.callbacks.BackupAndRestore` (its folder).
        log_dir: Folder for `keras_lth.SparsitySummaries` (TensorBoard).
        verbose: `1` prints a line per finished round; `0` is silent.

    Example:

    ```python
    ticket = keras_lth.LotteryTicket(rounds=8, epochs_per_round=5)
    model.fit(x, y, validation_data=(xv, yv), epochs=ticket.total_epochs,
              callbacks=[ticket])
    print(ticket.results_table())
    ```
    """

    def __init__(
        self,
        rounds,
        epochs_per_round,
        *,
        prune_rate=0.2,
        strategy="layerwise",
        min_density=0.0,
        layer_rates=None,
        block=None,
        granularity="weight",
        refill=False,
        coupled=True,
        rewind="init",
        one_shot=False,
        early_bird=False,
        early_bird_distance=0.1,
        early_bird_window=4,
        monitor="val_loss",
        mode="auto",
        test_data=None,
        seed=None,
        checkpoint_dir=None,
        log_dir=None,
        verbose=1,
    ):
        super().__init__()
        self.rounds = check_count(rounds, "rounds")
        self.epochs_per_round = check_count(epochs_per_round, "epochs_per_round")
        self.prune_rate = check_fraction(prune_rate, "prune_rate")
        self.strategy = pruning.check_strategy(strategy)
        self.min_density = pruning.check_min_density(min_density, strategy)
        self.layer_rates = imp_step.check_layer_rates(layer_rates, strategy)
        self.block = imp_step.check_block_option(block)
        self.granularity, self.refill, self.coupled = ticket_options.check_granularity(
            granularity, refill, coupled, strategy=strategy, block=self.block
        )
        self._rewind = Rewind.parse(rewind)
        self.rewind = self._rewind.value
        ticket_options.check_rewind_point(self._rewind, self.epochs_per_round)
        self.one_shot = ticket_options.check_one_shot(one_shot, self._rewind)
        self.early_bird = ticket_options.check_early_bird(early_bird, strategy)
        self.early_bird_distance = check_fraction(
            early_bird_distance, "early_bird_distance"
        )
        self.early_bird_window = check_count(early_bird_window, "early_bird_window")
        self.monitor = monitor
        self.mode = check_choice(mode, "mode", ("auto", "min", "max"))
        self.test_data = check_test_data(test_data)
        self._seed_given = seed is not None
        self.seed = imp_step.default_seed() if seed is None else seed
        self.checkpoint_dir, self._beside_backup = checkpoint.checkpoint_folder(
            checkpoint_dir
        )
        self._summaries = None if log_dir is None else SparsitySummaries(log_dir)
        self.log_dir = None if log_dir is None else self._summaries.log_dir
        self.verbose = verbose
        self._fill = optimizer_slots.FillSchedule()
        self._reset()

    @property
    def total_epochs(self):
        """The number of epochs to pass to `fit`: all rounds back to back."""
        return self.rounds * self.epochs_per_round

    @property
    def epochs_done(self):
        """Epochs finished so far: the `initial_epoch` to resume `fit` from."""
        return self._run.epochs_done

    @property
    def results(self):
        """One dict per finished round: see the README for its keys."""
        return self._run.results

    def masks_at(self, round_index):
        """The masks round `round_index` trained with, as `get_masks` gives them.

        Kept for every finished round and saved with the run state, so that a
        control can branch off any level (see `keras_lth.controls`).
        """
        keys, done = list(self._run.initial_kept or {}), len(self.results)
        if not (isinstance(round_index, int) and 0 <= round_index < done):
            raise ValueError(
                f"Expected a finished round, 0 to {done - 1}. "
                f"Received: round_index={round_index!r}"
            )
        masks = self._run.round_masks[round_index * len(keys) :][: len(keys)]
        return {k: m.astype("float32") for k, m in zip(keys, masks, strict=True)}

    def _reset(self):
        self._run = checkpoint.RunState(monitor_used=self.monitor)
        self._loaded = False  # Whether `_run` came from a file.
        self._loaded_from = None
        self._pending_line = None

    def __deepcopy__(self, memo):
        # keras-tuner deep-copies callbacks for every trial. Copy everything
        # but the model, which the next `fit` sets again.
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for name, value in self.__dict__.items():
            if name == "_model":
                value = None
            elif name != "test_data":  # Shared, not copied for every trial.
                value = copy.deepcopy(value, memo)
            setattr(clone, name, value)
        return clone

    # ------------------------------------------------------------ callbacks

    def on_train_begin(self, logs=None):
        epochs = self.params.get("epochs")
        if epochs != self.total_epochs:
            raise ValueError(
                f"`model.fit` was called with epochs={epochs}, but this "
                f"LotteryTicket runs {self.rounds} rounds of "
                f"{self.epochs_per_round} epochs. Pass "
                f"epochs=ticket.total_epochs ({self.total_epochs})."
            )
        refuse_tf_distribute_off_tensorflow("`fit` with LotteryTicket runs")
        tensors = require_prunable_tensors(self.model)
        dense = sparsity(self.model)["dense"]
        if dense:  # Subclassed models never went through `mask_model`.
            warnings.warn(
                f"LotteryTicket: {len(dense)} kernel or embedding tensors of "
                f"model '{self.model.name}' are not prunable and stay dense: "
                f"{sorted(dense)}. See keras_lth.sparsity(model)['dense'].",
                stacklevel=2,
            )
        self._units = self._coupled = None
        if self.granularity == "unit":  # Warns of tensors without units.
            self._units = ticket_options.unit_axes_of(tensors)
        if self.coupled:
            self._coupled = coupled_units(self.model, self._units)
        self._rates = tensor_rates(
            tensors,
            prune_rate=self.prune_rate,
            layer_rates=self.layer_rates,
            strategy=self.strategy,
            units=self._units,
        )
        rewind_state.check_step_rewind(
            self._rewind,
            steps_per_epoch=self.params.get("steps"),
            epochs_per_round=self.epochs_per_round,
            steps_per_execution=getattr(self.model, "steps_per_execution", 1),
        )
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self._fill.begin(optimizer)
        restored = None
        path = self._checkpoint_path()
        if self._loaded:  # By `load_state`: the model comes from the user.
            checkpoint.check_fits(self._loaded_from, self.model, self._run)
        elif path is not None and os.path.exists(path):
            # Read and checked whole before anything changes.
            restored = self._read_state(path)
            checkpoint.check_fits(path, self.model, *restored[1:], needs_live=True)
        # Pruned entries must be stored as zeros (see `MaskedLayer`), even if
        # weights were written since the masks were set.
        set_masks(self.model, {})
        if restored is not None:
            self._restore(path, *restored)
        if self._units is not None:  # Pruned units' biases and BatchNorm params.
            hold_pruned_units(self.model, self._units)
        if self._summaries is not None:
            step = self._run.summaries_step if self._loaded else None
            self._summaries.begin(self.model, step=step)
        if self._loaded:
            return  # Resuming: the state came from a file.
        self._reset()
        self._run.initial_kept = imp_step.count_kept(
            get_masks(self.model), self.block, self._units
        )
        if self._rewind.restores_optimizer and self._rewind.at == 0:
            self._run.snapshot = rewind_state.take_snapshot(self.model)
        self._run.round_start_step = self._optimizer_step()

    def on_epoch_begin(self, epoch, logs=None):
        self._print_pending_line()
        self._fill.epoch_begin()
        if self._summaries is not None:
            self._summaries.on_epoch_begin(epoch, logs)
        checkpoint.check_start_epoch(
            epoch,
            self._run.epochs_done,
            beside_backup=self._beside_backup,
            folder=self.checkpoint_dir,
        )

    def on_train_batch_begin(self, batch, logs=None):
        if self._fill.due(batch):  # On PyTorch: see `optimizer_slots`.
            self._fill.fill(self.model, batch)
        # A mid-epoch rewind point (`rewind=k`) is taken before step k + 1
        # runs. The step count comes from Python (the steps of the epochs
        # done, plus `batch`), so no batch reads the device, except the one
        # at the rewind point. This is a batch *begin* hook on purpose: a
        # batch *end* hook would turn off Keras's asynchronous dispatch and
        # bring every step's logs back to the host.
        if self._run.snapshot is not None or self._rewind.kind != "step":
            return
        if self.results:
            return  # Round 0 is over.
        done = self._round_zero_steps() + batch
        if done == self._rewind.at:
            self._run.snapshot = rewind_state.take_snapshot(self.model, sync=True)
        elif done > self._rewind.at:
            raise ValueError(
                f"Training passed step {self._rewind.at} (rewind={self.rewind!r}) "
                f"without stopping there: it is now at step {done}. With "
                "`steps_per_execution` > 1, choose a rewind step that is a "
                "multiple of it."
            )

    def on_epoch_end(self, epoch, logs=None):
        if self._summaries is not None:
            # First, so that it sees the trained weights and step.
            self._summaries.on_epoch_end(epoch, logs)
        logs = plain_logs(logs or {})
        self._run.epochs_done = epoch + 1
        self._run.history.append(
            (logs, self._optimizer_step() - self._run.round_start_step)
        )
        round_index = len(self.results)
        if self.test_data is not None and self._is_best_epoch_so_far():
            # Now, before any callback or pruning step changes the weights.
            self._run.best_test = evaluate_test(self.model, self.test_data)
        if self._run.snapshot is None and self._reached_rewind_point():
            self._run.snapshot = rewind_state.take_snapshot(self.model)
        if len(self._run.history) == self.epochs_per_round or self._early_bird_stops(
            round_index
        ):
            self._end_round(round_index)
            if len(self.results) == self.rounds:
                # Early-bird rounds may leave epochs of `fit` unused.
                self.model.stop_training = True
        path = self._checkpoint_path()
        if path is not None:
            self.save_state(path, include_model=True)

    def on_train_end(self, logs=None):
        self._print_pending_line()
        self._fill.end(self.model)
        self._loaded = False
        if self._summaries is not None:
            self._summaries.close()

    # ------------------------------------------------------------- rounds

    def _reached_rewind_point(self):
        if self.results:
            return False  # The rewind point lies in round 0.
        if self._rewind.kind == "epoch":
            return len(self._run.history) == self._rewind.at
        # `rewind=k` where k is the last step of an epoch.
        return self._rewind.kind == "step" and (
            self._round_zero_steps() == self._rewind.at
        )

    def _round_zero_steps(self):
        """Optimizer steps of round 0 taken in the epochs done so far."""
        return self._run.history[-1][1] if self._run.history else 0

    def _round_monitor(self):
        """The monitored metric and its mode, fixed at a round's first epoch."""
        run = self._run
        if len(run.history) == 1:
            run.monitor_used = monitor_in_logs(run.monitor_used, run.history[0][0])
        mode = self.mode if run.monitor_used == self.monitor else "auto"
        return run.monitor_used, mode

    def _is_best_epoch_so_far(self):
        monitor, mode = self._round_monitor()
        history = self._run.history
        return best_epoch_index(history, monitor=monitor, mode=mode) == len(history) - 1

    def _early_bird_stops(self, round_index):
        """Whether the mask pruning would give has settled (You et al. 2020).

        The mask that the next pruning step would give now is compared with
        the ones it would have given at the last `early_bird_window` epoch
        ends. The round stops early when every normalised Hamming distance
        (the fraction of prunable weights whose mask entry differs) is below
        `early_bird_distance`.
        """
        if not self.early_bird or round_index + 1 >= self.rounds:
            return False  # The last round trains the ticket to the end.
        if self.one_shot and round_index > 0:
            return False  # One-shot masks all come from round 0's weights.
        window = self._run.early_bird_masks
        window.append(imp_step.flat_mask(self._next_masks(round_index + 1)))
        del window[: -(self.early_bird_window + 1)]
        if len(window) <= self.early_bird_window:
            return False
        if self._run.snapshot is None and self._rewind.restores_optimizer:
            return False  # Round 0 must reach the rewind point first.
        return imp_step.masks_settled(window, self.early_bird_distance)

    def _end_round(self, round_index):
        run = self._run
        monitor, mode = self._round_monitor()
        masks = get_masks(self.model)
        self._check_pruned_weights_stayed_zero(masks)
        row = round_row(
            round_index,
            run.history,
            masks,
            monitor=monitor,
            mode=mode,
            epochs_per_round=self.epochs_per_round,
        )
        if self.test_data is not None:
            row["test"], run.best_test = run.best_test, {}
        run.results.append(row)
        run.round_masks.extend(mask.astype(bool) for mask in masks.values())
        if self._summaries is not None:
            self._summaries.write_round(row, run.results)
        if self.verbose:
            # Printed when the next epoch begins or training ends, so the
            # line lands after the progress bar's line for this epoch.
            self._pending_line = round_line(row, self.rounds)
        if self.one_shot and round_index == 0:
            run.dense = {"weights": get_prunable_weights(self.model), "masks": masks}
        if round_index + 1 < self.rounds:
            self._next_round(round_index + 1)
            if self._summaries is not None:
                self._summaries.write_sparsity()

    def _check_pruned_weights_stayed_zero(self, masks):
        weights = get_prunable_weights(self.model)
        moved = [k for k, m in masks.items() if np.any(weights[k][m == 0] != 0)]
        if moved:
            warnings.warn(
                f"LotteryTicket: pruned weights of {moved} moved off zero "
                "during training, so they took part in it. Something wrote "
                "them outside keras_lth (see `keras_lth.layers.MaskedLayer`), "
                "or the optimizer updates entries whose gradient is zero "
                "without keeping per-entry slots. They are zeroed again now.",
                stacklevel=3,
            )
            set_masks(self.model, {})

    def _next_round(self, round_index):
        if self._run.snapshot is None and self._rewind.restores_optimizer:
            raise ValueError(
                f"Round 0 ended before reaching the rewind point "
                f"rewind={self.rewind!r}: it ran {self._optimizer_step()} "
                "optimizer steps. Choose an earlier rewind point."
            )
        set_masks(self.model, self._next_masks(round_index))
        rewind_state.restore_snapshot(
            self.model, self._run.snapshot, self._rewind, seed=[self.seed, round_index]
        )
        if self._units is not None:  # Pruned units' biases and BatchNorm params.
            hold_pruned_units(self.model, self._units)
        self._run.history = []
        self._run.early_bird_masks = []
        self._run.round_start_step = self._optimizer_step()

    def _next_masks(self, step):
        """The masks of pruning step `step`: see `imp_step.next_masks`.
        One-shot prunes round 0's trained weights from its masks."""
        if self._run.dense is not None:
            weights, masks = self._run.dense["weights"], self._run.dense["masks"]
        else:
            weights, masks = get_prunable_weights(self.model), get_masks(self.model)
        return imp_step.next_masks(
            weights,
            masks,
            initial_kept=self._run.initial_kept,
            rates=self._rates,
            step=step,
            strategy=self.strategy,
            prune_rate=self.prune_rate,
            seed=self.seed,
            block=self.block,
            min_density=self.min_density,
            units=self._units,
            coupled=self._coupled,
            refill=self.refill,
        )

    def _optimizer_step(self):
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def _print_pending_line(self):
        if self._pending_line:
            print(self._pending_line)
            self._pending_line = None

    # ------------------------------------------------------------ results

    def results_table(self):
        """Returns `results` as a readable text table."""
        return results_lib.results_table(self.results)

    def save_results_json(self, path):
        """Writes `results` to `path` as JSON, atomically."""
        results_lib.save_results_json(self.results, path)

    def save_results_csv(self, path):
        """Writes `results` to `path` as CSV, atomically."""
        results_lib.save_results_csv(self.results, path)

    # ---------------------------------------------------------- run state

    def save_state(self, path, include_model=False):
        """Saves the run state needed to continue IMP, atomically.

        The state holds the settings, the finished rounds' results, the
        rewind point, the current round's epoch logs and the initial weight
        counts, in the format of `keras_lth.callbacks.checkpoint`. The model
        itself is saved separately with `keras_lth.save_model`, unless
        `include_model=True` (what `checkpoint_dir` uses).

        To continue, load both and call `fit` from where the run stopped:

        ```python
        model = keras.models.load_model("ticket.keras")
        ticket = keras_lth.LotteryTicket(...same arguments...)
        ticket.load_state("ticket_state.npz")
        model.fit(..., initial_epoch=ticket.epochs_done,
                  epochs=ticket.total_epochs, callbacks=[ticket])
        ```
        """
        if self._run.initial_kept is None:
            raise ValueError("There is no run state to save: call `fit` first.")
        if self._summaries is not None:
            self._run.summaries_step = self._summaries.step
        live = None
        if include_model:
            # The live model and optimizer, masks included, in the same file,
            # so that one atomic rename publishes a consistent checkpoint.
            sync_backend_state(self.model)
            live = {
                "model": _values(self.model.variables),
                "optimizer": _values(self.model.optimizer.variables),
            }
        checkpoint.write_state(
            path, ticket_options.saved_settings(self), self._run, live
        )

    def load_state(self, path):
        """Loads a state written by `save_state`; `fit` then continues it.

        If this callback was created without a `seed`, it takes the saved
        run's seed. The file is read and checked whole first: if it is
        refused, nothing of this callback changes.

        Returns:
            A dict with the live `"model"` and `"optimizer"` variable values
            when the state was saved with `include_model=True`, else `None`s.

        Raises:
            ValueError: If the file is not a complete LotteryTicket state of
                this version, or was saved with other settings.
        """
        config, run, live = self._read_state(path)
        self._adopt(path, config, run)
        return live or {"model": None, "optimizer": None}

    def _checkpoint_path(self):
        if self.checkpoint_dir is None:
            return None
        return os.path.join(self.checkpoint_dir, CHECKPOINT_NAME)

    def _read_state(self, path):
        """Reads `path` and checks its settings; changes nothing."""
        saved, run, live = checkpoint.read_state(path)
        saved = ticket_options.settings_with_defaults(saved)
        seed = self.seed if self._seed_given else saved.get("seed", self.seed)
        checkpoint.check_settings(
            path, saved, ticket_options.saved_settings(self, seed)
        )
        return saved, run, live

    def _adopt(self, path, config, run):
        if not self._seed_given:
            self.seed = config["seed"]  # Drawn when the run began.
        self._reset()
        self._run = run
        self._loaded = True
        self._loaded_from = os.fspath(path)

    def _restore(self, path, config, run, live):
        """Restores a checkpoint that `_read_state` and `check_fits` passed."""
        self._adopt(path, config, run)
        for variables, values in (
            (self.model.variables, live["model"]),
            (self.model.optimizer.variables, live["optimizer"]),
        ):
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)
        # As `keras.callbacks.BackupAndRestore` does: `fit` starts its epoch
        # loop from here once `on_train_begin` returns. A finished run (which
        # early-bird rounds may finish before `total_epochs`) trains no more.
        finished = len(self.results) == self.rounds
        self.model._initial_epoch = self.total_epochs if finished else run.epochs_done


def _values(variables):
    return [ops.convert_to_numpy(v) for v in variables]
