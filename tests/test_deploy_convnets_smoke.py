"""Smoke tests of `benchmarks/deploy_convnets.py`: its `--quick` mode trains,
shrinks, exports, times and writes what it promises, and a second run reuses
all of it."""

import json
import pathlib

import pytest

from tests.test_benchmarks_smoke import run_benchmark

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "deploy_convnets.py"
MNIST = ROOT.parent / "shared" / "data" / "mnist"
MODELS = ["dense", "dense", "unit", "unit", "control", "control"]


def run_script(*args):
    return run_benchmark("deploy_convnets.py", "--quick", *args, timeout=900)


@pytest.fixture
def deploy_convnets(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import deploy_convnets

    return deploy_convnets


@pytest.mark.parametrize(
    "width, rate, steps, expected",
    [(64, 0.25, 3, 27), (16, 0.33, 3, 5), (64, 0.5, 1, 32)],
)
def test_unit_widths_follow_the_exact_counts(
    deploy_convnets, width, rate, steps, expected
):
    assert deploy_convnets.unit_widths(width, rate, steps) == expected


def test_cut_zero_channels_keeps_the_outputs_and_lets_shrink_remove_them():
    import keras
    import numpy as np

    import keras_lth as lth
    from benchmarks import _deploy_convnets_models as nets

    network = nets.NETWORKS["resnet20"]
    model = lth.strip_masks(nets.build(network, seed=0))
    layer, norm = (
        model.get_layer("stage1_block1_conv1"),
        model.get_layer("stage1_block1_bn1"),
    )
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    kernel[..., :5] = 0
    layer.kernel.assign(kernel)
    for variable in (norm.gamma, norm.beta):
        values = keras.ops.convert_to_numpy(variable)
        values[:5] = 0
        variable.assign(values)
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    before = model.predict(x, verbose=0)
    assert nets.cut_zero_channels(model, network)["stage1_block1_conv1"] == 5
    small = lth.shrink(model)
    np.testing.assert_allclose(small.predict(x, verbose=0), before, atol=1e-5)
    assert small.get_layer("stage1_block1_conv1").filters == 11


@pytest.mark.slow  # About 3 minutes on 2 busy cores: 4 trainings, 12 exports.
@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST test set not in {MNIST}")
def test_quick_run_writes_its_tables_json_and_plot_then_resumes(tmp_path):
    completed = run_script("--output", str(tmp_path))
    assert completed.returncode == 0, completed.stderr[-4000:]
    out = completed.stdout
    assert out.count("| row | precision | encoding | shape |") == 2
    assert "control_resnet20: training 1 round(s)" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["networks"]) == {"conv4", "resnet20"}
    for found in results["networks"].values():
        rows = found["rows"]
        assert [row["model"] for row in rows] == MODELS
        for row in rows:
            assert 0 <= row["litert_accuracy"] <= 1 and 0 <= row["keras_accuracy"] <= 1
            assert row["report"]["file_bytes"] > 0 and row["median_us"] > 0
            assert set(row["keras_us"]) == {"1", "256"}
        shapes = {row["model"]: row["shape"] for row in rows}
        assert shapes["unit"] == shapes["control"] != shapes["dense"]
        assert found["shrink"]["max_abs_output_change"] < 1e-4
        assert len(found["targets"]) == 7
        assert all(isinstance(t["met"], bool) for t in found["targets"])
    png = (tmp_path / "deploy_convnets.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "table.md").read_text().startswith("## Conv-4 and ResNet-20")

    # Again: every training and export is found, so nothing trains.
    again = run_script("--output", str(tmp_path))
    assert again.returncode == 0, again.stderr[-4000:]
    assert "round(s) x" not in again.stdout
    # Other training settings are refused in the same folder.
    other = run_script("--output", str(tmp_path), "--epochs-per-round", "2")
    assert other.returncode != 0
    assert "other settings" in other.stderr
