"""`SparsitySummaries`: TensorBoard summaries read back from the event files,
and from a real TensorBoard server."""

import copy
import glob
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import keras
import numpy as np
import pytest
from keras.src import utils as keras_utils
from sklearn.datasets import load_digits
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

import keras_lth as lth
from keras_lth._summary_writer import SummaryWriter
from keras_lth._summary_writer import histogram_buckets
from keras_lth._summary_writer import png_size
from keras_lth.callbacks.sparsity_summaries import SparsitySummaries
from keras_lth.masking import get_prunable_weights
from tests import backends

BATCH = 128  # 1,437 digits: 12 steps per epoch.
STEPS = 12
ROUNDS = 3
EPOCHS_PER_ROUND = 2


def digits_split():
    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1437], y[:1437]), (x[1437:], y[1437:])


def masked_model():
    model = lth.mask_model(
        keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(24, activation="relu", name="hidden"),
                keras.layers.Dense(10, name="output"),
            ]
        )
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def read_run(folder):
    """{tag: {step: last value written at that step}} plus raw events."""
    acc = event_accumulator.EventAccumulator(
        str(folder), size_guidance={event_accumulator.TENSORS: 0}
    )
    acc.Reload()
    values, events = {}, {}
    for tag in acc.Tags()["tensors"]:
        events[tag] = acc.Tensors(tag)
        per_step = {}
        for event in events[tag]:
            if event.tensor_proto.dtype == 7:  # DT_STRING: an image.
                per_step[event.step] = list(event.tensor_proto.string_val)
            else:
                per_step[event.step] = tensor_util.make_ndarray(event.tensor_proto)
        values[tag] = per_step
    return values, events


def scalars(per_step):
    return {step: float(value) for step, value in per_step.items()}


def surviving(model):
    masks = lth.get_masks(model)
    weights = get_prunable_weights(model)
    return {key: weights[key][mask != 0] for key, mask in masks.items()}


