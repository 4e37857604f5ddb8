"""The rewind point of IMP: where surviving weights go back to after pruning.

`Rewind.parse` is the one reader of a rewind spelling; `LotteryTicket`, the
tuner and the CLI all go through it, so they accept the same values.

Spellings (as in `LotteryTicket(rewind=...)`):

* `"init"`: the weights at the start of training (Frankle & Carbin, 2019);
* `k` (an int, or its digits as text): after `k` optimizer steps of round 0
  (late rewinding, Frankle et al. 2020);
* `"epoch:K"`: after `K` epochs of round 0;
* `"reinit_each_round"`: survivors drawn afresh from each layer's
  initializer at every round. This is its own IMP trajectory (each round
  prunes the re-initialised network's trained weights), *not* the paper's
  random-reinit control, which keeps the ticket's mask: for that, branch
  off a level with `keras_lth.controls.reinit(model, ticket.masks_at(r))`.
  The old spelling `"reinit"` is refused, so that no run keeps its old
  meaning by accident;
* `"lr"`: learning-rate rewinding (Renda et al. 2020): weights keep their
  trained values, only the optimizer goes back to the start of training;
* `"none"`: fine-tuning: nothing is reset.
"""

import dataclasses
import re

from keras_lth._checks import is_int

__all__ = ["KINDS", "Rewind"]

#: The kinds of rewind point, as `Rewind.kind` holds them.
KINDS = ("init", "step", "epoch", "reinit_each_round", "lr", "none")

_NAMED = ("init", "reinit_each_round", "lr", "none")

#: What `rewind="reinit"` said before 0.3, and what to write now.
_RENAMED = {
    "reinit": (
        "rewind='reinit' was renamed rewind='reinit_each_round': it re-draws "
        "the survivors at every round, so its masks drift away from the "
        "ticket's and it is not the paper's random-reinit control. For the "
        "control, train keras_lth.controls.reinit(model, "
        "ticket.masks_at(round), seed=...) as a branch of the level; for the "
        "old behaviour, pass rewind='reinit_each_round'"
    )
}


@dataclasses.dataclass(frozen=True)
class Rewind:
    """A parsed rewind point.

    Attributes:
        kind: One of `KINDS`.
        at: The step (`kind="step"`) or epoch (`kind="epoch"`) of round 0;
            `0` for the other kinds.

    Example:

    >>> Rewind.parse("epoch:2")
    Rewind(kind='epoch', at=2)
    >>> Rewind.parse("100").value
    100
    >>> str(Rewind.parse(100))
    '100'
    """

    kind: str
    at: int = 0

    @classmethod
    def parse(cls, value):
        """Reads a rewind spelling (see the module docstring), or a `Rewind`.

        Raises:
            ValueError: If `value` is not a rewind spelling.
        """
        if isinstance(value, Rewind):
            return value
        if isinstance(value, str) and value in _RENAMED:
            raise ValueError(f"{_RENAMED[value]}. Received: rewind={value!r}")
        if value in _NAMED:
            return cls(value)
        if is_int(value):
            if value < 0:
                raise ValueError(
                    f"Expected a rewind step >= 0. Received: rewind={value}"
                )
            return cls("step", int(value))
        if isinstance(value, str):
            if re.fullmatch(r"\d+", value):
                return cls("step", int(value))
            match = re.fullmatch(r"epoch:(\d+)", value)
            if match:
                return cls("epoch", int(match.group(1)))
        raise ValueError(
            "Expected `rewind` to be 'init', 'reinit_each_round', an int number of "
            f"optimizer steps, 'epoch:K', 'lr' or 'none'. Received: rewind={value!r}"
        )

    @property
    def value(self):
        """The canonical spelling: an int for a step, else a string."""
        if self.kind == "step":
            return self.at
        if self.kind == "epoch":
            return f"epoch:{self.at}"
        return self.kind

    @property
    def has_point(self):
        """Whether weights go back to a saved point (all kinds but lr, none)."""
        return self.kind not in ("lr", "none")

    @property
    def restores_optimizer(self):
        """Whether rewinding writes the optimizer's state (all but none)."""
        return self.kind != "none"

    def __str__(self):
        return str(self.value)
