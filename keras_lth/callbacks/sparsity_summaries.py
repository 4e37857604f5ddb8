"""`SparsitySummaries`: TensorBoard summaries of masks, weights and IMP rounds.

Tags in run `train/`, at the training step (the optimizer steps taken; it
never goes back, even when `LotteryTicket` rewinds the iteration count, since
TensorBoard drops the points after a step that goes back):

* `sparsity/global` and `sparsity/<layer>/<weight>`: the fraction of
  prunable weights pruned, overall and per tensor (as `keras_lth.sparsity`),
  when training begins, at every epoch end, and where masks changed between
  epochs;
* `weights/<layer>/<weight>`: a histogram of each prunable tensor's
  surviving weights, every `histogram_freq` epochs.

Per IMP round, by `write_round`:

* `lottery/round`: the round index, at the step where the round ended;
* with the round index as step: `lottery/weights_remaining`,
  `lottery/best_step`, `lottery/best_epoch`, `lottery/best_<metric>` (every
  metric at the round's best epoch) and `lottery/final_<metric>` (at its last
  epoch);
* the same metrics and `best_step` as `lottery_vs_sparsity_permille/...`,
  with the fraction of weights pruned, in per mille, as step (0 = dense,
  488 = 48.8% pruned): the ticket curve, sparser tickets to the right
  (TensorBoard needs growing integer steps, so the axis counts what is
  pruned, not what remains);
* `lottery/plot`: an image of `keras_lth.plot_results` over the rounds so far.

Metrics named `val_<name>` go to run `validation/` as `<name>`, as
`keras.callbacks.TensorBoard` does, so TensorBoard overlays both curves.
"""

import copy
import os
import warnings

import keras
import numpy as np
from keras import ops

from keras_lth._checks import check_count
from keras_lth._summary_writer import DEFAULT_BUCKETS
from keras_lth._summary_writer import SummaryWriter
from keras_lth.masking import get_masks
from keras_lth.masking import get_prunable_weights

__all__ = ["ROUND_PREFIX", "SPARSITY_AXIS_PREFIX", "SparsitySummaries"]

#: Tag families of the per-round summaries written by `write_round`.
ROUND_PREFIX = "lottery"
SPARSITY_AXIS_PREFIX = "lottery_vs_sparsity_permille"

_ROW_KEYS = ("round", "weights_remaining", "best_epoch", "best_step", "best", "final")

_SPARSITY_AXIS_NOTE = (
    "x axis (step): the fraction of prunable weights pruned, in per mille "
    "(0 = dense, 488 = 48.8% pruned, 51.2% remaining), so that sparser "
    "tickets are to the right, as in the paper's figures."
)


