"""Reproduce Frankle & Carbin's LeNet-300-100 lottery-ticket experiment.

What it runs (the paper's Figures 3 and 4, through keras_lth's public API)
    * Data: the official MNIST, 55,000 training / 5,000 validation images
      drawn from the 60,000 training images, and the official 10,000 test
      images (`keras_lth.datasets.load_mnist("../shared/data/mnist-full")`).
    * Model: `keras_lth.models.lenet_300_100()` (Glorot-normal init), Adam
      1.2e-3, batch 60 (`get_preset("lenet_300_100")`).
    * IMP: `LotteryTicket` prunes 20% of the hidden layers and 10% of the
      output layer per round, rewinds to θ0, for 19 rounds (down to 1.9%).
      Each round trains 20,000 iterations and validates every 200
      (`keras_lth.datasets.ShuffledBatches` with `steps_per_epoch=200`).
    * Early stopping: the check of minimum validation loss in each round; the
      test accuracy is that of those weights (`LotteryTicket(test_data=...)`),
      and the early-stop iteration is the optimizer steps up to that check.
    * Controls, the paper's two, as branches of the IMP levels at 51.3, 21.1,
      7.0, 3.6 and 1.9% (`keras_lth.branches`): the level's mask with a new
      random initialisation (`controls.reinit`), and a random mask with the
      level's per-tensor counts and θ0 (`controls.random_prune`). Each is
      trained once, like a round.
    * 5 seeds: mean, standard deviation and min-max over seeds.

Output (in `--output`, default `runs/reproduce_lenet`)
    `seed_<s>/` per seed: the IMP run's checkpoint, `imp_results.json`, and
    `levels/` and `branches/` as `keras_lth.branches` lays them out;
    `results.json` (every row), `report.md` (the tables and the comparison
    with the paper) and `reproduce_lenet.png` (the paper-style plot).

Resumable: run the same command again after a kill. Finished IMP runs and
branches are skipped, and an unfinished IMP run goes on from its last
check (its `LotteryTicket` checkpoint). `--workers 2` trains two tasks at
a time, one per CPU core.

Reproduce (from the repository root):

    python benchmarks/reproduce_lenet.py --workers 2   # full (see BENCHMARKS.md)
    python benchmarks/reproduce_lenet.py --quick       # 8,000-image split, minutes
    python benchmarks/reproduce_lenet.py --dry-run     # seconds: every code path
"""

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

#: What Frankle & Carbin report for LeNet-300-100 on MNIST (Section 2,
#: Figures 3 and 4): accuracy in percent, weights remaining in percent.
PAPER = {
    "dense_accuracy": 98.0,
    "peak_gain": 0.3,  # Points above dense, ...
    "peak_at": 13.5,  # ... near this % of weights remaining.
    "at_least_dense_to": 3.6,  # The ticket >= dense down to here, ...
    "below_dense_at": 2.9,  # ... and below dense near here.
    "gain_over_reinit_at_21": 0.5,  # Points, ticket vs random reinit at 21.1%.
    "speedup_over_reinit_at_21": 2.5,  # Reinit's early-stop iteration / ticket's.
}

MODES = {
    "full": {
        "data": str(DATA / "mnist-full"),
        "train": None,
        "seeds": 5,
        "rounds": 19,
        "iterations": 20000,
        "eval_every": 200,
        "levels": [0.513, 0.211, 0.070, 0.036, 0.019],
        # Trainings whose best check is their last are trained again, this
        # long, to find where they stop (the paper's 50,000 iterations).
        "extend": 50000,
    },
    "quick": {
        "data": str(DATA / "mnist"),
        "train": None,
        "seeds": 3,
        "rounds": 8,
        "iterations": 1000,
        "eval_every": 100,
        "levels": [0.513, 0.211],
        "extend": None,
    },
    "dry-run": {
        "data": str(DATA / "mnist"),
        "train": 600,
        "seeds": 1,
        "rounds": 2,
        "iterations": 20,
        "eval_every": 10,
        "levels": [0.8],
        "extend": 40,
    },
}

