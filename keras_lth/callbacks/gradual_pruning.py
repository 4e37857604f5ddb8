"""`GradualPruning`: prune during training, following a sparsity schedule.

Gradual magnitude pruning (Zhu & Gupta, 2017), as tensorflow-model-
optimization's `prune_low_magnitude` does it, for Keras 3 models with masked
layers.

**Schedules.** `keras_lth.schedules.PolynomialDecay` and `ConstantSparsity`
reproduce tfmot's schedules of the same names exactly. tfmot's own schedule
objects (`tfmot.sparsity.keras.PolynomialDecay`, ...) work too, as does any
object with a `__call__(step) -> (should_prune, sparsity)`; Python, numpy or
TensorFlow scalars are all read. keras_lth never imports tfmot (importing it
switches the whole process to Keras 2). A plain `step -> sparsity` callable
needs `frequency`: the callback then prunes at every multiple of it.

**Counts.** The smallest-magnitude surviving weights go first, counts are
exact (`floor(sparsity * n + 0.5)` of `n` weights, or of `n` blocks with
`block`; see `keras_lth.pruning.prune_to_sparsity`), and nothing
grows back: a schedule whose sparsity goes down prunes nothing more. Pruned
weights and their optimizer slots (momentum, Adam moments) are zeroed by
`keras_lth.set_masks` and stay zero while training goes on (but for the
second moments that the callback fills on PyTorch while `fit` runs, which
changes no update: see `keras_lth.optimizer_slots`).

**Cost.** The schedule is evaluated in Python before every batch, with no
device access: the step is read from the optimizer once per epoch and
counted from the batch index in between. Only a step that prunes reads the
weights and masks to the host and writes the new masks back. The callback
defines no `on_train_batch_end`, so Keras keeps dispatching batches
asynchronously (on the backends that do: JAX, PyTorch). A tfmot schedule runs
a few eager TensorFlow ops per evaluation; use keras_lth's schedules where
that matters.

**`steps_per_execution=k > 1`.** Keras runs `k` steps between two callback
calls; a step the schedule prunes at that falls inside such a run is applied
at the start of the next one (never early), at the sparsity of the latest
scheduled step.

**Short schedules.** A schedule that names its target (`final_sparsity` or
`target_sparsity`, with `begin_step`, `end_step` and `frequency`, as
keras_lth's and tfmot's do) is checked when `fit` begins: if its last pruning
step within the steps `fit` will run prunes to less than the target (a
`PolynomialDecay` whose `end_step` is the number of steps `fit` runs never
reaches `end_step`, the first step after training), the callback warns with
the numbers and an `end_step` that fits.
"""

import copy
import warnings

import keras
import numpy as np
from keras import ops

from keras_lth import optimizer_slots
from keras_lth._checks import check_count
from keras_lth._compat import refuse_tf_distribute_off_tensorflow
from keras_lth._compat import sync_backend_state
from keras_lth.callbacks.imp_step import check_block_option
from keras_lth.masking import get_masks
from keras_lth.masking import get_prunable_weights
from keras_lth.masking import require_prunable_tensors
from keras_lth.masking import set_masks
from keras_lth.pruning import check_strategy
from keras_lth.pruning import prune_to_sparsity
from keras_lth.schedules import ConstantSparsity
from keras_lth.schedules import PolynomialDecay

__all__ = ["STRATEGIES", "GradualPruning"]

#: The strategies `GradualPruning` accepts (a subset of
#: `keras_lth.pruning.STRATEGIES`).
STRATEGIES = ("layerwise", "global", "lamp")


