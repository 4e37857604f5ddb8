"""Pruning methods compared on LeNet-300-100: accuracy at three sparsities and cost.

What it measures
    For each method, the test accuracy of the sparse LeNet-300-100 it
    produces at about 21%, 7% and 3.6% of the prunable weights remaining
    (the paper's rates reach them at IMP rounds 7, 12 and 15: 21.1%, 7.0% and
    3.6%), and the training it spent to produce those three networks:

    * IMP, rewind to init (Frankle & Carbin 2019): `LotteryTicket(rewind="init")`.
    * IMP, late rewind (Frankle et al. 2019): `rewind="epoch:1"` by default.
    * IMP, LR rewinding (Renda et al. 2020): `rewind="lr"`.
    * IMP, fine-tuning: `rewind="none"`.
    * gradual magnitude pruning (Zhu & Gupta 2017): `GradualPruning` with
      `schedules.PolynomialDecay` from 0 to each target sparsity, one
      training per target, as long as one IMP round: it reaches the target
      halfway (--gradual-fraction) and trains on. One global magnitude
      ranking by default (--gradual-strategy): `GradualPruning` gives every
      tensor the same sparsity otherwise, output layer included.
    * one-shot, rewind to init: `LotteryTicket(one_shot=True)`: one `fit`
      trains round 0 and every one-shot ticket.
    * early-bird (You et al. 2020): `LotteryTicket(early_bird=True)`; each
      round but the last stops when the mask pruning would give has settled.
    * SNIP (Lee et al. 2019) and SynFlow (Tanaka et al. 2020): masks at
      init from `keras_lth.pruning_at_init` to each target sparsity (one
      global ranking), then one training per target.
    * controls of the paper: random reinit (`rewind="reinit"`) and random
      pruning (`strategy="random"`).

    Accuracy is measured on the held-out test images at each training's
    early-stopping point: a callback evaluates the test set at every epoch
    end, and the epoch taken is the one where val_loss was best in the round
    (`row["best_epoch"]`; for gradual pruning, the best epoch once the
    schedule has reached its target). For the IMP-style methods the round
    whose weights remaining is closest (in ratio) to each target is taken,
    and its actual weights remaining is printed. SNIP, SynFlow and gradual
    pruning are given exactly the weights remaining of those rounds.

    "epochs spent" counts the training epochs the method needs to produce
    the three networks: the IMP-style methods (the controls included) sum
    their rounds' epochs up to the sparsest point; one-shot counts round 0
    and the three tickets' trainings; SNIP, SynFlow and gradual pruning one
    training per target. "epochs run" is what this benchmark trained: one-shot
    trains all its rounds, to draw the whole curve.

Setup (the paper's LeNet-300-100 settings, Frankle & Carbin 2019, Figure 2)
    `keras_lth.models.get_preset("lenet_300_100")`: Gaussian Glorot init,
    Adam 1.2e-3, batch 60, layerwise pruning of 20% per round of the hidden
    layers and 10% of the output layer. Every method starts from the same
    initial weights (per seed), with the same data order.

    Data: the official MNIST *test* set (10,000 images, `../shared/data/mnist`,
    read by `keras_lth.datasets`), split 8,000 train / 1,000 validation /
    1,000 test with a fixed seed. The 60,000-image training set is not
    available offline, so the numbers are not comparable with the paper's.
    `--data digits` uses scikit-learn's bundled 8x8 digits instead.

Budget
    Full mode: 8 epochs per IMP round (1,072 steps of batch 60 on 8,000
    images; the paper trains 50,000 steps on 55,000), 16 rounds, one seed.
    About 1,100 epochs over all methods: 22 minutes on 2 CPU cores shared with
    other work (load average 6 to 11).

Reproduce (from the repository root):

    python benchmarks/compare_methods.py                  # full, ~22 minutes
    python benchmarks/compare_methods.py --quick          # ~2-3 minutes
    python benchmarks/compare_methods.py --dry-run        # every path, < 60 s
    python benchmarks/compare_methods.py --data digits    # offline fallback

`--quick` trains 4 epochs per round on 2,000 images at 50% (hidden) / 25%
(output) per round, so 6 rounds reach the targets; its figures are only
indicative. `--dry-run` trains 1 epoch per round on 200 images, 70% / 35%
per round (4 rounds), 5 SynFlow iterations: it checks that every method
runs, its figures mean nothing.

Outputs, in --output (default runs/compare_methods): `results.json` (every
row of every run, the points, the settings), `compare_methods.png` (test
accuracy and training epochs against weights remaining) and `table.txt`.
If the MNIST folder is missing, the script prints why and exits with 0
without training (use --data digits).
"""

