"""The run-state file: round trip, and every damaged or foreign file refused.

Each bad file is refused by `fit` (through `checkpoint_dir`) and by
`load_state`, with a `ValueError` naming it, and nothing of the model or of
the callback changes.
"""

import copy
import json
import re

import keras
import numpy as np
import pytest
from keras import ops

import keras_lth as lth
from keras_lth.callbacks import checkpoint
from keras_lth.callbacks.checkpoint import CHECKPOINT_NAME
from keras_lth.callbacks.checkpoint import RunState
from tests.callbacks.test_lottery_ticket import BATCH
from tests.callbacks.test_lottery_ticket import build_model
from tests.callbacks.test_lottery_ticket import compiled
from tests.callbacks.test_lottery_ticket import run_imp


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


def _ticket(**kwargs):
    return lth.LotteryTicket(2, 1, monitor="loss", verbose=0, **kwargs)


def _fit(model, ticket, digits):
    x, y = digits[:2]
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(
        x[:256], y[:256], epochs=ticket.total_epochs, callbacks=[ticket], verbose=0
    )


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    """A real checkpoint, of a finished 2-round run."""
    from sklearn.datasets import load_digits

    data = load_digits()
    digits = ((data.data / 16.0).astype("float32"), data.target.astype("int32"))
    folder = tmp_path_factory.mktemp("good")
    _fit(_model(), _ticket(seed=1, checkpoint_dir=folder), digits)
    path = folder / CHECKPOINT_NAME
    assert path.exists()
    return path


def _rewrite(source, target, edit):
    """Copies the npz `source` to `target`, editing its entries dict."""
    with np.load(source) as data:
        entries = {k: data[k] for k in data.files}
    meta = json.loads(str(entries["meta"]))
    edit(entries, meta)
    entries["meta"] = np.array(json.dumps(meta))
    with open(target, "wb") as f:
        np.savez(f, **entries)


def _torn(source, target):
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])


def _truncated(source, target):
    target.write_bytes(source.read_bytes()[:7])


def _empty(source, target):
    target.write_bytes(b"")


def _text(source, target):
    target.write_text("checkpoint = 3\n")


def _foreign_npz(source, target):
    with open(target, "wb") as f:
        np.savez(f, weights=np.ones(3))


def _foreign_npz_with_meta(source, target):
    with open(target, "wb") as f:
        np.savez(f, weights=np.ones(3), meta=np.arange(2))


def _foreign_meta(source, target):
    def edit(entries, meta):
        meta["format"] = "someone.else"

    _rewrite(source, target, edit)


def _single_array(source, target):
    with open(target, "wb") as f:
        np.save(f, np.ones(3))


def _other_version(source, target):
    def edit(entries, meta):
        meta["version"] = checkpoint.VERSION + 1

    _rewrite(source, target, edit)


def _version_1(source, target):
    # As keras_lth wrote it before the format had a name and counts.
    def edit(entries, meta):
        del meta["format"], meta["counts"]
        meta["version"] = 1

    _rewrite(source, target, edit)


def _missing_array(source, target):
    _rewrite(source, target, lambda entries, meta: entries.pop("live_optimizer_0"))


def _missing_meta_key(source, target):
    _rewrite(source, target, lambda entries, meta: meta.pop("results"))


def _damaged_history(source, target):
    def edit(entries, meta):
        meta["history"] = ["not an epoch"]

    _rewrite(source, target, edit)


BAD_FILES = {
    "torn": (_torn, "cannot be read"),
    "truncated": (_truncated, "cannot be read"),
    "empty": (_empty, "cannot be read"),
    "text": (_text, "cannot be read"),
    "foreign npz": (_foreign_npz, "no 'meta' entry"),
    "foreign npz with meta": (_foreign_npz_with_meta, "'meta' entry is not a JSON"),
    "foreign meta": (_foreign_meta, "is not a keras_lth.LotteryTicket run state"),
    "single array": (_single_array, "not an .npz archive"),
    "other version": (_other_version, "version 3, and this keras_lth reads version 2"),
    "version 1": (_version_1, "version 1, and this keras_lth reads version 2"),
    "missing array": (_missing_array, r"misses the arrays \['live_optimizer_0'\]"),
    "missing meta key": (_missing_meta_key, r"lacks \['results'\]"),
    "damaged history": (_damaged_history, "'history' entry is damaged"),
}


def _refusal(path, reason):
    return rf"'{re.escape(str(path))}': .*{reason}.*Delete the file"


def _values(variables):
    return [ops.convert_to_numpy(v).copy() for v in variables]


