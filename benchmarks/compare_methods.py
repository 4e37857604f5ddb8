"""Pruning methods compared on LeNet-300-100: accuracy at three sparsities and cost.

What it measures
    For each method, the test accuracy of the sparse LeNet-300-100 it
    produces at about 21%, 7% and 3.6% of the prunable weights remaining
    (the paper's rates reach them at IMP rounds 7, 12 and 15: 21.1%, 7.0% and
    3.6%), and the training iterations it spent to produce those networks:

    * IMP, rewind to init (Frankle & Carbin 2019): `LotteryTicket(rewind="init")`.
    * IMP, late rewind (Frankle et al. 2020): `rewind="epoch:1"` by default,
      the weights at the first validation check (--eval-every iterations).
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
    * the paper's two controls, as branches of the "IMP, rewind to init"
      run (`keras_lth.branches`): the masks of its round nearest each target
      are set on a freshly built model (the seed of the IMP run, so the same
      initial weights θ0), then `keras_lth.controls.reinit` draws the
      surviving weights afresh ("random reinit"), or
      `keras_lth.controls.random_prune` replaces the masks by random ones
      with the same count per tensor and keeps θ0 ("random pruning"). Each
      branch trains once, like a round.

    Accuracy is measured on the held-out test images at each training's
    early-stopping point, the validation check of least val_loss. Every
    training but gradual pruning's runs under a `LotteryTicket` given
    `test_data` (a one-round ticket for SNIP, SynFlow and the controls), so a
    row's `row["test"]["accuracy"]` is that of the weights at that check.
    Gradual pruning changes its masks as it trains, so it evaluates the test
    set at every check itself and takes the check of least val_loss among
    those at its target sparsity. For the IMP-style methods the round whose
    weights remaining is closest (in ratio) to each target is taken, and its
    actual weights remaining is printed. SNIP, SynFlow and gradual pruning
    are given exactly the weights remaining of those rounds.

    "iters spent" counts the training iterations (batches of 60) the method
    needs to produce the three networks: the IMP-style methods sum their
    rounds up to the sparsest point; one-shot counts round 0 and the three
    tickets' trainings; SNIP, SynFlow and gradual pruning one training per
    target. Random reinit needs the IMP masks, so it counts the "IMP, rewind
    to init" rounds up to its sparsest level plus its three trainings.
    Random pruning needs only the count of weights per tensor, which the
    pruning rates give without training, so it counts its three trainings.
    "iters run" is what this benchmark trained for the row: one-shot trains
    all its rounds, to draw the whole curve; the controls' IMP run is in the
    "IMP, rewind to init" row.

Setup (the paper's LeNet-300-100 settings, Frankle & Carbin 2019, Figure 2)
    `keras_lth.models.get_preset("lenet_300_100")`: Gaussian Glorot init,
    Adam 1.2e-3, batch 60, layerwise pruning of 20% per round of the hidden
    layers and 10% of the output layer. Every method starts from the same
    initial weights (per seed) and draws its batches in the same order
    (`keras_lth.datasets.ShuffledBatches`), validating every --eval-every
    iterations (`fit(steps_per_epoch=...)`).

    Data, full mode: the official MNIST in `../shared/data/mnist-full`, read
    by `keras_lth.datasets.load_mnist`: 55,000 training and 5,000 validation
    images drawn from the 60,000 training images (--split-seed), and the
    official 10,000 test images. `--quick` and `--dry-run` use the official
    test set alone (`../shared/data/mnist`), split 8,000 train / 1,000
    validation / 1,000 test: fast, for smoke tests; their numbers are not
    comparable with the paper's. `--data digits` uses scikit-learn's
    bundled 8x8 digits instead, in any mode.

Budget
    Full mode, on the JAX backend (--backend), sized for about 20 minutes on
    one CPU core: IMP runs of 16 rounds (0 to 15) of 4,000 iterations (4.4
    passes over the 55,000 images; the paper trains 50,000 per round),
    validating every 200. Five IMP-style runs and one-shot train 16 rounds
    each, and gradual pruning, SNIP, SynFlow and the two controls one
    training per target: 111 trainings, 444,000 iterations at most
    (early-bird's rounds stop sooner). An estimate, not a timed run: at
    about 2 ms per iteration on one core the steps take at most 15 minutes; a
    validation pass (5,000 images, as many FLOPs as ~28 iterations) at each
    of the ~2,200 checks adds 2 to 3; the test evaluations (10,000 images,
    each time a round's best check moves) 1 to 4; compiling (one model, and
    a fresh one per control branch), pruning and SynFlow about 1: 19 to 23
    minutes in all.

Reproduce (from the repository root):

    taskset -c 0 python benchmarks/compare_methods.py     # full, on one core
    python benchmarks/compare_methods.py --quick          # 75 s of CPU time
    python benchmarks/compare_methods.py --dry-run        # 25 s of CPU time
    python benchmarks/compare_methods.py --data digits    # offline fallback

`--quick` trains 400 iterations per round (validating every 50) on the
8,000-image split at 50% (hidden) / 25% (output) per round, so 6 rounds
reach the targets; its figures are only indicative. `--dry-run` trains 8
iterations per round (validating every 4) on 200 images, 70% / 35% per
round (4 rounds), 5 SynFlow iterations: it checks that every method runs,
its figures mean nothing. (They took 4 and 2 minutes of wall time on 2 cores
with a load average of 10.)

Outputs, in --output (default runs/compare_methods): `results.json` (every
row of every run, the points, the settings), `compare_methods.png` (test
accuracy and training iterations against weights remaining), `table.txt`,
and `seed_<s>/levels/` and `seed_<s>/branches/` laid out by
`keras_lth.branches` (the masks of each level and of each control branch,
and each branch's results row). Those two folders are emptied when a run
starts, so no branch of an earlier run is reused. If the MNIST folder is
missing, the script prints why and exits with 0 without training (use
--mnist-dir, or --data digits).
"""

