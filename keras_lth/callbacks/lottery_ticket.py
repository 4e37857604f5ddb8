"""`LotteryTicket`: iterative magnitude pruning with rewinding in `model.fit`."""

import copy
import io
import json
import os
import re
import sys
import warnings

import keras
import numpy as np
from keras import ops

from keras_lth import pruning
from keras_lth import results as results_lib
from keras_lth._compat import refuse_tf_distribute_off_tensorflow
from keras_lth.callbacks.sparsity_summaries import SparsitySummaries
from keras_lth.masking import get_masks
from keras_lth.masking import get_prunable_weights
from keras_lth.masking import prunable_layers
from keras_lth.masking import prunable_tensors
from keras_lth.masking import set_masks
from keras_lth.saving import atomic_write

#: The paper prunes the output layer at half the rate of the hidden layers
#: (for LeNet-300-100: 20% hidden, 10% output). `LotteryTicket` does the same
#: by default for the last prunable layer, unless `layer_rates` names it.
OUTPUT_LAYER_RATE_FACTOR = 0.5

_STATE_VERSION = 1

#: The file `LotteryTicket(checkpoint_dir=...)` keeps in its folder.
CHECKPOINT_NAME = "lottery_ticket_state.npz"


class LotteryTicket(keras.callbacks.Callback):
    """Finds a winning ticket by iterative magnitude pruning (IMP) in one `fit`.

    Frankle & Carbin (2019): train, prune the smallest-magnitude surviving
    weights, rewind the survivors to their early values, and repeat. One
    `model.fit(epochs=ticket.total_epochs)` runs every round:

    * Round 0 trains the dense network for `epochs_per_round` epochs.
    * At the end of round `r` (except the last), the callback records the
      round's results, prunes, rewinds the surviving weights to the rewind
      point, restores the non-trainable state (BatchNorm statistics, random
      seed state) to that point, and restores the optimizer's moments and
      iteration count too, so learning-rate schedules restart there.
    * Round `r` then trains the ticket with `(1 - rate) ** r` of each tensor's
      weights left (exactly, to within one weight).
    * The last round's trained ticket is what the model holds when `fit`
      returns.

    The model must hold masked layers: see `keras_lth.mask_model`.

    Args:
        rounds: Number of training rounds, at least 1. There are
            `rounds - 1` pruning steps.
        epochs_per_round: Epochs of training in each round.
        prune_rate: Fraction of the surviving weights pruned at each step, in
            `(0, 1)`. Defaults to `0.2`.
        strategy: `"layerwise"` (each tensor loses `prune_rate` of its
            survivors), `"global"` (one magnitude threshold across all
            prunable tensors) or `"random"` (the paper's random-pruning
            control, with layerwise counts). Defaults to `"layerwise"`.
        layer_rates: Optional dict `{layer_name: rate}` overriding
            `prune_rate` for the named layers; `0` means never prune. By
            default the last prunable layer (the output layer) is pruned at
            half of `prune_rate`, as in the paper; name it here to change
            that. With `strategy="global"` only `0` is accepted (to keep a
            layer out of the ranking), and there is no output-layer default.
        block: Optional block structure, for tickets that LiteRT runs with its
            sparse kernels: `(1, 4)` for float, `(1, 16)` for int8 (rows
            along the output axis, cols along the input axis, as LiteRT
            orients a weight; see `keras_lth.pruning`). Whole blocks are
            pruned by the L2 norm of their surviving weights, and the exact
            per-round targets count blocks. A dict `{"layer/weight": block}`
            sets it per tensor (missing tensors are pruned weight by
            weight). Defaults to None: single weights.
        rewind: Where survivors go back to after each pruning step:
            `"init"` (the weights at the start of training, the default),
            an int `k` (the weights after `k` optimizer steps of round 0),
            `"epoch:K"` (after `K` epochs of round 0), `"reinit"` (the
            paper's control: survivors are drawn afresh from each layer's
            initializer, with a new seed every round), `"lr"` (learning-rate
            rewinding, Renda et al. 2020: the survivors keep their trained
            values, BatchNorm statistics are kept, and only the optimizer
            goes back to its state at the start of training, its step
            included, so the learning-rate schedule restarts; the moments go
            back with the step because Adam's bias correction is tied to it),
            or `"none"` (fine-tuning, the baseline: nothing is reset and the
            schedule carries on).
        one_shot: If True, every pruning step prunes round 0's trained
            weights straight from the dense masks to its target, and each
            later round trains that ticket once from the rewind point: round
            `r` is the one-shot ticket with `(1 - rate) ** r` of the weights
            left (Frankle & Carbin compare it with iterative pruning). With
            `rounds=2` this is "prune once, train once". Needs a rewind point
            (not `"lr"` or `"none"`). Defaults to False.
        early_bird: If True, each round but the last stops as soon as the
            mask that pruning would give has settled (You et al. 2020): at
            every epoch end the callback computes that mask, and when its
            normalised Hamming distance (fraction of prunable weights whose
            mask entry differs) to each of the previous `early_bird_window`
            epochs' masks is below `early_bird_distance`, the round ends
            there and pruning happens. `fit` then stops after the last round,
            before `total_epochs`. Rows record `epochs` and `epochs_skipped`.
            Costs one extra read of the weights per epoch. Not with
            `strategy="random"`. Defaults to False.
        early_bird_distance: The early-bird threshold, in (0, 1). Defaults
            to `0.1`.
        early_bird_window: How many earlier epochs' masks the newest mask is
            compared with. Defaults to `4`.
        monitor: Logged quantity whose best value in a round marks the
            round's early-stopping point. Defaults to `"val_loss"`. If it is
            never logged, a warning is given and `"loss"` is used.
        mode: `"min"`, `"max"` or `"auto"` (max for accuracy-like names,
            min otherwise). Defaults to `"auto"`.
        seed: Seed for the `"random"` strategy and for `"reinit"`. Defaults
            to a random seed, kept in `ticket.seed`. Pass one when using
            `checkpoint_dir`, so that a restarted script has the same settings.
        checkpoint_dir: Optional folder for crash recovery. At every epoch
            end the whole run (the model's variables and masks, the
            optimizer, the rewind point, the round and the results) is saved
            there atomically, in one file. When `fit` starts and a checkpoint
            is there, it is restored and `fit` continues after the last
            finished epoch, so re-running the same script resumes a killed
            run. A checkpoint saved with other settings, or for another
            model, is refused with a `ValueError`. Not needed beside
            `keras.callbacks.BackupAndRestore`: placed after it in
            `callbacks`, the ticket keeps this file in its `backup_dir`.
        log_dir: Optional TensorBoard folder. The ticket then writes
            `keras_lth.SparsitySummaries` there (sparsity, surviving-weight
            histograms, and each round's results and plot), beside any
            `keras.callbacks.TensorBoard` pointed at the same folder.
        verbose: `1` prints one line per finished round; `0` is silent.

    Attributes:
        results: A list with one dict per finished round:
            `round`; `weights_remaining` (fraction of prunable weights kept);
            `layers` (that fraction per prunable tensor); `best_epoch` (1 to
            `epochs_per_round`: the epoch of the round where `monitor` was
            best, the paper's early-stopping point); `best_step` (optimizer
            steps taken in the round up to the end of that epoch); `best`
            (every logged metric at that epoch); `final` (every logged metric
            at the round's last epoch); `monitor`; `epochs` (epochs trained
            in the round) and `epochs_skipped` (saved by `early_bird`).
        total_epochs: The `epochs=` to pass to `fit`.

    Example:

    ```python
    model = keras_lth.mask_model(build_model())
    model.compile(optimizer=keras.optimizers.Adam(1.2e-3),
                  loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
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
        layer_rates=None,
        block=None,
        rewind="init",
        one_shot=False,
        early_bird=False,
        early_bird_distance=0.1,
        early_bird_window=4,
        monitor="val_loss",
        mode="auto",
        seed=None,
        checkpoint_dir=None,
        log_dir=None,
        verbose=1,
    ):
        super().__init__()
        self.rounds = _check_count(rounds, "rounds")
        self.epochs_per_round = _check_count(epochs_per_round, "epochs_per_round")
        self.prune_rate = _check_prune_rate(prune_rate)
        if strategy not in pruning.STRATEGIES:
            raise ValueError(
                f"Expected `strategy` to be one of {pruning.STRATEGIES}. "
                f"Received: strategy={strategy!r}"
            )
        self.strategy = strategy
        self.layer_rates = _check_layer_rates(layer_rates, strategy)
        self.block = _check_block(block)
        self.rewind = rewind
        self._rewind_kind, self._rewind_at = _parse_rewind(rewind)
        if self._rewind_kind == "epoch" and self._rewind_at > epochs_per_round:
            raise ValueError(
                f"The rewind point rewind={rewind!r} falls after round 0 ends "
                f"(round 0 has epochs_per_round={epochs_per_round} epochs). "
                f"Expected K <= {epochs_per_round}."
            )
        self.one_shot = bool(one_shot)
        if self.one_shot and self._rewind_kind in ("lr", "none"):
            raise ValueError(
                f"one_shot=True prunes round 0's trained weights and trains "
                f"each ticket from the rewind point, so it needs a rewind "
                f"point. Received: rewind={rewind!r}. Use 'init', an int step, "
                "'epoch:K' or 'reinit'."
            )
        self.early_bird = bool(early_bird)
        if self.early_bird and strategy == "random":
            raise ValueError(
                "early_bird=True watches the magnitude-pruning mask settle, "
                "but strategy='random' draws masks that ignore the weights. "
                "Use strategy='layerwise' or 'global' with early_bird."
            )
        if not 0.0 < early_bird_distance < 1.0:
            raise ValueError(
                "Expected `early_bird_distance` in (0, 1). Received: "
                f"early_bird_distance={early_bird_distance!r}"
            )
        self.early_bird_distance = float(early_bird_distance)
        self.early_bird_window = _check_count(early_bird_window, "early_bird_window")
        if mode not in ("auto", "min", "max"):
            raise ValueError(
                f"Expected `mode` to be 'auto', 'min' or 'max'. Received: {mode!r}"
            )
        self.monitor = monitor
        self.mode = mode
        self._seed_given = seed is not None
        self.seed = (
            int(np.random.default_rng().integers(2**31)) if seed is None else seed
        )
        self.checkpoint_dir = None if checkpoint_dir is None else str(checkpoint_dir)
        self.log_dir = None if log_dir is None else str(log_dir)
        self._summaries = None if log_dir is None else SparsitySummaries(log_dir)
        self.verbose = verbose
        self._backup_dir = None  # Found in `on_train_begin`.
        self._reset()

    @property
    def total_epochs(self):
        """The number of epochs to pass to `fit`: all rounds back to back."""
        return self.rounds * self.epochs_per_round

    # ---------------------------------------------------------------- state

    def _reset(self):
        self.results = []
        self._snapshot = None  # {"model": [...], "optimizer": [...]}
        self._initial_kept = None  # {tensor key: weights kept at the start}
        self._history = []  # (epoch logs, optimizer steps) of this round
        self._round_start_step = 0
        self._epochs_done = 0
        self._loaded = False
        self._monitor_used = self.monitor
        self._pending_line = None
        self._early_bird_masks = []  # Flat masks of this round's last epochs.
        self._summaries_step = 0  # Restored by `load_state`.
        self._dense = None  # One-shot: round 0's trained weights and masks.

    def __deepcopy__(self, memo):
        # keras-tuner deep-copies callbacks for every trial. Copy everything
        # but the model, which the next `fit` sets again.
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for name, value in self.__dict__.items():
            if name == "_model":
                value = None
            else:
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
        tensors = prunable_tensors(self.model)
        if not tensors:
            raise ValueError(
                f"Model '{self.model.name}' has no prunable layers. Make it "
                "prunable with `keras_lth.mask_model(model)`, or build it from "
                "`keras_lth.layers`."
            )
        self._rates = self._tensor_rates(tensors)
        self._check_step_rewind()
        self._backup_dir = self._find_backup_dir()
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        # Pruned entries must be stored as zeros (see `MaskedLayer`), even if
        # weights were written since the masks were set.
        set_masks(self.model, {})
        if not self._loaded and self._checkpoint_path():
            self._restore_checkpoint()
        if self._summaries is not None:
            self._summaries.set_model(self.model)
            self._summaries.set_params(self.params)
            self._summaries.on_train_begin(logs)
            if self._loaded:
                self._summaries.step = self._summaries_step
        if self._loaded:
            return  # Resuming: the state came from a file.
        self._reset()
        self._initial_kept = {
            key: self._units(key, mask) for key, mask in get_masks(self.model).items()
        }
        if self._rewind_kind != "none" and self._rewind_at == 0:
            self._snapshot = self._take_snapshot()
        self._round_start_step = self._optimizer_step()

    def on_epoch_begin(self, epoch, logs=None):
        self._print_pending_line()
        if self._summaries is not None:
            self._summaries.on_epoch_begin(epoch, logs)
        if epoch != self._epochs_done:
            raise ValueError(
                f"`fit` starts at epoch {epoch}, but this LotteryTicket has "
                f"finished {self._epochs_done} epochs. Pass "
                f"initial_epoch={self._epochs_done} to `fit` when resuming "
                "with `load_state` (0 for a new run), or give the LotteryTicket "
                "a `checkpoint_dir` (or a keras.callbacks.BackupAndRestore "
                "before it in `callbacks`) so that a restarted `fit` restores "
                "its state."
            )

    def on_epoch_end(self, epoch, logs=None):
        if self._summaries is not None:
            # First, so that it sees the trained weights and step.
            self._summaries.on_epoch_end(epoch, logs)
        logs = dict(logs or {})
        self._epochs_done = epoch + 1
        self._history.append((logs, self._optimizer_step() - self._round_start_step))
        round_index = len(self.results)
        if self._snapshot is None and self._reached_rewind_point():
            self._snapshot = self._take_snapshot()
        if len(self._history) == self.epochs_per_round or self._early_bird_stops(
            round_index
        ):
            self._end_round(round_index)
            if len(self.results) == self.rounds:
                # Early-bird rounds may leave epochs of `fit` unused.
                self.model.stop_training = True
        if self._checkpoint_path():
            self.save_state(self._checkpoint_path(), include_model=True)

    def _reached_rewind_point(self):
        if self.results:
            return False  # The rewind point lies in round 0.
        if self._rewind_kind == "epoch":
            return len(self._history) == self._rewind_at
        # `rewind=k` where k is the last step of an epoch.
        return (
            self._rewind_kind == "step" and self._round_zero_steps() == self._rewind_at
        )

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
        masks = self._next_masks(round_index + 1)
        window = self._early_bird_masks
        window.append(np.concatenate([m.ravel() for m in masks.values()]) > 0)
        del window[: -(self.early_bird_window + 1)]
        if len(window) <= self.early_bird_window:
            return False
        if self._snapshot is None and self._rewind_kind != "none":
            return False  # Round 0 must reach the rewind point first.
        newest = window[-1]
        return all(
            np.mean(newest != old) < self.early_bird_distance for old in window[:-1]
        )

    def _end_round(self, round_index):
        self.results.append(self._round_results(round_index))
        if self._summaries is not None:
            self._summaries.write_round(self.results[-1], self.results)
        if self.verbose:
            # Printed when the next epoch begins or training ends, so the
            # line lands after the progress bar's line for this epoch.
            self._pending_line = self._round_line(self.results[-1])
        if self.one_shot and round_index == 0:
            self._dense = {
                "weights": get_prunable_weights(self.model),
                "masks": get_masks(self.model),
            }
        if round_index + 1 < self.rounds:
            self._next_round(round_index + 1)
            if self._summaries is not None:
                self._summaries.write_sparsity()

    def on_train_end(self, logs=None):
        self._print_pending_line()
        self._loaded = False
        if self._summaries is not None:
            self._summaries.on_train_end(logs)

    def _print_pending_line(self):
        if self._pending_line:
            print(self._pending_line)
            self._pending_line = None

    def on_train_batch_begin(self, batch, logs=None):
        # A mid-epoch rewind point (`rewind=k`) is taken before step k + 1
        # runs. The step count comes from Python (the steps of the epochs
        # done, plus `batch`), so no batch reads the device, except the one
        # at the rewind point. This is a batch *begin* hook on purpose: a
        # batch *end* hook would turn off Keras's asynchronous dispatch and
        # bring every step's logs back to the host.
        if self._snapshot is not None or self._rewind_kind != "step":
            return
        if self.results:
            return  # Round 0 is over.
        done = self._round_zero_steps() + batch
        if done == self._rewind_at:
            self._snapshot = self._take_snapshot(sync=True)
        elif done > self._rewind_at:
            raise ValueError(
                f"Training passed step {self._rewind_at} (rewind={self.rewind!r}) "
                f"without stopping there: it is now at step {done}. With "
                "`steps_per_execution` > 1, choose a rewind step that is a "
                "multiple of it."
            )

    def _round_zero_steps(self):
        """Optimizer steps of round 0 taken in the epochs done so far."""
        return self._history[-1][1] if self._history else 0

    # ------------------------------------------------------------- rounds

    def _round_results(self, round_index):
        monitor, better = self._monitor_and_order()
        values = [logs.get(monitor) for logs, _ in self._history]
        best_index = 0
        for i, value in enumerate(values):
            if value is not None and better(value, values[best_index]):
                best_index = i
        masks = get_masks(self.model)
        self._check_pruned_weights_stayed_zero(masks)
        kept = sum(float(np.sum(m)) for m in masks.values())
        total = sum(m.size for m in masks.values())
        best_logs, best_step = self._history[best_index]
        return {
            "round": round_index,
            "weights_remaining": kept / total,
            "layers": {k: float(np.mean(m)) for k, m in masks.items()},
            "best_epoch": best_index + 1,
            "best_step": int(best_step),
            "best": _plain(best_logs),
            "final": _plain(self._history[-1][0]),
            "monitor": monitor,
            "epochs": len(self._history),
            "epochs_skipped": self.epochs_per_round - len(self._history),
        }

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
                stacklevel=2,
            )
            set_masks(self.model, {})

    def _next_round(self, round_index):
        if self._snapshot is None and self._rewind_kind != "none":
            raise ValueError(
                f"Round 0 ended before reaching the rewind point "
                f"rewind={self.rewind!r}: it ran {self._optimizer_step()} "
                "optimizer steps. Choose an earlier rewind point."
            )
        set_masks(self.model, self._next_masks(round_index))
        self._restore_snapshot(round_index)
        self._history = []
        self._early_bird_masks = []
        self._round_start_step = self._optimizer_step()

    def _next_masks(self, step):
        """The masks of pruning step `step` (1-based): cumulative targets,
        exact counts. One-shot prunes round 0's trained weights straight from
        its masks to the target."""
        if self._dense is not None:
            masks, weights = self._dense["masks"], self._dense["weights"]
        else:
            masks = get_masks(self.model)
            weights = get_prunable_weights(self.model)
        if self.strategy == "global":
            included = {k: m for k, m in masks.items() if self._rates[k] > 0}
            start = sum(self._initial_kept[k] for k in included)
            target = _target(start, self.prune_rate, step)
            alive = sum(self._units(k, m) for k, m in included.items())
            rate = (alive - target) / alive if alive else 0.0
            return pruning.prune_global(
                weights, included, max(rate, 0.0), block=self.block
            )
        rates = {}
        for key, mask in masks.items():
            alive = self._units(key, mask)
            target = _target(self._initial_kept[key], self._rates[key], step)
            rates[key] = max(alive - target, 0) / alive if alive else 0.0
        return pruning.prune(
            weights,
            masks,
            rates,
            strategy=self.strategy,
            seed=[self.seed, step],
            block=self.block,
        )

    def _units(self, key, mask):
        """What pruning counts in `key`'s tensor: kept weights, or blocks."""
        block = self.block.get(key) if isinstance(self.block, dict) else self.block
        if block is None:
            return int(np.sum(mask))
        return pruning.surviving_blocks(mask, block)

    # ---------------------------------------------------- snapshot/restore

    def _take_snapshot(self, sync=False):
        if sync:
            _sync_backend_state(self.model)
        return {
            "model": [ops.convert_to_numpy(v) for v in self._model_state()],
            "optimizer": [
                ops.convert_to_numpy(v) for v in self.model.optimizer.variables
            ],
        }

    def _restore_snapshot(self, round_index):
        if self._rewind_kind == "none":
            return  # Fine-tuning: training goes on from the pruned weights.
        if self._rewind_kind != "lr":
            state = self._model_state()
            for variable, value in zip(state, self._snapshot["model"], strict=True):
                variable.assign(value)
        if self._rewind_kind == "reinit":
            self._reinitialize(round_index)
        for variable, value in zip(
            self.model.optimizer.variables, self._snapshot["optimizer"], strict=True
        ):
            variable.assign(value)
        # Pruned entries are stored as zeros, like `set_masks` leaves them.
        set_masks(self.model, {})

    def _reinitialize(self, round_index):
        for i, (layer, name) in enumerate(prunable_tensors(self.model).values()):
            variable = layer.prunable_variable(name)
            initializer = _reseeded(
                layer.initializer_for(name), [self.seed, round_index, i]
            )
            variable.assign(initializer(variable.shape, dtype=variable.dtype))

    def _model_state(self):
        """Every model variable but the masks, in a stable order."""
        masks = {
            id(layer.mask_variable(name))
            for layer in prunable_layers(self.model)
            for name in layer.prunable_weight_names
        }
        return [v for v in self.model.variables if id(v) not in masks]

    # ------------------------------------------------------------ helpers

    def _tensor_rates(self, tensors):
        return tensor_rates(
            tensors,
            prune_rate=self.prune_rate,
            layer_rates=self.layer_rates,
            strategy=self.strategy,
        )

    def _check_step_rewind(self):
        if self._rewind_kind != "step":
            return
        steps = self.params.get("steps")
        if steps is not None and self._rewind_at > steps * self.epochs_per_round:
            raise ValueError(
                f"The rewind point rewind={self.rewind!r} falls after round 0 "
                f"ends: round 0 runs {steps * self.epochs_per_round} steps "
                f"({self.epochs_per_round} epochs of {steps} steps)."
            )
        per_execution = int(getattr(self.model, "steps_per_execution", 1) or 1)
        if self._rewind_at % per_execution:
            raise ValueError(
                f"rewind={self.rewind!r} is not a multiple of the model's "
                f"steps_per_execution={per_execution}, so training never stops "
                "there. Choose a multiple of it."
            )

    def _monitor_and_order(self):
        logs = self._history[0][0]
        if self._monitor_used not in logs:
            warnings.warn(
                f"LotteryTicket: monitor={self.monitor!r} is not in the logs "
                f"(available: {sorted(logs)}); using 'loss' instead.",
                stacklevel=2,
            )
            self._monitor_used = "loss"
        monitor = self._monitor_used
        mode = self.mode
        if mode == "auto" or monitor != self.monitor:
            maximize = any(w in monitor for w in ("acc", "auc", "precision", "recall"))
            mode = "max" if maximize and monitor != "loss" else "min"
        if mode == "max":
            return monitor, lambda a, b: a > b
        return monitor, lambda a, b: a < b

    def _optimizer_step(self):
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def _round_line(self, row):
        best = row["best"].get(row["monitor"])
        best = f"{best:.4f}" if isinstance(best, float) else best
        return (
            f"LotteryTicket: round {row['round'] + 1}/{self.rounds}, "
            f"{100 * row['weights_remaining']:.1f}% of weights remaining, "
            f"best {row['monitor']} {best} at epoch {row['best_epoch']} "
            f"(step {row['best_step']})"
        )

    # -------------------------------------------------------- reports, I/O

    def results_table(self):
        """Returns `results` as a readable text table."""
        return results_lib.results_table(self.results)

    def save_results_json(self, path):
        """Writes `results` to `path` as JSON, atomically."""
        results_lib.save_results_json(self.results, path)

    def save_results_csv(self, path):
        """Writes `results` to `path` as CSV, atomically."""
        results_lib.save_results_csv(self.results, path)

    def _checkpoint_path(self):
        folder = self.checkpoint_dir or self._backup_dir
        if folder is None:
            return None
        return os.path.join(folder, CHECKPOINT_NAME)

    def _find_backup_dir(self):
        """The `backup_dir` of a `BackupAndRestore` in the same `fit`, or None.

        Keras gives a callback no handle on the others in `fit`, so this
        looks for the `CallbackList` that is calling this one. Its
        `BackupAndRestore` saves the model only; the ticket keeps its own
        state in the same folder, which `BackupAndRestore` removes when
        training ends, so both start afresh on the next `fit`.
        """
        frame = sys._getframe(1)
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, keras.callbacks.CallbackList):
                break
            frame = frame.f_back
        else:
            return None
        callbacks = owner.callbacks
        position = next((i for i, c in enumerate(callbacks) if c is self), None)
        backups = [
            (i, c)
            for i, c in enumerate(callbacks)
            if isinstance(c, keras.callbacks.BackupAndRestore)
        ]
        if not backups or position is None:
            return None
        index, backup = backups[0]
        if index > position:
            raise ValueError(
                "The LotteryTicket comes before keras.callbacks.BackupAndRestore "
                "in `callbacks`, so BackupAndRestore would overwrite the "
                "model the ticket restores. Put the LotteryTicket after it."
            )
        return backup.backup_dir

    def _restore_checkpoint(self):
        path = self._checkpoint_path()
        if not os.path.exists(path):
            return
        live = self.load_state(path)
        for part, variables in (
            ("model", self.model.variables),
            ("optimizer", self.model.optimizer.variables),
        ):
            values = live.get(part)
            shapes = [tuple(v.shape) for v in variables]
            saved = None if values is None else [tuple(x.shape) for x in values]
            if saved != shapes:
                self._loaded = False
                raise ValueError(
                    f"The checkpoint '{path}' does not fit this model: its "
                    f"{part} variables have shapes {saved}, the model's have "
                    f"{shapes}. Use another `checkpoint_dir` for another model."
                )
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)
        # As `keras.callbacks.BackupAndRestore` does: `fit` starts its epoch
        # loop from here once `on_train_begin` returns. A finished run (which
        # early-bird rounds may finish before `total_epochs`) trains no more.
        finished = len(self.results) == self.rounds
        self.model._initial_epoch = self.total_epochs if finished else self._epochs_done

    def save_state(self, path, include_model=False):
        """Saves the run state needed to continue IMP, atomically.

        The state holds the settings, the finished rounds' results, the
        rewind point (weights and optimizer state), the current round's
        epoch logs and the initial weight counts. The model itself (weights,
        masks, optimizer) is saved separately with `model.save(...)`, unless
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
        if self._initial_kept is None:
            raise ValueError("There is no run state to save: call `fit` first.")
        meta = {
            "version": _STATE_VERSION,
            "config": self._config(),
            "results": self.results,
            "history": [[_plain(logs), step] for logs, step in self._history],
            "epochs_done": self._epochs_done,
            "round_start_step": self._round_start_step,
            "initial_kept": self._initial_kept,
            "monitor_used": self._monitor_used,
            "summaries_step": (0 if self._summaries is None else self._summaries.step),
        }
        arrays = {"meta": np.array(json.dumps(meta))}
        if self._snapshot is not None:
            for part in ("model", "optimizer"):
                for i, value in enumerate(self._snapshot[part]):
                    arrays[f"{part}_{i}"] = value
        for i, flat in enumerate(self._early_bird_masks):
            arrays[f"early_bird_{i}"] = flat
        if self._dense is not None:
            for part in ("weights", "masks"):
                for i, value in enumerate(self._dense[part].values()):
                    arrays[f"dense_{part}_{i}"] = value
        if include_model:
            # The live model and optimizer, masks included, in the same file,
            # so that one atomic rename publishes a consistent checkpoint.
            _sync_backend_state(self.model)
            for part, variables in (
                ("live_model", self.model.variables),
                ("live_optimizer", self.model.optimizer.variables),
            ):
                for i, variable in enumerate(variables):
                    arrays[f"{part}_{i}"] = ops.convert_to_numpy(variable)

        def write(f):
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            f.write(buffer.getvalue())

        atomic_write(path, write)

    def load_state(self, path):
        """Loads a state written by `save_state`; `fit` then continues it.

        If this callback was created without a `seed`, it takes the saved
        run's seed.

        Returns:
            A dict with the live `"model"` and `"optimizer"` variable values
            when the state was saved with `include_model=True`, else `None`s.

        Raises:
            ValueError: If the file is not a LotteryTicket state, or was saved
                with other settings than this callback's.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {k: data[k] for k in data.files if k != "meta"}
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(
                f"Cannot read a LotteryTicket state from '{path}': {e}"
            ) from e
        if meta.get("version") != _STATE_VERSION:
            raise ValueError(
                f"'{path}' holds state version {meta.get('version')!r}; "
                f"expected {_STATE_VERSION}."
            )
        saved = meta["config"]
        if not self._seed_given and "seed" in saved:
            self.seed = saved["seed"]  # The run's seed, drawn when it began.
        if saved != self._config():
            diff = {
                k: (saved.get(k), v)
                for k, v in self._config().items()
                if saved.get(k) != v
            }
            raise ValueError(
                f"The state in '{path}' was saved with other settings. "
                f"Mismatch (saved, this callback): {diff}"
            )
        self._reset()
        self.results = meta["results"]
        self._history = [(logs, step) for logs, step in meta["history"]]
        self._epochs_done = meta["epochs_done"]
        self._round_start_step = meta["round_start_step"]
        self._initial_kept = meta["initial_kept"]
        self._monitor_used = meta["monitor_used"]
        self._summaries_step = meta.get("summaries_step", 0)
        parts = {
            part: [
                arrays[f"{part}_{i}"]
                for i in range(sum(k.startswith(part + "_") for k in arrays))
            ]
            for part in (
                "model",
                "optimizer",
                "live_model",
                "live_optimizer",
                "early_bird",
                "dense_weights",
                "dense_masks",
            )
        }
        if parts["model"]:
            self._snapshot = {"model": parts["model"], "optimizer": parts["optimizer"]}
        self._early_bird_masks = parts["early_bird"]
        if parts["dense_weights"]:
            keys = list(self._initial_kept)
            self._dense = {
                part: dict(zip(keys, parts[f"dense_{part}"], strict=True))
                for part in ("weights", "masks")
            }
        self._loaded = True
        return {
            "model": parts["live_model"] or None,
            "optimizer": parts["live_optimizer"] or None,
        }

    @property
    def epochs_done(self):
        """Epochs finished so far: the `initial_epoch` to resume `fit` from."""
        return self._epochs_done

    def _config(self):
        return {
            "rounds": self.rounds,
            "epochs_per_round": self.epochs_per_round,
            "prune_rate": self.prune_rate,
            "strategy": self.strategy,
            "layer_rates": self.layer_rates,
            "block": _block_config(self.block),
            "rewind": self.rewind,
            "one_shot": self.one_shot,
            "early_bird": self.early_bird,
            "early_bird_distance": self.early_bird_distance,
            "early_bird_window": self.early_bird_window,
            "monitor": self.monitor,
            "mode": self.mode,
            "seed": self.seed,
        }


