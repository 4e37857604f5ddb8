"""IMP's round logic for a training loop of your own: `IMPRounds`.

`LotteryTicket` runs IMP inside `model.fit`. `IMPRounds` is the same round
logic without `fit`: create it before training (it keeps the weights to
rewind to), train a round your way, then call `end_round(metrics)`, which
records the round, prunes the smallest surviving weights at exact
cumulative counts (`keras_lth.callbacks.imp_step.next_masks`, the rule
`LotteryTicket` uses) and rewinds the weights and the optimizer.
"""

import copy

import keras
import numpy as np

from keras_lth import pruning
from keras_lth._checks import check_fraction
from keras_lth.callbacks import imp_step
from keras_lth.masking import get_masks
from keras_lth.masking import get_prunable_weights
from keras_lth.masking import require_prunable_tensors
from keras_lth.masking import restore_weights
from keras_lth.masking import set_masks
from keras_lth.optimizer_slots import check_optimizer

__all__ = ["IMPRounds"]


class IMPRounds:
    """Iterative magnitude pruning, one call per round, in any training loop.

    Created before training, it keeps the weights to rewind to (θ0) and the
    optimizer's state. Train a round with your own loop, then call
    `end_round`: it records the round in `results`, prunes, rewinds, and
    returns the record. The masked layers keep pruned weights at zero on
    every step, and `end_round` zeroes the pruned entries' optimizer state.

    Args:
        model: A built model with masked layers (`keras_lth.mask_model`).
        prune_rate: Fraction of the remaining weights pruned per round.
        strategy: One of `keras_lth.pruning.STRATEGIES` (`"layerwise"`,
            `"global"`, `"lamp"`, ...).
        rewind: `"init"` to rewind the survivors to their values now (θ0)
            and the optimizer to its state now, or `"none"` to fine-tune
            them as they are.
        optimizer: Your loop's optimizer, if not `model.optimizer`: a Keras
            optimizer or a `torch.optim.Optimizer`. A Keras optimizer that
            is not built yet is built on `model.trainable_variables`. With
            JAX's `stateless_apply`, write your loop's state into the
            variables before `end_round` and read it back after.
        seed: Seed of strategy `"random"`; `None` takes Keras's global seed.

    Example:

    ```python
    rounds = keras_lth.IMPRounds(model, prune_rate=0.2, optimizer=optimizer)
    for _ in range(5):
        train_one_round(model, optimizer)  # Your loop.
        row = rounds.end_round({"val_accuracy": evaluate(model)})
    print(keras_lth.results_table(rounds.results))
    ```
    """

    def __init__(
        self,
        model,
        *,
        prune_rate=0.2,
        strategy="layerwise",
        rewind="init",
        optimizer=None,
        seed=None,
    ):
        self.model = model
        self.prune_rate = check_fraction(prune_rate, "prune_rate")
        self.strategy = pruning.check_strategy(strategy)
        if rewind not in ("init", "none"):
            raise ValueError(
                "`IMPRounds` rewinds to the weights it was created with "
                f'(rewind="init") or not at all (rewind="none"). Received: '
                f"rewind={rewind!r}. For late rewinding, create it after "
                "training the first steps."
            )
        self.rewind = rewind
        check_optimizer(optimizer)
        self.optimizer = optimizer
        self.seed = imp_step.default_seed() if seed is None else int(seed)
        tensors = require_prunable_tensors(model)
        self._rates = imp_step.tensor_rates(
            tensors, prune_rate=self.prune_rate, layer_rates={}, strategy=strategy
        )
        masks = get_masks(model)
        self._initial_kept = imp_step.count_kept(masks)
        self._masks = [masks]
        self._weights = model.get_weights()  # Masks are not among them.
        self._optimizer_state = _optimizer_state(self._optimizers())
        self.results = []

    def end_round(self, metrics=None):
        """Records the round just trained, prunes and rewinds for the next.

        Args:
            metrics: Dict of the round's results to record (say, its
                validation accuracy at the early-stopping point).

        Returns:
            The round's record, also appended to `results`: `round`,
            `weights_remaining` and `layers` (fractions kept, as trained),
            `best` (the `metrics`), and `pruned_nonzero` (pruned weights not
            zero after training: 0 unless something wrote them).
        """
        masks = self._masks[-1]
        weights = get_prunable_weights(self.model)
        moved = sum(int(np.sum(weights[k][m == 0] != 0)) for k, m in masks.items())
        kept = sum(float(np.sum(m)) for m in masks.values())
        total = sum(m.size for m in masks.values())
        row = {
            "round": len(self.results),
            "weights_remaining": kept / total,
            "layers": {key: float(np.mean(m)) for key, m in masks.items()},
            "best_epoch": None,
            "best_step": None,
            "best": dict(metrics or {}),
            "pruned_nonzero": moved,
        }
        self.results.append(row)
        new_masks = imp_step.next_masks(
            weights,
            masks,
            initial_kept=self._initial_kept,
            rates=self._rates,
            step=len(self.results),
            strategy=self.strategy,
            prune_rate=self.prune_rate,
            seed=self.seed,
        )
        set_masks(self.model, new_masks, optimizer=self.optimizer)
        self._masks.append(get_masks(self.model))
        if self.rewind == "init":
            restore_weights(self.model, self._weights, optimizer=self.optimizer)
            _restore_optimizer_state(self._optimizers(), self._optimizer_state)
            # The rewound slots are θ0's, unmasked: zero the pruned entries.
            set_masks(self.model, {}, optimizer=self.optimizer)
        return row

    def masks_at(self, round_index):
        """The masks round `round_index` trained with (0: the first)."""
        if not 0 <= round_index < len(self._masks):
            raise ValueError(
                f"Expected a round in [0, {len(self._masks) - 1}]. "
                f"Received: round_index={round_index}"
            )
        return {key: mask.copy() for key, mask in self._masks[round_index].items()}

    def _optimizers(self):
        found = [self.optimizer, getattr(self.model, "optimizer", None)]
        unique = []
        for optimizer in found:
            if optimizer is not None and all(optimizer is not o for o in unique):
                unique.append(optimizer)
        for optimizer in unique:
            keras_optimizer = isinstance(optimizer, keras.optimizers.Optimizer)
            if keras_optimizer and not optimizer.built:
                optimizer.build(self.model.trainable_variables)
        return unique


def _optimizer_state(optimizers):
    state = []
    for optimizer in optimizers:
        if isinstance(optimizer, keras.optimizers.Optimizer):
            state.append([keras.ops.convert_to_numpy(v) for v in optimizer.variables])
        else:  # A `torch.optim.Optimizer`.
            state.append(copy.deepcopy(optimizer.state_dict()))
    return state


def _restore_optimizer_state(optimizers, state):
    for optimizer, values in zip(optimizers, state, strict=True):
        if isinstance(optimizer, keras.optimizers.Optimizer):
            for variable, value in zip(optimizer.variables, values, strict=True):
                variable.assign(value)
        else:
            optimizer.load_state_dict(copy.deepcopy(values))
