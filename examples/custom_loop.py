"""Iterative magnitude pruning by hand, in your own training loop.

`LotteryTicket` runs IMP inside `model.fit`. When you train with a loop of
your own, the same masked model works, with one call of keras_lth per round:
`keras_lth.IMPRounds`, created before training, keeps the weights and the
optimizer state to rewind to; its `end_round(metrics)` records the round,
prunes the smallest surviving weights, zeroes the optimizer's state of the
pruned ones, and rewinds. (It is built from the calls you can also make
yourself: `get_prunable_weights`, `prune`, `set_masks(..., optimizer=...)`,
`restore_weights`.) `pruned_nonzero` checks that every pruned weight stayed
exactly zero through training. One loop for each backend:

    python examples/custom_loop.py                   # TensorFlow, GradientTape
    python examples/custom_loop.py --backend jax     # JAX, stateless_call
    python examples/custom_loop.py --backend torch   # PyTorch, torch.optim

Each trains a small MLP on scikit-learn's bundled 8x8 digits (offline) for
`--rounds` IMP rounds (2 by default, well under a minute), checks the masks
held, and prints one line per round. `--rewind none` fine-tunes the pruned
weights instead of rewinding them, keeping the optimizer's state: there,
zeroing the pruned weights' Adam moments is what keeps them at zero.
"""

import argparse
import os
import sys

BACKENDS = ("tensorflow", "jax", "torch")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=BACKENDS, default="tensorflow")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5, help="per round")
    parser.add_argument("--prune-rate", type=float, default=0.5)
    parser.add_argument("--rewind", choices=("init", "none"), default="init")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


class TensorFlowLoop:
    """A `tf.GradientTape` step under `tf.function`, a Keras optimizer."""

    def __init__(self, model, learning_rate):
        import keras
        import tensorflow as tf

        self.model = model
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build(model.trainable_variables)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        @tf.function
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            self.optimizer.apply(grads, model.trainable_variables)
            return loss

        self.step = step

    def train_epoch(self, batches):
        for x, y in batches:
            self.step(x, y)

    def end_round(self):
        pass  # The step updated the variables in place.

    def begin_round(self):
        pass


class JaxLoop:
    """A jitted `stateless_call` step; the loop owns the state in between."""

    def __init__(self, model, learning_rate):
        import jax
        import keras

        self.model = model
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build(model.trainable_variables)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def compute_loss(trainable, non_trainable, x, y):
            # The masks are among the non-trainable variables.
            logits, non_trainable = model.stateless_call(
                trainable, non_trainable, x, training=True
            )
            return loss_fn(y, logits), non_trainable

        grad_fn = jax.value_and_grad(compute_loss, has_aux=True)

        @jax.jit
        def step(state, x, y):
            trainable, non_trainable, optimizer_state = state
            (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
            trainable, optimizer_state = self.optimizer.stateless_apply(
                optimizer_state, grads, trainable
            )
            return loss, (trainable, non_trainable, optimizer_state)

        self.step = step
        self.begin_round()

    def train_epoch(self, batches):
        for x, y in batches:
            _, self.state = self.step(self.state, x, y)
        self.end_round()  # So that evaluating the model sees the new weights.

    def end_round(self):
        """Writes the loop's state into the variables, for keras_lth to read."""
        trainable, non_trainable, optimizer_state = self.state
        pairs = [
            (self.model.trainable_variables, trainable),
            (self.model.non_trainable_variables, non_trainable),
            (self.optimizer.variables, optimizer_state),
        ]
        for variables, values in pairs:
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)

    def begin_round(self):
        """Reads the state back: new masks, rewound weights, zeroed slots."""
        self.state = (
            [v.value for v in self.model.trainable_variables],
            [v.value for v in self.model.non_trainable_variables],
            [v.value for v in self.optimizer.variables],
        )


class TorchLoop:
    """A plain PyTorch loop: `loss.backward()` and a `torch.optim` optimizer."""

    def __init__(self, model, learning_rate):
        import torch

        self.model = model
        # On the torch backend a Keras model is a `torch.nn.Module`. The
        # masks are parameters too, without gradients, so Adam skips them.
        self.optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
        self.torch = torch

    def train_epoch(self, batches):
        import keras

        for x, y in batches:
            self.optimizer.zero_grad()
            logits = self.model(x, training=True)
            labels = keras.ops.convert_to_tensor(y, "int64")
            loss = self.torch.nn.functional.cross_entropy(logits, labels)
            loss.backward()  # The masked layers zero pruned weights' gradients.
            self.optimizer.step()

    def end_round(self):
        pass

    def begin_round(self):
        pass


LOOPS = {"tensorflow": TensorFlowLoop, "jax": JaxLoop, "torch": TorchLoop}


def batches(x, y, batch_size, rng):
    order = rng.permutation(len(x))
    for start in range(0, len(x), batch_size):
        index = order[start : start + batch_size]
        yield x[index], y[index]


def accuracy(model, x, y):
    import keras
    import numpy as np

    logits = keras.ops.convert_to_numpy(model(x, training=False))
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def main(argv=None):
    args = parse_args(argv)
    # Keras reads its backend once, when first imported.
    os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    import keras_lth as lth
    from keras_lth import masking

    if keras.backend.backend() != args.backend:
        sys.exit(f"error: Keras was already imported with {keras.backend.backend()}")
    data = lth.datasets.load("digits", seed=args.seed)
    (x_train, y_train), validation, test = data.train, data.validation, data.test
    keras.utils.set_random_seed(args.seed)
    plain = keras.Sequential(
        [
            keras.Input((x_train.shape[1],)),
            keras.layers.Dense(128, activation="relu", name="hidden"),
            keras.layers.Dense(10, name="output"),
        ]
    )
    model = lth.mask_model(plain)
    loop = LOOPS[args.backend](model, args.learning_rate)
    # Keeps the weights (θ0) and the optimizer's state to rewind to.
    imp = lth.IMPRounds(
        model,
        prune_rate=args.prune_rate,
        rewind=args.rewind,
        optimizer=loop.optimizer,
        seed=args.seed,
    )
    rng = np.random.default_rng(args.seed)

    rounds, epochs = args.rounds, args.epochs
    print(f"IMP by hand on {args.backend}: {rounds} rounds of {epochs} epochs")
    print("round  remaining  val_acc  test_acc  pruned  pruned_nonzero")
    for round_index in range(args.rounds):
        for _ in range(args.epochs):
            loop.train_epoch(batches(x_train, y_train, args.batch_size, rng))
        loop.end_round()
        moved = masking.pruned_nonzero(model)
        pruned = sum(int(np.sum(m == 0)) for m in lth.get_masks(model).values())
        remaining = 1.0 - lth.sparsity(model)["global"]
        print(
            f"{round_index:5d}  {remaining:9.2%}  {accuracy(model, *validation):7.4f}"
            f"  {accuracy(model, *test):8.4f}  {pruned:6d}  {sum(moved.values()):14d}"
        )
        if moved:
            sys.exit(f"error: pruned weights moved off zero: {moved}")
        if round_index + 1 == args.rounds:
            break
        # Record, prune the smallest surviving weights, rewind (weights and
        # optimizer), ready for the next round.
        imp.end_round({"val_accuracy": accuracy(model, *validation)})
        loop.begin_round()
    print("The masks held: every pruned weight stayed exactly 0.0.")


if __name__ == "__main__":
    main()
