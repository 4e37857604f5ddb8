"""Training-step overhead of keras_lth's masked layers against plain Keras.

What it measures
    The time of one training step (forward, backward, optimizer update) of a
    model made prunable with `keras_lth.mask_model`, relative to the very
    same plain Keras model it was cloned from. Three models are built per
    architecture, from the same weights and compiled identically:

    * `plain`: the stock Keras model.
    * `masked`: `keras_lth.mask_model(plain)`, masks all ones (IMP round 0).
    * `masked 50%`: another `mask_model(plain)` with half of every prunable
      tensor pruned by magnitude (`keras_lth.prune`), trained with a
      `keras_lth.LotteryTicket` callback attached, as in a real IMP run.

    A masked layer stores pruned entries as zeros and multiplies each
    prunable weight's gradient by its mask on every step, whatever the mask
    holds, and the matmuls and convolutions stay dense, so sparsity makes
    the masking neither cheaper nor dearer: the two masked rows differ only
    by the callback. (On PyTorch, the callback also keeps Adam's second
    moment off exact zeros: see "PyTorch and Adam" below.) The
    LotteryTicket's per-epoch hooks (a snapshot of the weights in
    `on_train_begin`, a results record in `on_epoch_end`) are timed apart,
    left out of the per-step figures, and reported under the table as a cost
    per epoch. Its batch hook is timed with the steps: it returns at once on
    most of them (on PyTorch with Adam, it fills the second moments before
    the first step of each epoch and every 100th), so that row is what
    training under the callback costs per step.

Models (loss sparse categorical cross-entropy from logits, accuracy metric;
built in `_overhead_models.py`). By default `lenet` and `conv4` are timed,
at batch 60, the paper's setting; `--models transformer,lstm` (or `all`)
times the sequence models, at batch 32.
    * `lenet`: LeNet-300-100 on MNIST shapes. Input (784,), Dense 300 relu,
      Dense 100 relu, Dense 10. Adam 1.2e-3.
    * `conv4`: Conv-4 of Frankle & Carbin (2019) with the paper's widths on
      CIFAR-10 images downsampled to 16x16 so that a step takes tens of
      milliseconds on two CPU cores. Input (16, 16, 3); Conv2D 64, 64
      (3x3, same, relu); MaxPool 2x2; Conv2D 128, 128; MaxPool 2x2; Flatten
      (2,048); Dense 256, 256 relu; Dense 10. Adam 3e-4. Shrinking the image
      shrinks the convolutions' work and the first Dense kernel alike, but
      not the convolution kernels, so the masking overhead measured here is
      slightly larger than at 32x32.
    * `transformer`: one Transformer encoder block, Functional. Token ids
      (64,); Embedding 1000 x 128; MultiHeadAttention (4 heads, key_dim 32)
      of the sequence on itself; Add the input, LayerNormalization; Dense
      256 relu, Dense 128; Add, LayerNormalization; GlobalAveragePooling1D;
      Dense 10. Adam 1e-3. Masked: the Embedding, the attention's four
      EinsumDense projections and the three Dense layers.
    * `lstm`: token ids (64,); Embedding 1000 x 64; Bidirectional(LSTM 64,
      return_sequences); GRU 64; Dense 10. Adam 1e-3. Masked: the
      Embedding, each recurrent cell's `kernel` and `recurrent_kernel`, the
      Dense. A masked LSTM or GRU always steps through its cell in Keras's
      generic RNN loop (`use_cudnn=False`), whereas the plain one takes the
      backend's fused `lstm`/`gru` where there is one: on PyTorch on CPU,
      Keras's own loop with the input projection of all steps done at once,
      so there the `lstm` rows time that difference of path as well as the
      masking. TensorFlow and JAX on CPU have no fused path.

    The data are uniform random arrays of the right shapes (token ids
    uniform in the vocabulary, labels random in 0-9): the values do not
    change the time of a dense step.

    `--optimizer sgd` trains every model with SGD (momentum 0.9) instead, at
    the same learning rates.

PyTorch and Adam
    PyTorch's x86 CPU builds compute `sqrt` with MKL's vector math library in
    high-accuracy mode, which sends every exact zero down a scalar "rare
    value" path (`perf` shows the time in `vssqrt_cout_rare`): 3-15x slower
    per element than a positive number. Keras's Adam takes the square root
    of its second moment on every step, and that moment stays exactly zero
    wherever the gradient always was zero: at every pruned weight. So on
    PyTorch, `LotteryTicket` puts 1.0 there every 100 steps
    (`keras_lth.optimizer_slots.fill_square_root_slots`): the update of an
    entry whose gradient and first moment are zero is zero whatever its
    second moment holds, so training is the same bit for bit. The note under
    the PyTorch table times the square root of zeros and of ones. SGD takes
    no square root, so `--optimizer sgd` times the masking alone.

How
    Each model is compiled, then warmed up by one `fit` (which traces and
    compiles the train function). Each repetition then runs one
    `model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)` of each
    model in turn: plain, masked, masked 50%, the order reversed every other
    repetition, so that the shared machine's noise hits all of them alike. A
    callback reads `time.perf_counter` (and `time.process_time`) at
    `on_train_begin` and `on_train_end`, so the time covers the training loop
    and not `fit`'s set-up, which is the same for every model but noisy.
    Under TensorFlow the data are a cached, repeated `tf.data.Dataset` built
    once.

    For each repetition the ratio masked / plain of the step times is taken;
    the table reports the median of those ratios and their interquartile
    range, the median step times, and the median ratio of process CPU times
    as a cross-check that other processes disturb less. The target is a
    median (wall-clock) ratio of at most 1.05.

Backends
    TensorFlow, JAX and PyTorch. The backend comes from `KERAS_BACKEND` (or
    `--backend`), set before Keras is imported. `--backend all` runs this
    script once per backend, each in a fresh process, one after the other
    (never two at once, so that they do not compete for the cores), prints
    each backend's table as it comes, then one summary row per backend,
    model and variant. Each backend trains the way Keras trains on it by
    default: TensorFlow and JAX compile the step (`tf.function`, `jax.jit`),
    PyTorch runs it eagerly. Under TensorFlow the data are a cached,
    repeated `tf.data.Dataset`; under JAX and PyTorch, numpy arrays.

Reproduce (from the repository root):

    python benchmarks/overhead.py                 # about 3 minutes
    python benchmarks/overhead.py --quick         # a few seconds, CI smoke
    python benchmarks/overhead.py --check         # exit 1 above the target
    python benchmarks/overhead.py --backend all   # each in turn, about 7 minutes
    python benchmarks/overhead.py --optimizer sgd # SGD with momentum, not Adam
    python benchmarks/overhead.py --models transformer,lstm
        # 3-3.5 minutes on TensorFlow or JAX, 9 on PyTorch (2 busy cores)

The exit code is 0 whatever the figures, unless `--check` is given.
"""

