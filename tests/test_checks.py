"""`keras_lth._checks`: the argument checks every entry point shares."""

import math

import numpy as np
import pytest

from keras_lth._checks import check_choice
from keras_lth._checks import check_count
from keras_lth._checks import check_fraction
from keras_lth._checks import check_known_keys


@pytest.mark.parametrize(
    ("interval", "inside", "outside"),
    [
        ("(0, 1)", [1e-9, 0.5, 0.999], [0.0, 1.0, -0.1, 1.5, math.nan, math.inf]),
        ("[0, 1)", [0.0, 0.5], [1.0, -1e-9, math.nan]),
        ("(0, 1]", [1.0, 0.5], [0.0, 1.1, math.nan]),
        ("[0, 1]", [0.0, 1.0], [-0.5, 1.0001, math.nan]),
    ],
)
def test_check_fraction_holds_its_interval(interval, inside, outside):
    for value in inside:
        assert check_fraction(value, "rate", interval=interval) == value
    for value in outside:
        with pytest.raises(
            ValueError, match=rf"`rate` in \{interval[0]}0, 1\{interval[-1]}"
        ):
            check_fraction(value, "rate", interval=interval)


def test_check_fraction_returns_a_python_float():
    checked = check_fraction(np.float32(0.25), "prune_rate")
    assert type(checked) is float and checked == 0.25
    assert type(check_fraction(1, "x", interval="[0, 1]")) is float


@pytest.mark.parametrize("bad", ["0.2", None, True, [0.2]])
def test_check_fraction_refuses_non_numbers_with_a_type_error(bad):
    with pytest.raises(TypeError, match=r"Expected `prune_rate` to be a float in"):
        check_fraction(bad, "prune_rate")


def test_a_phrase_as_name_reads_as_a_sentence():
    with pytest.raises(
        ValueError, match=r"Expected rate for 'd/kernel' in \[0, 1\]. Received: 2.0"
    ):
        check_fraction(2.0, "rate for 'd/kernel'", interval="[0, 1]")


def test_check_count():
    assert check_count(np.int64(3), "rounds") == 3
    assert check_count(0, "seed", minimum=0) == 0
    with pytest.raises(ValueError, match=r"Expected `rounds` >= 1. Received: rounds=0"):
        check_count(0, "rounds")
    for bad in (2.0, "2", True, None):
        with pytest.raises(TypeError, match=r"Expected `rounds` to be an int"):
            check_count(bad, "rounds")


def test_check_choice():
    assert check_choice("global", "strategy", ("layerwise", "global")) == "global"
    for bad in ("magnitude", None, ["global"]):
        with pytest.raises(ValueError, match=r"Expected `strategy` to be one of"):
            check_choice(bad, "strategy", ("layerwise", "global"))


def test_check_known_keys():
    masks = {"a/kernel": None, "b/kernel": None}
    check_known_keys({"a/kernel": 0.1}, masks, "rate")
    with pytest.raises(
        ValueError, match=r"`rate` names tensors that have no mask: \['c'\]"
    ):
        check_known_keys({"c": 0.1}, masks, "rate")