import argparse
import dataclasses
import json
import math
import os
import pathlib
import platform
import shutil
import sys
import textwrap
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FULL_MNIST_DIR = DATA / "mnist-full"  # The official 60,000 + 10,000 images.
SMALL_MNIST_DIR = DATA / "mnist"  # The official 10,000 test images alone.
DEFAULT_OUTPUT = "runs/compare_methods"
TARGETS = (0.21, 0.07, 0.036)

# method key: (table label, family). Families: "imp" (LotteryTicket rounds,
# cumulative cost), "one_shot", "single" (one training per target), "branch"
# (a control trained once from each level of the "imp_init" run).
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
    "reinit": ("control: random reinit", "branch"),
    "random": ("control: random pruning", "branch"),
}


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much each method trains, per mode."""

    iterations_per_round: int  # Optimizer steps (batches of 60) per training.
    eval_every: int  # Iterations between validation checks.
    train_size: int | None  # None: the whole training split.
    eval_size: int | None  # Validation and test images; None: all.
    prune_rate: float  # Hidden layers, per round.
    output_rate: float  # Output layer, per round.
    early_bird_window: int  # Validation checks.
    synflow_iterations: int

    @property
    def checks_per_round(self):
        return self.iterations_per_round // self.eval_every


BUDGETS = {
    "full": Budget(4000, 200, None, None, 0.2, 0.1, 4, 100),
    "quick": Budget(400, 50, None, None, 0.5, 0.25, 2, 100),
    "dry-run": Budget(8, 4, 200, 200, 0.7, 0.35, 1, 5),
}


# ------------------------------------------------------------------ CLI


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Compare IMP variants, gradual pruning, one-shot, early-bird, "
        "SNIP, SynFlow and the paper's two controls on LeNet-300-100: test "
        "accuracy at 21%, 7% and 3.6% weights remaining, and training cost.",
    )
    parser.add_argument(
        "--data",
        choices=("mnist", "digits"),
        default="mnist",
        help="mnist: the official MNIST (default); digits: scikit-learn's "
        "bundled 8x8 digits, offline.",
    )
    parser.add_argument(
        "--mnist-dir",
        default=None,
        help=f"Folder of MNIST IDX files. Default: {FULL_MNIST_DIR} (60,000 "
        f"training + 10,000 test images); with --quick or --dry-run, "
        f"{SMALL_MNIST_DIR} (the 10,000 test images alone).",
    )
    parser.add_argument(
        "--backend",
        choices=("jax", "tensorflow", "torch"),
        default="jax",
        help="Keras backend (default jax, which the full mode's budget assumes).",
    )
    parser.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        help=f"Folder for results.json, the PNG, table.txt and the control "
        f"branches (default {DEFAULT_OUTPUT}).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="A few minutes: 400 iterations per round on the 8,000-image split "
        "of the MNIST test set, 50%%/25%% pruned per round, 6 rounds. "
        "Indicative figures only.",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="Every method for 8 iterations per round on 200 images, for CI. "
        "Figures mean nothing. Takes precedence over --quick.",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"Comma-separated subset of {list(METHODS)}. Default: all. "
        "'reinit' and 'random' branch off 'imp_init', which must be included.",
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
        help="Seed of the train/validation(/test) split (default 0).",
    )
    parser.add_argument(
        "--iterations-per-round",
        type=int,
        default=None,
        help="Training iterations per round (default 4,000; 400 with --quick, "
        "8 with --dry-run).",
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help="Iterations between validation checks; must divide "
        "--iterations-per-round (default 200; 50 with --quick, 4 with --dry-run).",
    )
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
        help="Rewind point of 'IMP, late rewind': 'epoch:K' (after K "
        "validation checks) or an int number of iterations (default epoch:1).",
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
        "--verbose", action="store_true", help="Keras progress and round lines."
    )
    args = parser.parse_args(argv)

    args.mode = "dry-run" if args.dry_run else "quick" if args.quick else "full"
    if args.mnist_dir is None:
        args.mnist_dir = str(FULL_MNIST_DIR if args.mode == "full" else SMALL_MNIST_DIR)
    overrides = {
        "iterations_per_round": args.iterations_per_round,
        "eval_every": args.eval_every,
        "train_size": args.train_size,
        "prune_rate": args.prune_rate,
        "output_rate": args.output_rate,
    }
    args.budget = budget = dataclasses.replace(
        BUDGETS[args.mode], **{k: v for k, v in overrides.items() if v is not None}
    )
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        parser.error(
            f"--methods expects a comma-separated list from {list(METHODS)}. "
            f"Received: {args.methods!r}"
        )
    if {"reinit", "random"} & set(methods) and "imp_init" not in methods:
        parser.error(
            "--methods: the controls 'reinit' and 'random' branch off the "
            f"'imp_init' run; add imp_init. Received: {args.methods!r}"
        )
    args.methods = [m for m in METHODS if m in methods]  # imp_init first.
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds expects comma-separated ints. Received: {args.seeds!r}")
    if not args.seeds or min(args.seeds) < 0:
        parser.error(f"--seeds expects ints >= 0. Received: {args.seeds}")
    for name in ("prune_rate", "output_rate"):
        if not 0.0 < getattr(budget, name) < 1.0:
            parser.error(f"--{name.replace('_', '-')} must be in (0, 1).")
    if budget.eval_every < 1 or budget.iterations_per_round < 1:
        parser.error("--iterations-per-round and --eval-every must be >= 1.")
    if budget.iterations_per_round % budget.eval_every:
        parser.error(
            f"--eval-every {budget.eval_every} must divide --iterations-per-round "
            f"{budget.iterations_per_round}."
        )
    if not 0.0 < args.gradual_fraction <= 1.0:
        parser.error("--gradual-fraction must be in (0, 1].")
    late = args.late_rewind
    if late.isdigit():
        args.late_rewind = int(late)
        if args.late_rewind > budget.iterations_per_round:
            parser.error(f"--late-rewind {late} falls after round 0 ends.")
    elif not (late.startswith("epoch:") and late[6:].isdigit()):
        parser.error(f"--late-rewind expects 'epoch:K' or an int. Received: {late!r}")
    elif int(late[6:]) > budget.checks_per_round:
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


def planned_trainings(methods, rounds):
    """The most trainings of one round's length that `methods` run, per seed."""
    families = [METHODS[m][1] for m in methods]
    return sum(rounds if f in ("imp", "one_shot") else len(TARGETS) for f in families)


