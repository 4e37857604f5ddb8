"""Makes docs/images/tensorboard.png: TensorBoard showing a ticket's sparsity.

Runs a small `keras-lth run` (LeNet-300-100 on scikit-learn's digits, 5 IMP
rounds of 4 epochs, no controls) into a temporary folder, serves its
TensorBoard logs, and screenshots the Time Series dashboard filtered to the
sparsity and round tags, in headless Chromium driven through the DevTools
protocol on a pipe (no package beyond the project's own). About a minute:

    apt-get install -y chromium
    python docs/images/make_tensorboard_screenshot.py
"""

import base64
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

OUTPUT = pathlib.Path(__file__).resolve().parent / "tensorboard.png"
WIDTH, HEIGHT = 1400, 860
TAGS = r"^sparsity/|^lottery/(round|weights_remaining)$"
RUN = ["--rounds", "5", "--epochs-per-round", "4", "--controls", "none"]


class DevTools:
    """A Chrome DevTools protocol client over `--remote-debugging-pipe`."""

    def __init__(self, chromium, profile):
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()

        def pipes_as_3_and_4():  # Where Chromium reads and writes the protocol.
            os.dup2(to_chrome, 3)
            os.dup2(from_chrome, 4)

        self.process = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--hide-scrollbars",
             "--remote-debugging-pipe", f"--user-data-dir={profile}"],
            pass_fds=(3, 4),
            preexec_fn=pipes_as_3_and_4,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer, self._id, self.session = b"", 0, None

    def send(self, method, **params):
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session is not None:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:  # Skip events until the reply.
            while b"\0" not in self._buffer:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe.")
                self._buffer += chunk
            line, _, self._buffer = self._buffer.partition(b"\0")
            reply = json.loads(line)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", expression=expression)
        return result["result"].get("value")

    def open(self, url):
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send(
            "Target.attachToTarget", targetId=target, flatten=True
        )["sessionId"]
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=WIDTH,
            height=HEIGHT,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.navigate(url)

    def navigate(self, url):
        self.send("Page.navigate", url=url)
        wait_for(lambda: self.evaluate("document.readyState") == "complete")

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("Timed out waiting for the page.")
        time.sleep(0.5)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serves_runs(url):
    try:
        with urllib.request.urlopen(f"{url}/data/runs", timeout=2) as response:
            return bool(json.load(response))
    except OSError:
        return False


def main():
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = pathlib.Path(tmp) / "run"
        subprocess.run(
            [sys.executable, "-m", "keras_lth.cli", "run", *RUN, "--no-export",
             "--output", str(run_dir)],
            check=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )  # fmt: skip
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        tensorboard = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir",
             str(run_dir / "tensorboard"), "--host", "127.0.0.1",
             "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        browser = None
        try:
            wait_for(lambda: serves_runs(url))
            browser = DevTools("chromium", pathlib.Path(tmp) / "profile")
            browser.open(url)
            # TensorBoard keeps its settings in localStorage: no settings
            # pane, no step selector over the charts, whole y ranges.
            settings = {
                "timeSeriesSettingsPaneOpened": False,
                "stepSelectorEnabled": False,
                "ignoreOutliers": False,
            }
            browser.evaluate(
                "localStorage.setItem('_tb_global_settings', "
                f"{json.dumps(json.dumps(settings))})"
            )
            query = urllib.parse.urlencode(
                {"smoothing": 0, "tagFilter": TAGS, "runFilter": "sparsity"}
            )
            browser.navigate(f"{url}/?{query}#timeseries")
            # Every card of the filter has drawn its line (SVG or WebGL).
            wait_for(
                lambda: browser.evaluate(
                    "document.querySelectorAll('scalar-card').length > 0 && "
                    "[...document.querySelectorAll('scalar-card')].every("
                    "c => c.querySelector('line-chart .series-view "
                    "canvas, line-chart .series-view svg path'))"
                )
            )
            time.sleep(3)  # The last frames of the charts.
            shot = browser.send("Page.captureScreenshot", format="png")
            OUTPUT.write_bytes(base64.b64decode(shot["data"]))
        finally:
            if browser is not None:
                browser.close()
            tensorboard.terminate()
            tensorboard.wait(timeout=30)
    print(f"Wrote {OUTPUT} ({OUTPUT.stat().st_size // 1024} KB).")


if __name__ == "__main__":
    main()