@pytest.mark.parametrize("kind", BAD_FILES)
def test_fit_refuses_a_bad_checkpoint_and_changes_nothing(
    kind, good_file, tmp_path, digits
):
    make, reason = BAD_FILES[kind]
    folder = tmp_path / "bad"
    folder.mkdir()
    path = folder / CHECKPOINT_NAME
    make(good_file, path)
    model = _model()
    before = _values(model.variables)
    ticket = _ticket(checkpoint_dir=folder)  # No seed: none taken either.
    seed = ticket.seed
    with pytest.raises(ValueError, match=_refusal(path, reason)):
        _fit(model, ticket, digits)
    for value, after in zip(before, _values(model.variables), strict=True):
        np.testing.assert_array_equal(value, after)
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 0
    assert ticket.seed == seed and ticket.results == [] and ticket.epochs_done == 0
    assert path.exists()  # Left for the user to look at or delete.


@pytest.mark.parametrize("kind", BAD_FILES)
def test_load_state_refuses_a_bad_file_and_changes_nothing(kind, good_file, tmp_path):
    make, reason = BAD_FILES[kind]
    path = tmp_path / "bad.npz"
    make(good_file, path)
    ticket = _ticket()
    ticket.load_state(good_file)
    seed, results = ticket.seed, copy.deepcopy(ticket.results)
    run = ticket._run
    with pytest.raises(ValueError, match=_refusal(path, reason)):
        ticket.load_state(path)
    assert ticket.seed == seed and ticket.results == results
    assert ticket._run is run and ticket.epochs_done == 2
    fresh = _ticket()  # No state, no seed: still none taken.
    fresh_seed = fresh.seed
    with pytest.raises(ValueError, match=_refusal(path, reason)):
        fresh.load_state(path)
    assert fresh.seed == fresh_seed and fresh.results == [] and fresh.epochs_done == 0


def test_the_good_file_loads(good_file):
    ticket = _ticket()  # Takes the saved seed.
    live = ticket.load_state(good_file)
    assert ticket.seed == 1 and ticket.epochs_done == 2
    assert [r["round"] for r in ticket.results] == [0, 1]
    assert len(live["model"]) == 6 and len(live["optimizer"]) > 2


def test_write_and_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    masks = {"a/kernel": np.ones((3, 2), np.float32), "b/kernel": np.ones(4)}
    run = RunState(
        results=[{"round": 0, "best": {"loss": 0.5}}],
        history=[({"loss": 0.25}, 7)],
        epochs_done=3,
        round_start_step=11,
        initial_kept={"a/kernel": 6, "b/kernel": 4},
        monitor_used="loss",
        summaries_step=42,
        snapshot={"model": [rng.normal(size=(3, 2))], "optimizer": [np.int64(5)]},
        early_bird_masks=[np.array([True, False])],
        dense={
            "weights": {k: rng.normal(size=m.shape) for k, m in masks.items()},
            "masks": masks,
        },
        round_masks=[np.ones((3, 2), bool), np.array([True, False, True, True])],
    )
    live = {"model": [np.zeros(2)], "optimizer": [np.ones(1), np.zeros(3)]}
    path = tmp_path / "state.npz"
    checkpoint.write_state(path, {"rounds": 3}, run, live)
    config, read, read_live = checkpoint.read_state(path)
    assert config == {"rounds": 3}
    for name in (
        "results",
        "history",
        "epochs_done",
        "round_start_step",
        "initial_kept",
        "monitor_used",
        "summaries_step",
    ):
        assert getattr(read, name) == getattr(run, name), name
    for part in ("model", "optimizer"):
        for got, want in zip(read.snapshot[part], run.snapshot[part], strict=True):
            np.testing.assert_array_equal(got, want)
        for got, want in zip(read_live[part], live[part], strict=True):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(read.early_bird_masks[0], [True, False])
    for got, want in zip(read.round_masks, run.round_masks, strict=True):
        np.testing.assert_array_equal(got, want)
    for part in ("weights", "masks"):
        assert list(read.dense[part]) == list(run.dense[part])
        for key, value in run.dense[part].items():
            np.testing.assert_array_equal(read.dense[part][key], value)
    # Without the optional parts, they come back empty.
    checkpoint.write_state(path, {}, RunState(initial_kept={}, monitor_used="x"))
    _, bare, no_live = checkpoint.read_state(path)
    assert bare.snapshot is None and bare.dense is None and no_live is None


def test_checkpoint_dir_accepts_a_folder_or_a_backup_and_restore(tmp_path):
    assert checkpoint.checkpoint_folder(None) == (None, False)
    assert checkpoint.checkpoint_folder(tmp_path) == (str(tmp_path), False)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "b"))
    assert checkpoint.checkpoint_folder(backup) == (str(tmp_path / "b"), True)
    with pytest.raises(TypeError, match="checkpoint_dir=3"):
        lth.LotteryTicket(2, 1, checkpoint_dir=3)
    ticket = lth.LotteryTicket(2, 1, checkpoint_dir=backup)
    assert ticket.checkpoint_dir == str(tmp_path / "b")
    clone = copy.deepcopy(ticket)  # Holds no BackupAndRestore to copy.
    assert clone.checkpoint_dir == ticket.checkpoint_dir


