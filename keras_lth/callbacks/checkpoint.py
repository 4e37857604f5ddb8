"""The run state of `LotteryTicket` and its file: one `.npz` per IMP run.

`RunState` is where a run stands (results, the current round's epoch logs,
the rewind point, ...). `LotteryTicket(checkpoint_dir=...)` writes it, with
the live model and optimizer, to `CHECKPOINT_NAME` in that folder at every
epoch end; `LotteryTicket.save_state` and `load_state` use the same format.
The file is an uncompressed NumPy `.npz` archive holding:

* `meta`: a JSON string with the format's name and version, how many arrays
  each part holds, the ticket's settings, and the JSON fields of `RunState`;
* `<part>_<i>`: the `i`-th array of each part in `PARTS`: the rewind point
  (`model`: every model variable but the masks, `optimizer`), the early-bird
  window, one-shot's dense weights and masks, in a checkpoint the live model
  (masks included) and optimizer, and the masks each finished round trained
  with (`round_masks`, bool, one per prunable tensor and round).

`write_state` writes the file atomically (`keras_lth.saving.atomic_write`): a
reader sees the previous file or the new one, never half of one.
`read_state` reads every array and checks the whole file before it returns,
so a torn, truncated, empty or foreign file, one of another version, or one
missing an entry is refused with a `ValueError` naming it, and nothing is
half-read.

Example:

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), CHECKPOINT_NAME)
>>> run = RunState(initial_kept={"dense/kernel": 4}, monitor_used="loss")
>>> write_state(path, {"rounds": 3}, run)
>>> config, run, live = read_state(path)
>>> config, run.initial_kept, live
({'rounds': 3}, {'dense/kernel': 4}, None)
"""

import dataclasses
import json
import os
import zipfile
import zlib

import keras
import numpy as np

from keras_lth.callbacks.rewind_state import snapshot_shapes
from keras_lth.masking import prunable_tensors
from keras_lth.saving import atomic_write

__all__ = [
    "CHECKPOINT_NAME",
    "FORMAT",
    "PARTS",
    "VERSION",
    "RunState",
    "check_fits",
    "check_settings",
    "check_start_epoch",
    "checkpoint_folder",
    "read_state",
    "write_state",
]

#: The file `LotteryTicket(checkpoint_dir=...)` keeps in its folder.
CHECKPOINT_NAME = "lottery_ticket_state.npz"

#: What `meta["format"]` holds in a run-state file.
FORMAT = "keras_lth.LotteryTicket"

#: The version of the format. Version 1 (before the format had a name) did
#: not record how many arrays each part holds, so an array missing from it
#: could go unnoticed; it is refused.
VERSION = 2

#: The lists of arrays a file holds, each possibly empty.
PARTS = (
    "model",
    "optimizer",
    "early_bird",
    "dense_weights",
    "dense_masks",
    "live_model",
    "live_optimizer",
    "round_masks",
)

# The JSON fields of `RunState` in `meta`, with their JSON types.
_FIELDS = {
    "results": list,
    "history": list,
    "epochs_done": int,
    "round_start_step": int,
    "initial_kept": dict,
    "monitor_used": str,
    "summaries_step": int,
    "best_test": dict,
}

# Dict fields newer than the first version 2 files; a file without one means {}.
_OPTIONAL_FIELDS = ("best_test",)

# What reading a damaged or foreign file can raise: `np.load` and `zipfile`
# on a torn or truncated archive, the `.npy` reader on a cut array, `zlib` on
# a compressed foreign one, `json` on a damaged `meta`.
_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)


