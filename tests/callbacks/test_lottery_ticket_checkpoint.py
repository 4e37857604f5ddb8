"""Crash recovery with `LotteryTicket(checkpoint_dir=...)`.

A real process is killed with SIGKILL, mid-round and mid-write, and the same
script started again must finish with the masks of an uninterrupted run.
"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_lth as lth
from keras_lth.callbacks.lottery_ticket import CHECKPOINT_NAME

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL"), reason="needs POSIX signals"
)

STEPS_PER_EPOCH = 23  # 1,437 digits in batches of 64.
EPOCHS_PER_ROUND = 2

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    import keras_lth as lth
    import keras_lth.callbacks.lottery_ticket as lottery_ticket

    checkpoint_dir, out = sys.argv[1], sys.argv[2]
    kill_at_step = int(os.environ.get("KILL_AT_STEP", "-1"))
    kill_in_write = int(os.environ.get("KILL_IN_WRITE_AT_EPOCH", "-1"))
    marker = os.path.join(checkpoint_dir, "killed-once")

    def kill():
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)

    if kill_in_write >= 0 and not os.path.exists(marker):
        real_atomic_write = lottery_ticket.atomic_write
        writes = []

        def dying_atomic_write(path, write):
            writes.append(path)
            if len(writes) - 1 < kill_in_write:
                return real_atomic_write(path, write)

            def half_then_die(f):
                import io
                buffer = io.BytesIO()
                write(buffer)
                data = buffer.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                kill()

            real_atomic_write(path, half_then_die)

        lottery_ticket.atomic_write = dying_atomic_write

    class Tracker(keras.callbacks.Callback):
        # Records the first epoch run; kills the process at a given step.

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            if not hasattr(self, "first_epoch"):
                self.first_epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            step = self.epoch * 23 + batch + 1
            if step == kill_at_step and not os.path.exists(marker):
                kill()

    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    keras.utils.set_random_seed(7)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(48, activation="relu", name="hidden"),
        keras.layers.Dense(32, activation="relu", name="hidden_2"),
        keras.layers.Dense(10, name="output"),
    ])
    model = lth.mask_model(model)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    ticket = lth.LotteryTicket(
        3, 2, rewind="epoch:1", verbose=0, checkpoint_dir=checkpoint_dir
    )
    tracker = Tracker()
    model.fit(
        x[:1437], y[:1437], validation_data=(x[1437:], y[1437:]),
        batch_size=64, epochs=ticket.total_epochs, shuffle=False,
        callbacks=[ticket, tracker], verbose=0,
    )
    masks = {k: v.astype(int).tolist() for k, v in lth.get_masks(model).items()}
    with open(out, "w") as f:
        json.dump({
            "first_epoch": tracker.first_epoch,
            "masks": masks,
            "rounds": [r["round"] for r in ticket.results],
            "remaining": [r["weights_remaining"] for r in ticket.results],
            "seed": ticket.seed,
        }, f)
    """
)


def run_script(tmp_path, name, checkpoint_dir, env=None):
    script = tmp_path / "imp_script.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"{name}.json"
    # On this run's backend: a checkpoint is written and resumed there.
    environment = {
        **os.environ,
        "KERAS_BACKEND": keras.backend.backend(),
        **(env or {}),
    }
    completed = subprocess.run(
        [sys.executable, str(script), str(checkpoint_dir), str(out)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(out.read_text()) if out.exists() else None
    return completed, result


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("reference")
    completed, result = run_script(tmp_path, "reference", tmp_path / "ckpt")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return result


@pytest.mark.slow
def test_killed_mid_round_resumes_and_matches_an_uninterrupted_run(tmp_path, reference):
    # A random batch inside round 1 (epochs 2 and 3), not on an epoch's end.
    rng = random.Random()
    epoch = rng.choice([2, 3])
    kill_at = epoch * STEPS_PER_EPOCH + rng.randrange(1, STEPS_PER_EPOCH)
    checkpoint_dir = tmp_path / "ckpt"
    env = {"KILL_AT_STEP": str(kill_at)}

    killed, _ = run_script(tmp_path, "killed", checkpoint_dir, env)
    assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr[-3000:])
    state = lth.LotteryTicket(3, 2, rewind="epoch:1")  # Takes the saved seed.
    state.load_state(checkpoint_dir / CHECKPOINT_NAME)
    assert state.epochs_done == epoch  # The last finished epoch was saved.
    assert [r["round"] for r in state.results] == [0]

    resumed, result = run_script(tmp_path, "resumed", checkpoint_dir, env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert result["first_epoch"] == epoch, kill_at  # The right round and epoch.
    assert result["rounds"] == [0, 1, 2]
    assert result["remaining"] == reference["remaining"]
    assert result["masks"] == reference["masks"], f"killed at step {kill_at}"


@pytest.mark.slow
def test_killed_while_writing_the_checkpoint_keeps_the_previous_one(
    tmp_path, reference
):
    checkpoint_dir = tmp_path / "ckpt"
    env = {"KILL_IN_WRITE_AT_EPOCH": "3"}  # Dies half way through writing epoch 4.

    killed, _ = run_script(tmp_path, "killed", checkpoint_dir, env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    state = lth.LotteryTicket(3, 2, rewind="epoch:1")  # Takes the saved seed.
    state.load_state(checkpoint_dir / CHECKPOINT_NAME)  # Readable, not torn.
    assert state.epochs_done == 3

    resumed, result = run_script(tmp_path, "resumed", checkpoint_dir, env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert result["first_epoch"] == 3
    assert result["masks"] == reference["masks"]


def _model():
    return lth.mask_model(
        keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(16, name="hidden"),
                keras.layers.Dense(10, name="output"),
            ]
        )
    )


def _fit(model, ticket, digits):
    x, y = digits[:2]
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(
        x[:256], y[:256], epochs=ticket.total_epochs, callbacks=[ticket], verbose=0
    )


def test_a_corrupt_checkpoint_is_refused_with_its_name(tmp_path, digits):
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"\x00garbage")
    ticket = lth.LotteryTicket(2, 1, monitor="loss", verbose=0, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=CHECKPOINT_NAME):
        _fit(_model(), ticket, digits)


def test_a_checkpoint_of_other_settings_is_refused(tmp_path, digits):
    _fit(
        _model(),
        lth.LotteryTicket(2, 1, monitor="loss", seed=1, checkpoint_dir=tmp_path),
        digits,
    )
    other = lth.LotteryTicket(
        2, 1, monitor="loss", seed=1, prune_rate=0.5, checkpoint_dir=tmp_path
    )
    with pytest.raises(ValueError, match=rf"{CHECKPOINT_NAME}.*prune_rate"):
        _fit(_model(), other, digits)


def test_a_checkpoint_of_another_model_is_refused(tmp_path, digits):
    _fit(
        _model(),
        lth.LotteryTicket(2, 1, monitor="loss", seed=1, checkpoint_dir=tmp_path),
        digits,
    )
    wider = lth.mask_model(
        keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(32, name="hidden"),
                keras.layers.Dense(10, name="output"),
            ]
        )
    )
    ticket = lth.LotteryTicket(2, 1, monitor="loss", seed=1, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="does not fit this model"):
        _fit(wider, ticket, digits)