import argparse
import dataclasses
import gc
import importlib.util
import os
import platform
import statistics
import sys

from _overhead_models import MODELS
from _overhead_models import OPTIMIZERS
from _overhead_models import compile_model
from _overhead_models import prune_half
from _overhead_models import stopwatch_class
from _overhead_models import torch_sqrt_note
from _overhead_models import training_data

DEFAULT_TARGET = 1.05
DEFAULT_REPEATS = 40
QUICK_REPEATS = 3
#: What `--models` times by default; `--models all` times every model.
DEFAULT_MODELS = ("lenet", "conv4")

#: Backends this benchmark runs on, and the package each one needs.
SUPPORTED_BACKENDS = ("tensorflow", "jax", "torch")
BACKEND_PACKAGES = {
    "tensorflow": "tensorflow",
    "jax": "jax",
    "torch": "torch",
    "numpy": "numpy",
    "openvino": "openvino",
}


# The variants timed against `plain`, in table order: (key, table label).
VARIANTS = (
    ("masked", "all ones"),
    ("masked_sparse", "50% + LotteryTicket"),
)


@dataclasses.dataclass
class Result:
    """Per-step times in seconds of every variant, one entry per repetition."""

    model: str
    steps: int
    wall: dict  # variant -> [wall-clock seconds per step, ...]
    cpu: dict  # variant -> [process CPU seconds per step, ...]
    hook_seconds: list  # LotteryTicket hook time per `fit`, excluded above.

    def ratios(self, variant, clock="wall"):
        times = getattr(self, clock)
        return [m / p for m, p in zip(times[variant], times["plain"])]


