"""`LotteryTicket` across two JAX processes with Keras `DataParallel`.

Runs `examples/multihost_jax.py` as a two-process cluster on 127.0.0.1
(`jax.distributed` with gloo CPU collectives, one CPU device per process,
`tf.data` input auto-sharded by `DataParallel`), then once as a single process
on one device. Every process must end with the same masks, weights and
results, and the cluster must find the single-process ticket.

The workers run under the interpreter running pytest, which needs `jax`; the
module is skipped without it.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("jax")

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "multihost_jax.py"
TIMEOUT = 240  # Seconds for each run, cluster start-up included.
ROUNDS, EPOCHS_PER_ROUND = 3, 2


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env():
    env = dict(os.environ)
    env["KERAS_BACKEND"] = "jax"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    # One CPU device per process, whatever the caller's XLA_FLAGS say.
    env.pop("XLA_FLAGS", None)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


def launch(num_processes, coordinator, output, logs):
    """Starts every worker of one run; returns `[(Popen, log file)]`."""
    workers = []
    for process_id in range(num_processes):
        log = open(logs / f"run{num_processes}_process_{process_id}.log", "w+")
        command = [
            sys.executable,
            str(SCRIPT),
            f"--process-id={process_id}",
            f"--num-processes={num_processes}",
            f"--coordinator={coordinator}",
            f"--output={output}",
            f"--rounds={ROUNDS}",
            f"--epochs-per-round={EPOCHS_PER_ROUND}",
        ]
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=worker_env(),
            cwd=ROOT,
        )
        workers.append((process, log))
    return workers


def run_cluster(num_processes, output, logs):
    """Runs one cluster to completion; returns each worker's JSON report."""
    coordinator = f"127.0.0.1:{free_port()}"
    workers = launch(num_processes, coordinator, output, logs)
    try:
        deadline = time.monotonic() + TIMEOUT
        codes = []
        for process, _ in workers:
            remaining = max(deadline - time.monotonic(), 1)
            try:
                codes.append(process.wait(timeout=remaining))
            except subprocess.TimeoutExpired:
                codes.append(None)
    finally:
        # No worker outlives the test, whatever happened.
        for process, _ in workers:
            if process.poll() is None:
                process.kill()
        for process, log in workers:
            process.wait()
            log.close()
    if codes != [0] * num_processes:
        tails = []
        for i in range(num_processes):
            text = (logs / f"run{num_processes}_process_{i}.log").read_text()
            tails.append(f"--- process {i} (exit {codes[i]}):\n{text[-4000:]}")
        pytest.fail(
            f"{num_processes}-process run failed (None = killed after "
            f"{TIMEOUT} s): exit codes {codes}\n" + "\n".join(tails)
        )
    return [
        json.loads((output / f"process_{i}.json").read_text())
        for i in range(num_processes)
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`{"cluster": [report of process 0, report of process 1], "single": ...}`."""
    root = tmp_path_factory.mktemp("multihost_jax")
    started = time.monotonic()
    cluster = run_cluster(2, root / "cluster", root)
    middle = time.monotonic()
    (single,) = run_cluster(1, root / "single", root)
    print(
        f"two-process run {middle - started:.1f} s, "
        f"single-process run {time.monotonic() - middle:.1f} s"
    )
    return {"cluster": cluster, "single": single}


def test_the_cluster_has_two_processes_with_one_device_each(runs):
    for process_id, report in enumerate(runs["cluster"]):
        assert report["process_id"] == process_id
        assert report["num_processes"] == 2
        assert len(report["devices"]) == 2
        assert len(report["local_devices"]) == 1
        assert report["mesh_shape"] == [2]
    assert runs["single"]["num_processes"] == 1


def test_processes_end_identical(runs):
    first, second = runs["cluster"]
    assert first["masks"] == second["masks"]
    assert first["mask_shapes"] == second["mask_shapes"]
    assert first["weights"] == second["weights"]
    assert first["results"] == second["results"]


def test_every_round_ran_and_pruned(runs):
    results = runs["cluster"][0]["results"]
    assert [r["round"] for r in results] == list(range(ROUNDS))
    remaining = [r["weights_remaining"] for r in results]
    assert remaining[0] == 1.0
    assert remaining == sorted(remaining, reverse=True)
    assert remaining[-1] < 0.7
    # Every epoch ran every global batch of 64 (1,437 // 64 = 22 steps).
    assert all(r["best_step"] == 22 * r["best_epoch"] for r in results)
    masks = runs["cluster"][0]["masks"]
    assert sorted(masks) == [
        "conv_1/kernel",
        "hidden_1/kernel",
        "hidden_2/kernel",
        "output/kernel",
    ]
    for key, mask in masks.items():
        assert 0 < sum(mask) < len(mask), key  # Pruned, but not emptied.


def test_cluster_finds_the_single_process_ticket(runs):
    cluster, single = runs["cluster"][0], runs["single"]
    assert sorted(cluster["masks"]) == sorted(single["masks"])
    assert cluster["mask_shapes"] == single["mask_shapes"]
    agree = total = 0
    for key, mask in single["masks"].items():
        a, b = np.asarray(cluster["masks"][key]), np.asarray(mask)
        agree += int(np.sum(a == b))
        total += b.size
    print(f"mask agreement: {agree}/{total} = {agree / total:.6f}")
    assert agree / total >= 0.999
    assert [r["weights_remaining"] for r in cluster["results"]] == [
        r["weights_remaining"] for r in single["results"]
    ]
