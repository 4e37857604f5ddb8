"""Test metrics at a round's early-stopping point, for `LotteryTicket`.

`LotteryTicket(test_data=...)` evaluates the test data inside its own epoch
end, whenever the epoch just finished is the round's best so far (by the
rule of `round_results.best_epoch_index`), before it prunes or rewinds
anything. So the round's `test` metrics are those of the early-stopping
epoch's weights, whatever other callbacks run before or after it, and the
test set is evaluated only when the best epoch moves.
"""

from keras_lth.callbacks.round_results import plain_logs

__all__ = ["TEST_BATCH_SIZE", "check_test_data", "evaluate_test"]

#: The batch size `test_data` given as arrays is evaluated with. A dataset
#: (`tf.data.Dataset`, `keras.utils.PyDataset`, torch `DataLoader`) keeps
#: its own batching.
TEST_BATCH_SIZE = 256


def check_test_data(test_data):
    """`test_data` as `evaluate` takes it: None, a tuple, or a dataset.

    Raises:
        ValueError: For a tuple or list that is not `(x, y)` or
            `(x, y, sample_weight)`.
        TypeError: For an array alone (the labels are missing).
    """
    if test_data is None:
        return None
    if isinstance(test_data, (tuple, list)):
        if len(test_data) not in (2, 3):
            raise ValueError(
                "Expected `test_data` as (x, y) or (x, y, sample_weight), or a "
                f"dataset. Received: a {type(test_data).__name__} of "
                f"{len(test_data)} items"
            )
        return tuple(test_data)
    if hasattr(test_data, "__array__"):  # numpy, or a backend's tensor.
        raise TypeError(
            "Expected `test_data` as (x, y) or (x, y, sample_weight), or a "
            "dataset that yields (x, y) batches. Received: an array alone "
            f"({type(test_data).__name__}), without labels"
        )
    return test_data


def evaluate_test(model, test_data):
    """The scalar metrics of `model.evaluate` on `test_data`, as floats."""
    if isinstance(test_data, tuple):
        logs = model.evaluate(
            *test_data, batch_size=TEST_BATCH_SIZE, verbose=0, return_dict=True
        )
    else:
        logs = model.evaluate(test_data, verbose=0, return_dict=True)
    return plain_logs(logs)