def tensor_rates(tensors, *, prune_rate, layer_rates, strategy):
    """The pruning rate of each prunable tensor, as `LotteryTicket` uses it.

    A layer named in `layer_rates` gets its own rate; the last prunable layer
    (the output layer) gets `prune_rate * OUTPUT_LAYER_RATE_FACTOR` unless
    named (not with `strategy="global"`); every other layer gets `prune_rate`.

    Args:
        tensors: `keras_lth.masking.prunable_tensors(model)`.
        prune_rate: The default rate.
        layer_rates: Dict `{layer_name: rate}`.
        strategy: One of `keras_lth.pruning.STRATEGIES`.

    Returns:
        Dict `{tensor key: rate}`.

    Raises:
        ValueError: If `layer_rates` names a layer that is not prunable.
    """
    layer_names = {layer.name for layer, _ in tensors.values()}
    unknown = sorted(set(layer_rates) - layer_names)
    if unknown:
        raise ValueError(
            f"`layer_rates` names layers that are not prunable: {unknown}. "
            f"Prunable layers: {sorted(layer_names)}"
        )
    rates = dict(layer_rates)
    if strategy != "global" and tensors:
        output_layer = list(tensors.values())[-1][0].name
        rates.setdefault(output_layer, prune_rate * OUTPUT_LAYER_RATE_FACTOR)
    return {
        key: rates.get(layer.name, prune_rate) for key, (layer, _) in tensors.items()
    }


