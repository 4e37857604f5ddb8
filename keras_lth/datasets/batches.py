"""`ShuffledBatches`: validate every N steps with a plain `fit`.

Keras validates at every epoch end, so on a large dataset an early-stopping
point is only known to the nearest epoch (917 steps for MNIST's 55,000
images in batches of 60). Frankle & Carbin check every 100 iterations. The
Keras way to validate more often is `fit(..., steps_per_epoch=N)` over a
stream that does not restart at every epoch; `ShuffledBatches` is that
stream for in-memory arrays, on every backend:

```python
batches = keras_lth.datasets.ShuffledBatches(x, y, batch_size=60, seed=0)
ticket = keras_lth.LotteryTicket(rounds=5, epochs_per_round=100)  # 100 x 200
model.fit(batches, steps_per_epoch=200, epochs=ticket.total_epochs,
          validation_data=(x_val, y_val), callbacks=[ticket])
```

Each "epoch" is then 200 steps, and `results[r]["best_step"]` is the
early-stopping iteration to the nearest 200. The stream reshuffles at every
pass over the data, like `fit(x, y, shuffle=True)`, and batch `i` depends
only on `(seed, start_step + i)`, so a resumed `fit` continues the stream
exactly when it is built with `start_step=steps_done`.
"""

import math

import keras
import numpy as np

from keras_lth._checks import check_count

__all__ = ["ShuffledBatches"]


class ShuffledBatches(keras.utils.PyDataset):
    """An endless stream of shuffled `(x, y)` batches for `fit`.

    Pass it with `steps_per_epoch=N` to make every epoch N steps long (see
    the module docstring). Each pass over the data is a new permutation
    drawn from `(seed, pass)`; the last batch of a pass is smaller when the
    batch size does not divide the number of examples, as with arrays.

    Args:
        x: Array of inputs, or a tuple/list/dict of arrays with one length.
        y: Array of targets, the same length.
        batch_size: Examples per batch.
        seed: Seed of the permutations. Defaults to 0.
        start_step: The global step the stream starts at (to resume).
    """

    def __init__(self, x, y, *, batch_size, seed=0, start_step=0):
        super().__init__()
        lengths = {len(a) for a in keras.tree.flatten(x)} | {len(y)}
        if len(lengths) != 1:
            raise ValueError(
                "Expected `x` and `y` with one number of examples. Received "
                f"lengths {sorted(lengths)}"
            )
        self.x, self.y = x, y
        self.num_examples = lengths.pop()
        if self.num_examples == 0:
            raise ValueError("Expected at least one example. Received: none")
        self.batch_size = check_count(batch_size, "batch_size")
        self.seed = check_count(seed, "seed", minimum=0)
        self.start_step = check_count(start_step, "start_step", minimum=0)
        self.batches_per_pass = math.ceil(self.num_examples / self.batch_size)
        self._pass, self._order = None, None

    @property
    def num_batches(self):
        return None  # Endless: `fit` needs `steps_per_epoch`.

    def __getitem__(self, index):
        step = self.start_step + index
        data_pass, batch = divmod(step, self.batches_per_pass)
        if data_pass != self._pass:
            rng = np.random.default_rng([self.seed, data_pass])
            self._order = rng.permutation(self.num_examples)
            self._pass = data_pass
        rows = self._order[batch * self.batch_size : (batch + 1) * self.batch_size]
        take = lambda a: np.asarray(a)[rows]  # noqa: E731
        return keras.tree.map_structure(take, self.x), take(self.y)