LABELS = {
    "imp": "winning ticket (IMP, rewind to θ0)",
    "reinit": "control: same mask, random reinit",
    "random": "control: random mask, θ0",
}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Reproduce Frankle & Carbin's LeNet-300-100 experiment."
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="8,000-image split")
    mode.add_argument("--dry-run", action="store_true", help="seconds, tiny")
    parser.add_argument("--data-path", help="MNIST folder (default: per mode)")
    parser.add_argument("--seeds", type=int, help="number of seeds")
    parser.add_argument("--rounds", type=int, help="IMP rounds (19 reaches 1.9%%)")
    parser.add_argument("--iterations", type=int, help="iterations per round")
    parser.add_argument("--eval-every", type=int, help="iterations between checks")
    parser.add_argument("--workers", type=int, default=1, help="parallel tasks")
    parser.add_argument(
        "--extend-censored",
        type=int,
        metavar="ITERATIONS",
        help="train the control branches whose best check was their last "
        "again for this many iterations (full mode: 50,000; 0: never)",
    )
    parser.add_argument("--backend", default="jax", help="Keras backend (jax)")
    parser.add_argument("--output", default="runs/reproduce_lenet")
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--from-results",
        metavar="JSON",
        help="rewrite the report and plot from a finished run's results.json",
    )
    args = parser.parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    output = pathlib.Path(args.output)
    if args.from_results:
        saved = json.loads(pathlib.Path(args.from_results).read_text())
        write_outputs(saved, output)
        return 0

    settings = dict(
        MODES["quick" if args.quick else "dry-run" if args.dry_run else "full"]
    )
    for key in ("seeds", "rounds", "iterations", "eval_every", "workers"):
        value = getattr(args, key, None)
        if value is not None and value < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1, got {value}")
        if value is not None and key != "workers":
            settings[key] = value
    if settings["iterations"] % settings["eval_every"]:
        parser.error("--iterations must be a multiple of --eval-every")
    if args.data_path:
        settings["data"] = args.data_path
    if args.extend_censored is not None:
        settings["extend"] = args.extend_censored or None
    extend = settings["extend"]
    if extend and (extend % settings["eval_every"] or extend <= settings["iterations"]):
        parser.error(
            "--extend-censored must be a multiple of --eval-every above --iterations"
        )

    if args.worker_index is not None:
        return work(args.worker_index, settings, output, args.workers)

    output.mkdir(parents=True, exist_ok=True)
    claims = output / "claims"
    for claim in claims.glob("*"):
        claim.unlink()  # Claims of a killed run: those tasks were not finished.
    start = time.perf_counter()
    print(
        f"Settings: {settings['seeds']} seeds, {settings['rounds']} rounds x "
        f"{settings['iterations']} iterations (checks every "
        f"{settings['eval_every']}), control levels {settings['levels']}, "
        f"{args.workers} worker(s), backend {args.backend}.",
        flush=True,
    )
    if args.workers == 1:
        status = work(0, settings, output, 1)
    else:
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    *(argv or sys.argv[1:]),
                    "--worker-index",
                    str(i),
                ]
            )
            for i in range(args.workers)
        ]
        status = max(child.wait() for child in children)
    if status:
        return status
    elapsed = time.perf_counter() - start
    saved = gather(settings, output, elapsed, args)
    write_outputs(saved, output)
    return 0


# ----------------------------------------------------------------- workers


def tasks(settings):
    """Every task: one IMP run per seed, then one per seed and control, then
    (with `extend`) one per seed to train its censored branches longer."""
    seeds = range(settings["seeds"])
    extend = [("extend", s) for s in seeds] if settings.get("extend") else []
    return (
        [("imp", s) for s in seeds]
        + [(c, s) for s in seeds for c in ("reinit", "random")]
        + extend
    )