# ------------------------------------------------------------------ CLI


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Training-step time of keras_lth masked models against "
        "the same plain Keras models, interleaved in one process.",
    )
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"Comma-separated models to time, from {list(MODELS)}, or 'all'. "
        f"Default: {','.join(DEFAULT_MODELS)}.",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"Interleaved repetitions per model (default {DEFAULT_REPEATS}, "
        f"{QUICK_REPEATS} with --quick).",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="Training steps per timed fit, for every model. Default: "
        + ", ".join(f"{s.name} {s.steps}" for s in MODELS.values())
        + " (with --quick: "
        + ", ".join(f"{s.name} {s.quick_steps}" for s in MODELS.values())
        + ").",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="A tiny run of a few seconds, for smoke tests. Its figures are "
        "not meaningful.",
    )
    parser.add_argument(
        "--backend",
        default=None,
        help="Keras backend, or 'all' to run every supported backend in its own "
        "process, one after the other. Default: $KERAS_BACKEND, else "
        f"tensorflow. Supported: {', '.join(SUPPORTED_BACKENDS)}.",
    )
    # Where a child of `--backend all` writes its figures for the summary.
    parser.add_argument("--result-file", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--target",
        type=float,
        default=DEFAULT_TARGET,
        help=f"Largest acceptable median ratio (default {DEFAULT_TARGET}).",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="Exit with code 1 if a median ratio exceeds --target.",
    )
    parser.add_argument(
        "--optimizer",
        choices=list(OPTIMIZERS),
        default="adam",
        help="Optimizer of every model (default adam, the paper's). sgd is "
        "SGD with momentum 0.9, which takes no square root.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Random seed.")
    args = parser.parse_args(argv)

    names = [name.strip() for name in args.models.split(",") if name.strip()]
    if names == ["all"]:
        names = list(MODELS)
    unknown = [name for name in names if name not in MODELS]
    if unknown or not names:
        parser.error(
            f"--models expects 'all' or a comma-separated list from "
            f"{list(MODELS)}. "
            f"Received: {args.models!r}"
        )
    args.models = names
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    for option in ("repeats", "steps"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option} must be at least 1. Received: {value}")
    if args.backend == "all":
        missing = [
            backend
            for backend in SUPPORTED_BACKENDS
            if importlib.util.find_spec(BACKEND_PACKAGES[backend]) is None
        ]
        if missing:
            parser.error(
                f"--backend all needs {missing} installed for {sys.executable}."
            )
        return args
    try:
        args.backend = select_backend(args.backend)
    except ValueError as error:
        parser.error(str(error))
    return args


def select_backend(requested):
    """Checks the backend and exports it as `KERAS_BACKEND`.

    Must run before Keras is imported: Keras reads `KERAS_BACKEND` once, at
    import. A later multi-backend run re-executes this script once per
    backend with `KERAS_BACKEND` set, rather than switching in-process.
    """
    backend = requested or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if backend not in BACKEND_PACKAGES:
        raise ValueError(
            f"Unknown Keras backend {backend!r}. Expected one of "
            f"{list(BACKEND_PACKAGES)}."
        )
    package = BACKEND_PACKAGES[backend]
    if backend not in SUPPORTED_BACKENDS:
        if importlib.util.find_spec(package) is None:
            raise ValueError(
                f"Backend {backend!r} needs the {package!r} package, which is "
                f"not installed for {sys.executable}. This benchmark supports "
                f"only {list(SUPPORTED_BACKENDS)}."
            )
        raise ValueError(
            f"Backend {backend!r} is not supported by this benchmark: it "
            f"cannot train. Supported: {list(SUPPORTED_BACKENDS)}."
        )
    if importlib.util.find_spec(package) is None:
        raise ValueError(
            f"Backend {backend!r} needs the {package!r} package, which is not "
            f"installed for {sys.executable}."
        )
    if "keras" in sys.modules:
        loaded = sys.modules["keras"].backend.backend()
        if loaded != backend:
            raise ValueError(
                f"Keras is already imported with backend {loaded!r}; cannot "
                f"switch to {backend!r} in this process. Run the script in a "
                f"fresh process with KERAS_BACKEND={backend}."
            )
    os.environ["KERAS_BACKEND"] = backend
    return backend


# ----------------------------------------------------------- measuring