import argparse
import dataclasses
import json
import math
import os
import pathlib
import platform
import sys
import tempfile
import textwrap
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
DEFAULT_OUTPUT = "runs/compare_methods"
TARGETS = (0.21, 0.07, 0.036)

# method key: (table label, family). Families: "imp" (LotteryTicket rounds,
# cumulative cost), "one_shot", "single" (one training per target).
METHODS = {
    "imp_init": ("IMP, rewind to init", "imp"),
    "imp_late": ("IMP, late rewind", "imp"),
    "lr_rewind": ("IMP, LR rewinding", "imp"),
    "finetune": ("IMP, fine-tuning", "imp"),
    "gradual": ("gradual (PolynomialDecay)", "single"),
    "one_shot": ("one-shot, rewind to init", "one_shot"),
    "early_bird": ("early-bird IMP", "imp"),
    "snip": ("SNIP at init", "single"),
    "synflow": ("SynFlow at init", "single"),
    "reinit": ("control: random reinit", "imp"),
    "random": ("control: random pruning", "imp"),
}


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much each method trains, per mode."""

    epochs_per_round: int
    train_size: int | None  # None: the whole training split.
    eval_size: int | None  # Validation and test images; None: all.
    prune_rate: float  # Hidden layers, per round.
    output_rate: float  # Output layer, per round.
    early_bird_window: int
    synflow_iterations: int


BUDGETS = {
    "full": Budget(8, None, None, 0.2, 0.1, 4, 100),
    "quick": Budget(4, 2000, None, 0.5, 0.25, 2, 100),
    "dry-run": Budget(1, 200, 200, 0.7, 0.35, 1, 5),
}


# ------------------------------------------------------------------ CLI


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Compare IMP variants, gradual pruning, one-shot, early-bird, "
        "SNIP, SynFlow and the random controls on LeNet-300-100: test "
        "accuracy at 21%, 7% and 3.6% weights remaining, and training cost.",
    )
    parser.add_argument(
        "--data",
        choices=("mnist", "digits"),
        default="mnist",
        help="mnist: the official MNIST test set split 8,000/1,000/1,000 "
        "(default); digits: scikit-learn's bundled 8x8 digits, offline.",
    )
    parser.add_argument(
        "--mnist-dir",
        default=str(DEFAULT_MNIST_DIR),
        help="Folder with t10k-images-idx3-ubyte.gz and t10k-labels-idx1-"
        f"ubyte.gz. Default: {DEFAULT_MNIST_DIR}",
    )
    parser.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        help=f"Folder for results.json, the PNG and table.txt "
        f"(default {DEFAULT_OUTPUT}).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Tiny run (~2-3 minutes): 4 epochs per round on 2,000 images, "
        "50%%/25%% pruned per round, 6 rounds. Indicative figures only.",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="Every method for 1 epoch per round on 200 images, in under a "
        "minute, for CI. Figures mean nothing. Takes precedence over --quick.",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"Comma-separated subset of {list(METHODS)}. Default: all.",
    )
    parser.add_argument(
        "--seeds",
        default="0",
        help="Comma-separated model seeds (initial weights, data order, "
        "random masks); each method runs once per seed. Default: 0.",
    )
    parser.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="Seed of the train/validation/test split (default 0).",
    )
    parser.add_argument("--epochs-per-round", type=int, default=None)
    parser.add_argument(
        "--train-size",
        type=int,
        default=None,
        help="Use only the first N training images (default: mode's).",
    )
    parser.add_argument(
        "--prune-rate",
        type=float,
        default=None,
        help="Per-round rate of the hidden layers (default 0.2; 0.5 with "
        "--quick, 0.7 with --dry-run).",
    )
    parser.add_argument(
        "--output-rate",
        type=float,
        default=None,
        help="Per-round rate of the output layer (default 0.1; 0.25 with "
        "--quick, 0.35 with --dry-run).",
    )
    parser.add_argument(
        "--late-rewind",
        default="epoch:1",
        help="Rewind point of 'IMP, late rewind': 'epoch:K' or an int number "
        "of optimizer steps (default epoch:1).",
    )
    parser.add_argument(
        "--gradual-fraction",
        type=float,
        default=0.5,
        help="Gradual pruning reaches its target after this fraction of its "
        "training (default 0.5), then trains on at that sparsity.",
    )
    parser.add_argument(
        "--gradual-strategy",
        choices=("global", "layerwise"),
        default="global",
        help="GradualPruning strategy (default global). GradualPruning gives "
        "every tensor the same sparsity with 'layerwise' (its schedule returns "
        "one number), so the 10x1000 output layer would keep only 3.6%% of its "
        "weights, unlike the IMP rows' 21%%.",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="Keras progress bars and round lines."
    )
    args = parser.parse_args(argv)

    args.mode = "dry-run" if args.dry_run else "quick" if args.quick else "full"
    budget = BUDGETS[args.mode]
    overrides = {
        "epochs_per_round": args.epochs_per_round,
        "train_size": args.train_size,
        "prune_rate": args.prune_rate,
        "output_rate": args.output_rate,
    }
    args.budget = dataclasses.replace(
        budget, **{k: v for k, v in overrides.items() if v is not None}
    )
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        parser.error(
            f"--methods expects a comma-separated list from {list(METHODS)}. "
            f"Received: {args.methods!r}"
        )
    args.methods = methods
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds expects comma-separated ints. Received: {args.seeds!r}")
    if not args.seeds:
        parser.error("--seeds needs at least one seed.")
    for name in ("prune_rate", "output_rate"):
        if not 0.0 < getattr(args.budget, name) < 1.0:
            parser.error(f"--{name.replace('_', '-')} must be in (0, 1).")
    if args.budget.epochs_per_round < 1:
        parser.error("--epochs-per-round must be >= 1.")
    if not 0.0 < args.gradual_fraction <= 1.0:
        parser.error("--gradual-fraction must be in (0, 1].")
    late = args.late_rewind
    if late.isdigit():
        args.late_rewind = int(late)
    elif not (late.startswith("epoch:") and late[6:].isdigit()):
        parser.error(f"--late-rewind expects 'epoch:K' or an int. Received: {late!r}")
    elif int(late[6:]) > args.budget.epochs_per_round:
        parser.error(f"--late-rewind {late} falls after round 0 ends.")
    return args


# ------------------------------------------------------------ the plan


def weights_remaining_by_round(sizes, rates, rounds):
    """Planned weights remaining after each round, as `LotteryTicket` counts.

    Each tensor keeps `floor(n * (1 - rate) ** r + 0.5)` weights at round `r`.
    """
    total = sum(sizes.values())
    return [
        sum(math.floor(n * (1.0 - rates[k]) ** r + 0.5) for k, n in sizes.items())
        / total
        for r in range(rounds)
    ]


def closest(values, target):
    """Index of the value closest to `target` in ratio (log distance)."""
    return min(range(len(values)), key=lambda i: abs(math.log(values[i] / target)))


def plan_rounds(sizes, rates, targets):
    """The IMP rounds nearest each target, and how many rounds reach them."""
    curve = weights_remaining_by_round(sizes, rates, 200)
    curve = [w for w in curve if w >= min(targets) / 10]  # Past them: no use.
    picked = [closest(curve, t) for t in targets]
    return picked, max(picked) + 1, curve


# ------------------------------------------------------------- helpers


def _load_data(args):
    import keras_lth as lth

    budget = args.budget
    if args.data == "mnist":
        data = lth.datasets.load("mnist", path=args.mnist_dir, seed=args.split_seed)
    else:
        data = lth.datasets.load("digits", seed=args.split_seed)
    train = _head(data.train, budget.train_size)
    validation = _head(data.validation, budget.eval_size)
    test = _head(data.test, budget.eval_size)
    note = data.note
    if args.data == "mnist" and "training set" not in note.lower():
        note += " The 60,000-image MNIST training set is not available offline."
    if (len(train[0]), len(validation[0]), len(test[0])) != (
        len(data.train[0]),
        len(data.validation[0]),
        len(data.test[0]),
    ):
        note += (
            f" This run uses the first {len(train[0]):,} / {len(validation[0]):,} "
            f"/ {len(test[0]):,} of them."
        )
    return data, train, validation, test, note


def _head(pair, n):
    if n is None:
        return pair
    return pair[0][:n], pair[1][:n]


def _mnist_present(folder):
    folder = pathlib.Path(folder)
    return all(
        (folder / f"{stem}.gz").is_file() or (folder / stem).is_file()
        for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    )


def _stratified_batch(x, y, per_class):
    """A batch with `per_class` examples of every class (for SNIP)."""
    import numpy as np

    index = np.concatenate(
        [np.flatnonzero(y == c)[:per_class] for c in np.unique(y)]
    ).astype(int)
    return x[index], y[index]


def _environment():
    import keras

    parts = [f"Keras {keras.__version__}", f"backend {keras.backend.backend()}"]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        parts.append(f"TensorFlow {tf.__version__}")
    parts += [f"Python {platform.python_version()}", f"{os.cpu_count()} CPUs"]
    return ", ".join(parts)


def _load_average():
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unavailable"


def _write_atomic(path, write, mode="w"):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; use the umask.
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# --------------------------------------------------------------- runner


class Runner:
    """One model per seed, reset to the same initial state for every method.

    Reusing the model keeps its compiled train, evaluation and predict
    functions: each method starts from the initial weights, all-ones masks
    and a fresh Adam state, without tracing again.
    """

    def __init__(self, args, seed, train, validation, test, input_shape):
        import keras

        import keras_lth as lth

        self.keras, self.lth = keras, lth
        self.args, self.budget, self.seed = args, args.budget, seed
        self.train, self.validation, self.test = train, validation, test
        self.preset = lth.models.get_preset("lenet_300_100")
        keras.utils.set_random_seed(seed)
        self.model = self.preset.build_model(input_shape=input_shape)
        self.loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.model.compile(
            optimizer=keras.optimizers.Adam(self.preset.learning_rate),
            loss=self.loss,
            metrics=["accuracy"],
        )
        self.model.optimizer.build(self.model.trainable_variables)
        self.initial = [v.numpy() for v in self.model.variables]
        self.initial_optimizer = [v.numpy() for v in self.model.optimizer.variables]
        self.batch_size = self.preset.batch_size
        self.steps_per_epoch = math.ceil(len(train[0]) / self.batch_size)
        masks = lth.get_masks(self.model)
        self.sizes = {k: int(m.size) for k, m in masks.items()}
        self.output_key = next(k for k in masks if k.startswith("output/"))
        self.rates = {
            k: self.budget.output_rate
            if k == self.output_key
            else self.budget.prune_rate
            for k in masks
        }

    def reset(self):
        """Initial weights, all-ones masks, fresh optimizer, same data order."""
        for variable, value in zip(self.model.variables, self.initial, strict=True):
            variable.assign(value)
        for variable, value in zip(
            self.model.optimizer.variables, self.initial_optimizer, strict=True
        ):
            variable.assign(value)
        self.lth.set_masks(self.model, {})
        self.keras.utils.set_random_seed(self.seed)

    def weights_remaining(self):
        masks = self.lth.get_masks(self.model)
        return sum(float(m.sum()) for m in masks.values()) / sum(self.sizes.values())

    def fit(self, epochs, callbacks):
        evaluator = _test_evaluator(self.keras)(*self.test, self)
        self.model.fit(
            *self.train,
            validation_data=self.validation,
            batch_size=self.batch_size,
            epochs=epochs,
            verbose=2 if self.args.verbose else 0,
            callbacks=[evaluator, *callbacks],  # First: adds test_* to the logs.
        )
        return evaluator.history

    # ---------------------------------------------------------- methods

    def lottery_ticket(self, method, rounds):
        budget = self.budget
        kwargs = {
            "imp_init": {"rewind": "init"},
            "imp_late": {"rewind": self.args.late_rewind},
            "lr_rewind": {"rewind": "lr"},
            "finetune": {"rewind": "none"},
            "one_shot": {"rewind": "init", "one_shot": True},
            "early_bird": {
                "rewind": "init",
                "early_bird": True,
                "early_bird_window": budget.early_bird_window,
            },
            "reinit": {"rewind": "reinit"},
            "random": {"rewind": "init", "strategy": "random"},
        }[method]
        ticket = self.lth.LotteryTicket(
            rounds=rounds,
            epochs_per_round=budget.epochs_per_round,
            prune_rate=budget.prune_rate,
            layer_rates={self.output_key.split("/")[0]: budget.output_rate},
            seed=self.seed,
            verbose=1 if self.args.verbose else 0,
            **kwargs,
        )
        self.reset()
        self.fit(ticket.total_epochs, [ticket])
        return [dict(row) for row in ticket.results], {
            k: v if isinstance(v, (int, float, str)) else str(v)
            for k, v in kwargs.items()
        }

    def at_init(self, method, weights_remaining):
        """SNIP or SynFlow masks at init for each target, one training each."""
        rows, details = [], []
        for i, remaining in enumerate(weights_remaining):
            self.reset()
            sparsity = 1.0 - remaining
            start = time.perf_counter()
            if method == "snip":
                x, y = _stratified_batch(*self.train, per_class=10)
                masks = self.lth.pruning_at_init.snip(
                    self.model, x, y, self.loss, sparsity=sparsity
                )
                how = {"batch": int(len(x))}
            else:
                masks = self.lth.pruning_at_init.synflow(
                    self.model,
                    sparsity=sparsity,
                    iterations=self.budget.synflow_iterations,
                )
                how = {"iterations": self.budget.synflow_iterations}
            self.lth.set_masks(self.model, masks)
            mask_seconds = time.perf_counter() - start
            layers = {k: float(m.mean()) for k, m in masks.items()}
            self.keras.utils.set_random_seed(self.seed)
            history = self.fit(self.budget.epochs_per_round, [])
            rows.append(self._row(i, history))
            details.append(
                {
                    "sparsity": sparsity,
                    "mask_seconds": mask_seconds,
                    "layers": layers,
                    **how,
                }
            )
        return rows, {"targets": details}

    def gradual(self, weights_remaining):
        """GradualPruning to each target over one training of one round's length."""
        epochs = self.budget.epochs_per_round
        total_steps = epochs * self.steps_per_epoch
        frequency = max(1, self.steps_per_epoch // 4)
        end_step = math.ceil(self.args.gradual_fraction * total_steps / frequency)
        end_step = min(end_step * frequency, (total_steps - 1) // frequency * frequency)
        rows, details = [], []
        for i, remaining in enumerate(weights_remaining):
            self.reset()
            schedule = self.lth.schedules.PolynomialDecay(
                initial_sparsity=0.0,
                final_sparsity=1.0 - remaining,
                begin_step=0,
                end_step=end_step,
                frequency=frequency,
            )
            pruner = self.lth.GradualPruning(
                schedule, strategy=self.args.gradual_strategy
            )
            history = self.fit(epochs, [pruner])
            # Early stopping only among epochs that ended at the target.
            slack = len(self.sizes) / sum(self.sizes.values())  # Rounding.
            reached = [h["weights_remaining"] <= remaining + slack for h in history]
            rows.append(self._row(i, history, eligible=reached))
            details.append(
                {
                    "schedule": schedule.get_config(),
                    "strategy": self.args.gradual_strategy,
                    "prunings": len(pruner.history),
                    "layers": {
                        k: float(m.mean())
                        for k, m in self.lth.get_masks(self.model).items()
                    },
                }
            )
        return rows, {"targets": details}

    def _row(self, index, history, eligible=None):
        """A `LotteryTicket`-like results row for one training."""
        candidates = [
            i for i, _ in enumerate(history) if eligible is None or eligible[i]
        ] or [len(history) - 1]
        best = min(candidates, key=lambda i: history[i].get("val_loss", math.inf))
        metrics = ("loss", "accuracy", "val_loss", "val_accuracy")
        metrics += ("test_loss", "test_accuracy")

        def pick(entry):
            return {k: entry[k] for k in metrics if k in entry}

        return {
            "round": index,
            "weights_remaining": history[-1]["weights_remaining"],
            "best_epoch": best + 1,
            "best_step": (best + 1) * self.steps_per_epoch,
            "best": pick(history[best]),
            "final": pick(history[-1]),
            "monitor": "val_loss",
            "epochs": len(history),
            "epochs_skipped": 0,
        }


def _test_evaluator(keras):
    import numpy as np

    class TestSetEvaluator(keras.callbacks.Callback):
        """Evaluates the test set at every epoch end; adds test_* to the logs.

        Placed first in `callbacks`, so the `LotteryTicket` after it records
        test_accuracy in each row's `best` (its early-stopping epoch) and
        `final` metrics. Uses `predict_on_batch`, so the compiled metrics of
        `fit` are left alone.
        """

        def __init__(self, x, y, runner):
            super().__init__()
            self.x, self.y, self.runner = x, y, runner

        def on_train_begin(self, logs=None):
            self.history = []

        def on_epoch_end(self, epoch, logs=None):
            logits = np.asarray(self.model.predict_on_batch(self.x), np.float64)
            shifted = logits - logits.max(axis=1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            if logs is None:
                logs = {}
            logs["test_accuracy"] = float(np.mean(logits.argmax(1) == self.y))
            logs["test_loss"] = float(-log_probs[np.arange(len(self.y)), self.y].mean())
            entry = {k: float(v) for k, v in logs.items() if np.ndim(v) == 0}
            entry["weights_remaining"] = self.runner.weights_remaining()
            self.history.append(entry)

    return TestSetEvaluator


# --------------------------------------------------------- bookkeeping


def points_and_cost(family, rows, targets):
    """The rows nearest each target, and the epochs needed to produce each."""
    if family == "single":
        picked = list(range(len(rows)))
    else:
        remaining = [row["weights_remaining"] for row in rows]
        picked = [closest(remaining, t) for t in targets]
    epochs = [row["epochs"] for row in rows]

    def produce(i):
        if family == "imp":
            return sum(epochs[: i + 1])
        if family == "one_shot":
            return epochs[0] + (epochs[i] if i else 0)
        return epochs[i]

    points = [
        {
            "target": target,
            "row": i,
            "weights_remaining": rows[i]["weights_remaining"],
            "test_accuracy": rows[i]["best"]["test_accuracy"],
            "val_accuracy": rows[i]["best"].get("val_accuracy"),
            "best_epoch": rows[i]["best_epoch"],
            "round_epochs": epochs[i],
            "epochs_to_produce": produce(i),
        }
        for target, i in zip(targets, picked, strict=True)
    ]
    if family == "imp":
        spent = sum(epochs[: max(picked) + 1])
    elif family == "one_shot":
        spent = epochs[0] + sum(epochs[i] for i in set(picked) if i)
    else:
        spent = sum(epochs[i] for i in set(picked))
    curve = [
        {
            "weights_remaining": row["weights_remaining"],
            "test_accuracy": row["best"]["test_accuracy"],
            "epochs_to_produce": produce(i),
        }
        for i, row in enumerate(rows)
    ]
    return points, spent, sum(epochs), curve


def _mean(values):
    return sum(values) / len(values)


def _std(values):
    if len(values) < 2:
        return 0.0
    m = _mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def summarize(method, runs):
    """Mean over seeds of each point, the cost and the wall time."""
    label, family = METHODS[method]
    n_points = len(runs[0]["points"])
    points = []
    for p in range(n_points):
        accs = [run["points"][p]["test_accuracy"] for run in runs]
        points.append(
            {
                "target": runs[0]["points"][p]["target"],
                "test_accuracy": _mean(accs),
                "test_accuracy_std": _std(accs),
                "weights_remaining": _mean(
                    [run["points"][p]["weights_remaining"] for run in runs]
                ),
            }
        )
    return {
        "method": method,
        "label": label,
        "points": points,
        "epochs_spent": _mean([run["epochs_spent"] for run in runs]),
        "epochs_run": _mean([run["epochs_run"] for run in runs]),
        "wall_seconds": _mean([run["wall_seconds"] for run in runs]),
        "seeds": len(runs),
    }


def format_table(summaries, targets):
    several = any(s["seeds"] > 1 for s in summaries)
    cell = 20 if several else 15
    header = f"{'method':<27}" + "".join(
        f"{f'acc@{100 * t:g}%':>{cell}}" for t in targets
    )
    header += f"{'epochs spent':>14}{'epochs run':>12}{'wall':>9}"
    lines = [header, "-" * len(header)]
    for s in summaries:
        line = f"{s['label']:<27}"
        for p in s["points"]:
            acc = f"{100 * p['test_accuracy']:.2f}"
            if several:
                acc += f"±{100 * p['test_accuracy_std']:.2f}"
            acc += f" @{100 * p['weights_remaining']:.1f}%"
            line += f"{acc:>{cell}}"
        line += (
            f"{s['epochs_spent']:>14.0f}{s['epochs_run']:>12.0f}"
            f"{s['wall_seconds']:>8.0f}s"
        )
        lines.append(line)
    return "\n".join(lines)


def format_notes(args, runs_by_method, note, rounds, test_size):
    """The paragraphs under the table, wrapped to 88 columns."""
    budget = args.budget
    seeds = len(args.seeds)
    error = 100 * math.sqrt(0.95 * 0.05 / test_size)
    paragraphs = [
        "acc@X%: test accuracy (%) on the held-out test images at the "
        "early-stopping epoch (best val_loss) of the training that produced the "
        "network; after @, its actual weights remaining. IMP-style rows take the "
        "round closest to X%; SNIP, SynFlow and gradual pruning are pruned to "
        "those rounds' weights remaining."
        + (
            f" Means over {seeds} seeds; ± is the standard deviation."
            if seeds > 1
            else ""
        )
        + f" On {test_size:,} test images one image is {100 / test_size:.2g} points,"
        f" and the binomial standard error at 95% accuracy is {error:.1f} points.",
        "epochs spent: epochs trained to produce all three networks (IMP-style: "
        "rounds 0 up to the sparsest point; one-shot: round 0 + the three "
        "tickets; SNIP/SynFlow/gradual: one training per target). epochs run: "
        f"epochs this benchmark trained (one-shot trains all {rounds} rounds, "
        "for its curve). wall: the method's wall-clock time, all its fits and "
        "mask computations included" + (", per seed." if seeds > 1 else "."),
        f"Late rewind: rewind={args.late_rewind!r}. Gradual: GradualPruning with "
        "PolynomialDecay from 0 to the target ("
        + (
            "one global magnitude ranking"
            if args.gradual_strategy == "global"
            else "the same sparsity in every layer"
        )
        + "), "
        f"reached after {args.gradual_fraction:g} of a training of "
        f"{budget.epochs_per_round} epochs; early stopping among the epochs at "
        "the target. SNIP (a batch of 10 images per class) and SynFlow "
        f"({budget.synflow_iterations} iterations) rank all layers together.",
    ]
    eb = runs_by_method.get("early_bird")
    if eb:
        per_point = [p["round_epochs"] for p in eb[0]["points"]]
        paragraphs.append(
            "early-bird: every round but the last stops once the mask settles "
            f"(window {budget.early_bird_window}, distance 0.1), so the networks "
            f"at the targets trained {', '.join(map(str, per_point))} of "
            f"{budget.epochs_per_round} epochs in their rounds (seed {args.seeds[0]})."
        )
    unfinished = [
        METHODS[method][0]
        for method, runs in runs_by_method.items()
        if any(
            p["best_epoch"] == p["round_epochs"] == budget.epochs_per_round
            for run in runs
            for p in run["points"]
        )
    ]
    if unfinished and budget.epochs_per_round > 1:
        paragraphs.append(
            "Best val_loss at the last epoch of the training (still improving "
            "when it stopped) for at least one target: "
            + "; ".join(unfinished)
            + ". More epochs per round could raise their accuracy."
        )
    dense = next(iter(runs_by_method.get("imp_init", [])), None)
    if dense:
        row = dense["rows"][0]
        paragraphs.append(
            f"Dense network (round 0, seed {dense['seed']}): test accuracy "
            f"{100 * row['best']['test_accuracy']:.2f}% at epoch {row['best_epoch']}."
        )
    paragraphs.append(f"Data: {note}")
    return "\n".join(textwrap.fill(p, width=88) for p in paragraphs)


def plot(summaries, runs_by_method, targets, path, title):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator
    from matplotlib.ticker import FuncFormatter
    from matplotlib.ticker import NullFormatter
    from matplotlib.ticker import NullLocator
    from matplotlib.ticker import ScalarFormatter

    colors = [
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#17becf",
        "#bcbd22",
        "#7f7f7f",
        "#000000",
    ]
    markers = ["o", "s", "^", "v", "D", "P", "X", "<", ">", "*", "h"]
    fig = Figure(figsize=(15, 5.2), layout="constrained")
    ax_acc, ax_cost = fig.subplots(1, 2)
    all_x = []
    for i, s in enumerate(summaries):
        runs = runs_by_method[s["method"]]
        family = METHODS[s["method"]][1]
        n = min(len(run["curve"]) for run in runs)
        x = [
            100 * _mean([run["curve"][r]["weights_remaining"] for run in runs])
            for r in range(n)
        ]
        acc = [
            100 * _mean([run["curve"][r]["test_accuracy"] for run in runs])
            for r in range(n)
        ]
        cost = [
            _mean([run["curve"][r]["epochs_to_produce"] for run in runs])
            for r in range(n)
        ]
        all_x += x
        style = {
            "color": colors[i % len(colors)],
            "marker": markers[i % len(markers)],
            "linestyle": {"imp": "-", "one_shot": "--", "single": ":"}[family],
            "markersize": 4,
            "linewidth": 1.4,
        }
        if s["method"] in ("reinit", "random"):
            style["linestyle"] = "-."
        ax_acc.plot(x, acc, label=s["label"], **style)
        ax_cost.plot(x, cost, label=s["label"], **style)
    ticks = sorted({round(v, 1) for v in all_x}, reverse=True)
    if len(ticks) > 12:
        every = math.ceil(len(ticks) / 12)
        ticks = ticks[::every] + (
            [ticks[-1]] if ticks[-1] not in ticks[::every] else []
        )
    for ax in (ax_acc, ax_cost):
        ax.set_xscale("log")
        ax.set_xlim(max(all_x) * 1.15, min(all_x) / 1.15)  # Sparser to the right.
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        for t in targets:
            ax.axvline(100 * t, color="0.75", linewidth=0.8, zorder=0)
        ax.set_xlabel("weights remaining (%, log scale)")
        ax.grid(True, alpha=0.3)
    ax_acc.set_ylabel("test accuracy (%) at early stopping")
    ax_acc.set_title("Test accuracy vs. weights remaining")
    ax_cost.set_yscale("log")
    ax_cost.yaxis.set_major_formatter(ScalarFormatter())
    ax_cost.yaxis.set_minor_formatter(NullFormatter())
    ax_cost.set_ylabel("training epochs to produce the network")
    ax_cost.set_title("Training cost of each network")
    fig.legend(
        *ax_acc.get_legend_handles_labels(), loc="outside right upper", fontsize="small"
    )
    fig.suptitle(title, fontsize="medium")
    _write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=110), mode="wb")


# ------------------------------------------------------------------ main


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.data == "mnist" and not _mnist_present(args.mnist_dir):
        print(
            f"compare_methods: skipped: the MNIST test set (t10k-images-idx3-ubyte.gz, "
            f"t10k-labels-idx1-ubyte.gz) is not in {args.mnist_dir}. Pass "
            "--mnist-dir, or run with --data digits (scikit-learn's bundled digits)."
        )
        return 0

    started = time.perf_counter()
    data, train, validation, test, note = _load_data(args)
    budget = args.budget
    output = pathlib.Path(args.output)

    print("keras_lth: pruning methods compared on LeNet-300-100")
    print(_environment())
    print(f"Mode: {args.mode}. Before: {_load_average()}")
    print(f"Data: {note}")

    runs_by_method = {m: [] for m in args.methods}
    plan = None
    for seed in args.seeds:
        runner = Runner(args, seed, train, validation, test, data.input_shape)
        picked, rounds, curve = plan_rounds(runner.sizes, runner.rates, TARGETS)
        plan = {
            "rounds": rounds,
            "target_rounds": picked,
            "weights_remaining": [curve[r] for r in picked],
        }
        if seed == args.seeds[0]:
            print(
                f"Setup: Adam {runner.preset.learning_rate:g}, batch "
                f"{runner.batch_size}, {budget.epochs_per_round} "
                f"epoch{'s' if budget.epochs_per_round != 1 else ''} per round "
                f"({runner.steps_per_epoch} steps each), layerwise "
                f"{100 * budget.prune_rate:g}% hidden / {100 * budget.output_rate:g}% "
                f"output per round, {rounds} rounds; targets "
                + ", ".join(
                    f"{100 * t:g}% -> round {r} ({100 * curve[r]:.2f}%)"
                    for t, r in zip(TARGETS, picked, strict=True)
                )
                + f"; seeds {args.seeds}."
            )
        for method in args.methods:
            label, family = METHODS[method]
            start = time.perf_counter()
            if family in ("imp", "one_shot"):
                rows, settings = runner.lottery_ticket(method, rounds)
            elif method == "gradual":
                rows, settings = runner.gradual(plan["weights_remaining"])
            else:
                rows, settings = runner.at_init(method, plan["weights_remaining"])
            wall = time.perf_counter() - start
            points, spent, run_epochs, curve_points = points_and_cost(
                family, rows, TARGETS
            )
            runs_by_method[method].append(
                {
                    "seed": seed,
                    "rows": rows,
                    "points": points,
                    "curve": curve_points,
                    "epochs_spent": spent,
                    "epochs_run": run_epochs,
                    "wall_seconds": wall,
                    "settings": settings,
                }
            )
            accs = ", ".join(
                f"{100 * p['test_accuracy']:.2f} @{100 * p['weights_remaining']:.1f}%"
                for p in points
            )
            print(
                f"  seed {seed} {label}: {accs}; {run_epochs} epochs, {wall:.0f} s",
                flush=True,
            )
        del runner

    summaries = [summarize(m, runs_by_method[m]) for m in args.methods]
    table = format_table(summaries, TARGETS)
    notes = format_notes(args, runs_by_method, note, plan["rounds"], len(test[0]))
    total = time.perf_counter() - started
    print(f"After: {_load_average()}. Total wall time {total:.0f} s.")
    print()
    print(table)
    print()
    print(notes)
    if args.mode != "full":
        print(
            f"\n(--{args.mode}: "
            + (
                "figures mean nothing; this only checks that every method runs.)"
                if args.mode == "dry-run"
                else "a small budget; the figures are only indicative.)"
            )
        )

    dataset = "MNIST test-set split" if args.data == "mnist" else "sklearn digits"
    png = output / "compare_methods.png"
    plot(
        summaries,
        runs_by_method,
        TARGETS,
        png,
        f"LeNet-300-100 on the {dataset}: epochs per round "
        f"{budget.epochs_per_round}, mode {args.mode}, seeds {args.seeds}",
    )
    report = {
        "command": [sys.executable, *sys.argv] if argv is None else list(argv),
        "mode": args.mode,
        "environment": _environment(),
        "data": {
            "name": args.data,
            "source": data.source,
            "note": note,
            "sizes": {
                "train": len(train[0]),
                "validation": len(validation[0]),
                "test": len(test[0]),
            },
            "split_seed": args.split_seed,
        },
        "budget": dataclasses.asdict(budget),
        "late_rewind": args.late_rewind,
        "gradual_fraction": args.gradual_fraction,
        "gradual_strategy": args.gradual_strategy,
        "seeds": args.seeds,
        "targets": list(TARGETS),
        "plan": plan,
        "summary": summaries,
        "runs": runs_by_method,
        "table": table,
        "notes": notes,
        "total_wall_seconds": total,
    }
    _write_atomic(output / "results.json", lambda f: json.dump(report, f, indent=1))
    _write_atomic(
        output / "table.txt", lambda f: f.write(table + "\n\n" + notes + "\n")
    )
    print(f"\nWrote {output / 'results.json'}, {png} and {output / 'table.txt'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