def _target(start, rate, step):
    """Weights a tensor keeps after `step` pruning steps at `rate`."""
    return int(np.floor(start * (1.0 - rate) ** step + 0.5))


def _reseeded(initializer, seed):
    config = initializer.get_config()
    if "seed" not in config:
        return initializer  # Deterministic initializers (zeros, ones, ...).
    config["seed"] = int(np.random.default_rng(seed).integers(2**31))
    return initializer.__class__.from_config(config)


def _sync_backend_state(model):
    # The JAX trainer keeps the live state outside the variables during an
    # epoch; other backends update the variables in place.
    if hasattr(model, "jax_state_sync"):
        model.jax_state_sync()


def _plain(logs):
    return {k: float(v) for k, v in logs.items() if np.ndim(v) == 0}


def _check_count(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"Expected `{name}` to be an int. Received: {name}={value!r} "
            f"of type {type(value).__name__}"
        )
    if value < 1:
        raise ValueError(f"Expected `{name}` >= 1. Received: {name}={value}")
    return int(value)


def _check_prune_rate(rate):
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)):
        raise TypeError(
            "Expected `prune_rate` to be a float. "
            f"Received: prune_rate={rate!r} of type {type(rate).__name__}"
        )
    if not 0.0 < rate < 1.0:
        raise ValueError(
            f"Expected `prune_rate` in the open interval (0, 1). "
            f"Received: prune_rate={rate}"
        )
    return float(rate)


