"""Tests for `keras-lth report` (`keras_lth/cli/report.py`)."""

import subprocess
import sys

from keras_lth.results import load_results
from keras_lth.results import results_table
from tests.cli._helpers import assert_one_error_line
from tests.cli._helpers import env
from tests.cli._helpers import run_main


def test_report_reprints_the_tables_and_redraws_the_plot(finished):
    run_dir = finished[0]
    (run_dir / "ticket_curve.png").unlink()
    code, out, err = run_main(["report", run_dir])
    assert code == 0, err
    for name in ("results.json", "results_reinit.json", "results_random.json"):
        assert results_table(load_results(run_dir / name)) in out
    assert "== Control: random reinit" in out
    assert "== Control: random pruning" in out
    assert (run_dir / "ticket_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_report_of_a_folder_that_is_no_run(tmp_path):
    code, _, err = run_main(["report", tmp_path])
    assert_one_error_line(code, err, "run.json")


def test_report_of_a_corrupt_results_file(tmp_path, finished):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_bytes((finished[0] / "run.json").read_bytes())
    (run_dir / "results.json").write_text("[{")
    code, out, err = run_main(["report", run_dir, "--no-plot"])
    assert_one_error_line(code, err, str(run_dir / "results.json"))


_REPORT = """
import sys
from keras_lth.cli import main
code = main(["report", "--no-plot", sys.argv[1]])
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"keras", "tensorflow"})
print("imported:", heavy)
sys.exit(code)
"""


def test_report_imports_no_keras(finished):
    completed = subprocess.run(
        [sys.executable, "-c", _REPORT, str(finished[0])],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
    )
    assert completed.returncode == 0, completed.stderr
    assert "== IMP" in completed.stdout
    assert completed.stdout.strip().endswith("imported: []")
