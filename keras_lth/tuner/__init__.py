"""Search for the best lottery ticket with keras-tuner.

`TicketHyperModel` is a `keras_tuner.HyperModel` whose every trial runs a
whole `keras_lth.LotteryTicket` search (iterative magnitude pruning, IMP) in
one `model.fit`, and scores the trial by the best ticket at or below a target
fraction of weights (`score_results`). It works with keras-tuner's
`RandomSearch`, `BayesianOptimization` and `Hyperband`; `make_tuner` builds
one with the right objective, and `best_ticket` returns the winning ticket.

The modules: `hypermodel` (the trials), `objective` (the score and the rounds
a trial needs), `search` (the tuner and its best ticket) and `trials` (the
files each trial keeps, and resuming).

This package needs keras-tuner (`pip install "keras-lth[tuner]"`) and is not
imported by `import keras_lth`.

Example:

```python
from keras_lth import tuner as lth_tuner

def build(hp):  # The user's model, compiled; made prunable if it is not.
    model = keras.Sequential([keras.Input((64,)),
                              keras.layers.Dense(hp.Choice("units", [100, 300]),
                                                 activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(hp.Choice("lr", [1e-3, 3e-3])),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model

hypermodel = lth_tuner.TicketHyperModel(
    build, target_weights_remaining=0.2, prune_rate=[0.2, 0.4],
    rewind=["init", "epoch:1"], epochs_per_round=2, log_dir="logs/tune")
tuner = lth_tuner.make_tuner("bayesian", hypermodel, max_trials=10,
                             directory="runs", project_name="tune")
tuner.search(x, y, validation_data=(xv, yv), batch_size=60)
ticket = lth_tuner.best_ticket(tuner)  # Masked: the best trial's final ticket.
```
"""

try:
    import keras_tuner  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "keras_lth.tuner needs keras-tuner, which is not installed. Install "
        'it with the `tuner` extra: pip install "keras-lth[tuner]" (or pip '
        'install "keras-tuner>=1.4").'
    ) from err

from keras_lth.tuner.hypermodel import HP_NAMES
from keras_lth.tuner.hypermodel import TicketHyperModel
from keras_lth.tuner.objective import rounds_for_target
from keras_lth.tuner.objective import score_results
from keras_lth.tuner.search import best_ticket
from keras_lth.tuner.search import make_tuner
from keras_lth.tuner.trials import HP_FILE
from keras_lth.tuner.trials import TRIAL_SUBDIR
from keras_lth.tuner.trials import load_trial_results

__all__ = [
    "HP_FILE",
    "HP_NAMES",
    "TRIAL_SUBDIR",
    "TicketHyperModel",
    "best_ticket",
    "load_trial_results",
    "make_tuner",
    "rounds_for_target",
    "score_results",
]
