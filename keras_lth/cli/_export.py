"""`keras-lth run --export`: the final ticket, and its shrunk copy, for LiteRT.

The run directory gets `ticket.tflite`, `ticket_shrunk.keras` (the ticket
with every unit that can no longer change its outputs removed, see
`keras_lth.shrink`), `ticket_shrunk.tflite`, `ticket_export.txt`, the
reports of both exports and of the shrinking, and `deploy.json`, the deploy
table (`measure_deploy`) that `keras-lth report` prints.
"""

import json
import pathlib
import sys
import tempfile

import keras
import numpy as np

import keras_lth
from keras_lth.cli._common import UsageError
from keras_lth.cli._common import describe
from keras_lth.cli._common import has_module
from keras_lth.cli._common import native_logs_filtered
from keras_lth.cli._run_dir import DEPLOY_FILE
from keras_lth.cli._run_dir import EXPORT_REPORT_FILE
from keras_lth.cli._run_dir import RUN_FILE
from keras_lth.cli._run_dir import SHRUNK_FILE
from keras_lth.cli._run_dir import SHRUNK_TFLITE_FILE
from keras_lth.cli._run_dir import TFLITE_FILE
from keras_lth.cli._run_dir import TICKET_FILE
from keras_lth.litert.runtime import Runner
from keras_lth.litert.runtime import import_interpreter
from keras_lth.litert.runtime import median_invoke_seconds
from keras_lth.saving import atomic_write_text
from keras_lth.saving import save_model

__all__ = [
    "DEPLOY_BATCH",
    "DEPLOY_RUNS",
    "DEPLOY_TEST_SAMPLES",
    "EXPORT_SAMPLES",
    "export_choice",
    "export_ticket",
    "measure_deploy",
]

#: Samples the LiteRT exports are verified on (from the test set).
EXPORT_SAMPLES = 32
#: At most this many test images are scored in LiteRT (all of MNIST's).
DEPLOY_TEST_SAMPLES = 10_000
#: Test images per LiteRT invoke when scoring.
DEPLOY_BATCH = 250
#: Timed invokes per file (batch 1) for the deploy table's latency.
DEPLOY_RUNS = 200


def export_choice(requested):
    """`{"on": bool, "note": str or None}`; a `UsageError` if --export can't."""
    if requested is False:
        return {"on": False, "note": None}
    missing = []
    backend = keras.backend.backend()
    if backend != "tensorflow":
        missing.append(f"the Keras backend is {backend}, not tensorflow")
    if not has_module("ai_edge_litert"):
        missing.append("ai_edge_litert is not installed (pip install ai-edge-litert)")
    if missing and requested:
        raise UsageError(f"--export: {'; '.join(missing)}")
    if missing:
        return {
            "on": False,
            "note": f"LiteRT export off: {'; '.join(missing)} (--no-export hides "
            "this note).",
        }
    return {"on": True, "note": None}


def export_ticket(model, run_dir, data, show_logs):
    """Exports the final ticket and its shrunk copy. False if that failed.

    Then measures them in LiteRT (`measure_deploy`) and writes `deploy.json`.
    A run exported before `deploy.json` existed only gets the measurement.
    """
    report_file = run_dir / EXPORT_REPORT_FILE
    print("\n== LiteRT export of the final ticket ==", flush=True)
    exported = report_file.exists() and (run_dir / SHRUNK_TFLITE_FILE).exists()
    if exported and (run_dir / DEPLOY_FILE).exists():
        print(f"Done earlier: {run_dir / TFLITE_FILE}, skipped.")
        return True
    samples = data.test[0][:EXPORT_SAMPLES]
    text = None
    try:
        if model is None:
            model = keras.models.load_model(run_dir / TICKET_FILE)
        with native_logs_filtered(show_logs=show_logs):  # LiteRT's INFO lines.
            if exported:
                small = keras.models.load_model(run_dir / SHRUNK_FILE)
            else:
                report = keras_lth.export_litert(
                    model, run_dir / TFLITE_FILE, representative_data=samples
                )
                small, shrunk = keras_lth.shrink(model, return_report=True)
                save_model(small, run_dir / SHRUNK_FILE)
                small_report = keras_lth.export_litert(
                    small, run_dir / SHRUNK_TFLITE_FILE, representative_data=samples
                )
                text = (
                    f"{report}\n\n== The ticket shrunk (keras_lth.shrink) ==\n"
                    f"{shrunk}\n\n{small_report}\n"
                )
                atomic_write_text(report_file, text)
            deploy = measure_deploy(model, small, run_dir, data.test)
    except Exception as error:  # An export problem must not lose the run.
        if text is not None:
            print(text, flush=True)
        print(f"keras-lth: LiteRT export failed: {describe(error)}", file=sys.stderr)
        return False
    atomic_write_text(run_dir / DEPLOY_FILE, json.dumps(deploy, indent=1) + "\n")
    if text is not None:
        print(text, flush=True)
    print(
        f"The deploy table (keras-lth report prints it): {run_dir / DEPLOY_FILE}",
        flush=True,
    )
    return True


