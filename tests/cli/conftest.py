"""Fixtures of the `keras-lth` command's tests."""

import pytest

from tests.cli._helpers import LEVELS
from tests.cli._helpers import TINY
from tests.cli._helpers import run_main


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """One tiny `keras-lth run` with both controls off both rounds, no export."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    argv = ["run", *TINY, *LEVELS, "--controls", "reinit,random", "--no-export"]
    code, out, err = run_main([*argv, "--output", run_dir])
    return run_dir, code, out, err
