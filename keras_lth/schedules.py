"""Sparsity schedules for pruning during training (`keras_lth.GradualPruning`).

A schedule is a plain callable `schedule(step) -> (should_prune, sparsity)`:
given the optimizer step (a Python int), it says whether to prune before that
step and to which sparsity (the fraction of each tensor's weights that is
pruned, or of all of them with `strategy="global"` or `"lamp"`). Schedules run
on the host between batches, in plain Python, never inside the compiled
training step.

The two schedules here reproduce tensorflow-model-optimization's
`tfmot.sparsity.keras.PolynomialDecay` and `ConstantSparsity` exactly: the same
arguments, the same pruning steps, the same sparsities (tfmot computes them in
float32, these in float64). tfmot's own schedule objects, or any object with
the same `__call__(step) -> (should_prune, sparsity)` contract, work with
`GradualPruning` too; keras_lth never imports tfmot.

Example:

>>> schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000)
>>> schedule(0)
(True, 0.0)
>>> schedule(50)
(False, 0.11...)
>>> schedule(1000)
(True, 0.8)
"""

import math
import numbers

from keras_lth._checks import check_count
from keras_lth._checks import check_fraction
from keras_lth._checks import is_int

__all__ = ["ConstantSparsity", "PolynomialDecay"]


class _PruningSchedule:
    """Shared step rule, validation and (de)serialization."""

    def _should_prune(self, step):
        """`begin_step <= step <= end_step` (or no end) and on a `frequency` tick."""
        in_range = step >= self.begin_step and (
            self.end_step < 0 or step <= self.end_step
        )
        return in_range and (step - self.begin_step) % self.frequency == 0

    def get_config(self):
        """Returns the constructor arguments, as a flat dict."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        """Creates a schedule from `get_config()`'s output.

        tfmot's nested form, `{"class_name": ..., "config": {...}}`, is read
        too, so a tfmot schedule's config can be carried over as is.
        """
        if "class_name" in config and "config" in config:
            if config["class_name"] != cls.__name__:
                raise ValueError(
                    f"Expected a config of class '{cls.__name__}'. Received "
                    f"class_name={config['class_name']!r}"
                )
            config = config["config"]
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


class PolynomialDecay(_PruningSchedule):
    """Sparsity rising from `initial_sparsity` to `final_sparsity` (Zhu & Gupta 2017).

    At step `t` the sparsity is

        p = clip((t - begin_step) / (end_step - begin_step), 0, 1)
        sparsity(t) = final_sparsity
                      + (initial_sparsity - final_sparsity) * (1 - p) ** power

    and pruning happens when `begin_step <= t <= end_step` and
    `(t - begin_step) % frequency == 0`: tfmot's `PolynomialDecay`, in
    float64. Where tfmot divides by zero (`end_step == begin_step`), the
    sparsity here is `final_sparsity` from `begin_step` on (`p = 1`). With
    `power=3`, the default, it grows fast at first, then levels off.

    Args:
        initial_sparsity: Sparsity at `begin_step`, in `[0, 1)`.
        final_sparsity: Sparsity at `end_step` and after, in `[0, 1)`.
        begin_step: First optimizer step that prunes, `>= 0`.
        end_step: Last optimizer step that prunes, `>= begin_step`.
        power: Exponent of the decay, `> 0`. Defaults to `3`.
        frequency: Prune every `frequency` steps from `begin_step` on, `>= 1`.
            Defaults to `100`.

    Returns (when called with a step):
        `(should_prune, sparsity)`: a `bool` and a `float`.

    Example:

    >>> schedule = PolynomialDecay(0.5, 0.9, begin_step=100, end_step=300,
    ...                            frequency=100)
    >>> for step in (0, 150, 200, 400):
    ...     print(step, *schedule(step))
    0 False 0.5
    150 False 0.73125
    200 True 0.85
    400 False 0.9
    """

    def __init__(
        self,
        initial_sparsity: float,
        final_sparsity: float,
        begin_step: int,
        end_step: int,
        power: float = 3,
        frequency: int = 100,
    ):
        self.initial_sparsity = check_fraction(
            initial_sparsity, "initial_sparsity", interval="[0, 1)"
        )
        self.final_sparsity = check_fraction(
            final_sparsity, "final_sparsity", interval="[0, 1)"
        )
        self.begin_step, self.end_step, self.frequency = _check_steps(
            begin_step, end_step, frequency, allow_no_end=False
        )
        if isinstance(power, bool) or not isinstance(power, numbers.Real):
            raise TypeError(
                f"Expected `power` to be a number. Received: power={power!r} "
                f"of type {type(power).__name__}"
            )
        if not power > 0:
            raise ValueError(f"Expected `power` > 0. Received: power={power!r}")
        self.power = power

    def __call__(self, step: int) -> tuple[bool, float]:
        step = _check_step(step)
        span = self.end_step - self.begin_step
        if span == 0:
            progress = 1.0 if step >= self.begin_step else 0.0
        else:
            progress = min(1.0, max(0.0, (step - self.begin_step) / span))
        sparsity = (
            self.final_sparsity
            + (self.initial_sparsity - self.final_sparsity)
            * (1.0 - progress) ** self.power
        )
        return self._should_prune(step), float(sparsity)

    def get_config(self) -> dict:
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


class ConstantSparsity(_PruningSchedule):
    """One sparsity, applied every `frequency` steps in `[begin_step, end_step]`.

        should_prune(t) = t >= begin_step
                          and (end_step == -1 or t <= end_step)
                          and (t - begin_step) % frequency == 0
        sparsity(t) = target_sparsity

    These are exactly tensorflow-model-optimization's semantics for
    `tfmot.sparsity.keras.ConstantSparsity`. With `keras_lth.GradualPruning`,
    masks never grow back, so after the first pruning step the later ones
    change nothing unless the weights were pruned by something else in
    between; use `end_step=begin_step` to prune once (one-shot pruning in the
    middle of training).

    Args:
        target_sparsity: The sparsity, in `[0, 1)`.
        begin_step: First optimizer step that prunes, `>= 0`.
        end_step: Last optimizer step that prunes, `>= begin_step`, or `-1`
            (the default) to keep pruning until training ends.
        frequency: Prune every `frequency` steps from `begin_step` on, `>= 1`.
            Defaults to `100`.

    Returns (when called with a step):
        `(should_prune, sparsity)`: a `bool` and a `float`.

    Example:

    >>> schedule = ConstantSparsity(0.9, begin_step=500, end_step=500)
    >>> schedule(499), schedule(500), schedule(600)
    ((False, 0.9), (True, 0.9), (False, 0.9))
    """

    def __init__(
        self,
        target_sparsity: float,
        begin_step: int,
        end_step: int = -1,
        frequency: int = 100,
    ):
        self.target_sparsity = check_fraction(
            target_sparsity, "target_sparsity", interval="[0, 1)"
        )
        self.begin_step, self.end_step, self.frequency = _check_steps(
            begin_step, end_step, frequency, allow_no_end=True
        )

    def __call__(self, step: int) -> tuple[bool, float]:
        step = _check_step(step)
        return self._should_prune(step), self.target_sparsity

    def get_config(self) -> dict:
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


def _check_step(step):
    if not is_int(step):
        raise TypeError(
            "Expected the step to be an int (the optimizer's iteration count). "
            f"Received: {step!r} of type {type(step).__name__}"
        )
    return int(step)


def _check_steps(begin_step, end_step, frequency, allow_no_end):
    # Every argument's type first (no lower bound here), then the values.
    for name, value in (
        ("begin_step", begin_step),
        ("end_step", end_step),
        ("frequency", frequency),
    ):
        check_count(value, name, minimum=-math.inf)
    begin_step = check_count(begin_step, "begin_step", minimum=0)
    if end_step == -1 and not allow_no_end:
        raise ValueError(
            "Expected `end_step` >= `begin_step`: this schedule needs an end to "
            f"decay towards. Received: end_step={end_step}"
        )
    if end_step != -1 and end_step < begin_step:
        expected = (
            "-1 (no end) or >= `begin_step`" if allow_no_end else (">= `begin_step`")
        )
        raise ValueError(
            f"Expected `end_step` to be {expected}. Received: "
            f"begin_step={begin_step}, end_step={end_step}"
        )
    frequency = check_count(frequency, "frequency")
    return begin_step, int(end_step), frequency
