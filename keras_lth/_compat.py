"""Workarounds for the Keras releases and backends keras_lth supports."""

import contextlib
import sys

import keras

__all__ = [
    "only_first_replica_scope",
    "refuse_tf_distribute_off_tensorflow",
    "sync_backend_state",
]


def _version():
    return tuple(int(part) for part in keras.__version__.split(".")[:2])


def only_first_replica_scope():
    """Makes masks get `ONLY_FIRST_REPLICA` aggregation on Keras < 3.7.

    Keras 3.5 and 3.6 accept `aggregation` in `add_weight`, but their
    TensorFlow backend does not pass it on to `tf.Variable`, so under a
    `tf.distribute` strategy a mask would get `VariableAggregation.NONE`.
    On newer Keras and on other backends this is a no-op and TensorFlow is
    not imported.
    """
    if _version() >= (3, 7) or keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    def creator(next_creator, **kwargs):
        kwargs["aggregation"] = tf.VariableAggregation.ONLY_FIRST_REPLICA
        return next_creator(**kwargs)

    return tf.variable_creator_scope(creator)


def refuse_tf_distribute_off_tensorflow(what):
    """Raises if a `tf.distribute` strategy is in scope on another backend.

    Only the TensorFlow backend distributes with `tf.distribute`; the others
    ignore its scope and would silently train on one device. Nothing is
    imported: without TensorFlow already loaded, no strategy can be in scope.

    Args:
        what: What is being done in the scope, for the message.
    """
    backend = keras.backend.backend()
    tf = sys.modules.get("tensorflow")
    if backend == "tensorflow" or tf is None:
        return
    distribute = getattr(tf, "distribute", None)
    if distribute is None or not distribute.has_strategy():
        return
    strategy = type(distribute.get_strategy()).__name__
    raise ValueError(
        f"{what} inside a tf.distribute {strategy} scope, but Keras runs on "
        f"the {backend!r} backend, which ignores tf.distribute (training would "
        "run on one device). Use KERAS_BACKEND=tensorflow for tf.distribute, "
        "or Keras's own distribution API (keras.distribution.DataParallel) "
        "on JAX."
    )


def sync_backend_state(model):
    """Writes the JAX trainer's live state back into `model`'s variables.

    During an epoch the JAX trainer keeps the training state outside the
    variables (Keras writes it back at epoch ends); a callback that reads or
    writes variables between batches calls this first. A no-op on the other
    backends, which update the variables in place.
    """
    if hasattr(model, "jax_state_sync"):
        model.jax_state_sync()