def work(index, settings, output, workers):
    """Takes unclaimed tasks until none is left (claims are files).

    With several workers, each keeps to one CPU core and one thread, so that
    they do not fight over the cores.
    """
    if workers > 1:
        os.environ.setdefault(
            "XLA_FLAGS",
            "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
        )
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        cores = (
            sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        )
        if len(cores) > 1:
            os.sched_setaffinity(0, {cores[index % len(cores)]})
    runner = Runner(settings, output, prefix=f"[worker {index}] ")
    claims = output / "claims"
    claims.mkdir(parents=True, exist_ok=True)
    while True:
        pending = [t for t in tasks(settings) if not runner.done(*t)]
        if not pending:
            return 0
        ready = [t for t in pending if runner.ready(*t)]
        for task in ready:
            try:
                fd = os.open(claims / f"{task[0]}_{task[1]}", os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                continue
            os.close(fd)
            runner.run(*task)
            break
        else:
            if all((claims / f"{t[0]}_{t[1]}").exists() for t in pending):
                return 0  # The rest is another worker's.
            time.sleep(5)  # Waiting for an IMP run that another worker trains.


class Runner:
    """Trains the tasks of one worker process."""

    def __init__(self, settings, output, prefix=""):
        import keras

        import keras_lth as lth
        import keras_lth.branches  # noqa: F401 (the submodules used below)
        import keras_lth.callbacks.checkpoint  # noqa: F401

        self.keras, self.lth = keras, lth
        self.settings, self.output, self.prefix = settings, output, prefix
        self.splits = lth.datasets.load_mnist(settings["data"])
        if settings["train"]:
            x, y = self.splits.train
            n = settings["train"]
            import dataclasses

            self.splits = dataclasses.replace(self.splits, train=(x[:n], y[:n]))
        self.preset = lth.models.get_preset("lenet_300_100")
        self.start = time.perf_counter()

    def log(self, text):
        elapsed = (time.perf_counter() - self.start) / 60
        print(f"{self.prefix}{text} ({elapsed:.1f} min)", flush=True)

    def folder(self, seed):
        return self.output / f"seed_{seed}"

    def done(self, task, seed):
        if task == "imp":
            return (self.folder(seed) / "imp_results.json").exists()
        if task == "extend":
            return (self.folder(seed) / "extended.json").exists()
        found = self.lth.branches.read_branches(self.folder(seed)).get(task, [])
        return self.done("imp", seed) and len(found) == len(self._levels(seed))

    def ready(self, task, seed):
        if task == "extend":
            return all(self.done(c, seed) for c in ("reinit", "random"))
        return task == "imp" or self.done("imp", seed)

    def _levels(self, seed):
        return list((self.folder(seed) / "levels").glob("round_*"))

    def build(self, seed):
        self.keras.utils.set_random_seed(seed)
        model = self.preset.build_model(input_shape=self.splits.input_shape)
        model.compile(
            optimizer=self.preset.make_optimizer(),
            loss=self.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return model

    def fit(self, model, ticket, seed, start_epoch=0, what=""):
        every = self.settings["eval_every"]
        batches = self.lth.datasets.ShuffledBatches(
            *self.splits.train,
            batch_size=self.preset.batch_size,
            seed=seed,
            start_step=start_epoch * every,
        )
        model.fit(
            batches,
            steps_per_epoch=every,
            epochs=ticket.total_epochs,
            shuffle=False,
            validation_data=self.splits.validation,
            validation_batch_size=1000,
            callbacks=[ticket, Progress(ticket, self.log, what)],
            verbose=0,
        )

    def ticket(self, rounds, seed, iterations=None, **kwargs):
        s = self.settings
        return self.lth.LotteryTicket(
            rounds,
            (iterations or s["iterations"]) // s["eval_every"],
            monitor="val_loss",
            test_data=self.splits.test,
            seed=seed,
            verbose=0,
            **kwargs,
        )

    def run(self, task, seed):
        if task == "imp":
            self.run_imp(seed)
        elif task == "extend":
            self.run_extend(seed)
        else:
            self.run_control(task, seed)

    def run_imp(self, seed):
        lth, folder = self.lth, self.folder(seed)
        state = folder / "imp" / lth.callbacks.checkpoint.CHECKPOINT_NAME
        start_epoch = 0
        if state.exists():
            start_epoch = lth.callbacks.checkpoint.read_state(state)[1].epochs_done
        self.log(
            f"seed {seed}: IMP, {self.settings['rounds']} rounds"
            + (f", resumed at check {start_epoch}" if start_epoch else "")
        )
        ticket = self.ticket(
            self.settings["rounds"],
            seed,
            checkpoint_dir=str(folder / "imp"),
            **self.preset.ticket_kwargs(),
        )
        model = self.build(seed)
        self.fit(model, ticket, seed, start_epoch, what=f"seed {seed} IMP")
        for round_index in lth.branches.level_rounds(
            ticket.results, self.settings["levels"]
        ):
            lth.branches.save_level(folder, ticket, round_index)
        lth.save_results_json(ticket.results, folder / "imp_results.json")

    def run_control(self, control, seed):
        def train(model, name):
            ticket = self.ticket(1, seed)
            self.fit(model, ticket, seed + 1000, what=f"seed {seed} {name}")
            return ticket.results[0]

        self.lth.branches.run_branches(
            self.folder(seed),
            lambda: self.build(seed),
            train,
            controls=(control,),
            seed=seed,
            log=lambda line: self.log(f"seed {seed}: {line}"),
        )

    def run_extend(self, seed):
        """Trains each censored branch again, longer, from the same draw.

        The same masks, initial weights and data order as the branch, so its
        first `iterations` are the branch's own; the row says where it stops
        when it may train `extend` iterations."""
        branches, folder = self.lth.branches, self.folder(seed)
        extend, rows = self.settings["extend"], []
        for control, found in sorted(branches.read_branches(folder).items()):
            for row in found:
                if row["best_epoch"] != row["epochs"]:
                    continue  # It stopped inside the round: not censored.
                model = branches.draw_branch(
                    self.build(seed),
                    folder / "levels" / row["level"],
                    control,
                    seed=seed,
                )
                ticket = self.ticket(1, seed, iterations=extend)
                name = f"{control}/{row['level']} for {extend:,} iterations"
                self.log(f"seed {seed}: censored branch {name}")
                self.fit(model, ticket, seed + 1000, what=f"seed {seed} {name}")
                rows.append(
                    {
                        **ticket.results[0],
                        "control": control,
                        "level": row["level"],
                        "round": row["round"],
                        "seed": seed,
                        "short": row,
                    }
                )
        from keras_lth.saving import atomic_write_text

        atomic_write_text(folder / "extended.json", json.dumps(rows, indent=1))


def Progress(ticket, log, what):  # noqa: N802 (a callback factory)
    import keras

    class _Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if ticket.results and len(ticket.results) != getattr(self, "seen", 0):
                self.seen = len(ticket.results)
                row = ticket.results[-1]
                log(
                    f"{what}: round {row['round'] + 1}/{ticket.rounds}, "
                    f"{100 * row['weights_remaining']:.1f}% remaining, test acc "
                    f"{100 * row['test']['accuracy']:.2f}% at iteration "
                    f"{row['best_step']}"
                )

    return _Progress()


# ----------------------------------------------------------------- results


def gather(settings, output, elapsed, args):
    """Reads every seed's rows into one JSON-ready dict."""
    import keras

    import keras_lth as lth

    runs = {"imp": [], "reinit": [], "random": []}
    extended = []
    for seed in range(settings["seeds"]):
        folder = output / f"seed_{seed}"
        if (folder / "extended.json").exists():
            extended += json.loads((folder / "extended.json").read_text())
        runs["imp"].append(lth.load_results(folder / "imp_results.json"))
        branches = lth.branches.read_branches(folder)
        for control in ("reinit", "random"):
            runs[control].append(branches.get(control, []))
    splits = lth.datasets.load_mnist(settings["data"])
    header = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} CPU cores, {args.workers} worker(s)), Keras "
        f"{keras.__version__}, backend {keras.backend.backend()}, keras_lth "
        f"{lth.__version__}; {elapsed / 60:.1f} minutes for what this run trained.",
        f"Data: {splits.note or splits.source}"
        + (
            f" (first {settings['train']} training images)" if settings["train"] else ""
        ),
        f"{settings['seeds']} seeds; {settings['rounds']} IMP rounds of "
        f"{settings['iterations']:,} iterations, validation every "
        f"{settings['eval_every']}; batch 60, Adam 1.2e-3; test accuracy of the "
        "weights at the check of minimum validation loss.",
    ]
    return {"settings": settings, "header": header, "runs": runs, "extended": extended}


