"""The paper's controls as branches of IMP levels, kept in a run folder.

open_lth's model, in Keras: an IMP run leaves one *level* per round (the
masks that round trained with, `LotteryTicket.masks_at(r)`); a *branch*
trains something else once from a level, here the paper's two controls
(`keras_lth.controls`):

* `"reinit"`: the level's masks with a new random initialisation;
* `"random"`: random masks of the level's per-tensor counts, with `θ0`
  (whole units at random for a structured ticket: its level records the
  ticket's `granularity`, and the draw keeps each tensor's unit count).

`run_branches` trains every missing branch and skips the ones already done,
so a killed run picks up where it stopped. The folder reads as it is:

```
<folder>/levels/round_07_21.1pct/masks.npz        the level's masks
<folder>/levels/round_07_21.1pct/level.json       its round and size
<folder>/branches/reinit/round_07_21.1pct/masks.npz     the branch's masks
<folder>/branches/reinit/round_07_21.1pct/result.json   its results row
```

A branch trains one round with a one-round `LotteryTicket`, so its row is
measured by the same rule as the ticket's rows (the early-stopping epoch,
`best_step`, and `test` when `test_data` is given).
"""

import json
import pathlib

import numpy as np

from keras_lth._checks import check_choice
from keras_lth.saving import atomic_write
from keras_lth.saving import atomic_write_text

__all__ = [
    "CONTROLS",
    "PAPER_LEVELS",
    "branch_seed",
    "draw_branch",
    "level_name",
    "level_rounds",
    "load_masks",
    "read_branches",
    "run_branches",
    "save_level",
    "save_masks",
]

#: The controls a branch can train: name -> its function in `keras_lth.controls`
#: (imported when a branch trains, so that reading a run folder needs no Keras).
CONTROLS = {"reinit": "reinit", "random": "random_prune"}

#: Weights remaining (fractions) where Frankle & Carbin report LeNet-300-100's
#: controls (Figure 4): 51.3%, 21.1%, 7.0%, 3.6% and 1.9%.
PAPER_LEVELS = (0.513, 0.211, 0.070, 0.036, 0.019)

_MASKS, _LEVEL, _RESULT = "masks.npz", "level.json", "result.json"


def level_name(row):
    """The folder name of a level: its round and weights remaining."""
    return f"round_{row['round']:02d}_{100 * row['weights_remaining']:.1f}pct"


def level_rounds(results, levels=PAPER_LEVELS, *, tolerance=0.1):
    """The finished rounds nearest to each of `levels` that the run reached.

    Args:
        results: `LotteryTicket.results`.
        levels: Fractions of weights remaining, each in (0, 1].
        tolerance: How far (relative) a round's fraction may be from a level
            for the level to count as reached.

    Returns:
        The sorted round indices, one per level reached (without repeats).
    """
    rounds = set()
    for level in levels:
        if not (isinstance(level, (int, float)) and 0 < level <= 1):
            raise ValueError(
                "Expected levels as fractions of weights remaining in (0, 1]. "
                f"Received: {level!r}"
            )
        nearest = min(results, key=lambda r: abs(r["weights_remaining"] - level))
        if abs(nearest["weights_remaining"] - level) <= tolerance * level:
            rounds.add(nearest["round"])
    return sorted(rounds)


def save_masks(path, masks):
    """Writes `{tensor key: 0/1 array}` to an `.npz` file, atomically."""
    arrays = {key: np.asarray(mask, dtype=bool) for key, mask in masks.items()}
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def load_masks(path):
    """Reads masks written by `save_masks`, as float32 arrays."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key].astype("float32") for key in data.files}


def save_level(folder, ticket, round_index):
    """Writes round `round_index`'s masks and row under `folder/levels/`.

    The row in `level.json` also records the ticket's `granularity`, with
    which the `"random"` control draws whole units or single weights.

    Returns:
        The level's folder.
    """
    row = ticket.results[round_index]
    level = pathlib.Path(folder) / "levels" / level_name(row)
    level.mkdir(parents=True, exist_ok=True)
    if not (level / _MASKS).exists():
        save_masks(level / _MASKS, ticket.masks_at(round_index))
    if not (level / _LEVEL).exists():
        saved = {**row, "granularity": ticket.granularity}
        atomic_write_text(level / _LEVEL, json.dumps(saved, indent=1) + "\n")
    return level


def run_branches(
    folder, build_model, train, *, controls=("reinit", "random"), seed, log=print
):
    """Trains every control on every saved level of `folder`, skipping done ones.

    Args:
        folder: A run folder with `levels/` (see `save_level`).
        build_model: `build_model()` returns a freshly built, compiled
            masked model (biases and BatchNorm at initialisation).
        train: `train(model, name)` trains `model` once (a plain `fit` with
            a one-round `LotteryTicket`) and returns that ticket's row.
        controls: Names from `CONTROLS`.
        seed: Int seed; each branch draws with `[seed, round]`-derived seeds.
        log: Where progress lines go.

    Returns:
        `read_branches(folder)`.
    """
    from keras_lth.masking import get_masks

    for name in controls:
        check_choice(name, "control", tuple(CONTROLS))
    levels = sorted((pathlib.Path(folder) / "levels").glob("round_*"))
    branches = pathlib.Path(folder) / "branches"
    todo = [
        (name, level)
        for level in levels
        for name in controls
        if not (branches / name / level.name / _RESULT).exists()
    ]
    for i, (name, level) in enumerate(todo, 1):
        row = json.loads((level / _LEVEL).read_text())
        log(f"branch {i}/{len(todo)}: {name} at {level.name}")
        out = branches / name / level.name
        out.mkdir(parents=True, exist_ok=True)
        model = draw_branch(build_model(), level, name, seed=seed)
        save_masks(out / _MASKS, get_masks(model))
        result = dict(train(model, f"{name}/{level.name}"))
        result.update(round=row["round"], control=name, level=level.name)
        atomic_write_text(out / _RESULT, json.dumps(result, indent=1) + "\n")
    return read_branches(folder)


def draw_branch(model, level, control, *, seed):
    """Sets up `model` as control `control` at `level`, as `run_branches` does.

    Args:
        model: A freshly built masked model.
        level: A level's folder (`<folder>/levels/<name>`, see `save_level`).
        control: A name from `CONTROLS`.
        seed: The run's seed; the draw's own is `branch_seed`, so the same
            arguments give the same branch again (to train it longer, say).

    Returns:
        `model`.
    """
    from keras_lth import controls as control_functions

    level = pathlib.Path(level)
    row = json.loads((level / _LEVEL).read_text())
    draw = getattr(control_functions, CONTROLS[control])
    options = {}
    if control == "random":  # Levels saved before `granularity` are by weight.
        options["granularity"] = row.get("granularity", "weight")
    masks = load_masks(level / _MASKS)
    return draw(model, masks, seed=branch_seed(seed, row, control), **options)


def read_branches(folder):
    """`{control: [row, ...]}` of the finished branches, by round."""
    found = {}
    for path in sorted((pathlib.Path(folder) / "branches").glob(f"*/*/{_RESULT}")):
        row = json.loads(path.read_text())
        found.setdefault(path.parent.parent.name, []).append(row)
    for rows in found.values():
        rows.sort(key=lambda r: r["round"])
    return found


def branch_seed(seed, row, name):
    """The seed `run_branches` gives control `name` at the level of `row`.

    One int per branch, distinct across rounds and controls, so a branch can
    be drawn again exactly (to train it longer, say).
    """
    which = list(CONTROLS).index(name)
    return int(np.random.default_rng([seed, row["round"], which]).integers(2**31))
