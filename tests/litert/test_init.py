"""`keras_lth.litert`'s package, and `keras_lth.export` kept for old imports."""

import os
import subprocess
import sys

import pytest

import keras_lth
import keras_lth.export
import keras_lth.litert


def test_keras_lth_export_re_exports_the_litert_package():
    assert keras_lth.export.export_litert is keras_lth.litert.export_litert
    for name in keras_lth.export.__all__:
        assert getattr(keras_lth.export, name) is getattr(keras_lth.litert, name)
    assert set(keras_lth.export.__all__) <= set(keras_lth.litert.__all__)
    assert keras_lth.export_litert is keras_lth.litert.export_litert
    assert keras_lth.ExportReport is keras_lth.litert.ExportReport
    assert keras_lth.LiteRTExportError is keras_lth.litert.LiteRTExportError


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_import_works_off_tensorflow_without_loading_it(backend, tmp_path):
    pytest.importorskip(backend)
    code = (
        "import sys, keras_lth.litert, keras_lth.export\n"
        "print('tensorflow' in sys.modules, 'ai_edge_litert' in sys.modules)\n"
        "import keras\n"
        "try:\n"
        "    keras_lth.litert.export_litert(keras.Sequential(), 'm.tflite')\n"
        "except ValueError as error:\n"
        "    print(error)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    first, message = out.stdout.strip().splitlines()[-2:]
    assert first == "False False"
    assert f"Received: Keras backend {backend!r}" in message
    assert "KERAS_BACKEND=tensorflow" in message
    assert not os.listdir(tmp_path)