def stats(values):
    import numpy as np

    values = np.asarray(values, dtype=float)
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
        "n": int(len(values)),
    }


def summarize(runs):
    """`{method: {round: summary}}` over seeds: accuracy in %, iterations."""
    table = {}
    for method, seeds in runs.items():
        by_round = {}
        for rows in seeds:
            for row in rows:
                by_round.setdefault(row["round"], []).append(row)
        table[method] = {
            r: {
                "remaining": 100 * rows[0]["weights_remaining"],
                "acc": stats([100 * row["test"]["accuracy"] for row in rows]),
                "step": stats([row["best_step"] for row in rows]),
                # The best check was the round's last: not stopped yet.
                "censored": sum(row["best_epoch"] == row["epochs"] for row in rows),
            }
            for r, rows in sorted(by_round.items())
        }
    return table


def _acc(cell):
    if cell is None:
        return "-"
    a = cell["acc"]
    return f"{a['mean']:.2f} ± {a['std']:.2f} ({a['min']:.2f}-{a['max']:.2f})"


def _it(cell):
    if cell is None:
        return "-"
    mark = f" ({cell['censored']} censored)" if cell["censored"] else ""
    return f"{cell['step']['mean']:,.0f} ± {cell['step']['std']:,.0f}{mark}"


def format_tables(table):
    imp, reinit, random = table["imp"], table["reinit"], table["random"]
    lines = [
        "Test accuracy (%) at early stopping, mean ± std (min-max) over seeds, at "
        "the levels where the controls branch off:",
        "",
        "| weights remaining | winning ticket | random reinit | random pruning |",
        "|---|---|---|---|",
    ]
    levels = sorted(set(reinit) | set(random))
    shown = [0, *levels]
    for r in shown:
        lines.append(
            f"| {imp[r]['remaining']:.1f}% | {_acc(imp[r])} | "
            f"{_acc(reinit.get(r))} | {_acc(random.get(r))} |"
        )
    lines += [
        "",
        "Early-stop iteration (the check of minimum validation loss), mean ± std:",
        "",
        "| weights remaining | winning ticket | random reinit | random pruning |",
        "|---|---|---|---|",
    ]
    for r in shown:
        lines.append(
            f"| {imp[r]['remaining']:.1f}% | {_it(imp[r])} | {_it(reinit.get(r))} | "
            f"{_it(random.get(r))} |"
        )
    lines += [
        "",
        "The winning ticket at every round:",
        "",
        "| round | weights remaining | test accuracy % | early-stop iteration |",
        "|---|---|---|---|",
    ]
    for r, cell in imp.items():
        lines.append(f"| {r} | {cell['remaining']:.1f}% | {_acc(cell)} | {_it(cell)} |")
    censored = sum(c["censored"] for m in table.values() for c in m.values())
    rows = sum(c["acc"]["n"] for m in table.values() for c in m.values())
    lines += [
        "",
        f"Censored early-stop points (best check = the round's last, so the "
        f"network had not stopped yet): {censored} of {rows} trained rounds.",
    ]
    return "\n".join(lines)


