"""Runs every benchmark and writes BENCHMARKS.md.

Each benchmark runs as a script of its own, in a fresh process (so that
tfmot's `TF_USE_LEGACY_KERAS=1` stays in its own process, and each backend
gets one), and its output goes into `BENCHMARKS.md` verbatim, under the
command that reproduces it. The file starts with the date, the machine and
the package versions, and a summary of the headline figures; every speed
figure there is a ratio against its baseline measured in the same run.

    python benchmarks/run_all.py                 # everything, about 2.5 hours
    python benchmarks/run_all.py --quick         # every script's --quick mode
    python benchmarks/run_all.py --dry-run       # seconds per script, for CI
    python benchmarks/run_all.py --only overhead,litert

`--dry-run` (with or without `--quick`) runs each script's smallest mode so
that none can rot (the deploy scripts' only `--help`: their smallest modes
take minutes and have smoke tests of their own), and writes
`runs/BENCHMARKS.dry-run.md` rather than `BENCHMARKS.md`. The exit code is 1
if any script failed.
"""

import argparse
import dataclasses
import datetime
import importlib.metadata
import os
import pathlib
import platform
import re
import subprocess
import sys
import time

# keras_lth's package import is light (no Keras backend), so the process that
# only starts the others can use its atomic writes.
from keras_lth.saving import atomic_write_text  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    script: str
    full: tuple = ()
    quick: tuple = ("--quick",)
    dry_run: tuple = ("--quick",)
    env: tuple = ()  # Extra environment variables, as (name, value) pairs.
    # What a full run leaves behind, for `--reuse`: (report file, result file).
    saved: tuple = ()