# ------------------------------------------------------------- helpers


def _has_idx(folder, part):
    """Whether `folder` holds MNIST's `part` ("t10k" or "train") IDX files."""
    folder = pathlib.Path(folder)
    return all(
        (folder / f"{stem}.gz").is_file() or (folder / stem).is_file()
        for stem in (f"{part}-images-idx3-ubyte", f"{part}-labels-idx1-ubyte")
    )


def _mnist_present(folder):
    """Whether `folder` holds the MNIST test or training IDX files."""
    return _has_idx(folder, "t10k") or _has_idx(folder, "train")


def _load_data(args):
    import keras_lth as lth

    budget = args.budget
    if args.data == "mnist":
        data = lth.datasets.load_mnist(args.mnist_dir, seed=args.split_seed)
    else:
        data = lth.datasets.load("digits", seed=args.split_seed)
    train = _head(data.train, budget.train_size)
    validation = _head(data.validation, budget.eval_size)
    test = _head(data.test, budget.eval_size)
    note = data.note
    sizes = (len(train[0]), len(validation[0]), len(test[0]))
    if sizes != tuple(
        len(pair[0]) for pair in (data.train, data.validation, data.test)
    ):
        note += (
            f" This run uses the first {sizes[0]:,} / {sizes[1]:,} / {sizes[2]:,} "
            "of them."
        )
    return data, train, validation, test, note


