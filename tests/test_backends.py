"""keras_lth on TensorFlow, JAX and PyTorch side by side.

Keras picks its backend once, at import, so each backend runs here in its own
Python process (`WORKER`, with `KERAS_BACKEND` set), started from whatever
backend this suite runs on. The tests compare what the processes wrote:

* IMP from the same initial weights (written to a file, so that only
  training differs) and the same data finds the same masks on every backend,
  up to float32 rounding in training.
* A ticket saved as `.keras` on any backend loads on every other one with no
  `custom_objects`: same masks, same outputs; on TensorFlow it also exports to
  LiteRT (`keras_lth.export_litert`), verified under the LiteRT interpreter.

The other tests run on the backend of the suite; `.ci/run` runs the core
modules on each backend (see `CORE_MODULES` in `tests/conftest.py`).
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BACKENDS = ("tensorflow", "jax", "torch")

pytestmark = pytest.mark.slow  # Several subprocesses, each importing a backend.

#: Least fraction of mask entries that two backends must agree on.
MIN_AGREEMENT = 0.99

WORKER = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras
    import numpy as np
    import keras_lth as lth

    mode, folder = sys.argv[1], sys.argv[2]
    backend = keras.backend.backend()
    assert backend == os.environ["KERAS_BACKEND"], backend
    data = np.load(os.path.join(folder, "data.npz"))
    x, y, x_probe = data["x"], data["y"], data["x_probe"]


    def ticket_model():
        plain = keras.Sequential([
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu", name="hidden"),
            keras.layers.Dense(10, name="output"),
        ])
        init = np.load(os.path.join(folder, "init.npz"))
        plain.set_weights([init[str(i)] for i in range(len(init.files))])
        model = lth.mask_model(plain)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        return model


    def imp(rounds, epochs_per_round):
        model = ticket_model()
        ticket = lth.LotteryTicket(
            rounds, epochs_per_round, seed=0, monitor="loss", verbose=0
        )
        model.fit(x, y, batch_size=64, epochs=ticket.total_epochs, shuffle=False,
                  callbacks=[ticket], verbose=0)
        return model, ticket


    def probe(model):
        masks = lth.get_masks(model)
        return {
            "masks": {k: v.tolist() for k, v in masks.items()},
            "outputs": keras.ops.convert_to_numpy(model(x_probe)).tolist(),
            "sparsity": lth.sparsity(model)["global"],
        }


    result = {"backend": backend}
    if mode == "imp":
        # Two pruning steps: after round 0 and after round 1.
        model, ticket = imp(rounds=3, epochs_per_round=2)
        result.update(probe(model))
        result["remaining"] = [r["weights_remaining"] for r in ticket.results]
    elif mode == "save":
        model, _ = imp(rounds=2, epochs_per_round=1)
        lth.save_model(model, os.path.join(folder, f"ticket_{backend}.keras"))
        result.update(probe(model))
    elif mode == "load":
        result["loaded"] = {}
        for source in sys.argv[3:]:
            path = os.path.join(folder, f"ticket_{source}.keras")
            model = keras.models.load_model(path)  # No custom_objects.
            loaded = probe(model)
            plain = lth.strip_masks(model)
            loaded["stripped_outputs"] = keras.ops.convert_to_numpy(
                plain(x_probe)).tolist()
            loaded["pruned_nonzero"] = int(sum(
                np.count_nonzero(w[m == 0])
                for w, m in zip(
                    lth.masking.get_prunable_weights(model).values(),
                    lth.get_masks(model).values())))
            if backend == "tensorflow":
                report = lth.export_litert(
                    model, os.path.join(folder, f"ticket_{source}.tflite"),
                    sample_inputs=x_probe, latency_runs=0)
                loaded["litert_max_error"] = float(report.max_error)
                loaded["litert_samples"] = int(report.samples)
            result["loaded"][source] = loaded
    print("RESULT " + json.dumps(result))
    """
)


