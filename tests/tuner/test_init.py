"""`keras_lth.tuner`'s package: its public names, and the missing extra."""

import importlib
import sys

import pytest

pytest.importorskip("keras_tuner")

import keras_lth  # noqa: E402
from keras_lth import tuner as lth_tuner  # noqa: E402


def test_public_names():
    assert sorted(lth_tuner.__all__) == [
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
    for name in lth_tuner.__all__:
        assert getattr(lth_tuner, name) is not None
    assert lth_tuner.TRIAL_SUBDIR == "lottery_ticket"
    assert lth_tuner.HP_FILE == "hyperparameters.json"
    # The command line lives in the CLI package, which imports the tuner.
    assert not hasattr(lth_tuner, "run_cli")
    assert not hasattr(lth_tuner, "add_cli_arguments")


def test_without_keras_tuner_the_import_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_tuner", None)
    for name in [n for n in sys.modules if n.startswith("keras_lth.tuner")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(keras_lth, "tuner")
    with pytest.raises(ImportError, match=r'pip install "keras-lth\[tuner\]"'):
        importlib.import_module("keras_lth.tuner")