class GradualPruning(keras.callbacks.Callback):
    """Prunes by magnitude during training, following a sparsity schedule.

    Before each training step `t` (the optimizer's iteration count), the
    callback asks the schedule `schedule(t) -> (should_prune, sparsity)`;
    when it says to prune, every prunable tensor's mask is set so that
    exactly `sparsity` of its weights are pruned (`strategy="layerwise"`), or
    of all prunable weights together, below one threshold on `|w|`
    (`strategy="global"`) or on LAMP scores (`strategy="lamp"`, see
    `keras_lth.pruning.prune_lamp`). The model must hold masked layers (see
    `keras_lth.mask_model`); see this module's docstring for the schedules
    accepted, the exact counts and the cost.

    Args:
        schedule: A schedule `step -> (should_prune, sparsity)`, or
            `step -> sparsity` with `frequency`.
        strategy: `"layerwise"`, `"global"` or `"lamp"`. Defaults to
            `"layerwise"`.
        block: `None` (the default) prunes single weights; a `(rows, cols)`
            block prunes whole blocks (see `keras_lth.pruning` for the
            orientation), and a dict maps tensor keys to blocks or `None`.
        frequency: Only for a schedule that returns a bare sparsity: prune
            at the steps that are multiples of `frequency`. Defaults to None.
        verbose: `1` prints a line each time the callback prunes; `0` (the
            default) is silent.

    Attributes:
        history: `(step, sparsity)` per pruning step of the last `fit`.

    Example:

    ```python
    schedule = keras_lth.schedules.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=0.9, begin_step=0, end_step=2000,
        frequency=100)
    model.fit(x, y, epochs=10, callbacks=[keras_lth.GradualPruning(schedule)])
    keras_lth.sparsity(model)["layers"]  # 0.9 each, to within one weight
    ```
    """

    def __init__(
        self,
        schedule,
        *,
        strategy: str = "layerwise",
        block=None,
        frequency: int | None = None,
        verbose: int = 0,
    ):
        super().__init__()
        if not callable(schedule):
            raise TypeError(
                "Expected `schedule` to be callable as `schedule(step) -> "
                "(should_prune, sparsity)`. Received: "
                f"{schedule!r} of type {type(schedule).__name__}"
            )
        check_strategy(strategy, choices=STRATEGIES)
        if frequency is not None:
            frequency = check_count(frequency, "frequency")
            if isinstance(schedule, (PolynomialDecay, ConstantSparsity)):
                raise ValueError(
                    f"{type(schedule).__name__} decides when to prune (its own "
                    f"`frequency` is {schedule.frequency}). `frequency` is for "
                    "a schedule that returns a bare sparsity; expected "
                    f"frequency=None. Received: frequency={frequency}"
                )
        self.schedule = schedule
        self.strategy = strategy
        self.block = check_block_option(block)
        self.frequency = frequency
        self.verbose = verbose
        self._reset()

    def _reset(self):
        self.history = []
        self._epoch_start = None  # Optimizer step when the epoch began.
        self._checked = None  # Last step the schedule was asked about.
        self._fill = optimizer_slots.FillSchedule()

    def __deepcopy__(self, memo):
        # keras-tuner deep-copies callbacks for every trial. Copy everything
        # but the model, which the next `fit` sets again.
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for name, value in self.__dict__.items():
            setattr(
                clone, name, None if name == "_model" else copy.deepcopy(value, memo)
            )
        return clone

    # ------------------------------------------------------------ callbacks

    def on_train_begin(self, logs=None):
        refuse_tf_distribute_off_tensorflow("`fit` with GradualPruning runs")
        tensors = require_prunable_tensors(self.model)
        if self.block is not None:
            # A block dict naming tensors the model lacks fails now, not at
            # the first pruning step.
            masks = {key: np.ones((1, 1), np.float32) for key in tensors}
            prune_to_sparsity(masks, masks, 0.0, block=self.block)
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self._reset()
        self._fill.begin(optimizer)
        step = self._read_step()
        self._checked = step - 1
        # Ask once now, so that a schedule of the wrong kind fails before
        # any training, not at its first pruning step.
        self._ask(step)
        self._warn_if_short(step)

    def on_epoch_begin(self, epoch, logs=None):
        # One read of the step per epoch (Keras has synchronised at the end
        # of the last one); within the epoch it is counted from `batch`.
        self._epoch_start = self._read_step()
        if self._checked is None or self._epoch_start <= self._checked:
            # The step went back (a rewind restored the optimizer's iteration
            # count): follow the schedule again from there.
            self._checked = self._epoch_start - 1
        self._fill.epoch_begin()

    def on_train_batch_begin(self, batch, logs=None):
        if self._epoch_start is None:
            self.on_epoch_begin(0)
        # Keras passes the index, within the epoch, of the first of the
        # `steps_per_execution` steps it is about to run.
        step = self._epoch_start + int(batch)
        due = self._due(step)
        self._checked = step
        if due is not None:
            self._prune(step, due)
            self._fill.pruned(batch)
        if self._fill.due(batch):  # On PyTorch: see `optimizer_slots`.
            self._fill.fill(self.model, batch)

    def on_train_end(self, logs=None):
        self._epoch_start = None
        self._fill.end(self.model)

    # --------------------------------------------------------------- steps

    def _due(self, step):
        """Sparsity of the latest scheduled step in `(checked, step]`, or None."""
        first = self._checked + 1
        if self.frequency is not None:
            latest = step - step % self.frequency
            if latest < first:
                return None
            _, sparsity = self._ask(latest)
            return sparsity
        for candidate in range(step, first - 1, -1):
            should_prune, sparsity = self._ask(candidate)
            if should_prune:
                return sparsity
        return None

    def _ask(self, step):
        """Evaluates the schedule at `step` and reads its answer on the host."""
        output = self.schedule(step)
        pair = isinstance(output, (tuple, list))
        if pair and len(output) != 2:
            raise ValueError(
                "Expected the schedule to return `(should_prune, sparsity)` or "
                f"a bare sparsity. Received at step {step}: {output!r}"
            )
        if pair and self.frequency is not None:
            raise ValueError(
                "The schedule returns `(should_prune, sparsity)`, so it decides "
                "when to prune; expected frequency=None. Received: "
                f"frequency={self.frequency}"
            )
        if not pair and self.frequency is None:
            raise ValueError(
                "The schedule returns a bare sparsity, so the callback needs to "
                "know when to prune: pass `frequency` (prune every `frequency` "
                f"steps), or return `(should_prune, sparsity)`. Received at "
                f"step {step}: {output!r}"
            )
        should_prune, sparsity = output if pair else (True, output)
        return _as_bool(should_prune, step), _as_sparsity(sparsity, step)

    def _read_step(self):
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def _warn_if_short(self, first):
        """Warns if the schedule's target is out of reach in this `fit`."""
        steps, epochs = self.params.get("steps"), self.params.get("epochs")
        schedule = self.schedule
        target = getattr(schedule, "final_sparsity", None)
        target = getattr(schedule, "target_sparsity", target)
        names = ("begin_step", "end_step", "frequency")
        if not (steps and epochs) or target is None:
            return
        if not all(hasattr(schedule, name) for name in names):
            return
        begin, end, frequency = (int(getattr(schedule, n)) for n in names)
        # The last step a batch begins at: `fit` may start later (an
        # `initial_epoch`), never earlier, so this never warns wrongly.
        execution = max(int(getattr(self.model, "steps_per_execution", 1)), 1)
        last = first + steps * (epochs - 1) + (steps - 1) // execution * execution
        stop = last if end < 0 else min(end, last)
        if stop >= begin:
            latest = begin + (stop - begin) // frequency * frequency
            should_prune, reached = self._ask(latest)
            if should_prune and reached >= float(target) - 1e-6:
                return
            where = f"its last pruning step is {latest}, to sparsity {reached:.4g}"
            # Then `latest` prunes to the target, and the ramp ends in `fit`.
            fix = f"set end_step={latest}"
        else:
            where, fix = "it never prunes", f"set begin_step to at most {last}"
        warnings.warn(
            f"GradualPruning: the schedule does not reach its target sparsity "
            f"{float(target):g} in this `fit`: {where}. `fit` runs steps "
            f"{first} to {last} at most ({steps} steps per epoch x {epochs} "
            f"epochs), and the schedule prunes every {frequency} steps from "
            f"begin_step={begin} to end_step={end}. To reach the target, {fix}, "
            "or train for more steps.",
            stacklevel=2,
        )

    # ------------------------------------------------------------- pruning

    def _prune(self, step, sparsity):
        # On JAX the live state sits outside the variables during an epoch;
        # writing it back also makes the next step read the new masks.
        sync_backend_state(self.model)
        new = prune_to_sparsity(
            get_prunable_weights(self.model),
            get_masks(self.model),
            sparsity,
            strategy=self.strategy,
            block=self.block,
        )
        set_masks(self.model, new)
        self.history.append((step, sparsity))
        if self.verbose:
            print(f"GradualPruning: step {step}: pruned to sparsity {sparsity:.4f}")


def _scalar(value, what, step):
    try:
        array = np.asarray(value)
    except Exception as e:  # Anything numpy cannot read.
        raise TypeError(
            f"Expected the schedule's {what} to be a scalar. Received at step "
            f"{step}: {value!r} of type {type(value).__name__}"
        ) from e
    if array.size != 1 or array.dtype.kind not in "biuf":
        raise TypeError(
            f"Expected the schedule's {what} to be a scalar. Received at step "
            f"{step}: {value!r} of type {type(value).__name__}"
        )
    return array.reshape(()).item()


def _as_bool(value, step):
    return bool(_scalar(value, "`should_prune`", step))


def _as_sparsity(value, step):
    sparsity = float(_scalar(value, "sparsity", step))
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(
            f"Expected the schedule's sparsity in [0, 1]. Received at step "
            f"{step}: {sparsity!r}"
        )
    return sparsity