def _head(pair, n):
    if n is None:
        return pair
    return pair[0][:n], pair[1][:n]


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
    if keras.backend.backend() == "jax":
        import jax

        parts.append(f"JAX {jax.__version__}")
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        parts.append(f"TensorFlow {tf.__version__}")
    parts += [f"Python {platform.python_version()}", f"{os.cpu_count()} CPUs"]
    if hasattr(os, "sched_getaffinity"):
        parts.append(f"{len(os.sched_getaffinity(0))} usable by this process")
    return ", ".join(parts)


def _load_average():
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unavailable"


# --------------------------------------------------------------- runner


class Runner:
    """One model per seed, reset to the same initial state for every method.

    Reusing the model keeps its compiled train, evaluation and predict
    functions: each method starts from the initial weights, all-ones masks
    and a fresh Adam state, without tracing again. The controls are the
    exception: each branch gets a freshly built model (`build`), as
    `keras_lth.controls` asks.
    """

    def __init__(self, args, seed, train, validation, test, input_shape):
        import keras

        import keras_lth as lth

        self.keras, self.lth = keras, lth
        self.args, self.budget, self.seed = args, args.budget, seed
        self.train, self.validation, self.test = train, validation, test
        self.input_shape = input_shape
        self.preset = lth.models.get_preset("lenet_300_100")
        self.loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.model = self.build()
        self.initial_weights = [w.numpy() for w in self.model.weights]  # θ0
        self.model.optimizer.build(self.model.trainable_variables)
        self.initial = [v.numpy() for v in self.model.variables]
        self.initial_optimizer = [v.numpy() for v in self.model.optimizer.variables]
        self.batch_size = self.preset.batch_size
        masks = lth.get_masks(self.model)
        self.sizes = {k: int(m.size) for k, m in masks.items()}
        self.output_key = next(k for k in masks if k.startswith("output/"))
        self.rates = {
            k: self.budget.output_rate
            if k == self.output_key
            else self.budget.prune_rate
            for k in masks
        }

    def build(self):
        """A freshly built, compiled LeNet-300-100: θ0 of this seed."""
        self.keras.utils.set_random_seed(self.seed)
        model = self.preset.build_model(input_shape=self.input_shape)
        model.compile(
            optimizer=self.preset.make_optimizer(),
            loss=self.loss,
            metrics=["accuracy"],
        )
        return model

    def reset(self):
        """Initial weights, all-ones masks, fresh optimizer."""
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

    def fit(self, model, checks, callbacks):
        """`checks` validation checks, `eval_every` iterations apart.

        The batches come in the same order for every method (and every
        round of an IMP run continues the same stream).
        """
        batches = self.lth.datasets.ShuffledBatches(
            *self.train, batch_size=self.batch_size, seed=self.seed
        )
        model.fit(
            batches,
            steps_per_epoch=self.budget.eval_every,
            epochs=checks,
            shuffle=False,
            validation_data=self.validation,
            validation_batch_size=1000,
            verbose=2 if self.args.verbose else 0,
            callbacks=callbacks,
        )

    def ticket(self, rounds, **kwargs):
        """A `LotteryTicket` of this budget that measures the test set."""
        return self.lth.LotteryTicket(
            rounds,
            self.budget.checks_per_round,
            monitor="val_loss",
            test_data=self.test,
            seed=self.seed,
            verbose=1 if self.args.verbose else 0,
            **kwargs,
        )

    def train_once(self, model):
        """Trains `model` for one round's length; returns the ticket's row."""
        once = self.ticket(1)
        self.fit(model, once.total_epochs, [once])
        return once.results[0]

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
        }[method]
        ticket = self.ticket(
            rounds,
            prune_rate=budget.prune_rate,
            layer_rates={self.output_key.split("/")[0]: budget.output_rate},
            **kwargs,
        )
        self.reset()
        self.fit(self.model, ticket.total_epochs, [ticket])
        settings = {
            k: v if isinstance(v, (int, float, str)) else str(v)
            for k, v in kwargs.items()
        }
        return [dict(row) for row in ticket.results], settings, ticket

    def branches(self, control, ticket, rounds, folder):
        """The control trained once from each of `rounds` of the IMP `ticket`.

        The levels (the masks of those rounds) are written under `folder`
        first; `keras_lth.branches.run_branches` then trains the control on
        a freshly built model per level.
        """
        branches = self.lth.branches
        for round_index in sorted(set(rounds)):
            branches.save_level(folder, ticket, round_index)
        found = branches.run_branches(
            folder,
            self.build_fresh,
            lambda model, name: self.train_once(model),
            controls=(control,),
            seed=self.seed,
            log=print if self.args.verbose else lambda line: None,
        )
        rows = found[control]
        levels = [row["level"] for row in rows]
        return rows, {"levels": levels, "branch_folder": str(folder / "branches")}

    def build_fresh(self):
        """`build()`, checked to start from the IMP run's initial weights."""
        import numpy as np

        model = self.build()
        for weight, initial in zip(model.weights, self.initial_weights, strict=True):
            if not np.array_equal(weight.numpy(), initial):
                raise RuntimeError(
                    "A freshly built model with seed "
                    f"{self.seed} does not start from the IMP run's initial "
                    f"weights ({weight.path} differs)."
                )
        return model

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
            rows.append({**self.train_once(self.model), "round": i})
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
        budget = self.budget
        total_steps = budget.iterations_per_round
        frequency = max(1, budget.eval_every // 4)
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
            checks = _check_recorder(self.keras)(self)
            self.fit(self.model, budget.checks_per_round, [pruner, checks])
            # Early stopping only among the checks made at the target.
            slack = len(self.sizes) / sum(self.sizes.values())  # Rounding.
            reached = [c["weights_remaining"] <= remaining + slack for c in checks.log]
            rows.append(self._row(i, checks.log, eligible=reached))
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

    def _row(self, index, log, eligible):
        """A `LotteryTicket`-like results row from `_check_recorder`'s log."""
        candidates = [i for i in range(len(log)) if eligible[i]] or [len(log) - 1]
        best = min(candidates, key=lambda i: log[i]["logs"].get("val_loss", math.inf))
        return {
            "round": index,
            "weights_remaining": log[-1]["weights_remaining"],
            "best_epoch": best + 1,
            "best_step": (best + 1) * self.budget.eval_every,
            "best": log[best]["logs"],
            "final": log[-1]["logs"],
            "monitor": "val_loss",
            "epochs": len(log),
            "epochs_skipped": 0,
            "test": log[best]["test"],
        }


def _check_recorder(keras):
    import keras_lth.callbacks.test_metrics as test_metrics

    class CheckRecorder(keras.callbacks.Callback):
        """Records, at every check, the logs, the test metrics and the sparsity.

        For gradual pruning, whose masks change while it trains: the test
        metrics are `keras_lth.callbacks.test_metrics.evaluate_test`'s, as
        `LotteryTicket(test_data=...)` measures them.
        """

        def __init__(self, runner):
            super().__init__()
            self.runner = runner

        def on_train_begin(self, logs=None):
            self.log = []

        def on_epoch_end(self, epoch, logs=None):
            scalars = {k: float(v) for k, v in (logs or {}).items()}
            self.log.append(
                {
                    "logs": scalars,
                    "test": test_metrics.evaluate_test(self.model, self.runner.test),
                    "weights_remaining": self.runner.weights_remaining(),
                }
            )

    return CheckRecorder


# --------------------------------------------------------- bookkeeping


def points_and_cost(family, rows, targets, eval_every, prior=None):
    """The rows nearest each target, and the iterations needed to produce each.

    Args:
        family: The method's family (see `METHODS`).
        rows: Its results rows (one per round, target or level).
        targets: Fractions of weights remaining.
        eval_every: Iterations per validation check (a row's `epochs`).
        prior: Per row, iterations of another run that the row's network
            needs first (random reinit: the IMP rounds up to its level).
    """
    if family == "single":
        picked = list(range(len(rows)))
    else:
        remaining = [row["weights_remaining"] for row in rows]
        picked = [closest(remaining, t) for t in targets]
    iterations = [row["epochs"] * eval_every for row in rows]
    prior = prior or [0] * len(rows)

    def produce(i):
        if family == "imp":
            return sum(iterations[: i + 1])
        if family == "one_shot":
            return iterations[0] + (iterations[i] if i else 0)
        return prior[i] + iterations[i]

    points = [
        {
            "target": target,
            "row": i,
            "round": rows[i]["round"],
            "weights_remaining": rows[i]["weights_remaining"],
            "test_accuracy": rows[i]["test"]["accuracy"],
            "val_accuracy": rows[i]["best"].get("val_accuracy"),
            "best_epoch": rows[i]["best_epoch"],
            "best_step": rows[i]["best_step"],
            "round_epochs": rows[i]["epochs"],
            "iterations_to_produce": produce(i),
        }
        for target, i in zip(targets, picked, strict=True)
    ]
    if family == "imp":
        spent = sum(iterations[: max(picked) + 1])
    elif family == "one_shot":
        spent = iterations[0] + sum(iterations[i] for i in set(picked) if i)
    else:
        spent = max(prior[i] for i in picked)
        spent += sum(iterations[i] for i in set(picked))
    curve = [
        {
            "weights_remaining": row["weights_remaining"],
            "test_accuracy": row["test"]["accuracy"],
            "iterations_to_produce": produce(i),
        }
        for i, row in enumerate(rows)
    ]
    return points, spent, sum(iterations), curve


def branch_prior(method, rows, imp_rows, eval_every):
    """Iterations of the IMP run a branch's network needs before its training.

    Random reinit takes the level's masks, so it needs the IMP rounds up to
    that level. Random pruning takes only the count of weights per tensor,
    which the pruning rates give without any training.
    """
    if method == "random":
        return [0] * len(rows)
    per_round = [row["epochs"] * eval_every for row in imp_rows]
    return [sum(per_round[: row["round"] + 1]) for row in rows]


def _mean(values):
    return sum(values) / len(values)


def _std(values):
    if len(values) < 2:
        return 0.0
    m = _mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def summarize(method, runs):
    """Mean over seeds of each point, the cost and the wall time."""
    label, _ = METHODS[method]
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
        "iterations_spent": _mean([run["iterations_spent"] for run in runs]),
        "iterations_run": _mean([run["iterations_run"] for run in runs]),
        "wall_seconds": _mean([run["wall_seconds"] for run in runs]),
        "seeds": len(runs),
    }