def _check_layer_rates(layer_rates, strategy):
    if layer_rates is None:
        return {}
    if not isinstance(layer_rates, dict):
        raise TypeError(
            "Expected `layer_rates` to be a dict {layer_name: rate}. "
            f"Received: {layer_rates!r}"
        )
    for name, rate in layer_rates.items():
        if not isinstance(name, str):
            raise TypeError(
                f"Expected layer names as `layer_rates` keys. Received: {name!r}"
            )
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)):
            raise TypeError(
                f"Expected a float rate for layer '{name}'. Received: {rate!r}"
            )
        if not 0.0 <= rate < 1.0:
            raise ValueError(
                f"Expected the rate for layer '{name}' in [0, 1), where 0 "
                f"means never prune. Received: {rate}"
            )
        if strategy == "global" and rate != 0:
            raise ValueError(
                "With strategy='global' one threshold prunes every layer, so "
                "`layer_rates` can only hold 0 (never prune a layer). Received "
                f"{{'{name}': {rate}}}. Use strategy='layerwise' for per-layer "
                "rates."
            )
    return {name: float(rate) for name, rate in layer_rates.items()}


def _check_block(block):
    if block is None:
        return None
    if isinstance(block, dict):
        for key, value in block.items():
            if value is not None:
                pruning._check_block(value, f"`block` for '{key}'")
        return {
            key: None if value is None else tuple(value) for key, value in block.items()
        }
    return pruning._check_block(block, "`block`")


def _block_config(block):
    """`block` as it reads back from JSON."""
    if isinstance(block, dict):
        return {k: None if v is None else list(v) for k, v in block.items()}
    return None if block is None else list(block)


def _parse_rewind(rewind):
    """Returns `(kind, at)`: ("init", 0), ("reinit", 0), ("step", k),
    ("epoch", K), ("lr", 0) or ("none", 0)."""
    if rewind in ("init", "reinit", "lr", "none"):
        return rewind, 0
    if isinstance(rewind, (int, np.integer)) and not isinstance(rewind, bool):
        if rewind < 0:
            raise ValueError(f"Expected a rewind step >= 0. Received: rewind={rewind}")
        return "step", int(rewind)
    if isinstance(rewind, str):
        match = re.fullmatch(r"epoch:(\d+)", rewind)
        if match:
            return "epoch", int(match.group(1))
    raise ValueError(
        "Expected `rewind` to be 'init', 'reinit', an int number of optimizer "
        f"steps, 'epoch:K', 'lr' or 'none'. Received: rewind={rewind!r}"
    )
