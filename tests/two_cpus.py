"""Running a tf.distribute scenario on two logical CPUs, in a fresh process.

Two logical CPUs can only be configured before TensorFlow initialises its
devices, which other tests have done by the time a module runs. So a scenario
runs in a new Python process, after `PREAMBLE`, and reports what it observed
by printing one line `RESULT <json>`.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

from tests import backends

ROOT = pathlib.Path(__file__).resolve().parents[1]

requires_tensorflow = backends.requires_tensorflow("tf.distribute")

PREAMBLE = textwrap.dedent(
    """
    import json

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    """
)


def run_scenario(body, timeout=300):
    """Runs `PREAMBLE + body` in a fresh process; returns its RESULT json."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    process = subprocess.run(
        [sys.executable, "-c", PREAMBLE + body],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    assert process.returncode == 0 and len(lines) == 1, (
        f"The distributed scenario failed (exit code {process.returncode}).\n"
        f"stdout:\n{process.stdout[-3000:]}\nstderr:\n{process.stderr[-6000:]}"
    )
    return json.loads(lines[0].removeprefix("RESULT "))