class SparsitySummaries(keras.callbacks.Callback):
    """Writes TensorBoard summaries of a masked model's sparsity and weights.

    For any training of a model with masked layers (see
    `keras_lth.mask_model`), alone or inside `keras_lth.LotteryTicket`
    (`log_dir=...`). It follows `keras.callbacks.TensorBoard`'s layout
    (runs `train/` and `validation/`) in event files of its own, so both can
    share a `log_dir`. It writes between epochs only (no per-batch hook, so
    Keras keeps dispatching batches asynchronously), and needs the
    `tensorboard` package but not TensorFlow. The tags are listed in this
    module's docstring. Used alone beside a `LotteryTicket`, put it before
    the ticket in `callbacks`, so that it sees each round's trained weights.

    Args:
        log_dir: The folder TensorBoard reads. Defaults to `"logs"`.
        histogram_freq: Epochs between weight histograms; `0` writes none.
            Defaults to `1`.
        histogram_buckets: Buckets per histogram. Defaults to `30`.
        plot: Whether `write_round` adds the `lottery/plot` image (needs
            matplotlib). Defaults to `True`.
        plot_metric: The metric the plot shows; see
            `keras_lth.plot_results`. Defaults to the accuracy-like metric of
            the monitored split.

    Example:

    ```python
    summaries = keras_lth.SparsitySummaries("logs/lenet")
    tensorboard = keras.callbacks.TensorBoard("logs/lenet")
    model.fit(x, y, validation_data=(xv, yv), epochs=10,
              callbacks=[summaries, tensorboard])
    # tensorboard --logdir logs/lenet
    ```
    """

    def __init__(
        self,
        log_dir="logs",
        *,
        histogram_freq=1,
        histogram_buckets=DEFAULT_BUCKETS,
        plot=True,
        plot_metric=None,
    ):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(
                "Expected `log_dir` to be a path (str or os.PathLike). "
                f"Received: log_dir={log_dir!r} of type {type(log_dir).__name__}"
            )
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = check_count(histogram_freq, "histogram_freq", minimum=0)
        self.histogram_buckets = check_count(histogram_buckets, "histogram_buckets")
        if not isinstance(plot, bool):
            raise TypeError(f"Expected `plot` to be a bool. Received: plot={plot!r}")
        self.plot = plot
        if plot_metric is not None and not isinstance(plot_metric, str):
            raise TypeError(
                "Expected `plot_metric` to be a metric name or None. "
                f"Received: plot_metric={plot_metric!r}"
            )
        self.plot_metric = plot_metric
        self._writers = {}
        self._step = 0
        self._iterations = None
        self._rows = []
        self._written_sparsity = None
        self._plot_warned = False

    def __deepcopy__(self, memo):
        # keras-tuner deep-copies callbacks for every trial. The copy gets
        # neither the model (the next `fit` sets it) nor open files.
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for name, value in self.__dict__.items():
            if name == "_model":
                value = None
            elif name == "_writers":
                value = {}
            else:
                value = copy.deepcopy(value, memo)
            setattr(clone, name, value)
        return clone

    @property
    def step(self):
        """The training step summaries are written at: optimizer steps taken.

        Settable, for a run resumed from a checkpoint: set it to the step the
        interrupted run had reached before `fit` starts, and the steps
        continue from there (they never go below the optimizer's iteration
        count when `fit` begins).
        """
        return self._step

    @step.setter
    def step(self, value):
        self._step = check_count(value, "step", minimum=0)

    # ------------------------------------------------------------ callbacks

    def on_train_begin(self, logs=None):
        if not get_masks(self.model):
            raise ValueError(
                f"Model '{self.model.name}' has no masked layers, so "
                "SparsitySummaries has nothing to report. Make it prunable "
                "with `keras_lth.mask_model(model)`, or build it from "
                "`keras_lth.layers`."
            )
        self._rows = []
        self._written_sparsity = None
        self._iterations = self._read_iterations()
        # Never back: a second `fit` of this callback continues its steps.
        self._step = max(self._step, self._iterations)
        self.write_sparsity()

    def on_epoch_begin(self, epoch, logs=None):
        self._advance()
        if self._masks_changed():
            # Pruned between epochs (by `LotteryTicket` placed after this
            # callback, for instance): shown at the step where it happened.
            self.write_sparsity()

    def on_epoch_end(self, epoch, logs=None):
        self._advance()
        self._write_sparsity(flush=False)
        if self.histogram_freq and (epoch + 1) % self.histogram_freq == 0:
            self._write_histograms()
        self._flush()

    def on_train_end(self, logs=None):
        self.close()

    # ---------------------------------------------------------- public API

    def begin(self, model, *, step=None):
        """Starts the summaries of a `fit` that another callback drives.

        A callback that holds a `SparsitySummaries` instead of passing it to
        `fit` (as `LotteryTicket(log_dir=...)` does) calls `begin` when its
        training begins, then forwards `on_epoch_begin` and `on_epoch_end`,
        calls `write_round` and `write_sparsity` after changing the masks,
        and `close` when training ends.

        Args:
            model: The model being trained.
            step: For a resumed run, the step the interrupted run had
                reached; set before anything is written. Defaults to None:
                carry on from `step`.
        """
        self.set_model(model)
        if step is not None:
            self.step = step
        self.on_train_begin()

    def write_sparsity(self):
        """Writes the sparsity scalars at the current training step.

        Called at train begin and epoch ends; call it (as `LotteryTicket`
        does) after changing the masks between epochs.
        """
        self._advance()
        self._write_sparsity(flush=True)

    def write_round(self, row, results=None):
        """Writes the summaries of one finished IMP round.

        See the class docstring for the tags. Can be called outside `fit`
        too, for example to log saved results (`keras_lth.load_results`);
        the writers then stay open until `close()`.

        Args:
            row: One round's results, as in `LotteryTicket.results`: a dict
                with `round`, `weights_remaining`, `best_epoch`,
                `best_step`, `best` and `final` (dicts of metrics).
            results: All rounds so far, `row` included, for the plot.
                Defaults to the rows passed to `write_round` since `fit`
                began.
        """
        _check_row(row)
        self._advance()
        self._rows = [r for r in self._rows if r["round"] != row["round"]] + [row]
        rows = self._rows if results is None else list(results)

        index = int(row["round"])
        permille = int(round(1000.0 * (1.0 - float(row["weights_remaining"]))))
        train = self._writer("train")
        train.scalar(f"{ROUND_PREFIX}/round", index, self._step)
        train.scalar(
            f"{ROUND_PREFIX}/weights_remaining",
            row["weights_remaining"],
            index,
            description="Fraction of prunable weights remaining; x: round.",
        )
        for name in ("best_step", "best_epoch"):
            train.scalar(f"{ROUND_PREFIX}/{name}", row[name], index)
        train.scalar(
            f"{SPARSITY_AXIS_PREFIX}/best_step",
            row["best_step"],
            permille,
            description=_SPARSITY_AXIS_NOTE,
        )
        for stage in ("best", "final"):
            for metric, value in row[stage].items():
                if isinstance(value, bool) or not isinstance(
                    value, (int, float, np.number)
                ):
                    continue
                run, name = _run_and_name(metric)
                writer = self._writer(run)
                writer.scalar(f"{ROUND_PREFIX}/{stage}_{name}", value, index)
                writer.scalar(
                    f"{SPARSITY_AXIS_PREFIX}/{stage}_{name}",
                    value,
                    permille,
                    description=_SPARSITY_AXIS_NOTE,
                )
        if self.plot:
            png = self._plot(rows)
            if png is not None:
                train.image(f"{ROUND_PREFIX}/plot", png, index)
        self._flush()

    def close(self):
        """Closes the event files; a later write opens new ones."""
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    # ------------------------------------------------------------ helpers

    def _writer(self, run):
        if run not in self._writers:
            self._writers[run] = SummaryWriter(os.path.join(self.log_dir, run))
        return self._writers[run]

    def _flush(self):
        for writer in self._writers.values():
            writer.flush()

    def _read_iterations(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return 0
        return int(ops.convert_to_numpy(optimizer.iterations))

    def _advance(self):
        """Adds the optimizer steps taken since the last read to `step`.

        A count lower than at the last read means the iteration count was
        rewound (by `LotteryTicket`): the step stays, and counting resumes
        from there.
        """
        if self.model is None:
            return
        iterations = self._read_iterations()
        if self._iterations is not None and iterations > self._iterations:
            self._step += iterations - self._iterations
        self._iterations = iterations

    def _masks_changed(self):
        if self._written_sparsity is None:
            return False
        return _sparsity(get_masks(self.model)) != self._written_sparsity

    def _write_sparsity(self, flush):
        values = _sparsity(get_masks(self.model))
        train = self._writer("train")
        train.scalar("sparsity/global", values["global"], self._step)
        for key, value in values["layers"].items():
            train.scalar(f"sparsity/{key}", value, self._step)
        self._written_sparsity = values
        if flush:
            self._flush()

    def _write_histograms(self):
        masks = get_masks(self.model)
        weights = get_prunable_weights(self.model)
        train = self._writer("train")
        for key, mask in masks.items():
            train.histogram(
                f"weights/{key}",
                weights[key][mask != 0],
                self._step,
                buckets=self.histogram_buckets,
            )

    def _plot(self, rows):
        try:
            from keras_lth.plotting import figure_to_png
            from keras_lth.plotting import plot_results

            return figure_to_png(plot_results(rows, metric=self.plot_metric))
        except (ImportError, ValueError) as e:
            if not self._plot_warned:
                self._plot_warned = True
                warnings.warn(
                    f"SparsitySummaries: no `lottery/plot` image ({e}). The "
                    "scalars are written all the same; pass plot=False to "
                    "silence this.",
                    stacklevel=3,
                )
            return None


def _sparsity(masks):
    """`keras_lth.sparsity`, from masks already read."""
    pruned = {key: int(np.sum(mask == 0)) for key, mask in masks.items()}
    total = sum(mask.size for mask in masks.values())
    return {
        "global": sum(pruned.values()) / total,
        "layers": {key: pruned[key] / masks[key].size for key in masks},
    }


def _run_and_name(metric):
    if metric.startswith("val_"):
        return "validation", metric[len("val_") :]
    return "train", metric


def _check_row(row):
    if not isinstance(row, dict):
        raise TypeError(
            "Expected `row` to be a dict, one entry of `LotteryTicket.results`. "
            f"Received: {row!r} of type {type(row).__name__}"
        )
    missing = [key for key in _ROW_KEYS if key not in row]
    if missing:
        raise ValueError(
            f"The results row lacks {missing}; expected the keys {list(_ROW_KEYS)} "
            f"of a `LotteryTicket.results` entry. Received keys: {sorted(row)}"
        )
    remaining = row["weights_remaining"]
    if (
        isinstance(remaining, bool)
        or not isinstance(remaining, (int, float, np.number))
        or not 0.0 <= remaining <= 1.0
    ):
        raise ValueError(
            "Expected `weights_remaining` to be a fraction in [0, 1]. "
            f"Received: {remaining!r}"
        )