class Recorder(keras.callbacks.Callback):
    """Records, at every epoch end, what the summaries should show."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(
            {"sparsity": lth.sparsity(self.model), "weights": surviving(self.model)}
        )


@pytest.fixture(scope="module")
def lottery_run(tmp_path_factory):
    """3 rounds x 2 epochs of IMP on digits, `LotteryTicket(log_dir=...)`
    and keras.callbacks.TensorBoard writing to the same log_dir."""
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(7)
    log_dir = tmp_path_factory.mktemp("tb") / "run"
    (x, y), validation = digits_split()
    model = masked_model()
    recorder = Recorder()
    ticket = lth.LotteryTicket(
        rounds=ROUNDS,
        epochs_per_round=EPOCHS_PER_ROUND,
        seed=0,
        verbose=0,
        log_dir=log_dir,
    )
    tensorboard = keras.callbacks.TensorBoard(log_dir)
    model.fit(
        x,
        y,
        validation_data=validation,
        batch_size=BATCH,
        epochs=ticket.total_epochs,
        callbacks=[recorder, ticket, tensorboard],
        verbose=0,
    )
    return {
        "log_dir": log_dir,
        "results": json.loads(json.dumps(ticket.results)),
        "epochs": recorder.epochs,
        "final_sparsity": lth.sparsity(model),
        "final_weights": surviving(model),
    }


# ------------------------------------------------------------ event files


def test_sparsity_and_histograms_at_each_epoch_end(lottery_run):
    values, _ = read_run(lottery_run["log_dir"] / "train")
    epochs = lottery_run["epochs"]
    results = lottery_run["results"]
    steps = [STEPS * (i + 1) for i in range(len(epochs))]
    keys = list(results[0]["layers"])
    assert set(values) >= {"sparsity/global"} | {f"sparsity/{k}" for k in keys}

    written = scalars(values["sparsity/global"])
    # Steps never go back, though LotteryTicket rewinds the iteration count.
    assert sorted(written) == [0, *steps]
    assert written[0] == 0.0
    for round_index, row in enumerate(results):
        for epoch in range(EPOCHS_PER_ROUND):
            i = round_index * EPOCHS_PER_ROUND + epoch
            expected = epochs[i]["sparsity"]
            assert expected["global"] == pytest.approx(1 - row["weights_remaining"])
            if epoch < EPOCHS_PER_ROUND - 1 or round_index == ROUNDS - 1:
                # Within a round (and at the very end) the masks are those
                # the round trained with.
                assert written[steps[i]] == pytest.approx(expected["global"])
            else:
                # At a round's end the pruned masks replace them, at the
                # same step: the next round's sparsity.
                after = 1 - results[round_index + 1]["weights_remaining"]
                assert written[steps[i]] == pytest.approx(after)
            for key in keys:
                per_tensor = scalars(values[f"sparsity/{key}"])
                if epoch < EPOCHS_PER_ROUND - 1:
                    assert per_tensor[steps[i]] == pytest.approx(
                        expected["layers"][key]
                    )
                    assert per_tensor[steps[i]] == pytest.approx(1 - row["layers"][key])
    assert written[steps[-1]] == pytest.approx(lottery_run["final_sparsity"]["global"])

    # Histograms of the surviving weights, trained (before any rewind).
    for key in keys:
        histograms = values[f"weights/{key}"]
        assert sorted(histograms) == steps
        for step, record in zip(steps, epochs):
            weights = record["weights"][key]
            buckets = histograms[step]
            assert buckets.shape == (30, 3)
            assert buckets[:, 2].sum() == weights.size
            assert buckets[0, 0] == pytest.approx(weights.min())
            assert buckets[-1, 1] == pytest.approx(weights.max())
            np.testing.assert_allclose(buckets, histogram_buckets(weights))
        final = lottery_run["final_weights"][key]
        assert histograms[steps[-1]][:, 2].sum() == final.size


def test_write_round_scalars_and_plot(lottery_run):
    train, _ = read_run(lottery_run["log_dir"] / "train")
    validation, _ = read_run(lottery_run["log_dir"] / "validation")
    results = lottery_run["results"]
    rounds = list(range(ROUNDS))
    round_end_steps = [STEPS * EPOCHS_PER_ROUND * (r + 1) for r in rounds]
    permille = [round(1000 * (1 - row["weights_remaining"])) for row in results]
    assert permille == sorted(set(permille))  # Grows every round.

    assert scalars(train["lottery/round"]) == dict(zip(round_end_steps, rounds))
    for tag, key in [
        ("lottery/weights_remaining", "weights_remaining"),
        ("lottery/best_step", "best_step"),
        ("lottery/best_epoch", "best_epoch"),
    ]:
        written = scalars(train[tag])
        assert written == pytest.approx({r: row[key] for r, row in enumerate(results)})
    assert scalars(train["lottery_vs_sparsity_permille/best_step"]) == pytest.approx(
        {p: row["best_step"] for p, row in zip(permille, results)}
    )
    for stage in ("best", "final"):
        for metric in results[0][stage]:
            run, name = (
                (validation, metric[4:])
                if metric.startswith("val_")
                else (train, metric)
            )
            expected = [row[stage][metric] for row in results]
            assert scalars(run[f"lottery/{stage}_{name}"]) == pytest.approx(
                dict(zip(rounds, expected))
            )
            assert scalars(
                run[f"lottery_vs_sparsity_permille/{stage}_{name}"]
            ) == pytest.approx(dict(zip(permille, expected)))
    assert "lottery/best_val_accuracy" not in train
    assert "lottery/best_accuracy" in validation

    images = train["lottery/plot"]
    assert sorted(images) == rounds
    for width, height, png in images.values():
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert (int(width), int(height)) == png_size(png)
        assert int(width) > int(height) > 200


def test_files_beside_keras_tensorboard(lottery_run):
    log_dir = lottery_run["log_dir"]
    for run in ("train", "validation"):
        files = sorted(os.listdir(log_dir / run))
        ours = [f for f in files if f.endswith(".keras_lth")]
        keras_files = [f for f in files if f.endswith(".v2")]
        assert len(ours) == 1 and len(keras_files) == 1, files
    # One TensorBoard run per folder holds both writers' tags.
    acc = event_accumulator.EventAccumulator(str(log_dir / "train"))
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    assert {"epoch_loss", "sparsity/global", "lottery/round"} <= tags


def test_async_batch_dispatch_is_kept():
    summaries = SparsitySummaries("unused")
    for hook in (
        "on_batch_end",
        "on_train_batch_end",
        "on_test_batch_end",
        "on_predict_batch_end",
    ):
        assert keras_utils.is_default(getattr(summaries, hook)), hook
    # Keras dispatches batches asynchronously where its backend allows it
    # (JAX, PyTorch) and no callback has a batch-end hook: as for no callback.
    ours = keras.callbacks.CallbackList([summaries])
    bare = keras.callbacks.CallbackList([keras.callbacks.Callback()])
    assert (ours._async_train, ours._async_test) == (
        bare._async_train,
        bare._async_test,
    )


def test_alone_steps_are_optimizer_iterations_and_fit_reuses_it(tmp_path):
    (x, y), _ = digits_split()
    model = masked_model()
    lth.set_masks(model, {"hidden/kernel": np.arange(64 * 24).reshape(64, 24) % 4 > 0})
    summaries = SparsitySummaries(tmp_path, histogram_freq=2)
    copied = copy.deepcopy(summaries)  # As keras-tuner does before a trial.
    for _ in range(2):
        model.fit(x, y, batch_size=BATCH, epochs=2, callbacks=[copied], verbose=0)
        assert copied._writers == {}  # Closed at train end.
    after = copy.deepcopy(copied)
    assert after.model is None and after._writers == {}
    assert after.step == copied.step == 4 * STEPS
    assert after.log_dir == copied.log_dir and after.histogram_freq == 2
    assert summaries.step == 0

    assert len(glob.glob(str(tmp_path / "train" / "*.keras_lth"))) == 2
    values, _ = read_run(tmp_path / "train")
    expected = lth.sparsity(model)
    assert expected["layers"]["hidden/kernel"] == 0.25
    written = scalars(values["sparsity/global"])
    assert sorted(written) == [0, STEPS, 2 * STEPS, 3 * STEPS, 4 * STEPS]
    assert list(written.values()) == pytest.approx([expected["global"]] * 5)
    assert set(scalars(values["sparsity/hidden/kernel"]).values()) == {0.25}
    # histogram_freq=2: the second epoch of each fit.
    assert sorted(values["weights/hidden/kernel"]) == [2 * STEPS, 4 * STEPS]
    assert values["weights/hidden/kernel"][4 * STEPS][:, 2].sum() == 64 * 24 * 3 // 4
    assert "lottery/round" not in values
    assert not os.path.exists(tmp_path / "validation")


def test_a_resumed_run_continues_from_the_step_it_is_given(tmp_path):
    model = masked_model()
    summaries = SparsitySummaries(tmp_path, plot=False)
    summaries.step = 1000  # Where an interrupted run had got to.
    x = np.zeros((64, 64), "float32")
    y = np.zeros((64,), "int32")
    model.fit(x, y, batch_size=32, epochs=2, callbacks=[summaries], verbose=0)
    values, _ = read_run(tmp_path / "train")
    assert sorted(values["sparsity/global"]) == [1000, 1002, 1004]
    with pytest.raises(ValueError, match="step=-1"):
        summaries.step = -1


def test_write_round_outside_fit_without_matplotlib(tmp_path, monkeypatch):
    # matplotlib missing: a warning, and the scalars all the same.
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    row = {
        "round": 0,
        "weights_remaining": 1.0,
        "layers": {},
        "best_epoch": 2,
        "best_step": 10,
        "best": {"loss": 0.5},
        "final": {"loss": 0.4},
        "monitor": "loss",
    }
    summaries = SparsitySummaries(tmp_path)
    with pytest.warns(UserWarning, match="keras-lth\\[plot\\]"):
        summaries.write_round(row)
    summaries.write_round({**row, "round": 1, "weights_remaining": 0.8})
    summaries.close()
    values, _ = read_run(tmp_path / "train")
    assert "lottery/plot" not in values
    assert scalars(values["lottery/best_loss"]) == {0: 0.5, 1: 0.5}
    assert scalars(values["lottery_vs_sparsity_permille/final_loss"]) == {
        0: pytest.approx(0.4),
        200: pytest.approx(0.4),
    }


def test_errors_quote_what_was_received(tmp_path):
    with pytest.raises(TypeError, match="log_dir=3"):
        SparsitySummaries(3)
    with pytest.raises(ValueError, match="histogram_freq=-1"):
        SparsitySummaries(tmp_path, histogram_freq=-1)
    with pytest.raises(TypeError, match="plot='yes'"):
        SparsitySummaries(tmp_path, plot="yes")
    summaries = SparsitySummaries(tmp_path)
    with pytest.raises(ValueError, match=r"lacks \['best_step', 'best', 'final'\]"):
        summaries.write_round({"round": 0, "weights_remaining": 1.0, "best_epoch": 1})
    with pytest.raises(TypeError, match="Received: \\[1, 2\\]"):
        summaries.write_round([1, 2])
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    plain.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="has no masked layers"):
        plain.fit(np.zeros((4, 4)), np.zeros((4, 2)), callbacks=[summaries], verbose=0)


@pytest.mark.slow
def test_writer_needs_no_tensorflow(tmp_path):
    # On the JAX backend, Keras and the summary writer import no TensorFlow.
    # (`import keras_lth` imports no Keras now, so Keras is imported first.)
    code = (
        "import sys\n"
        "import keras\n"
        "from keras_lth._summary_writer import SummaryWriter\n"
        f"w = SummaryWriter({str(tmp_path)!r})\n"
        "w.scalar('a', 1.5, 3)\n"
        "w.histogram('h', [1.0, 2.0, 2.5], 3)\n"
        "w.close()\n"
        "assert 'keras' in sys.modules\n"
        "print('tensorflow' in sys.modules)\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    values, _ = read_run(tmp_path)
    assert scalars(values["a"]) == {3: 1.5}
    assert values["h"][3][:, 2].sum() == 3


@pytest.mark.slow
@backends.not_on("tensorflow", "TensorFlow is the backend there")
def test_a_ticket_logs_summaries_with_tensorflow_blocked(tmp_path):
    # On JAX and PyTorch, the whole run, `log_dir` included, needs no
    # TensorFlow: it is made unimportable in the process.
    code = (
        "import sys\n"
        "sys.modules['tensorflow'] = None\n"
        "import keras, numpy as np, keras_lth as lth\n"
        "model = lth.mask_model(keras.Sequential([keras.Input((8,)),\n"
        "    keras.layers.Dense(6, name='hidden'), keras.layers.Dense(3)]))\n"
        "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy')\n"
        f"ticket = lth.LotteryTicket(2, 1, monitor='loss', verbose=0,\n"
        f"    log_dir={str(tmp_path)!r})\n"
        "rng = np.random.default_rng(0)\n"
        "model.fit(rng.random((32, 8), dtype=np.float32), rng.integers(0, 3, 32),\n"
        "    epochs=ticket.total_epochs, callbacks=[ticket], verbose=0)\n"
        "print(keras.backend.backend(), len(ticket.results))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": backends.BACKEND}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == [backends.BACKEND, "2"]
    values, _ = read_run(tmp_path / "train")
    written = scalars(values["sparsity/global"])
    assert written[0] == 0.0 and max(written.values()) > 0.0, written  # Pruned.


def test_histogram_buckets_match_tensorboard_layout():
    buckets = histogram_buckets([0.0, 1.0, 1.0, 4.0], 4)
    np.testing.assert_allclose(buckets, [[0, 1, 1], [1, 2, 2], [2, 3, 0], [3, 4, 1]])
    same = histogram_buckets([2.0, 2.0], 3)
    np.testing.assert_allclose(same, [[2, 2, 0], [2, 2, 0], [2, 2, 2]])
    assert histogram_buckets([], 5).shape == (5, 3)
    with pytest.raises(ValueError, match="buckets=0"):
        histogram_buckets([1.0], 0)
    with pytest.raises(ValueError, match="Received 3 bytes"):
        png_size(b"abc")


# ------------------------------------------------------ TensorBoard server


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(base, path, **query):
    url = base + path + ("?" + urllib.parse.urlencode(query) if query else "")
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
            if last:
                return last
        except OSError as e:  # Not listening yet, or reset.
            last = e
        time.sleep(0.25)
    raise AssertionError(
        f"Timed out after {timeout} s waiting for {what}: {last} (the server's "
        "output is in tensorboard.log in the test's tmp_path)"
    )


@pytest.mark.slow
def test_real_tensorboard_server_shows_the_summaries(lottery_run, tmp_path):
    """`tensorboard --logdir` on the finished run, read over its HTTP API.

    A second folder, `live/`, gets two writers appending to one run while
    the server runs, to check that the ticket curve builds up as a run goes.
    """
    root = lottery_run["log_dir"].parent
    live = SummaryWriter(root / "live")
    other = SummaryWriter(root / "live", filename_suffix=".other")
    live.scalar("lottery/best_accuracy", 0.5, 0)
    live.flush()
    other.scalar("epoch_loss", 1.0, 0)
    other.flush()

    port = _free_port()
    log = open(tmp_path / "tensorboard.log", "wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(root),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--reload_interval",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        run = "run/train"

        def loaded():
            images = _get_json(base, "/data/plugin/images/tags")
            tags = _get_json(base, "/data/plugin/scalars/tags")
            if "lottery/plot" in images.get(run, {}) and "live" in tags:
                return tags
            return None

        tags = _wait_for(loaded, 90, "the server to load the runs")
        results = lottery_run["results"]
        assert {
            "epoch_loss",  # keras.callbacks.TensorBoard's, same folder.
            "sparsity/global",
            "lottery/round",
            "lottery/weights_remaining",
            "lottery/best_accuracy",
            "lottery_vs_sparsity_permille/best_accuracy",
        } <= set(tags[run])
        assert {"lottery/best_accuracy", "epoch_loss"} <= set(tags["run/validation"])

        def series(run, tag):
            points = _get_json(base, "/data/plugin/scalars/scalars", run=run, tag=tag)
            return [(step, value) for _, step, value in points]

        for stage in ("best", "final"):
            for metric, run_name in (
                ("accuracy", "run/train"),
                ("val_accuracy", "run/validation"),
                ("val_loss", "run/validation"),
            ):
                name = metric.removeprefix("val_")
                expected = [row[stage][metric] for row in results]
                by_round = series(run_name, f"lottery/{stage}_{name}")
                assert [s for s, _ in by_round] == list(range(ROUNDS))
                assert [v for _, v in by_round] == pytest.approx(expected)
                curve = series(run_name, f"lottery_vs_sparsity_permille/{stage}_{name}")
                assert [s for s, _ in curve] == [
                    round(1000 * (1 - row["weights_remaining"])) for row in results
                ]
                assert [v for _, v in curve] == pytest.approx(expected)
        remaining = series(run, "lottery/weights_remaining")
        assert [s for s, _ in remaining] == list(range(ROUNDS))
        assert [v for _, v in remaining] == pytest.approx(
            [row["weights_remaining"] for row in results]
        )
        assert series(run, "lottery/round") == [
            (STEPS * EPOCHS_PER_ROUND * (r + 1), r) for r in range(ROUNDS)
        ]
        sparsity = series(run, "sparsity/global")
        steps = [s for s, _ in sparsity]
        assert steps == sorted(steps) and steps[0] == 0
        assert len(steps) == 1 + ROUNDS * EPOCHS_PER_ROUND  # Nothing dropped.
        assert sparsity[-1][1] == pytest.approx(lottery_run["final_sparsity"]["global"])
        histograms = _get_json(base, "/data/plugin/histograms/tags")[run]
        assert set(histograms) == {"weights/hidden/kernel", "weights/output/kernel"}
        images = _get_json(
            base, "/data/plugin/images/images", run=run, tag="lottery/plot", sample=0
        )
        assert [image["step"] for image in images] == list(range(ROUNDS))

        # Live: two writers keep appending to their files in one folder.
        assert series("live", "lottery/best_accuracy") == [(0, 0.5)]
        other.scalar("epoch_loss", 0.5, 1)
        other.flush()
        live.scalar("lottery/best_accuracy", 0.75, 1)
        live.flush()
        _wait_for(
            lambda: (
                len(series("live", "lottery/best_accuracy")) == 2
                and len(series("live", "epoch_loss")) == 2
            ),
            30,
            "appended points to show",
        )
        assert series("live", "lottery/best_accuracy") == [(0, 0.5), (1, 0.75)]
    finally:
        live.close()
        other.close()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