@pytest.mark.parametrize(
    "epoch, done, beside_backup, match",
    [
        (1, 1, False, None),
        (3, 0, False, r"epoch 3.*initial_epoch=0.*checkpoint_dir=<the Backup"),
        (2, 3, True, "put the BackupAndRestore before the LotteryTicket"),
        (3, 0, True, "has not reached it .*Delete that folder"),
    ],
)
def test_a_start_at_another_epoch_says_how_to_resume(epoch, done, beside_backup, match):
    check = lambda: checkpoint.check_start_epoch(  # noqa: E731
        epoch, done, beside_backup=beside_backup, folder="ckpt"
    )
    if match is None:
        check()
    else:
        with pytest.raises(ValueError, match=match):
            check()


# ------------------------------------------ save_state / load_state by hand


def test_saved_mid_run_loads_and_continues(digits, tmp_path):
    x, y, xv, yv = digits

    def fit(model, ticket, callbacks=(), initial_epoch=0):
        model.fit(
            x,
            y,
            validation_data=(xv, yv),
            batch_size=BATCH,
            epochs=ticket.total_epochs,
            initial_epoch=initial_epoch,
            callbacks=[ticket, *callbacks],
            shuffle=False,
            verbose=0,
        )

    class SaveAndStop(keras.callbacks.Callback):
        def __init__(self, ticket, at_epoch):
            super().__init__()
            self.ticket, self.at_epoch = ticket, at_epoch

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == self.at_epoch:
                self.model.save(tmp_path / "mid.keras")
                self.ticket.save_state(tmp_path / "mid_state.npz")
                self.model.stop_training = True

    settings = dict(rounds=3, epochs_per_round=2, rewind="epoch:1", verbose=0)
    keras.utils.set_random_seed(5)
    reference_model = compiled(lth.mask_model(build_model()))
    initial_weights = reference_model.get_weights()
    reference = lth.LotteryTicket(**settings, seed=11)
    fit(reference_model, reference)

    keras.utils.set_random_seed(5)
    model = compiled(lth.mask_model(build_model()))
    model.set_weights(initial_weights)
    first = lth.LotteryTicket(**settings, seed=11)
    fit(model, first, [SaveAndStop(first, at_epoch=3)])  # Mid round 1.
    assert len(first.results) == 1

    loaded = keras.models.load_model(tmp_path / "mid.keras")  # No custom_objects.
    resumed = lth.LotteryTicket(**settings, seed=11)
    resumed.load_state(tmp_path / "mid_state.npz")
    assert resumed.epochs_done == 3
    fit(loaded, resumed, initial_epoch=resumed.epochs_done)

    assert [r["round"] for r in resumed.results] == [0, 1, 2]
    for key, mask in lth.get_masks(reference_model).items():
        np.testing.assert_array_equal(lth.get_masks(loaded)[key], mask)
    for ref, res in zip(reference.results, resumed.results):
        assert res["weights_remaining"] == ref["weights_remaining"]
        assert res["best"]["val_loss"] == pytest.approx(
            ref["best"]["val_loss"], rel=1e-4
        )


def test_resuming_needs_the_matching_initial_epoch(digits, tmp_path):
    model, ticket, _ = run_imp(digits, rounds=2, epochs=1)
    ticket.save_state(tmp_path / "state.npz")
    again = lth.LotteryTicket(2, 1, verbose=0, seed=ticket.seed)
    again.load_state(tmp_path / "state.npz")
    x, y = digits[:2]
    with pytest.raises(ValueError, match="initial_epoch=2"):
        model.fit(x, y, epochs=2, callbacks=[again], verbose=0)


def test_state_with_other_settings_is_refused(digits, tmp_path):
    _, ticket, _ = run_imp(digits, rounds=2, epochs=1)
    ticket.save_state(tmp_path / "state.npz")
    other = lth.LotteryTicket(2, 1, prune_rate=0.5, seed=ticket.seed)
    with pytest.raises(ValueError, match="prune_rate"):
        other.load_state(tmp_path / "state.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a state")
    with pytest.raises(ValueError, match="junk.npz"):
        other.load_state(tmp_path / "junk.npz")


def test_round_masks_that_do_not_match_the_finished_rounds_are_refused(tmp_path):
    run = RunState(
        results=[{"round": 0}, {"round": 1}],
        initial_kept={"a/kernel": 6},
        monitor_used="loss",
        round_masks=[np.ones((3, 2), bool)],  # One round's, for two rounds.
    )
    path = tmp_path / "state.npz"
    checkpoint.write_state(path, {"rounds": 3}, run)
    with pytest.raises(ValueError, match=r"1 round_masks arrays for 2 finished"):
        checkpoint.read_state(path)