BENCHMARKS = (
    Benchmark(
        "overhead",
        "Training-step overhead of masked layers (keras_lth on Keras 3)",
        "overhead.py",
        # The default 40 interleaved repetitions per backend, as the README's
        # figures: about 7 minutes in all on 2 cores.
        full=("--backend", "all"),
        quick=("--quick", "--backend", "all"),
        dry_run=("--quick",),
    ),
    Benchmark(
        "overhead_sgd",
        "Training-step overhead on PyTorch with SGD: the masking without "
        "Adam's square root of zeros",
        "overhead.py",
        full=("--backend", "torch", "--optimizer", "sgd"),
        quick=("--quick", "--backend", "torch", "--optimizer", "sgd"),
        # Any backend will do to check that the option runs.
        dry_run=("--quick", "--models", "lenet", "--optimizer", "sgd"),
    ),
    Benchmark(
        "overhead_sequence",
        "Training-step overhead on a transformer block and a BiLSTM + GRU model",
        "overhead.py",
        full=("--backend", "all", "--models", "transformer,lstm"),
        quick=("--quick", "--backend", "all", "--models", "transformer,lstm"),
        dry_run=("--quick", "--models", "transformer,lstm"),
    ),
    Benchmark(
        "overhead_sequence_sgd",
        "Training-step overhead on PyTorch with SGD, transformer block and BiLSTM "
        "+ GRU",
        "overhead.py",
        full=(
            "--backend",
            "torch",
            "--optimizer",
            "sgd",
            "--models",
            "transformer,lstm",
        ),
        quick=(
            "--quick",
            "--backend",
            "torch",
            "--optimizer",
            "sgd",
            "--models",
            "transformer,lstm",
        ),  # fmt: skip
        dry_run=("--quick", "--models", "lstm", "--optimizer", "sgd"),
    ),
    Benchmark(
        "tfmot",
        "Baseline: tfmot's pruning wrapper on tf_keras, in its own process",
        "tfmot_baseline.py",
    ),
    Benchmark("litert", "LiteRT export: size and speed of tickets", "litert.py"),
    Benchmark(
        "block_accuracy",
        "Block-structured against unstructured IMP (LeNet-300-100, MNIST split)",
        "block_accuracy.py",
        full=("--json", "runs/block_accuracy/results.json"),
        dry_run=("--quick", "--rounds", "2"),
        saved=("runs/block_accuracy/report.txt", "runs/block_accuracy/results.json"),
    ),
    Benchmark(
        "compare_methods",
        "Pruning methods compared (LeNet-300-100, full MNIST)",
        "compare_methods.py",
        dry_run=("--dry-run",),
        saved=("runs/compare_methods/table.txt", "runs/compare_methods/results.json"),
    ),
    Benchmark(
        "reproduce_lenet",
        "Reproducing Frankle & Carbin's LeNet-300-100 experiment (full MNIST)",
        "reproduce_lenet.py",
        # Two workers, one per core: about an hour on 2 cores.
        full=("--workers", "2"),
        dry_run=("--dry-run",),
        saved=("runs/reproduce_lenet/report.md", "runs/reproduce_lenet/results.json"),
    ),
    Benchmark(
        "dead_units",
        "Dead units in the reproduced LeNet-300-100 tickets, and what shrink gives",
        "dead_units.py",
        # Reads reproduce_lenet's level masks (above); a dry run has none.
        quick=("--repeats", "5"),
        dry_run=("--help",),
    ),
    Benchmark(
        "deploy",
        "Deploying LeNet-300-100 tickets to LiteRT, with test accuracy in every row",
        "deploy.py",
        # Two workers, one per core: about 45 minutes on 2 cores. Its --quick
        # mode takes a minute and tests/test_deploy_smoke.py runs it, so the
        # dry run only checks that the script loads.
        dry_run=("--help",),
        saved=("runs/deploy/table.md", "runs/deploy/results.json"),
    ),
    Benchmark(
        "deploy_convnets",
        "Deploying Conv-4 and ResNet-20 tickets to LiteRT, with test accuracy in "
        "every row (reduced budget)",
        "deploy_convnets.py",
        full=("--unstructured", "--blocks"),
        # Its --quick mode takes minutes (tests/test_deploy_convnets_smoke.py).
        dry_run=("--help",),
        saved=("runs/deploy_convnets/table.md", "runs/deploy_convnets/results.json"),
    ),
    Benchmark(
        "int8_narrow_conv",
        "Why a shrunk ResNet-20 runs no faster in int8: one residual block, by width",
        "int8_narrow_conv.py",
        quick=("--runs", "50"),
        dry_run=("--runs", "5", "--widths", "16", "5"),
    ),
    Benchmark(
        "granularity",
        "Unstructured, block, unit-wise and refilled IMP at equal weights "
        "remaining (LeNet-300-100, full MNIST)",
        "granularity.py",
        # Reads the trainings of the deploy run above (its --quick mode's
        # for the quick run); trains nothing.
        quick=("--deploy-dir", "runs/deploy_quick"),
        # tests/test_deploy_smoke.py runs it on deploy.py's --quick output.
        dry_run=("--help",),
        saved=("runs/deploy/granularity.md", "runs/deploy/granularity.md"),
    ),
)

PACKAGES = (
    "keras",
    "tensorflow",
    "jax",
    "torch",
    "ai-edge-litert",
    "tensorflow-model-optimization",
    "tf-keras",
    "numpy",
)


def versions():
    found = []
    for package in PACKAGES:
        try:
            found.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{package} (not installed)")
    return ", ".join(found)


def machine():
    memory = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kib = int(f.readline().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.system()} {platform.release()}, {cpu}, "
        f"{os.cpu_count()} CPU cores{memory}, Python {platform.python_version()}"
    )


def run(benchmark, args, mode):
    flags = {
        "full": benchmark.full,
        "quick": benchmark.quick,
        "dry-run": benchmark.dry_run,
    }
    command = [sys.executable, f"benchmarks/{benchmark.script}", *flags[mode]]
    shown = " ".join(["python", *command[1:]])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **dict(benchmark.env)}
    print(f"=== {benchmark.name}: {shown}", flush=True)
    start = time.perf_counter()
    try:
        completed = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=args.timeout,
        )
        code, out, err = completed.returncode, completed.stdout, completed.stderr
    except subprocess.TimeoutExpired as e:
        code, out, err = "timeout", e.stdout or "", f"timed out after {args.timeout} s"
        out = out.decode() if isinstance(out, bytes) else out
    seconds = time.perf_counter() - start
    status = "ok" if code == 0 else f"FAILED ({code})"
    print(f"    {status} in {seconds:.0f} s", flush=True)
    if code != 0:
        print(_tail(err), flush=True)
    return {
        "benchmark": benchmark,
        "command": shown,
        "seconds": seconds,
        "ok": code == 0,
        "stdout": out,
        "stderr": err,
    }