def format_extended(rows, settings):
    """The censored branches trained again, longer: where they stop."""
    if not rows:
        return []
    lines = [
        "",
        f"The censored trainings, trained again from the same draw (same masks, "
        f"initial weights and data order) for {settings['extend']:,} iterations:",
        "",
        "| seed | control | level | best check in "
        f"{settings['iterations']:,} | test acc % | best check in "
        f"{settings['extend']:,} | test acc % |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        short = row["short"]
        still = " (censored)" if row["best_epoch"] == row["epochs"] else ""
        lines.append(
            f"| {row['seed']} | {row['control']} | {row['level']} | "
            f"{short['best_step']:,} | {100 * short['test']['accuracy']:.2f} | "
            f"{row['best_step']:,}{still} | {100 * row['test']['accuracy']:.2f} |"
        )
    return lines


def _verdict(ours, paper):
    """Same sign and within a factor 2: agrees; same sign: in direction."""
    if ours * paper <= 0:
        return "differs"
    if paper / 2 <= ours <= paper * 2:
        return "agrees"
    return "agrees in direction, differs in size"


def compare_with_paper(table):
    """Each claim of the paper beside ours, with the rule for 'agrees'."""
    imp, reinit, random = table["imp"], table["reinit"], table["random"]
    dense = imp[0]["acc"]["mean"]
    lines = []

    def claim(text, ours, paper, verdict, rule):
        lines.append(f"- {text}: ours {ours}; paper {paper}. **{verdict}** ({rule}).")

    claim(
        "Dense test accuracy",
        f"{dense:.2f}%",
        f"about {PAPER['dense_accuracy']:.1f}%",
        "agrees" if abs(dense - PAPER["dense_accuracy"]) <= 0.5 else "differs",
        "within 0.5 points",
    )
    sparse = {r: c for r, c in imp.items() if r > 0}
    if sparse:
        peak_round = max(sparse, key=lambda r: sparse[r]["acc"]["mean"])
        peak = sparse[peak_round]
        gain = peak["acc"]["mean"] - dense
        near = PAPER["peak_at"] / 2.5 <= peak["remaining"] <= PAPER["peak_at"] * 2.5
        claim(
            "Peak of the ticket over dense",
            f"{gain:+.2f} points at {peak['remaining']:.1f}% remaining",
            f"about +{PAPER['peak_gain']} points near {PAPER['peak_at']}%",
            _verdict(gain, PAPER["peak_gain"]) if near else "differs",
            "a gain of the same sign within a factor 2, at 5.4-33.8% remaining",
        )
        above = [
            c["remaining"]
            for r, c in sorted(sparse.items())
            if all(sparse[q]["acc"]["mean"] >= dense for q in sparse if q <= r)
        ]
        lowest = min(above) if above else None
        claim(
            "The ticket at or above dense down to",
            f"{lowest:.1f}%" if lowest else "no sparse round",
            f"about {PAPER['at_least_dense_to']}%",
            "agrees" if lowest and 2.0 <= lowest <= 7.0 else "differs",
            "between 2% and 7% remaining",
        )
        below = [
            c["remaining"]
            for r, c in sorted(sparse.items())
            if all(sparse[q]["acc"]["mean"] < dense for q in sparse if q >= r)
        ]
        claim(
            "The ticket below dense for good from",
            f"{below[0]:.1f}%" if below else "never (in the rounds run)",
            f"about {PAPER['below_dense_at']}%",
            "agrees" if below and 1.5 <= below[0] <= 5.0 else "differs",
            "between 1.5% and 5% remaining",
        )
    level = min(reinit, key=lambda r: abs(reinit[r]["remaining"] - 21.1), default=None)
    if level is not None and abs(reinit[level]["remaining"] - 21.1) < 3:
        t, c = imp[level], reinit[level]
        gain = t["acc"]["mean"] - c["acc"]["mean"]
        claim(
            f"Ticket minus random reinit at {t['remaining']:.1f}%, accuracy",
            f"{gain:+.2f} points",
            f"about +{PAPER['gain_over_reinit_at_21']} points",
            _verdict(gain, PAPER["gain_over_reinit_at_21"]),
            "same sign, within a factor 2",
        )
        speedup = c["step"]["mean"] / t["step"]["mean"]
        claim(
            f"Random reinit's early-stop iteration over the ticket's at "
            f"{t['remaining']:.1f}%",
            f"{speedup:.2f}x ({c['step']['mean']:,.0f} vs {t['step']['mean']:,.0f})",
            f"about {PAPER['speedup_over_reinit_at_21']}x",
            _verdict(speedup - 1, PAPER["speedup_over_reinit_at_21"] - 1),
            "the ticket stops sooner, by a ratio within a factor 2 of the "
            "paper's excess over 1",
        )
        if level in random:
            gain = t["acc"]["mean"] - random[level]["acc"]["mean"]
            lines.append(
                f"- Ticket minus random pruning at {t['remaining']:.1f}%: ours "
                f"{gain:+.2f} points; the paper's Figure 4 shows random pruning "
                f"below the ticket. **{'agrees' if gain > 0 else 'differs'}**."
            )
    return lines


def write_outputs(saved, output):
    """Prints the report, and writes it with the raw results and the plot."""
    import keras_lth as lth
    from keras_lth.saving import atomic_write_text

    table = summarize(saved["runs"])
    report = "\n".join(
        [
            "## LeNet-300-100 on MNIST: keras_lth against Frankle & Carbin (2019)",
            "",
            *saved["header"],
            "",
            format_tables(table),
            *format_extended(saved.get("extended", []), saved["settings"]),
            "",
            "Against the paper (Figures 3 and 4; 50,000 iterations per round):",
            "",
            *compare_with_paper(table),
        ]
    )
    print()
    print(report)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        output / "results.json", json.dumps({**saved, "summary": table}, indent=1)
    )
    atomic_write_text(output / "report.md", report + "\n")
    plot = output / "reproduce_lenet.png"
    runs = saved["runs"]
    try:
        lth.plot_results(
            runs["imp"],
            controls={LABELS[c]: runs[c] for c in ("reinit", "random") if any(runs[c])},
            metric="test_accuracy",
            label=LABELS["imp"],
            title="LeNet-300-100 on MNIST: test accuracy and early-stop iteration",
            path=plot,
        )
    except ImportError as e:
        print(f"(no plot: {e})")
    print(f"\nWrote {output}/results.json, report.md and {plot.name}.")


if __name__ == "__main__":
    sys.exit(main())
