"""`WarmupStepDecay`: the learning-rate schedule of the paper's SGD networks."""

from collections.abc import Sequence

import keras
from keras import ops

__all__ = ["WarmupStepDecay"]


@keras.saving.register_keras_serializable(package="keras_lth")
class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup, then a step decay at fixed steps.

    The schedule of the paper's VGG-19 and Resnet-18 runs (Section 4 and
    Appendix I), for a step `t` counted from 0:

    ```
    lr(t) = initial_learning_rate
            * decay ** (number of boundaries b with t >= b)
            * min(1, t / warmup_steps)        # 1 when warmup_steps == 0
    ```

    `LotteryTicket` restores the optimizer's iteration count at each rewind,
    so every round runs the whole schedule again.

    Args:
        initial_learning_rate: Learning rate after warmup, before any decay.
        boundaries: Increasing optimizer steps at which the rate is
            multiplied by `decay`.
        decay: Factor applied at each boundary. Defaults to 0.1.
        warmup_steps: Steps of linear warmup from 0. Defaults to 0 (none).

    Example:

    >>> schedule = WarmupStepDecay(0.1, boundaries=[20_000, 25_000])
    >>> float(schedule(25_000))  # 0.1 * 0.1 ** 2
    0.001...
    """

    def __init__(
        self,
        initial_learning_rate: float,
        boundaries: Sequence[int] = (),
        decay: float = 0.1,
        warmup_steps: int = 0,
    ):
        super().__init__()
        boundaries = [int(b) for b in boundaries]
        if any(b < 0 for b in boundaries) or boundaries != sorted(boundaries):
            raise ValueError(
                "Expected `boundaries` to be increasing steps >= 0. "
                f"Received: boundaries={boundaries}"
            )
        if warmup_steps < 0:
            raise ValueError(
                f"Expected `warmup_steps` >= 0. Received: warmup_steps={warmup_steps}"
            )
        self.initial_learning_rate = float(initial_learning_rate)
        self.boundaries = boundaries
        self.decay = float(decay)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr = ops.cast(self.initial_learning_rate, "float32")
        for boundary in self.boundaries:
            lr = ops.where(step >= boundary, lr * self.decay, lr)
        if self.warmup_steps:
            lr = lr * ops.minimum(1.0, step / self.warmup_steps)
        return lr

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "boundaries": list(self.boundaries),
            "decay": self.decay,
            "warmup_steps": self.warmup_steps,
        }
