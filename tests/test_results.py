"""Results tables and files."""

import csv
import json

import pytest

import keras_lth as lth
from keras_lth.results import metric_direction

RESULTS = [
    {
        "round": 0,
        "weights_remaining": 1.0,
        "layers": {"dense/kernel": 1.0},
        "best_epoch": 3,
        "best_step": 69,
        "best": {"loss": 0.25, "val_loss": 0.3, "val_accuracy": 0.91},
        "final": {"loss": 0.2, "val_loss": 0.31, "val_accuracy": 0.9},
        "monitor": "val_loss",
    },
    {
        "round": 1,
        "weights_remaining": 0.8125,
        "layers": {"dense/kernel": 0.8125},
        "best_epoch": 2,
        "best_step": 46,
        "best": {"loss": 0.21, "val_loss": 0.28, "val_accuracy": 0.925},
        "final": {"loss": 0.19, "val_loss": 0.29, "val_accuracy": 0.92},
        "monitor": "val_loss",
    },
]


def test_table_has_a_row_per_round_with_formatted_values():
    lines = lth.results_table(RESULTS).splitlines()
    assert lines[0].split() == [
        "round",
        "remaining",
        "best_epoch",
        "best_step",
        "loss",
        "val_loss",
        "val_accuracy",
    ]
    assert lines[2].split() == ["0", "100.00%", "3", "69", "0.2500", "0.3000", "0.9100"]
    assert lines[3].split()[:2] == ["1", "81.25%"]
    assert len(lines) == 4


def test_empty_results_table():
    assert "no finished rounds" in lth.results_table([])


def test_json_round_trip(tmp_path):
    lth.save_results_json(RESULTS, tmp_path / "r.json")
    assert lth.load_results(tmp_path / "r.json") == RESULTS
    assert json.loads((tmp_path / "r.json").read_text())[1]["best_step"] == 46


def test_csv_has_best_and_final_columns(tmp_path):
    lth.save_results_csv(RESULTS, tmp_path / "r.csv")
    with open(tmp_path / "r.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert float(rows[1]["weights_remaining"]) == pytest.approx(0.8125)
    assert float(rows[0]["best_val_accuracy"]) == pytest.approx(0.91)
    assert float(rows[0]["final_val_accuracy"]) == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        ("loss", "min"),
        ("val_loss", "min"),
        ("val_sparse_categorical_crossentropy", "min"),
        ("mae", "min"),
        ("accuracy", "max"),
        ("val_accuracy", "max"),
        ("sparse_categorical_accuracy", "max"),
        ("val_acc", "max"),
        ("AUC", "max"),
        ("val_precision", "max"),
        ("recall_1", "max"),
        ("val_acc_loss", "min"),  # A loss, whatever its other words.
    ],
)
def test_metric_direction(name, direction):
    assert metric_direction(name) == direction
