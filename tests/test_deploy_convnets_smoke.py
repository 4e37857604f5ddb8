"""Smoke tests of `benchmarks/deploy_convnets.py`: its `--quick` mode trains,
shrinks, exports, times and writes what it promises, and a second run reuses
all of it."""

import json

import pytest

from tests._deploy_helpers import MNIST
from tests._deploy_helpers import check_rows
from tests._deploy_helpers import import_script
from tests._deploy_helpers import run_quick

MODELS = ["dense", "dense", "unit", "unit", "control", "control"]


def run_script(*args):
    return run_quick("deploy_convnets.py", *args, timeout=900)


@pytest.fixture
def deploy_convnets(monkeypatch):
    return import_script(monkeypatch, "deploy_convnets")


@pytest.mark.parametrize(
    "width, rate, steps, expected",
    [(64, 0.25, 3, 27), (16, 0.33, 3, 5), (64, 0.5, 1, 32)],
)
def test_unit_widths_follow_the_exact_counts(
    deploy_convnets, width, rate, steps, expected
):
    assert deploy_convnets.unit_widths(width, rate, steps) == expected


def test_shrink_alone_removes_filters_held_at_zero_through_zero_padding():
    # What the benchmark relies on since `LotteryTicket(granularity="unit")`
    # holds a pruned filter's BatchNorm scale and offset at zero: `shrink`
    # removes the filter, read by a "same" convolution, with the same outputs.
    import keras
    import numpy as np

    import keras_lth as lth
    from benchmarks import _deploy_convnets_models as nets

    model = lth.strip_masks(nets.build(nets.NETWORKS["resnet20"], seed=0))
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
        shapes = check_rows(found["rows"], MODELS)
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


def test_block_rows_train_after_the_unit_ticket_and_export_sparse(deploy_convnets):
    settings = deploy_convnets.parse_args(["--quick", "--unstructured", "--blocks"])
    names = deploy_convnets.trainings(settings)
    assert names[-4:] == [
        "block4_conv4",
        "block4_resnet20",
        "block16_conv4",
        "block16_resnet20",
    ]
    assert deploy_convnets.after("block16_conv4") == "unit_conv4"
    network = deploy_convnets.nets.NETWORKS["conv4"]
    blocks = [
        r for r in deploy_convnets.rows_of(network, settings) if "block" in r.model
    ]
    assert [(r.model, r.quantize, r.sparse) for r in blocks] == [
        ("block4", None, True),
        ("block16", "int8", True),
    ]
    plain = deploy_convnets.parse_args(["--quick"])
    assert not any("block" in name for name in deploy_convnets.trainings(plain))
