"""Tests for the `keras-lth` parser and `main` (`keras_lth/cli/__init__.py`)."""

import errno
import os
import resource
import subprocess
import sys

import pytest

from keras_lth import branches
from keras_lth import cli
from keras_lth import datasets
from keras_lth import models
from keras_lth import pruning
from keras_lth.cli import _settings
from keras_lth.cli import run as run_module
from keras_lth.cli._common import UsageError
from tests.cli._helpers import ROOT
from tests.cli._helpers import assert_one_error_line
from tests.cli._helpers import env
from tests.cli._helpers import run_main
from tests.cli._helpers import script

COMMANDS = [[], ["run"], ["report"], ["tune"]]

#: Prints the help of `sys.argv[1:]`, then the heavy modules it imported.
_HELP = """
import sys
from keras_lth.cli import main
code = main([*sys.argv[1:], "--help"])
heavy = {"keras", "tensorflow", "keras_tuner", "jax", "torch"}
print("imported:", sorted(heavy & {m.split(".")[0] for m in sys.modules}))
sys.exit(code)
"""


def _cpu_seconds_of(argv, **kwargs):
    """Runs `argv`; returns the process and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    completed = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return completed, cpu


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0] if c else "main")
def test_help_is_fast_and_imports_no_keras(command):
    completed, cpu = _cpu_seconds_of(
        [sys.executable, "-c", _HELP, *command], timeout=60, env=env()
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith(f"usage: keras-lth {' '.join(command)}".strip())
    assert completed.stdout.strip().endswith("imported: []")
    assert completed.stderr == ""
    assert cpu < 1.0


def test_the_script_and_python_m_print_the_help():
    commands = [[sys.executable, "-m", "keras_lth.cli", "run", "--help"]]
    if script() is not None:
        commands.append([script(), "run", "--help"])
    for argv in commands:
        completed, cpu = _cpu_seconds_of(argv, timeout=60, env=env(), cwd=ROOT)
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.startswith("usage: keras-lth run")
        assert completed.stderr == ""
        assert cpu < 1.0


def test_the_choices_are_the_librarys():
    # Written out in the CLI, so that the parser imports no Keras.
    assert list(_settings.MODELS) == models.available()
    assert _settings.DATASETS == datasets.NAMES
    parser = cli.build_parser()
    for name in models.available():
        assert parser.parse_args(["run", "--model", name]).model == name
    for name in datasets.NAMES:
        assert parser.parse_args(["run", "--dataset", name]).dataset == name
        assert parser.parse_args(["tune", "--data", name]).data == name
    for name in pruning.STRATEGIES:
        assert parser.parse_args(["run", "--strategy", name]).strategy == name
    for argv in (["run", "--model", "lenet5"], ["tune", "--data", "imagenet"]):
        with pytest.raises(UsageError, match="invalid choice"):
            parser.parse_args(argv)


def test_the_controls_and_their_levels_are_the_librarys():
    # Written out in the CLI too, so that the parser imports no Keras.
    assert list(_settings.CONTROLS) == list(branches.CONTROLS)
    assert _settings.DEFAULT_CONTROL_LEVELS == pytest.approx(
        tuple(100 * level for level in branches.PAPER_LEVELS)
    )
    assert set(_settings.DEFAULT_CONTROLS) <= set(branches.CONTROLS)


def test_control_levels_parse_as_run_json_holds_them():
    parse = _settings.parse_control_levels
    assert parse("7, 51.3%,21.1,7.0") == [51.3, 21.1, 7.0]  # Unique, densest first.
    assert parse("100") == [100.0]
    for text in ("0", "100.5", "-1", "inf", "nan", "", "1,,2", "ten"):
        with pytest.raises(UsageError, match="in \\(0, 100\\]"):
            parse(text)
    assert _settings.show_setting("control_levels", [51.3, 7.0]) == "51.3,7.0"


def test_the_default_monitor_is_the_papers_but_on_digits():
    assert _settings.default_monitor("mnist") == "val_loss"
    assert _settings.default_monitor("cifar10") == "val_loss"
    assert _settings.default_monitor("digits") == "val_accuracy"
    assert cli.build_parser().parse_args(["run"]).monitor is None  # Not given.


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0] if c else "main")
def test_the_help_shows_no_path_of_a_machine(command):
    code, out, _ = run_main([*command, "--help"])
    assert code == 0 and out.startswith("usage: keras-lth")
    for text in (out, cli.__doc__):
        assert "../" not in text and "shared/data" not in text
        assert str(ROOT) not in text and os.path.expanduser("~") + "/" not in text


@pytest.fixture
def failing_run(monkeypatch):
    """Makes `keras-lth run` raise the exception given to the returned setter."""
    raised = []

    def run(args):
        raise raised[0]

    monkeypatch.setattr(run_module, "run", run)
    return raised.append


@pytest.mark.parametrize(
    "error",
    [
        ValueError("Expected `prune_rate` in (0, 1). Received: prune_rate=2"),
        TypeError("Expected an int"),
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/run/x"),
        PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/data/run"),
    ],
    ids=type,
)
def test_a_library_error_is_one_line_and_exit_2(failing_run, error):
    failing_run(error)
    code, _, err = run_main(["run"])
    assert_one_error_line(code, err, str(error))


def test_a_bug_is_one_line_naming_it_and_exit_1(failing_run):
    failing_run(RuntimeError("an internal invariant broke"))
    code, _, err = run_main(["run"])
    assert_one_error_line(
        code,
        err,
        "unexpected RuntimeError: an internal invariant broke",
        "(run with --debug for the traceback)",
        exit_code=1,
    )


@pytest.mark.parametrize(
    "argv", [["--debug", "run"], ["run", "--debug"]], ids=["before", "after"]
)
@pytest.mark.parametrize(
    "error, exit_code", [(ValueError("bad"), 2), (KeyError("bug"), 1)]
)
def test_debug_prints_the_traceback_with_the_same_exit_code(
    failing_run, argv, error, exit_code
):
    failing_run(error)
    code, _, err = run_main(argv)
    assert code == exit_code
    assert err.startswith("Traceback (most recent call last):")
    assert f"{type(error).__name__}: " in err.strip().splitlines()[-1]
    assert "keras-lth: error:" not in err


def test_ctrl_c_outside_the_stages_exits_130(failing_run):
    failing_run(KeyboardInterrupt())
    code, _, err = run_main(["run"])
    assert code == 130
    assert err.strip() == "keras-lth: interrupted"


def test_verbose_and_debug_parse():
    parser = cli.build_parser()
    args = parser.parse_args(["run"])
    assert args.verbose is False and args.debug is False
    assert parser.parse_args(["--debug", "run", "--verbose"]).verbose is True
    assert parser.parse_args(["--debug", "run"]).debug is True
    assert parser.parse_args(["report", "x", "--debug"]).debug is True
    assert parser.parse_args(["tune"]).verbose == 1
    assert parser.parse_args(["tune", "--verbose"]).verbose == 2
    assert parser.parse_args(["tune", "--verbose", "0"]).verbose == 0
