"""`keras_lth.rewind.Rewind`: the one reader of a rewind spelling."""

import numpy as np
import pytest

from keras_lth.rewind import KINDS
from keras_lth.rewind import Rewind


@pytest.mark.parametrize(
    ("spelling", "kind", "at", "value"),
    [
        ("init", "init", 0, "init"),
        ("reinit_each_round", "reinit_each_round", 0, "reinit_each_round"),
        ("lr", "lr", 0, "lr"),
        ("none", "none", 0, "none"),
        (0, "step", 0, 0),
        (250, "step", 250, 250),
        (np.int64(7), "step", 7, 7),
        ("250", "step", 250, 250),
        ("epoch:0", "epoch", 0, "epoch:0"),
        ("epoch:3", "epoch", 3, "epoch:3"),
    ],
)
def test_parse_reads_every_spelling(spelling, kind, at, value):
    rewind = Rewind.parse(spelling)
    assert (rewind.kind, rewind.at, rewind.value) == (kind, at, value)
    assert rewind.kind in KINDS
    # The canonical spelling reads back to the same point, as text too (the
    # CLI and the tuner store it as text).
    assert Rewind.parse(rewind.value) == rewind
    assert Rewind.parse(str(rewind)) == rewind
    assert Rewind.parse(rewind) is rewind


@pytest.mark.parametrize(
    ("spelling", "has_point", "restores_optimizer"),
    [("init", True, True), (5, True, True), ("epoch:1", True, True),
     ("reinit_each_round", True, True), ("lr", False, True), ("none", False, False)],
)  # fmt: skip
def test_what_each_kind_restores(spelling, has_point, restores_optimizer):
    rewind = Rewind.parse(spelling)
    assert rewind.has_point is has_point
    assert rewind.restores_optimizer is restores_optimizer


@pytest.mark.parametrize(
    "bad", ["initial", "epoch:", "epoch:-1", "epoch:1.5", "-3", "1.5", 1.5, None, True]
)
def test_anything_else_is_a_value_error_quoting_it(bad):
    with pytest.raises(ValueError, match=r"Expected `rewind` to be 'init'.*Received"):
        Rewind.parse(bad)


def test_a_negative_step_says_so():
    with pytest.raises(ValueError, match=r"rewind step >= 0. Received: rewind=-1"):
        Rewind.parse(-1)


def test_the_old_reinit_spelling_is_refused_with_both_ways_out():
    # `rewind="reinit"` once ran IMP with a new draw at every round, which is
    # not the paper's control: it must not keep that meaning silently.
    with pytest.raises(ValueError) as raised:
        Rewind.parse("reinit")
    message = str(raised.value)
    assert "reinit_each_round" in message
    assert "keras_lth.controls.reinit" in message
    assert "Received: rewind='reinit'" in message