def reuse(benchmark):
    """A finished full run's saved output, instead of running it again."""
    report, results = (ROOT / path for path in benchmark.saved)
    shown = f"python benchmarks/{benchmark.script} {' '.join(benchmark.full)}".strip()
    if not report.exists():
        print(f"=== {benchmark.name}: no saved run at {report}", flush=True)
        return {
            "benchmark": benchmark,
            "command": shown,
            "seconds": 0.0,
            "ok": False,
            "stdout": "",
            "stderr": f"--reuse: {report} does not exist; run the command first.",
        }
    written = datetime.datetime.fromtimestamp(
        results.stat().st_mtime, datetime.timezone.utc
    )
    print(f"=== {benchmark.name}: reusing {report}", flush=True)
    return {
        "benchmark": benchmark,
        "command": shown,
        "seconds": 0.0,
        "ok": True,
        "stdout": report.read_text(encoding="utf-8"),
        "stderr": "",
        "reused": f"{report.relative_to(ROOT)}, written {written:%Y-%m-%d %H:%M} UTC",
    }


def _tail(text, lines=20):
    kept = [
        line
        for line in text.splitlines()
        if not re.match(r"^(I0000|W0000|WARNING: All log messages)", line)
    ]
    return "\n".join(kept[-lines:])


def summary(runs):
    """Headline figures, read from the scripts' own output."""
    lines = []
    by_name = {r["benchmark"].name: r for r in runs}
    tfmot = by_name.get("tfmot")
    models = r"(lenet|conv4|transformer|lstm)"
    for name in ("overhead", "overhead_sequence"):
        overhead = by_name.get(name)
        if not (overhead and overhead["ok"]):
            continue
        # `--backend all` ends with one table of every backend's rows.
        rows = re.findall(
            rf"^(tensorflow|jax|torch)\s+{models}\s+(all ones|50% \+ LotteryTicket)"
            r"\s+[\d.]+\s+(\d+\.\d+)x\s+(PASS|FAIL)",
            overhead["stdout"],
            re.M,
        )
        for backend, model, masks, ratio, verdict in rows:
            lines.append(
                f"- keras_lth masked / plain Keras 3 step time, {backend}, {model}, "
                f"{masks}: {ratio}x (target <= 1.05x: {verdict})"
            )
    for name in ("overhead_sgd", "overhead_sequence_sgd"):
        sgd = by_name.get(name)
        if not (sgd and sgd["ok"]):
            continue
        backend = re.search(r"backend (\w+),", sgd["stdout"])
        rows = re.findall(
            rf"^{models}\s+(all ones|50% \+ LotteryTicket)\s+[\d.]+\s+[\d.]+"
            r"\s+(\d+\.\d+)x\s.*\b(PASS|FAIL)$",
            sgd["stdout"],
            re.M,
        )
        for model, masks, ratio, verdict in rows:
            lines.append(
                "- keras_lth masked / plain Keras 3 step time, "
                f"{backend.group(1) if backend else '?'} with SGD (momentum "
                f"0.9), {model}, {masks}: {ratio}x (target <= 1.05x: {verdict})"
            )
    if tfmot and tfmot["ok"]:
        for model, ratio in re.findall(
            r"^(lenet|conv4)\s+[\d.]+\s+[\d.]+\s+(\d+\.\d+)x", tfmot["stdout"], re.M
        ):
            lines.append(
                f"- tfmot prune_low_magnitude / plain tf_keras step time, {model}: "
                f"{ratio}x"
            )
    litert = by_name.get("litert")
    if litert and litert["ok"]:
        for line in litert["stdout"].splitlines():
            if re.search(r"(PASS|FAIL)\s*$", line):
                lines.append(f"- LiteRT: `{' '.join(line.split())}`")
    block = by_name.get("block_accuracy")
    if block and block["ok"]:
        match = re.search(r"^Largest shortfall.*$", block["stdout"], re.M)
        if match:
            lines.append(f"- Block IMP: {match.group(0)}")
    return lines


