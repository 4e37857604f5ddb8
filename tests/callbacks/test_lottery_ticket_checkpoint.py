"""Crash recovery with `LotteryTicket(checkpoint_dir=...)`.

A real process is killed with SIGKILL, mid-round and mid-write, and the same
script started again must finish exactly as an uninterrupted run: the same
masks, weights, optimizer variables and results, bit for bit. The kill points
are drawn from a seed that each test prints; set `LTH_KILL_SEED` to replay one.
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
from tests.callbacks import test_sparsity_summaries as summaries

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
    from keras_lth.callbacks import checkpoint

    checkpoint_dir, out = sys.argv[1], sys.argv[2]
    kill_at_step = int(os.environ.get("KILL_AT_STEP", "-1"))
    kill_in_write = int(os.environ.get("KILL_IN_WRITE", "-1"))
    marker = os.path.join(checkpoint_dir, "killed-once")

    def kill():
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)

    if kill_in_write >= 0 and not os.path.exists(marker):
        real_atomic_write = checkpoint.atomic_write
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

        checkpoint.atomic_write = dying_atomic_write

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
    arrays = {f"model_{i}": keras.ops.convert_to_numpy(v)
              for i, v in enumerate(model.variables)}
    arrays.update({f"optimizer_{i}": keras.ops.convert_to_numpy(v)
                   for i, v in enumerate(model.optimizer.variables)})
    np.savez(out + ".npz", **arrays)
    masks = {k: v.astype(int).tolist() for k, v in lth.get_masks(model).items()}
    with open(out, "w") as f:
        json.dump({
            "first_epoch": tracker.first_epoch,
            "masks": masks,
            "results": ticket.results,
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
    result = None
    if out.exists():
        result = json.loads(out.read_text())
        with np.load(f"{out}.npz") as arrays:
            result["variables"] = {k: arrays[k] for k in arrays.files}
    return completed, result


def kill_rng():
    """A `random.Random` for the kill points, and its seed (printed)."""
    seed = int(
        os.environ.get("LTH_KILL_SEED") or random.SystemRandom().randrange(2**32)
    )
    print(f"kill seed {seed} (replay with LTH_KILL_SEED={seed})")
    return random.Random(seed), seed


def assert_same_run(result, reference, context):
    """Masks, every model and optimizer variable, and results: bit for bit."""
    assert [r["round"] for r in result["results"]] == [0, 1, 2], context
    assert result["masks"] == reference["masks"], context
    assert result["results"] == reference["results"], context
    assert sorted(result["variables"]) == sorted(reference["variables"]), context
    assert any(k.startswith("optimizer_") for k in reference["variables"])
    for key, value in reference["variables"].items():
        np.testing.assert_array_equal(
            result["variables"][key], value, err_msg=f"{key}, {context}"
        )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("reference")
    completed, result = run_script(tmp_path, "reference", tmp_path / "ckpt")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert [r["round"] for r in result["results"]] == [0, 1, 2]
    return result


def kill_mid_round(tmp_path, rng, seed):
    """Kills the script at a random batch inside round 1 (epochs 2 and 3),
    not on an epoch's end; returns the checkpoint's folder and that epoch."""
    epoch = rng.choice([2, 3])
    kill_at = epoch * STEPS_PER_EPOCH + rng.randrange(1, STEPS_PER_EPOCH)
    checkpoint_dir = tmp_path / "ckpt"
    env = {"KILL_AT_STEP": str(kill_at)}
    killed, _ = run_script(tmp_path, "killed", checkpoint_dir, env)
    context = f"kill seed {seed}, killed at step {kill_at}"
    assert killed.returncode == -signal.SIGKILL, (context, killed.stderr[-3000:])
    return checkpoint_dir, epoch, context


@pytest.mark.slow
def test_killed_mid_round_resumes_and_matches_an_uninterrupted_run(tmp_path, reference):
    rng, seed = kill_rng()
    checkpoint_dir, epoch, context = kill_mid_round(tmp_path, rng, seed)
    state = lth.LotteryTicket(3, 2, rewind="epoch:1")  # Takes the saved seed.
    state.load_state(checkpoint_dir / CHECKPOINT_NAME)
    assert state.epochs_done == epoch, context  # The last finished epoch.
    assert [r["round"] for r in state.results] == [0], context
    assert state.results == reference["results"][:1], context

    resumed, result = run_script(tmp_path, "resumed", checkpoint_dir)
    assert resumed.returncode == 0, (context, resumed.stderr[-3000:])
    assert result["first_epoch"] == epoch, context  # The right round and epoch.
    assert result["seed"] == state.seed, context
    assert_same_run(result, reference, context)


@pytest.mark.slow
def test_killed_while_writing_the_checkpoint_keeps_the_previous_one(
    tmp_path, reference
):
    rng, seed = kill_rng()
    write = rng.randrange(1, 5)  # Dies half way through writing epoch write + 1.
    context = f"kill seed {seed}, killed in write {write}"
    checkpoint_dir = tmp_path / "ckpt"
    env = {"KILL_IN_WRITE": str(write)}

    killed, _ = run_script(tmp_path, "killed", checkpoint_dir, env)
    assert killed.returncode == -signal.SIGKILL, (context, killed.stderr[-3000:])
    state = lth.LotteryTicket(3, 2, rewind="epoch:1")  # Takes the saved seed.
    state.load_state(checkpoint_dir / CHECKPOINT_NAME)  # Readable, not torn.
    assert state.epochs_done == write, context

    resumed, result = run_script(tmp_path, "resumed", checkpoint_dir, env)
    assert resumed.returncode == 0, (context, resumed.stderr[-3000:])
    assert result["first_epoch"] == write, context
    assert_same_run(result, reference, context)


@pytest.mark.slow
def test_a_checkpoint_cut_in_half_is_refused_then_the_run_starts_afresh(
    tmp_path, reference
):
    # A kill during a copy of the folder leaves the file cut in half. The
    # ticket refuses it, naming it, rather than guess; the user deletes it,
    # and the same script then runs from the start (keras_lth's own writes
    # are atomic, so it keeps no older copy to fall back on).
    rng, seed = kill_rng()
    checkpoint_dir, _, context = kill_mid_round(tmp_path, rng, seed)
    path = checkpoint_dir / CHECKPOINT_NAME
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    refused, result = run_script(tmp_path, "refused", checkpoint_dir)
    assert refused.returncode == 1 and result is None, context
    last_line = refused.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ValueError: "), (context, refused.stderr[-3000:])
    assert f"'{path}'" in last_line and "Delete the file" in last_line, last_line
    assert path.read_bytes() == data[: len(data) // 2]  # Left as it was.

    path.unlink()
    again, result = run_script(tmp_path, "again", checkpoint_dir)
    assert again.returncode == 0, (context, again.stderr[-3000:])
    assert result["first_epoch"] == 0, context
    assert_same_run(result, reference, context)


# ------------------------------------------------- in-process checkpoints


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
    before = [keras.ops.convert_to_numpy(v) for v in wider.variables]
    ticket = lth.LotteryTicket(2, 1, monitor="loss", seed=1, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="does not fit this model"):
        _fit(wider, ticket, digits)
    for variable, value in zip(wider.variables, before, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)
    assert ticket.results == [] and ticket.epochs_done == 0


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


# ------------------------------------------------- keras BackupAndRestore


class Crash(keras.callbacks.Callback):
    """Raises at the start (or, with `at_end`, the end) of an epoch."""

    def __init__(self, epoch, at_end=False):
        super().__init__()
        self.epoch, self.at_end = epoch, at_end

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch and not self.at_end:
            raise RuntimeError("preempted")

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch and self.at_end:
            raise RuntimeError("preempted")


def _run(digits, callbacks):
    x, y, xv, yv = digits
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


def _ticket(checkpoint_dir=None):
    return lth.LotteryTicket(
        3, 2, rewind="epoch:1", seed=0, verbose=0, checkpoint_dir=checkpoint_dir
    )


@pytest.fixture
def uninterrupted(digits):
    ticket = _ticket()
    return _run(digits, [ticket]), ticket


def _assert_matches(model, ticket, uninterrupted):
    reference, reference_ticket = uninterrupted
    assert [r["round"] for r in ticket.results] == [0, 1, 2]
    for key, mask in lth.get_masks(reference).items():
        np.testing.assert_array_equal(lth.get_masks(model)[key], mask)
    for got, want in zip(ticket.results, reference_ticket.results, strict=True):
        assert got["weights_remaining"] == want["weights_remaining"]
        assert got["best"]["val_loss"] == pytest.approx(want["best"]["val_loss"])
    # In fact bit for bit: every model and optimizer variable, every result.
    assert ticket.results == reference_ticket.results
    for variables, expected in (
        (model.variables, reference.variables),
        (model.optimizer.variables, reference.optimizer.variables),
    ):
        for got, want in zip(variables, expected, strict=True):
            np.testing.assert_array_equal(
                keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(want)
            )


@pytest.mark.parametrize("own_dir", [True, False])
def test_works_beside_backup_and_restore(tmp_path, digits, uninterrupted, own_dir):
    """`BackupAndRestore` restores the model; the ticket restores IMP on top,
    from its own `checkpoint_dir` or, given the BackupAndRestore as
    `checkpoint_dir`, from the backup's folder."""

    def ticket(backup):
        return _ticket(tmp_path / "lth" if own_dir else backup)

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="preempted"):
        _run(digits, [backup, ticket(backup), Crash(3)])  # Inside round 1.
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    resumed_ticket = ticket(backup)
    if not own_dir:
        assert resumed_ticket.checkpoint_dir == str(tmp_path / "backup")
        assert (tmp_path / "backup" / CHECKPOINT_NAME).exists()
    resumed = _run(digits, [backup, resumed_ticket])
    assert not (tmp_path / "backup").exists()  # Removed by BackupAndRestore.
    _assert_matches(resumed, resumed_ticket, uninterrupted)