def test_a_finished_run_is_not_trained_again(tmp_path, digits):
    model = _model()
    ticket = lth.LotteryTicket(
        2, 1, monitor="loss", seed=1, verbose=0, checkpoint_dir=tmp_path
    )
    _fit(model, ticket, digits)
    masks = lth.get_masks(model)
    again = lth.LotteryTicket(
        2, 1, monitor="loss", verbose=0, checkpoint_dir=tmp_path
    )  # No seed.
    fresh = _model()
    _fit(fresh, again, digits)
    assert again.seed == 1  # Taken from the checkpoint.
    assert again.results == ticket.results
    for key, mask in lth.get_masks(fresh).items():
        np.testing.assert_array_equal(mask, masks[key])


@pytest.mark.parametrize("own_dir", [True, False])
def test_works_beside_backup_and_restore(tmp_path, digits, own_dir):
    """`BackupAndRestore` restores the model; the ticket restores IMP on top,
    from its own `checkpoint_dir` or, without one, from the backup's folder."""
    x, y, xv, yv = digits

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:  # Inside round 1.
                raise RuntimeError("preempted")

    def run(callbacks):
        keras.utils.set_random_seed(3)
        model = lth.mask_model(
            keras.Sequential(
                [
                    keras.Input((64,)),
                    keras.layers.Dense(32, activation="relu", name="hidden"),
                    keras.layers.Dense(10, name="output"),
                ]
            )
        )
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        model.fit(
            x,
            y,
            validation_data=(xv, yv),
            batch_size=64,
            epochs=6,
            shuffle=False,
            callbacks=callbacks,
            verbose=0,
        )
        return model

    def ticket():
        return lth.LotteryTicket(
            3,
            2,
            rewind="epoch:1",
            seed=0,
            verbose=0,
            checkpoint_dir=tmp_path / "lth" if own_dir else None,
        )

    reference_ticket = lth.LotteryTicket(3, 2, rewind="epoch:1", seed=0, verbose=0)
    reference = run([reference_ticket])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="preempted"):
        run([backup, ticket(), Crash()])
    resumed_ticket = ticket()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    if not own_dir:
        assert (tmp_path / "backup" / CHECKPOINT_NAME).exists()
    resumed = run([backup, resumed_ticket])
    assert not (tmp_path / "backup").exists()  # Removed by BackupAndRestore.
    assert [r["round"] for r in resumed_ticket.results] == [0, 1, 2]
    for key, mask in lth.get_masks(reference).items():
        np.testing.assert_array_equal(lth.get_masks(resumed)[key], mask)
    for got, want in zip(resumed_ticket.results, reference_ticket.results):
        assert got["weights_remaining"] == want["weights_remaining"]
        assert got["best"]["val_loss"] == pytest.approx(want["best"]["val_loss"])


def test_ticket_before_backup_and_restore_is_refused(tmp_path, digits):
    x, y = digits[:2]
    model = _model()
    model.compile("adam", "sparse_categorical_crossentropy")
    backup = keras.callbacks.BackupAndRestore(str(tmp_path))
    ticket = lth.LotteryTicket(2, 1, monitor="loss", verbose=0)
    with pytest.raises(ValueError, match="after it"):
        model.fit(x, y, epochs=2, callbacks=[ticket, backup], verbose=0)
