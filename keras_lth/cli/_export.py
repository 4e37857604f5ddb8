"""`keras-lth run --export`: the final ticket, and its shrunk copy, for LiteRT.

The run directory gets `ticket.tflite`, `ticket_shrunk.keras` (the ticket
with every unit that can no longer change its outputs removed, see
`keras_lth.shrink`), `ticket_shrunk.tflite`, and `ticket_export.txt`, the
reports of both exports and of the shrinking.
"""

import sys

import keras

import keras_lth
from keras_lth.cli._common import UsageError
from keras_lth.cli._common import describe
from keras_lth.cli._common import has_module
from keras_lth.cli._common import native_logs_filtered
from keras_lth.cli._run_dir import EXPORT_REPORT_FILE
from keras_lth.cli._run_dir import SHRUNK_FILE
from keras_lth.cli._run_dir import SHRUNK_TFLITE_FILE
from keras_lth.cli._run_dir import TFLITE_FILE
from keras_lth.cli._run_dir import TICKET_FILE
from keras_lth.saving import atomic_write_text
from keras_lth.saving import save_model

__all__ = ["export_choice", "export_ticket"]

#: Samples the LiteRT exports are verified on (from the test set).
EXPORT_SAMPLES = 32


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
    """Exports the final ticket and its shrunk copy. False if that failed."""
    report_file = run_dir / EXPORT_REPORT_FILE
    print("\n== LiteRT export of the final ticket ==", flush=True)
    if report_file.exists() and (run_dir / SHRUNK_TFLITE_FILE).exists():
        print(f"Done earlier: {run_dir / TFLITE_FILE}, skipped.")
        return True
    samples = data.test[0][:EXPORT_SAMPLES]
    try:
        if model is None:
            model = keras.models.load_model(run_dir / TICKET_FILE)
        with native_logs_filtered(show_logs=show_logs):  # LiteRT's INFO lines.
            report = keras_lth.export_litert(
                model, run_dir / TFLITE_FILE, representative_data=samples
            )
            small, shrunk = keras_lth.shrink(model, return_report=True)
            save_model(small, run_dir / SHRUNK_FILE)
            small_report = keras_lth.export_litert(
                small, run_dir / SHRUNK_TFLITE_FILE, representative_data=samples
            )
    except Exception as error:  # An export problem must not lose the run.
        print(f"keras-lth: LiteRT export failed: {describe(error)}", file=sys.stderr)
        return False
    text = (
        f"{report}\n\n== The ticket shrunk (keras_lth.shrink) ==\n{shrunk}\n\n"
        f"{small_report}\n"
    )
    atomic_write_text(report_file, text)
    print(text, flush=True)
    return True