def format_table(summaries, targets):
    several = any(s["seeds"] > 1 for s in summaries)
    cell = 20 if several else 15
    header = f"{'method':<27}" + "".join(
        f"{f'acc@{100 * t:g}%':>{cell}}" for t in targets
    )
    header += f"{'iters spent':>13}{'iters run':>11}{'wall':>8}"
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
            f"{s['iterations_spent']:>13,.0f}{s['iterations_run']:>11,.0f}"
            f"{s['wall_seconds']:>7.0f}s"
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
        "early-stopping point (the validation check of least val_loss, every "
        f"{budget.eval_every} iterations) of the training that produced the "
        "network; after @, its actual weights remaining. IMP-style rows take the "
        "round closest to X%, and the controls branch off those rounds of 'IMP, "
        "rewind to init'; SNIP, SynFlow and gradual pruning are pruned to "
        "those rounds' weights remaining."
        + (
            f" Means over {seeds} seeds; ± is the standard deviation."
            if seeds > 1
            else ""
        )
        + f" On {test_size:,} test images one image is {100 / test_size:.2g} points,"
        f" and the binomial standard error at 95% accuracy is {error:.2f} points.",
        "iters spent: training iterations (batches of 60) to produce all three "
        "networks (IMP-style: rounds 0 up to the sparsest point; one-shot: round "
        "0 + the three tickets; SNIP/SynFlow/gradual: one training per target; "
        "random reinit: the IMP rounds up to its sparsest level, whose masks it "
        "takes, + its three trainings; random pruning: its three trainings, as "
        "the per-tensor counts it takes follow from the pruning rates). iters "
        f"run: what this benchmark trained for the row (one-shot trains all "
        f"{rounds} rounds, for its curve; the controls' IMP run is counted in "
        "'IMP, rewind to init'). wall: the method's wall-clock time, all its "
        "fits and mask computations included" + (", per seed." if seeds > 1 else "."),
        f"Each training: {budget.iterations_per_round:,} iterations, validated "
        f"every {budget.eval_every}. Late rewind: rewind={args.late_rewind!r}"
        + (
            f" (iteration {budget.eval_every * int(args.late_rewind[6:])})"
            if isinstance(args.late_rewind, str)
            else ""
        )
        + ". Gradual: GradualPruning with PolynomialDecay from 0 to the target ("
        + (
            "one global magnitude ranking"
            if args.gradual_strategy == "global"
            else "the same sparsity in every layer"
        )
        + f"), reached after {args.gradual_fraction:g} of its training; early "
        "stopping among the checks at the target. SNIP (a batch of 10 images per "
        f"class) and SynFlow ({budget.synflow_iterations} iterations) rank all "
        "layers together. Controls: a freshly built model (the IMP run's seed, "
        "so its initial weights) with the level's masks and new random weights "
        "(random reinit), or random masks of the level's per-tensor counts "
        "(random pruning), trained once.",
    ]
    eb = runs_by_method.get("early_bird")
    if eb:
        per_point = [p["round_epochs"] * budget.eval_every for p in eb[0]["points"]]
        paragraphs.append(
            "early-bird: every round but the last stops once the mask settles "
            f"(window {budget.early_bird_window} check"
            f"{'s' if budget.early_bird_window != 1 else ''}, distance 0.1), so the "
            f"networks at the targets trained {', '.join(f'{n:,}' for n in per_point)} "
            f"of {budget.iterations_per_round:,} iterations in their rounds "
            f"(seed {args.seeds[0]})."
        )
    unfinished = [
        METHODS[method][0]
        for method, runs in runs_by_method.items()
        if any(
            p["best_epoch"] == p["round_epochs"] == budget.checks_per_round
            for run in runs
            for p in run["points"]
        )
    ]
    if unfinished and budget.checks_per_round > 1:
        paragraphs.append(
            "Least val_loss at the last check of the training (still improving "
            "when it stopped) for at least one target: "
            + "; ".join(unfinished)
            + ". Longer rounds could raise their accuracy."
        )
    dense = next(iter(runs_by_method.get("imp_init", [])), None)
    if dense:
        row = dense["rows"][0]
        paragraphs.append(
            f"Dense network (round 0, seed {dense['seed']}): test accuracy "
            f"{100 * row['test']['accuracy']:.2f}% at iteration {row['best_step']:,}."
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

    import keras_lth as lth

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
            _mean([run["curve"][r]["iterations_to_produce"] for run in runs])
            for r in range(n)
        ]
        all_x += x
        style = {
            "color": colors[i % len(colors)],
            "marker": markers[i % len(markers)],
            "linestyle": {"imp": "-", "one_shot": "--", "single": ":", "branch": "-."}[
                family
            ],
            "markersize": 4,
            "linewidth": 1.4,
        }
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
    ax_cost.set_ylabel("training iterations to produce the network")
    ax_cost.set_title("Training cost of each network")
    fig.legend(
        *ax_acc.get_legend_handles_labels(), loc="outside right upper", fontsize="small"
    )
    fig.suptitle(title, fontsize="medium")
    lth.saving.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