@dataclasses.dataclass
class RunState:
    """Where an IMP run stands: what `LotteryTicket` needs to continue it.

    Attributes:
        results: One dict per finished round (`LotteryTicket.results`).
        history: `(logs, steps)` per epoch of the current round: the epoch's
            scalar logs and the optimizer steps taken in the round so far.
        epochs_done: Epochs finished.
        round_start_step: The optimizer's step when the round began.
        initial_kept: `{tensor key: weights (or blocks, or live units with
            granularity="unit") kept at the start}`, or None before training.
        monitor_used: The monitored metric (`"loss"` if the chosen one is
            never logged).
        summaries_step: The TensorBoard step of `SparsitySummaries`.
        snapshot: The rewind point, `{"model": [...], "optimizer": [...]}`
            (see `keras_lth.callbacks.rewind_state`), or None.
        early_bird_masks: The flat next-round masks of the last epochs.
        dense: One-shot: `{"weights": {key: array}, "masks": {key: array}}`
            of round 0's trained model, or None.
        round_masks: The masks each finished round trained with, flat: the
            prunable tensors of round 0 in `initial_kept`'s order, then of
            round 1, ... (bool arrays).
        best_test: The test metrics of the current round's best epoch so
            far (`LotteryTicket(test_data=...)`), or `{}`.
    """

    results: list = dataclasses.field(default_factory=list)
    history: list = dataclasses.field(default_factory=list)
    epochs_done: int = 0
    round_start_step: int = 0
    initial_kept: dict | None = None
    monitor_used: str | None = None
    summaries_step: int = 0
    snapshot: dict | None = None
    early_bird_masks: list = dataclasses.field(default_factory=list)
    dense: dict | None = None
    round_masks: list = dataclasses.field(default_factory=list)
    best_test: dict = dataclasses.field(default_factory=dict)


