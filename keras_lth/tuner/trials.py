"""What each trial of a ticket search keeps on disk, and how it resumes.

keras-tuner keeps each trial in `<directory>/<project_name>/trial_<id>/`:
`trial.json` and `checkpoint.weights.h5`. The checkpoint holds the final
ticket (the last round's trained masked model, masks included): the
`ticket_*` objective is never in the epoch logs, so keras-tuner saves the
weights at every epoch end and the last save wins.

`TicketHyperModel` adds the trial's IMP files in `TRIAL_SUBDIR`
(`lottery_ticket/`) of the trial folder: `results.json` and `results.csv`
(every round's row, read back with `load_trial_results`), `HP_FILE` (the
trial's hyperparameter values) and, while the trial runs, the IMP checkpoint
of `LotteryTicket(checkpoint_dir=...)` (the model, the optimizer and the
rewind point, rewritten at every epoch end, removed when the trial ends).
With `executions_per_trial > 1`, each execution has its own
`execution<k>/` sub-folder.

A tuner created again on the same directory with `overwrite=False`
(keras-tuner's default) reloads its oracle and runs only the trials still to
do; an interrupted trial runs again and its `LotteryTicket` continues after
the last finished epoch. keras-tuner writes its tuner file when a trial ends,
so a search stopped during its very first trial starts afresh, and reuses
that trial's id: `claim_folder` then drops the checkpoint left there for
other hyperparameter values, with a warning.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import TYPE_CHECKING

from keras_lth.callbacks.lottery_ticket import CHECKPOINT_NAME
from keras_lth.results import load_results
from keras_lth.saving import atomic_write_text

if TYPE_CHECKING:
    import keras_tuner

__all__ = [
    "HP_FILE",
    "TRIAL_SUBDIR",
    "claim_folder",
    "find_trial",
    "imp_folder",
    "load_trial_results",
    "remove_checkpoint",
]

#: keras-tuner trial sub-folder where each trial's IMP files go.
TRIAL_SUBDIR = "lottery_ticket"

#: File beside the IMP checkpoint naming the trial's hyperparameter values.
HP_FILE = "hyperparameters.json"


def imp_folder(trial_dir, execution=None):
    """A trial's IMP folder: `<trial_dir>/lottery_ticket[/execution<k>]`."""
    parts = [TRIAL_SUBDIR] + ([] if execution is None else [f"execution{execution}"])
    return os.path.join(trial_dir, *parts)


def load_trial_results(
    tuner: keras_tuner.Tuner, trial_id: str, execution: int | None = None
) -> list[dict]:
    """The `LotteryTicket.results` rows a trial saved in its folder.

    Args:
        tuner: The tuner.
        trial_id: The trial's id (`trial.trial_id`).
        execution: With `executions_per_trial > 1`, which execution.

    Returns:
        The rows, as `keras_lth.load_results` reads them.

    Raises:
        FileNotFoundError: If the trial saved no results there.
    """
    path = os.path.join(
        imp_folder(tuner.get_trial_dir(trial_id), execution), "results.json"
    )
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No IMP results for trial {trial_id} at '{path}': the trial did "
            "not finish, or ran several executions (pass `execution`)."
        )
    return load_results(path)


def find_trial(callbacks):
    """The keras-tuner trial and tuner of this `fit`, or `(None, None)`.

    `Tuner.run_trial` adds a callback holding both (`TunerCallback`).
    """
    for callback in callbacks:
        trial = getattr(callback, "trial", None)
        tuner = getattr(callback, "tuner", None)
        if trial is not None and hasattr(tuner, "get_trial_dir"):
            return trial, tuner
    return None, None


def claim_folder(folder, values):
    """Records `values` in `folder`, dropping a checkpoint saved for others.

    keras-tuner reuses a trial id when a search stopped before saving its
    tuner (during its first trial) starts again: the folder may then hold the
    checkpoint of another configuration, which must not be resumed.
    """
    path = os.path.join(folder, HP_FILE)
    state = os.path.join(folder, CHECKPOINT_NAME)
    values = json.loads(json.dumps(values))
    saved = None
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    if os.path.exists(state) and saved != values:
        warnings.warn(
            f"TicketHyperModel: ignoring the IMP checkpoint '{state}', saved for "
            f"other hyperparameters ({saved}); this trial has {values}.",
            stacklevel=3,
        )
        os.remove(state)
    atomic_write_text(path, json.dumps(values, indent=2) + "\n")


def remove_checkpoint(folder):
    """Removes the IMP checkpoint of a finished trial, if there is one."""
    state = os.path.join(folder, CHECKPOINT_NAME)
    if os.path.exists(state):
        os.remove(state)