# ------------------------------------------------------------------ main


def run_seed(args, seed, data, train, validation, test, output):
    """Every method for one seed: `({method: run}, plan)`."""
    budget = args.budget
    runner = Runner(args, seed, train, validation, test, data.input_shape)
    picked, rounds, curve = plan_rounds(runner.sizes, runner.rates, TARGETS)
    plan = {
        "rounds": rounds,
        "target_rounds": picked,
        "weights_remaining": [curve[r] for r in picked],
        "trainings": planned_trainings(args.methods, rounds),
    }
    if seed == args.seeds[0]:
        print(
            f"Setup: Adam {runner.preset.learning_rate:g}, batch "
            f"{runner.batch_size}, {budget.iterations_per_round:,} iterations per "
            f"round validated every {budget.eval_every}, layerwise "
            f"{100 * budget.prune_rate:g}% hidden / {100 * budget.output_rate:g}% "
            f"output per round, {rounds} rounds; targets "
            + ", ".join(
                f"{100 * t:g}% -> round {r} ({100 * curve[r]:.2f}%)"
                for t, r in zip(TARGETS, picked, strict=True)
            )
            + f"; seeds {args.seeds}. At most {plan['trainings']} trainings "
            f"({plan['trainings'] * budget.iterations_per_round:,} iterations) "
            "per seed."
        )
    folder = output / f"seed_{seed}"
    for stale in ("levels", "branches"):  # Never reuse an earlier run's branch.
        shutil.rmtree(folder / stale, ignore_errors=True)
    runs, imp = {}, None
    for method in args.methods:
        label, family = METHODS[method]
        start = time.perf_counter()
        prior = None
        if family in ("imp", "one_shot"):
            rows, settings, ticket = runner.lottery_ticket(method, rounds)
            if method == "imp_init":
                imp = (rows, ticket)
        elif family == "branch":
            imp_rows, ticket = imp
            levels = [
                closest([r["weights_remaining"] for r in imp_rows], t) for t in TARGETS
            ]
            rows, settings = runner.branches(method, ticket, levels, folder)
            prior = branch_prior(method, rows, imp_rows, budget.eval_every)
        elif method == "gradual":
            rows, settings = runner.gradual(plan["weights_remaining"])
        else:
            rows, settings = runner.at_init(method, plan["weights_remaining"])
        wall = time.perf_counter() - start
        points, spent, run_iterations, curve_points = points_and_cost(
            family, rows, TARGETS, budget.eval_every, prior
        )
        runs[method] = {
            "seed": seed,
            "rows": rows,
            "points": points,
            "curve": curve_points,
            "iterations_spent": spent,
            "iterations_run": run_iterations,
            "wall_seconds": wall,
            "settings": settings,
        }
        accs = ", ".join(
            f"{100 * p['test_accuracy']:.2f} @{100 * p['weights_remaining']:.1f}%"
            for p in points
        )
        print(
            f"  seed {seed} {label}: {accs}; {run_iterations:,} iterations, "
            f"{wall:.0f} s",
            flush=True,
        )
    return runs, plan