def write_state(path, config, run, live=None):
    """Writes a run state to `path`, atomically.

    Args:
        path: The file to write, usually `<folder>/CHECKPOINT_NAME`.
        config: The ticket's settings, a JSON-serialisable dict.
        run: A `RunState` whose `initial_kept` is set.
        live: Optional `{"model": [arrays], "optimizer": [arrays]}`: every
            model variable (masks included) and optimizer variable.
    """
    meta = {name: getattr(run, name) for name in _FIELDS}
    meta["history"] = [[logs, steps] for logs, steps in run.history]
    parts = {"early_bird": run.early_bird_masks, "round_masks": run.round_masks}
    if run.snapshot is not None:
        parts.update(model=run.snapshot["model"], optimizer=run.snapshot["optimizer"])
    if run.dense is not None:
        parts["dense_weights"] = list(run.dense["weights"].values())
        parts["dense_masks"] = list(run.dense["masks"].values())
    if live is not None:
        parts.update(live_model=live["model"], live_optimizer=live["optimizer"])
    counts = {part: len(parts.get(part, ())) for part in PARTS}
    header = {"format": FORMAT, "version": VERSION, "counts": counts}
    arrays = {"meta": np.array(json.dumps({**header, "config": config, **meta}))}
    for part in PARTS:
        for i, value in enumerate(parts.get(part, ())):
            arrays[f"{part}_{i}"] = np.asarray(value)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def read_state(path):
    """Reads and checks a run state written by `write_state`.

    Returns:
        `(config, run, live)`: the settings dict, the `RunState`, and the
        live `{"model": [...], "optimizer": [...]}` or None.

    Raises:
        ValueError: If `path` cannot be read, or is not a complete run state
            of this version. The message names the file and what to do.
    """
    path = os.fspath(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except _READ_ERRORS as e:
        raise _refused(path, f"it cannot be read ({type(e).__name__}: {e})") from e
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise _refused(path, "it holds a single array, not an .npz archive")
    with loaded as data:
        meta = _read_meta(data, path)
        counts = meta["counts"]
        expected = {f"{p}_{i}" for p in PARTS for i in range(counts[p])}
        found = set(data.files) - {"meta"}
        if found != expected:
            raise _refused(
                path,
                f"it misses the arrays {sorted(expected - found)} and holds "
                f"unexpected ones {sorted(found - expected)}",
            )
        # Every array is read now (a torn one fails here, on its CRC check at
        # the latest), before anything is returned.
        parts = {
            p: [_read_array(data, f"{p}_{i}", path) for i in range(counts[p])]
            for p in PARTS
        }
    _check_consistent(meta, counts, path)
    run = RunState(**{name: meta[name] for name in _FIELDS})
    run.history = [(logs, steps) for logs, steps in meta["history"]]
    run.early_bird_masks = parts["early_bird"]
    run.round_masks = parts["round_masks"]
    if parts["model"]:
        run.snapshot = {"model": parts["model"], "optimizer": parts["optimizer"]}
    if parts["dense_weights"]:
        keys = list(run.initial_kept)
        run.dense = {
            name: dict(zip(keys, parts[f"dense_{name}"], strict=True))
            for name in ("weights", "masks")
        }
    live = None
    if parts["live_model"]:
        live = {"model": parts["live_model"], "optimizer": parts["live_optimizer"]}
    return meta["config"], run, live


def check_fits(path, model, run, live=None, *, needs_live=False):
    """Refuses a run state whose tensors or variables differ from `model`'s.

    Args:
        path: The file the state came from, for the message.
        model: The compiled model, its optimizer built.
        run, live: As `read_state` returns them.
        needs_live: Whether the live model and optimizer must be there (as in
            a checkpoint).

    Raises:
        ValueError: If the state does not fit `model`.
    """
    keys = list(prunable_tensors(model))
    problem = None
    if list(run.initial_kept) != keys:
        problem = (
            f"prunable tensors are {list(run.initial_kept)}, the model's are {keys}"
        )
    else:
        masks = [
            tuple(layer.mask_variable(name).shape)
            for layer, name in prunable_tensors(model).values()
        ]
        expected = snapshot_shapes(model)
        found = {"model": [], "optimizer": []}
        if run.snapshot is not None:
            found = {part: run.snapshot[part] for part in ("model", "optimizer")}
        if run.dense is not None:
            expected.update(dense_weights=masks, dense_masks=masks)
            found.update(
                dense_weights=list(run.dense["weights"].values()),
                dense_masks=list(run.dense["masks"].values()),
            )
        expected["round_masks"] = masks * len(run.results)
        found["round_masks"] = run.round_masks
        if live is not None or needs_live:
            live = live or {"model": [], "optimizer": []}
            expected["live_model"] = [tuple(v.shape) for v in model.variables]
            expected["live_optimizer"] = expected["optimizer"]
            found.update(live_model=live["model"], live_optimizer=live["optimizer"])
        for part, shapes in expected.items():
            saved = [tuple(np.shape(x)) for x in found[part]]
            if saved != shapes and (saved or part.startswith("live")):
                problem = f"{part} arrays have shapes {saved}, the model's {shapes}"
                break
    if problem is not None:
        raise ValueError(
            f"The state in '{path}' does not fit this model: its {problem}. "
            "Use another `checkpoint_dir` for another model."
        )


def checkpoint_folder(checkpoint_dir):
    """Reads `LotteryTicket(checkpoint_dir=...)`: `(folder or None, beside_backup)`.

    A `keras.callbacks.BackupAndRestore` stands for its `backup_dir`, which it
    removes when training ends (the instance itself is not kept).
    """
    beside_backup = isinstance(checkpoint_dir, keras.callbacks.BackupAndRestore)
    if beside_backup:
        checkpoint_dir = checkpoint_dir.backup_dir
    if checkpoint_dir is None:
        return None, False
    if not isinstance(checkpoint_dir, (str, os.PathLike)):
        raise TypeError(
            "Expected `checkpoint_dir` to be a folder (str or os.PathLike), a "
            "keras.callbacks.BackupAndRestore or None. Received: "
            f"checkpoint_dir={checkpoint_dir!r} of type "
            f"{type(checkpoint_dir).__name__}"
        )
    return os.fspath(checkpoint_dir), beside_backup


def check_settings(path, saved, config):
    """Refuses a state saved with other settings than `config`."""
    if saved != config:
        diff = {k: (saved.get(k), v) for k, v in config.items() if saved.get(k) != v}
        raise ValueError(
            f"The state in '{path}' was saved with other settings. Mismatch "
            f"(saved, this callback): {diff}. Use the same settings, or "
            "another `checkpoint_dir` for these ones."
        )


def check_start_epoch(epoch, epochs_done, *, beside_backup, folder):
    """Refuses a `fit` that starts at another epoch than the run reached.

    Args:
        epoch: The epoch `fit` begins with.
        epochs_done: The epochs the run has finished.
        beside_backup: Whether `checkpoint_dir` was a BackupAndRestore.
        folder: The `checkpoint_dir` folder, or None.

    Raises:
        ValueError: If `epoch != epochs_done`, saying how to resume.
    """
    if epoch == epochs_done:
        return
    if not beside_backup:
        hint = (
            f"Pass initial_epoch={epochs_done} to `fit` when resuming with "
            "`load_state` (0 for a new run). If a "
            "keras.callbacks.BackupAndRestore moved the start, pass it to the "
            "ticket too, as checkpoint_dir=<the BackupAndRestore>: the ticket "
            "then keeps its state in the backup's folder and restores it with "
            "the model."
        )
    elif epoch < epochs_done:
        hint = (
            "The keras.callbacks.BackupAndRestore restored an earlier epoch "
            "than the ticket's state (a run stopped between their two saves): "
            "put the BackupAndRestore before the LotteryTicket in `callbacks`, "
            "so that the ticket, restored last, decides where training resumes."
        )
    else:
        hint = (
            "The keras.callbacks.BackupAndRestore restored a later epoch, but "
            f"the ticket's state in '{folder}' has not reached it (or is "
            "missing). Delete that folder to start afresh."
        )
    raise ValueError(
        f"`fit` starts at epoch {epoch}, but this LotteryTicket has finished "
        f"{epochs_done} epochs. {hint}"
    )


def _read_meta(data, path):
    if "meta" not in data.files:
        raise _refused(path, "it has no 'meta' entry, so keras_lth did not write it")
    raw = _read_array(data, "meta", path)
    if raw.ndim != 0 or raw.dtype.kind != "U":
        raise _refused(path, "its 'meta' entry is not a JSON string")
    try:
        meta = json.loads(str(raw))
    except ValueError as e:
        raise _refused(path, f"its 'meta' entry is not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise _refused(path, "its 'meta' entry is not a JSON object")
    version = meta.get("version")
    legacy = version == 1 and "config" in meta  # Written before FORMAT existed.
    if meta.get("format") != FORMAT and not legacy:
        raise _refused(path, f"it is not a {FORMAT} run state")
    if version != VERSION:
        raise _refused(
            path,
            f"it holds state version {version!r}, and this keras_lth reads "
            f"version {VERSION}",
        )
    counts = meta.get("counts")
    if not (
        isinstance(counts, dict)
        and set(counts) == set(PARTS)
        and all(_is_count(n) for n in counts.values())
    ):
        raise _refused(path, f"its 'counts' entry is damaged: {counts!r}")
    for key in _OPTIONAL_FIELDS:
        meta.setdefault(key, {})
    missing = [key for key in ("config", *_FIELDS) if key not in meta]
    if missing:
        raise _refused(path, f"its 'meta' entry lacks {missing}")
    for key, kind in {"config": dict, **_FIELDS}.items():
        value = meta[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _refused(
                path,
                f"its '{key}' entry is a {type(value).__name__}, expected a "
                f"{kind.__name__}",
            )
    return meta


def _read_array(data, key, path):
    try:
        return data[key]
    except _READ_ERRORS as e:
        raise _refused(
            path, f"its '{key}' entry cannot be read ({type(e).__name__}: {e})"
        ) from e


def _check_consistent(meta, counts, path):
    """Checks that the parts and the fields describe one run."""
    for first, second in (("model", "optimizer"), ("live_model", "live_optimizer")):
        if bool(counts[first]) != bool(counts[second]):
            raise _refused(
                path, f"it holds {first} arrays without {second} ones, or back"
            )
    tensors = len(meta["initial_kept"] or {})
    if counts["round_masks"] != tensors * len(meta["results"]):
        raise _refused(
            path,
            f"it holds {counts['round_masks']} round_masks arrays for "
            f"{len(meta['results'])} finished rounds of {tensors} prunable tensors",
        )
    for part in ("dense_weights", "dense_masks"):
        if counts[part] not in (0, tensors):
            raise _refused(
                path,
                f"it holds {counts[part]} {part} arrays for {tensors} prunable tensors",
            )
    if not all(
        isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], dict)
        for entry in meta["history"]
    ):
        raise _refused(path, "its 'history' entry is damaged")
    if not all(isinstance(row, dict) for row in meta["results"]):
        raise _refused(path, "its 'results' entry is damaged")


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _refused(path, reason):
    return ValueError(
        f"Cannot read a LotteryTicket run state from '{path}': {reason}. Delete "
        "the file to start the run afresh, or pass another folder as "
        "`checkpoint_dir` (another file to `load_state`)."
    )