def _inputs(folder):
    """Digits data, a probe batch and the plain model's initial weights."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    np.savez(folder / "data.npz", x=x[:1024], y=y[:1024], x_probe=x[1024:1056])
    rng = np.random.default_rng(1)
    weights = [
        rng.uniform(-0.3, 0.3, size=(64, 32)).astype("float32"),
        np.zeros(32, "float32"),
        rng.uniform(-0.4, 0.4, size=(32, 10)).astype("float32"),
        np.zeros(10, "float32"),
    ]
    np.savez(folder / "init.npz", **{str(i): w for i, w in enumerate(weights)})


def _start(backend, mode, folder, *args):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, mode, str(folder), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _results(processes, timeout=600):
    """Waits for every process; returns `{backend: RESULT json}`."""
    results = {}
    for backend, process in processes.items():
        out, err = process.communicate(timeout=timeout)
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert process.returncode == 0 and len(lines) == 1, (
            f"The {backend} worker failed (exit code {process.returncode}).\n"
            f"stdout:\n{out[-2000:]}\nstderr:\n{err[-5000:]}"
        )
        results[backend] = json.loads(lines[0].removeprefix("RESULT "))
    return results


def _run(mode, folder, arguments=lambda backend: ()):
    """Runs the worker on every backend, two at a time (two cores here)."""
    results = {}
    for i in range(0, len(BACKENDS), 2):
        batch = BACKENDS[i : i + 2]
        started = {b: _start(b, mode, folder, *arguments(b)) for b in batch}
        results.update(_results(started))
    return results


def _flat(masks):
    return np.concatenate([np.ravel(m) for _, m in sorted(masks.items())])


def test_same_weights_and_data_give_the_same_masks_on_every_backend(tmp_path):
    _inputs(tmp_path)
    results = _run("imp", tmp_path)

    reference = results["tensorflow"]
    for backend, result in results.items():
        # Exact counts, whatever the backend: the same fractions every round.
        assert result["remaining"] == reference["remaining"], backend
    # Two steps of 20% (10% for the output layer), to exact counts: hidden
    # keeps round(2048 * 0.8**2) = 1311, output round(320 * 0.9**2) = 259.
    assert reference["sparsity"] == pytest.approx((2048 - 1311 + 320 - 259) / 2368)
    agreement, output_gap = {}, {}
    for i, first in enumerate(BACKENDS):
        for second in BACKENDS[i + 1 :]:
            pair = f"{first}-{second}"
            a = _flat(results[first]["masks"])
            b = _flat(results[second]["masks"])
            agreement[pair] = float(np.mean(a == b))
            output_gap[pair] = float(
                np.max(
                    np.abs(
                        np.subtract(
                            results[first]["outputs"], results[second]["outputs"]
                        )
                    )
                )
            )
    assert all(v >= MIN_AGREEMENT for v in agreement.values()), agreement
    # Shown with `pytest -s`: the figures the README quotes.
    print(f"\nmask agreement after two pruning steps: {agreement}")
    print(f"largest output difference of the trained tickets: {output_gap}")


def test_a_ticket_saved_on_any_backend_loads_on_every_other(tmp_path):
    _inputs(tmp_path)
    saved = _run("save", tmp_path)
    others = {b: [s for s in BACKENDS if s != b] for b in BACKENDS}
    loaded = _run("load", tmp_path, lambda backend: others[backend])

    for backend, result in loaded.items():
        for source, ticket in result["loaded"].items():
            original = saved[source]
            where = f"saved on {source}, loaded on {backend}"
            assert ticket["masks"] == original["masks"], where
            assert ticket["sparsity"] == original["sparsity"] > 0.1, where
            assert ticket["pruned_nonzero"] == 0, where
            np.testing.assert_allclose(
                ticket["outputs"], original["outputs"], atol=1e-5, err_msg=where
            )
            np.testing.assert_allclose(
                ticket["stripped_outputs"], ticket["outputs"], atol=1e-6, err_msg=where
            )
            if backend == "tensorflow":
                # Verified against the loaded model under the LiteRT interpreter.
                assert ticket["litert_samples"] == 32, where
                assert ticket["litert_max_error"] <= 1e-4, where
