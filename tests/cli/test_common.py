"""Tests for what the `keras-lth` commands share (`keras_lth/cli/_common.py`)."""

import os
import sys

import pytest

from keras_lth.cli._common import UsageError
from keras_lth.cli._common import describe
from keras_lth.cli._common import import_keras
from keras_lth.cli._common import native_logs_filtered
from keras_lth.cli._common import read_json

#: What TensorFlow and LiteRT write to file descriptor 2, and a line of ours.
_NATIVE = (
    "WARNING: All log messages before absl::InitializeLog() is called are "
    "written to STDERR\n"
    "I0000 00:00:1796451432.810897   20274 port.cc:153] oneDNN custom operations\n"
    "W0000 00:00:1796451478.946766   21385 tf_tfl_flatbuffer_helpers.cc:364] Ignored\n"
    "E0000 00:00:1796451476.456521   21385 cuda_platform.cc:52] failed call\n"
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
    "not a log line\n"
)


def _filtered(capfd, **kwargs):
    capfd.readouterr()
    with native_logs_filtered(**kwargs):
        os.write(2, _NATIVE.encode())
    return capfd.readouterr().err.splitlines()


def test_native_log_lines_below_the_level_are_dropped(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    assert _filtered(capfd) == ["not a log line"]
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    assert [line[:5] for line in _filtered(capfd)] == ["E0000", "not a"]
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    assert [line[:5] for line in _filtered(capfd)] == ["W0000", "E0000", "not a"]


def test_nothing_is_dropped_with_show_logs_or_at_level_0(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    assert _filtered(capfd, show_logs=True) == _NATIVE.splitlines()
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # The user's choice.
    assert _filtered(capfd) == _NATIVE.splitlines()


def test_lines_written_before_an_error_are_kept(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    capfd.readouterr()
    with pytest.raises(ImportError), native_logs_filtered():
        os.write(2, _NATIVE.encode())
        raise ImportError("a broken install")
    assert capfd.readouterr().err == "not a log line\n"
    print("stderr works again", file=sys.stderr)
    assert capfd.readouterr().err == "stderr works again\n"


def test_import_keras_sets_the_log_level_unless_the_user_did(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    import_keras(show_logs=True)
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    keras = import_keras()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert keras is sys.modules["keras"]
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    import_keras()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"


def test_describe_is_one_line_without_colour_codes():
    error = ValueError("Expected \x1b[1mrate\x1b[0m\n  in (0, 1).\n")
    assert describe(error) == "Expected rate in (0, 1)."
    assert describe(KeyError()) == "KeyError"


def test_read_json(tmp_path):
    assert read_json(tmp_path / "missing.json") is None
    (tmp_path / "good.json").write_text('{"a": 1}')
    assert read_json(tmp_path / "good.json") == {"a": 1}
    (tmp_path / "torn.json").write_text('{"a": ')
    with pytest.raises(UsageError, match="cannot read .*torn.json"):
        read_json(tmp_path / "torn.json")
