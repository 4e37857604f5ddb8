"""Argument checks shared by every public entry point.

One function per rule, so that the callback, the pruning functions, the tuner
and the CLI accept the same values and refuse the rest with the same error.
"""

import numbers

__all__ = [
    "check_choice",
    "check_known_keys",
    "check_tensor_dict",
    "check_count",
    "check_fraction",
    "is_int",
    "quoted",
    "received",
]

#: The intervals `check_fraction` knows, as written in its error messages.
_INTERVALS = {
    "(0, 1)": (False, False),
    "[0, 1)": (True, False),
    "(0, 1]": (False, True),
    "[0, 1]": (True, True),
}


def received(name, value):
    """Keras's "Received: name=value", or the value alone for a phrase."""
    return f"{name}={value!r}" if name.isidentifier() else repr(value)


def quoted(name):
    return f"`{name}`" if name.isidentifier() else name


def is_int(value):
    """Whether `value` is an integer (a Python or NumPy int, not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_count(value, name, *, minimum=1):
    """Returns `value` as an int, refusing non-ints and values below `minimum`.

    Raises:
        TypeError: If `value` is not an int (bools are refused).
        ValueError: If `value < minimum`.
    """
    if not is_int(value):
        raise TypeError(
            f"Expected {quoted(name)} to be an int. Received: "
            f"{received(name, value)} of type {type(value).__name__}"
        )
    if value < minimum:
        raise ValueError(
            f"Expected {quoted(name)} >= {minimum}. Received: {received(name, value)}"
        )
    return int(value)


def check_fraction(value, name, *, interval="(0, 1)"):
    """Returns `value` as a float, refusing non-numbers and values outside.

    Args:
        value: The value to check.
        name: How the error names it, for example `"prune_rate"`.
        interval: One of `"(0, 1)"`, `"[0, 1)"`, `"(0, 1]"` and `"[0, 1]"`.

    Raises:
        TypeError: If `value` is not a real number (bools are refused).
        ValueError: If `value` lies outside `interval` (NaN always does).
    """
    low_closed, high_closed = _INTERVALS[interval]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Expected {quoted(name)} to be a float in {interval}. Received: "
            f"{received(name, value)} of type {type(value).__name__}"
        )
    above = float(value) >= 0.0 if low_closed else float(value) > 0.0
    below = float(value) <= 1.0 if high_closed else float(value) < 1.0
    if not (above and below):
        raise ValueError(
            f"Expected {quoted(name)} in {interval}. Received: {received(name, value)}"
        )
    return float(value)


def check_choice(value, name, choices):
    """Returns `value` if it is one of `choices`, else raises `ValueError`."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"Expected {quoted(name)} to be one of {tuple(choices)}. "
            f"Received: {received(name, value)}"
        )
    return value


def check_known_keys(given, masks, name):
    """Refuses a per-tensor dict `given` that names tensors `masks` lacks.

    Raises:
        ValueError: Naming the unknown keys and the known ones.
    """
    unknown = [key for key in given if key not in masks]
    if unknown:
        raise ValueError(
            f"`{name}` names tensors that have no mask: {unknown}. "
            f"Known tensors: {list(masks)}"
        )


def check_tensor_dict(given, masks, name, values):
    """`given` as a per-tensor dict (`{}` for None), naming only `masks`'s keys.

    Args:
        given: The option, None or a dict keyed by tensor.
        masks: The known tensors' masks (only the keys are read).
        name: The option's name, for the messages.
        values: What each value is, as the message says it.

    Raises:
        TypeError: If `given` is neither None nor a dict.
        ValueError: Naming the unknown keys and the known ones.
    """
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise TypeError(
            f"Expected `{name}` to be a dict {{key: {values}}}. "
            f"Received: {name}={given!r}"
        )
    check_known_keys(given, masks, name)
    return given