def measure(spec, *, repeats, steps, seed, optimizer="adam"):
    """Times `plain`, `masked` and `masked_sparse`, interleaved."""
    import keras

    import keras_lth

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    plain = spec.build(keras)
    models = {
        "plain": plain,
        "masked": keras_lth.mask_model(plain),
        "masked_sparse": keras_lth.mask_model(plain),
    }
    sparsity = prune_half(models["masked_sparse"])
    if abs(sparsity - 0.5) > 0.01:
        raise RuntimeError(f"Expected 50% sparsity, got {sparsity:.3f}.")
    for model in models.values():
        compile_model(model, spec.learning_rate, optimizer)
    ticket = keras_lth.LotteryTicket(
        rounds=1, epochs_per_round=1, monitor="loss", seed=seed, verbose=0
    )
    stopwatch = stopwatch_class(keras)
    stopwatches = {
        "plain": stopwatch(),
        "masked": stopwatch(),
        "masked_sparse": stopwatch([ticket]),
    }
    data = training_data(spec, steps, seed)

    def timed_fit(name):
        gc.collect()
        watch = stopwatches[name]
        models[name].fit(**data, epochs=1, shuffle=False, verbose=0, callbacks=[watch])
        return (
            (watch.wall - watch.hook_wall) / steps,
            (watch.cpu - watch.hook_cpu) / steps,
            watch.hook_wall,
        )

    order = list(models)
    for name in order:  # Warm-up: traces and compiles the train functions.
        timed_fit(name)
    wall = {name: [] for name in order}
    cpu = {name: [] for name in order}
    hook_seconds = []
    for repeat in range(repeats):
        for name in order if repeat % 2 == 0 else reversed(order):
            step_wall, step_cpu, hooks = timed_fit(name)
            wall[name].append(step_wall)
            cpu[name].append(step_cpu)
            if name == "masked_sparse":
                hook_seconds.append(hooks)
    keras.backend.clear_session()
    return Result(spec.name, steps, wall, cpu, hook_seconds)


# ----------------------------------------------------------- reporting