def measure_deploy(ticket, small, run_dir, test, *, runs=DEPLOY_RUNS):
    """The deploy table of an exported run: one row per LiteRT file.

    Rows: the dense network (the ticket's architecture, freshly initialised
    and exported to a temporary file: its parameters, file size and latency
    are the dense network's; its accuracy is not measured, as the run does
    not keep round 0's trained weights), `ticket.tflite` and
    `ticket_shrunk.tflite`. Each file's test accuracy is the argmax of its
    outputs in the LiteRT interpreter, on the first `DEPLOY_TEST_SAMPLES`
    test images; its latency the median of `runs` invokes of batch 1 on one
    thread, the files interleaved (`median_invoke_seconds`).

    Args:
        ticket: The final ticket (masked model).
        small: The shrunk ticket.
        run_dir: The run directory, holding both `.tflite` files.
        test: `(images, labels)` of the test set.
        runs: Timed invokes per file.

    Returns:
        A JSON-ready dict: `rows` (`name`, `file`, `parameters`, `nonzero`,
        `test_accuracy`, `file_bytes`, `bytes_ratio`, `latency_us`,
        `speedup`; ratios against the first row), `test_samples` and
        `notes`.
    """
    x, y = (np.asarray(a)[:DEPLOY_TEST_SAMPLES] for a in test)
    plain = keras_lth.strip_masks(ticket)
    entries, notes = [], []
    try:
        dense = keras.models.clone_model(plain)  # New weights, the same shape.
        with tempfile.TemporaryDirectory() as folder:
            path = pathlib.Path(folder) / "dense.tflite"
            keras_lth.export_litert(
                dense, path, sparse=False, sample_inputs=x[:EXPORT_SAMPLES],
                latency_runs=0,
            )  # fmt: skip
            entries.append(("dense", None, dense, path.read_bytes()))
    except Exception as error:  # The ticket's rows matter more.
        notes.append(f"No dense row: its export failed ({describe(error)}).")
    for name, file, model in (
        ("ticket", TFLITE_FILE, plain),
        ("shrunk ticket", SHRUNK_TFLITE_FILE, small),
    ):
        entries.append((name, file, model, (run_dir / file).read_bytes()))
    runners = [_runner(content, x[:1]) for *_, content in entries]
    seconds = median_invoke_seconds(runners, [x[:1]], runs)
    rows = []
    for (name, file, model, content), time in zip(entries, seconds, strict=True):
        nonzero = sum(np.count_nonzero(np.asarray(w)) for w in model.get_weights())
        rows.append(
            {
                "name": name,
                "file": file,
                "parameters": int(model.count_params()),
                # Not the dense row's: its weights are not the trained ones.
                "nonzero": None if file is None else int(nonzero),
                "test_accuracy": None if file is None else _accuracy(content, x, y),
                "file_bytes": len(content),
                "latency_us": 1e6 * time,
            }
        )
    for row in rows:
        row["bytes_ratio"] = row["file_bytes"] / rows[0]["file_bytes"]
        row["speedup"] = rows[0]["latency_us"] / row["latency_us"]
    if rows[0]["file"] is None:
        notes.append(_dense_note(run_dir))
    which = (
        f"all {len(x):,}"
        if len(x) == len(test[0])
        else f"the first {len(x):,} of the {len(test[0]):,}"
    )
    notes += [
        f"test accuracy: the LiteRT interpreter's argmax on {which} test images.",
        f"latency: median of {runs} invokes per file, batch 1, 1 thread, LiteRT's "
        "default delegates (XNNPACK), the files interleaved; ratios against the "
        "first row.",
    ]
    return {"rows": rows, "test_samples": len(x), "notes": notes}


def _runner(content, sample):
    """A LiteRT `Runner` of the file's single input, sized for `sample`."""
    signatures = import_interpreter()(model_content=content).get_signature_list()
    names = next(iter(signatures.values()))["inputs"]
    return Runner(content, names, [sample])


def _accuracy(content, x, y):
    """The fraction of `x` whose outputs' argmax in LiteRT is the label."""
    runner = _runner(content, x[:DEPLOY_BATCH])
    correct = 0
    for start in range(0, len(x), DEPLOY_BATCH):
        batch = x[start : start + DEPLOY_BATCH]
        padded = np.concatenate(
            [batch, np.zeros((DEPLOY_BATCH - len(batch), *batch.shape[1:]), x.dtype)]
        )
        outputs = runner([padded])[0][: len(batch)]
        correct += int(
            np.sum(np.argmax(outputs, axis=-1) == y[start : start + len(batch)])
        )
    return correct / len(x)


def _dense_note(run_dir):
    """Why the dense row has no accuracy, and the one the run measured."""
    note = (
        "dense: the ticket's architecture, freshly initialised, exported to a "
        "temporary file: the dense network's parameters, file size and latency, "
        "not its accuracy (the run does not keep round 0's trained weights)."
    )
    try:
        stages = json.loads((run_dir / RUN_FILE).read_text())["stages"]
        (results,) = [s["results"] for s in stages if s["name"] == "imp"]
        first = json.loads((run_dir / results).read_text())[0]
        accuracy = first["test"]["accuracy"]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return note
    return (
        f"{note} Round 0 (dense, trained) scored test accuracy {accuracy:.4f} in "
        f"Keras ({results})."
    )