def main(argv=None):
    args = parse_args(argv)
    if args.data == "mnist" and not _mnist_present(args.mnist_dir):
        print(
            "compare_methods: skipped: no MNIST IDX files (t10k-images-idx3-ubyte.gz "
            "and t10k-labels-idx1-ubyte.gz, or train-images/train-labels) in "
            f"{args.mnist_dir}. Pass --mnist-dir"
            + (f", run --quick (uses {SMALL_MNIST_DIR})" if args.mode == "full" else "")
            + ", or run with --data digits (scikit-learn's bundled digits)."
        )
        return 0
    os.environ["KERAS_BACKEND"] = args.backend  # Before Keras is imported.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras_lth as lth

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
        runs, plan = run_seed(args, seed, data, train, validation, test, output)
        for method, run in runs.items():
            runs_by_method[method].append(run)

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

    if args.data == "digits":
        dataset = "sklearn digits"
    elif _has_idx(args.mnist_dir, "train"):
        dataset = "MNIST"
    else:
        dataset = "the MNIST test-set split"
    png = output / "compare_methods.png"
    plot(
        summaries,
        runs_by_method,
        TARGETS,
        png,
        f"LeNet-300-100 on {dataset}: {budget.iterations_per_round:,} iterations "
        f"per round, mode {args.mode}, seeds {args.seeds}",
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
    lth.saving.atomic_write_text(output / "results.json", json.dumps(report, indent=1))
    lth.saving.atomic_write_text(output / "table.txt", table + "\n\n" + notes + "\n")
    print(f"\nWrote {output / 'results.json'}, {png} and {output / 'table.txt'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
