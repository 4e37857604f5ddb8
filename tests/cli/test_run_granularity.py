"""`keras-lth run --granularity unit [--refill]`: a structured ticket.

Tiny runs on scikit-learn's digits (2 rounds of 1 epoch), in this process.
"""

import json

import keras
import numpy as np

from keras_lth import get_masks
from keras_lth import structured
from keras_lth.branches import load_masks
from keras_lth.cli import _settings
from keras_lth.cli._run_dir import read_run_file
from keras_lth.structured import count_live_units
from keras_lth.structured import is_unit_sparse
from tests.cli._helpers import LEVELS
from tests.cli._helpers import TINY
from tests.cli._helpers import assert_one_error_line
from tests.cli._helpers import interrupt_after
from tests.cli._helpers import run_main
from tests.cli._helpers import snapshot

UNIT_RUN = ["run", *TINY, "--granularity", "unit", "--refill"]
QUIET = ["--controls", "none", "--no-export"]


def test_the_granularities_are_the_librarys():
    assert _settings.GRANULARITIES == structured.GRANULARITIES


def test_a_unit_run_is_recorded_resumed_and_prunes_whole_units(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    interrupt_after(monkeypatch, 1)  # As Ctrl-C after round 0.
    code, _, err = run_main([*UNIT_RUN, *QUIET, "--output", run_dir])
    assert code == 130, err
    monkeypatch.undo()
    settings = json.loads((run_dir / "run.json").read_text())["settings"]
    assert settings["granularity"] == "unit" and settings["refill"] is True
    # The preset's output rate (0.1) is dropped: its units are the classes.
    assert settings["layer_rates"] == {"output": 0.0}

    before = snapshot(run_dir)
    resume = ["run", "--output", run_dir, "--resume", "--no-export"]
    code, _, err = run_main([*resume, "--granularity", "weight"])
    assert_one_error_line(
        code, err, "--granularity weight (the run has unit)", "run.json"
    )
    assert snapshot(run_dir) == before

    code, out, err = run_main(resume)
    assert code == 0, err
    assert "Continuing from the checkpoint" in out
    masks = get_masks(keras.models.load_model(run_dir / "ticket.keras"))
    assert {k: count_live_units(m, (1,)) for k, m in masks.items()} == {
        "fc1/kernel": 240,  # 300 * 0.8
        "fc2/kernel": 80,  # 100 * 0.8
        "output/kernel": 10,
    }
    assert all(is_unit_sparse(m, (1,)) for m in masks.values())


def test_run_json_of_an_older_run_reads_with_weight_granularity(tmp_path):
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    settings = {key: None for key in _settings.SETTING_FLAGS}
    del settings["granularity"], settings["refill"]
    (run_dir / "run.json").write_text(json.dumps({"version": 2, "settings": settings}))
    saved = read_run_file(run_dir)["settings"]
    assert saved["granularity"] == "weight" and saved["refill"] is False
    assert _settings.show_setting("refill", True) == "on"


def test_a_bad_granularity_is_one_error_line(tmp_path):
    run_dir = tmp_path / "run"
    code, out, err = run_main(["run", *TINY, "--granularity", "block", *QUIET])
    assert_one_error_line(code, err, "--granularity", "block")
    code, out, err = run_main(["run", *TINY, "--refill", *QUIET, "--output", run_dir])
    assert_one_error_line(code, err, "refill=True", "granularity='unit'")
    assert "Epoch" not in out
    assert not run_dir.exists()


def test_the_random_control_of_a_unit_run_prunes_whole_units(tmp_path):
    run_dir = tmp_path / "run"
    argv = ["run", *TINY, "--granularity", "unit", *LEVELS, "--controls", "random"]
    code, _, err = run_main([*argv, "--no-export", "--output", run_dir])
    assert code == 0, err
    # Whole units leave 80.4% of the weights after round 1: the 80.2% level.
    (level,) = (run_dir / "levels").glob("round_01_*")
    ticket = load_masks(level / "masks.npz")
    drawn = load_masks(run_dir / "branches" / "random" / level.name / "masks.npz")
    for key, mask in ticket.items():
        assert is_unit_sparse(drawn[key], (1,)), key
        assert count_live_units(drawn[key], (1,)) == count_live_units(mask, (1,))
    assert count_live_units(drawn["fc1/kernel"], (1,)) == 240
    assert not np.array_equal(drawn["fc1/kernel"], ticket["fc1/kernel"])