@pytest.mark.parametrize("ticket_first", [False, True])
def test_the_order_beside_backup_and_restore_does_not_matter(
    tmp_path, digits, uninterrupted, ticket_first
):
    # Both save at every epoch end and restore the same epoch, so either
    # order resumes the same run (no stack walking, no order check).
    def callbacks(*extra):
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        ticket = _ticket(backup)
        pair = [ticket, backup] if ticket_first else [backup, ticket]
        return [*pair, *extra], ticket

    crashing, _ = callbacks(Crash(3))
    with pytest.raises(RuntimeError, match="preempted"):
        _run(digits, crashing)
    resuming, ticket = callbacks()
    resumed = _run(digits, resuming)
    assert ticket.epochs_done == 6
    assert not (tmp_path / "backup").exists()
    _assert_matches(resumed, ticket, uninterrupted)


def test_a_run_stopped_between_the_two_saves_needs_the_backup_first(
    tmp_path, digits, uninterrupted
):
    # Ticket first: it saved epoch 3, then the run died before
    # BackupAndRestore saved it. Restarting in that order, the backup (last)
    # restores epoch 2, and the ticket says what to do; with the backup
    # first, the ticket (restored last) resumes from its epoch 3.
    folder = str(tmp_path / "backup")
    backup = keras.callbacks.BackupAndRestore(folder)
    ticket = _ticket(backup)
    with pytest.raises(RuntimeError, match="preempted"):
        _run(digits, [ticket, Crash(2, at_end=True), backup])
    assert ticket.epochs_done == 3

    backup = keras.callbacks.BackupAndRestore(folder)
    ticket = _ticket(backup)
    with pytest.raises(ValueError, match="BackupAndRestore before the LotteryTicket"):
        _run(digits, [ticket, backup])
    assert ticket.epochs_done == 3  # Its state came from the file.

    backup = keras.callbacks.BackupAndRestore(folder)
    ticket = _ticket(backup)
    resumed = _run(digits, [backup, ticket])
    _assert_matches(resumed, ticket, uninterrupted)


