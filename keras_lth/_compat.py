"""Workarounds for older Keras releases within the supported range."""

import contextlib

import keras


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