def report(runs, mode, started, argv):
    text = [
        "# keras_lth benchmarks",
        "",
        f"Written by `{' '.join(['python benchmarks/run_all.py', *argv])}`"
        f" on {started:%Y-%m-%d %H:%M} UTC.",
        "",
        f"- Machine: {machine()}.",
        f"- Versions: {versions()}.",
        f"- Total time: {sum(r['seconds'] for r in runs) / 60:.1f} minutes.",
    ]
    if mode != "full":
        text += [
            "",
            f"**This is a `{mode}` run: too little training and timing for the "
            "figures to mean anything. It only checks that every script runs.**",
        ]
    headline = summary(runs)
    if headline:
        text += ["", "## Summary", "", *headline]
    for r in runs:
        b = r["benchmark"]
        if r.get("reused"):
            ran = (
                f"Not run again by this invocation (`--reuse`): the output of "
                f"that command's last full run, {r['reused']}."
            )
        else:
            ran = f"{r['seconds'] / 60:.1f} minutes, {'ok' if r['ok'] else 'FAILED'}."
        text += [
            "",
            f"## {b.title}",
            "",
            f"Command: `{r['command']}` ({ran})",
            "",
            "```",
            r["stdout"].rstrip() or "(no output)",
            "```",
        ]
        if not r["ok"]:
            text += ["", "stderr (last lines):", "", "```", _tail(r["stderr"]), "```"]
    return "\n".join(text) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description="Runs every benchmark.")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument(
        "--only",
        help="comma-separated names from " + ", ".join(b.name for b in BENCHMARKS),
    )
    parser.add_argument("--output", help="default BENCHMARKS.md (dry run: runs/)")
    parser.add_argument(
        "--reuse",
        help="comma-separated long benchmarks ("
        + ", ".join(b.name for b in BENCHMARKS if b.saved)
        + ") to take from their last full run's saved output instead of "
        "running them again; BENCHMARKS.md says so",
    )
    parser.add_argument("--timeout", type=float, default=2 * 3600, help="per script, s")
    args = parser.parse_args(argv)
    mode = "dry-run" if args.dry_run else "quick" if args.quick else "full"
    chosen = BENCHMARKS
    if args.only:
        names = args.only.split(",")
        unknown = sorted(set(names) - {b.name for b in BENCHMARKS})
        if unknown:
            parser.error(f"unknown benchmarks {unknown}")
        chosen = [b for b in BENCHMARKS if b.name in names]
    output = pathlib.Path(
        args.output
        or (
            ROOT / "BENCHMARKS.md"
            if mode == "full"
            else ROOT / "runs" / f"BENCHMARKS.{'dry-run' if mode == 'dry' else mode}.md"
        )
    )
    started = datetime.datetime.now(datetime.timezone.utc)
    reused = set(args.reuse.split(",")) if args.reuse else set()
    unknown = sorted(reused - {b.name for b in BENCHMARKS if b.saved})
    if unknown:
        parser.error(f"--reuse: cannot reuse {unknown}")
    runs = [reuse(b) if b.name in reused else run(b, args, mode) for b in chosen]
    argv = sys.argv[1:] if argv is None else argv
    atomic_write_text(output, report(runs, mode, started, argv))
    failed = [r["benchmark"].name for r in runs if not r["ok"]]
    print(f"Wrote {output}." + (f" Failed: {', '.join(failed)}." if failed else ""))
    print("To reproduce one figure, run the command shown above its output.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