def test_backup_and_restore_without_the_ticket_knowing_is_refused(tmp_path, digits):
    # BackupAndRestore restores the model and moves `fit` to epoch 3, but a
    # ticket that keeps no state cannot resume IMP there: it says to pass
    # the BackupAndRestore as its `checkpoint_dir`.
    folder = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="preempted"):
        _run(digits, [keras.callbacks.BackupAndRestore(folder), _ticket(), Crash(3)])
    ticket = _ticket()
    with pytest.raises(
        ValueError, match=r"epoch 3.*checkpoint_dir=<the BackupAndRestore>"
    ):
        _run(digits, [keras.callbacks.BackupAndRestore(folder), ticket])
    assert ticket.results == []


def test_a_ticket_resumed_from_its_checkpoint_never_writes_a_step_back(tmp_path):
    # The ticket rewinds the iteration count (rewind="init"), so the resumed
    # run's optimizer is at step 12 while its summaries had reached 36. The
    # summaries' step is set before the first write, so no point lands at a
    # lower step, which would make TensorBoard drop the first run's later
    # points.
    (x, y), _ = summaries.digits_split()

    def run(*extra):
        ticket = lth.LotteryTicket(
            2,
            2,
            monitor="loss",
            seed=0,
            verbose=0,
            log_dir=tmp_path / "logs",
            checkpoint_dir=tmp_path / "ckpt",
        )
        model = summaries.masked_model()
        model.fit(
            x,
            y,
            batch_size=summaries.BATCH,
            epochs=ticket.total_epochs,
            callbacks=[ticket, *extra],
            verbose=0,
        )
        return ticket

    with pytest.raises(RuntimeError, match="preempted"):
        run(Crash(3))
    resumed = run()
    assert resumed.epochs_done == 4
    values, events = summaries.read_run(tmp_path / "logs" / "train")
    steps = [event.step for event in events["sparsity/global"]]
    assert steps == sorted(steps)  # In the order written: never back.
    assert sorted(summaries.scalars(values["sparsity/global"])) == [0, 12, 24, 36, 48]
    assert sorted(summaries.scalars(values["lottery/round"])) == [24, 48]