def _quartiles(values):
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def format_table(results, target):
    """Returns the results as a fixed-width text table."""
    width = max([7] + [len(result.model) for result in results])
    header = (
        f"{'model':<{width}} {'masks':<20} {'plain ms/step':>13} "
        f"{'masked ms/step':>14} {'median ratio':>12} {'ratio IQR':>13} "
        f"{'cpu ratio':>9}  target <= {target:.2f}x"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        plain_ms = statistics.median(result.wall["plain"]) * 1e3
        for variant, label in VARIANTS:
            masked_ms = statistics.median(result.wall[variant]) * 1e3
            ratios = result.ratios(variant)
            ratio = statistics.median(ratios)
            q1, q3 = _quartiles(ratios)
            cpu_ratio = statistics.median(result.ratios(variant, "cpu"))
            verdict = "PASS" if ratio <= target else "FAIL"
            lines.append(
                f"{result.model:<{width}} {label:<20} {plain_ms:>13.2f} "
                f"{masked_ms:>14.2f} {ratio:>11.3f}x {q1:>6.3f}-{q3:.3f}x "
                f"{cpu_ratio:>8.3f}x  {verdict}"
            )
    return "\n".join(lines)


def format_notes(results):
    """Returns the notes under the table, with the LotteryTicket's share."""
    lines = [
        "ms/step: median wall-clock time of one training step. median ratio:",
        "median over repetitions of masked / plain, each pair timed back to",
        "back; ratio IQR: its interquartile range; cpu ratio: the same median",
        "with process CPU time, less sensitive to other processes.",
    ]
    for result in results:
        hook_ms = statistics.median(result.hook_seconds) * 1e3
        step_ms = statistics.median(result.wall["masked_sparse"]) * 1e3
        lines.append(
            f"{result.model}: LotteryTicket hooks took {hook_ms:.1f} ms per "
            f"epoch, left out of the rows above: +{hook_ms / 1000 / step_ms:.2%} "
            "on a 1,000-step epoch."
        )
    return "\n".join(lines)


def _environment(backend):
    import keras

    parts = [
        f"Keras {keras.__version__}",
        f"backend {backend}",
    ]
    if backend == "tensorflow":
        import tensorflow as tf

        parts.append(f"TensorFlow {tf.__version__}")
    elif backend == "jax":
        import jax

        parts.append(f"JAX {jax.__version__}")
    elif backend == "torch":
        import torch

        parts.append(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
    parts += [
        f"Python {platform.python_version()}",
        f"{os.cpu_count()} CPUs",
    ]
    return ", ".join(parts)


def _load():
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unavailable"


def _medians(results):
    """`{model: {variant: median ratio}}`, what `--backend all` summarises."""
    return {
        result.model: {
            variant: statistics.median(result.ratios(variant))
            for variant, _ in VARIANTS
        }
        | {"plain_ms": statistics.median(result.wall["plain"]) * 1e3}
        for result in results
    }


def run_all_backends(argv, args):
    """Runs this script once per backend, in turn; prints a summary table."""
    import json
    import subprocess
    import tempfile

    argv = list(sys.argv[1:] if argv is None else argv)
    child_argv = []
    skip = False
    for item in argv:  # Everything but --backend (and --check: judged here).
        if skip:
            skip = False
        elif item == "--backend":
            skip = True
        elif not item.startswith("--backend=") and item != "--check":
            child_argv.append(item)
    summary = {}
    failed_runs = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in SUPPORTED_BACKENDS:
            result_file = os.path.join(folder, f"{backend}.json")
            command = [
                sys.executable,
                os.path.abspath(__file__),
                *child_argv,
                "--backend",
                backend,
                "--result-file",
                result_file,
            ]
            print(f"=== {backend} ===", flush=True)
            env = {**os.environ, "KERAS_BACKEND": backend}
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            code = subprocess.call(command, env=env)
            print(flush=True)
            if code != 0 or not os.path.exists(result_file):
                failed_runs.append(backend)
                continue
            with open(result_file) as f:
                summary[backend] = json.load(f)

    width = max([7] + [len(model) for models in summary.values() for model in models])
    header = (
        f"{'backend':<10} {'model':<{width}} {'masks':<20} {'plain ms/step':>13} "
        f"{'median ratio':>12}  target <= {args.target:.2f}x"
    )
    print(
        "Summary: median masked / plain step-time ratio per backend, "
        f"{OPTIMIZERS[args.optimizer][0]}"
    )
    print(header)
    print("-" * len(header))
    above = []
    for backend, models in summary.items():
        for model, medians in models.items():
            for variant, label in VARIANTS:
                ratio = medians[variant]
                verdict = "PASS" if ratio <= args.target else "FAIL"
                if ratio > args.target:
                    above.append(f"{backend} {model} ({label})")
                print(
                    f"{backend:<10} {model:<{width}} {label:<20} "
                    f"{medians['plain_ms']:>13.2f} {ratio:>11.3f}x  {verdict}"
                )
    if failed_runs:
        print(f"\nThe run failed on: {', '.join(failed_runs)}")
        return 2
    if args.check and above:
        print(f"\n--check: above the {args.target:.2f}x target: {', '.join(above)}")
        return 1
    return 0


def main(argv=None):
    args = parse_args(argv)  # Sets KERAS_BACKEND before Keras is imported.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.backend == "all":
        return run_all_backends(argv, args)

    print("keras_lth masking overhead: training step time, masked / plain")
    print(_environment(args.backend))
    print(f"Optimizer: {OPTIMIZERS[args.optimizer][0]}")
    print(f"Before: {_load()}")
    results = []
    for name in args.models:
        spec = MODELS[name]
        steps = args.steps or (spec.quick_steps if args.quick else spec.steps)
        print(
            f"Timing {name}: {args.repeats} interleaved repetitions of a "
            f"{steps}-step fit, batch {spec.batch_size}...",
            flush=True,
        )
        results.append(
            measure(
                spec,
                repeats=args.repeats,
                steps=steps,
                seed=args.seed,
                optimizer=args.optimizer,
            )
        )
    print(f"After: {_load()}")
    print()
    print(format_table(results, args.target))
    print()
    print(format_notes(results))
    if args.backend == "torch" and args.optimizer == "adam":
        print(torch_sqrt_note())
    if args.quick:
        print("\n(--quick: too few steps for the figures to mean anything.)")
    if args.result_file:
        import json

        with open(args.result_file, "w") as f:
            json.dump(_medians(results), f)

    failed = [
        f"{result.model} ({label})"
        for result in results
        for variant, label in VARIANTS
        if statistics.median(result.ratios(variant)) > args.target
    ]
    if args.check and failed:
        print(f"\n--check: above the {args.target:.2f}x target: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
