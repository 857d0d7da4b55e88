"""A headless Chromium driven over the DevTools protocol, with the standard library only.

`Chromium()` starts Debian's chromium with `--remote-debugging-pipe` (commands on its fd 3, answers
and events on its fd 4, each message JSON ended by a NUL byte) and attaches to one page;
`load(url)` navigates and waits for the load event, `evaluate(js)` returns a value, `screenshot(path)`
writes the whole page as PNG, and `failed_loads` lists every request that failed, by URL and error (a missing image, a
broken stylesheet). No driver or Python package is needed, so the tests run where only the Debian
package is installed, as on the Slurm test cluster.
"""
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

EXECUTABLE = "/usr/bin/chromium"
# root in a container: no sandbox, no GPU; nothing in the background may reach the network
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--hide-scrollbars", "--window-size=1280,900", "--remote-debugging-pipe"]


def missing() -> str | None:
    """Why no browser test can run here, or None."""
    if not os.access(EXECUTABLE, os.X_OK):
        return f"{EXECUTABLE} not installed: run `tests/browser/chromium.sh` (as root) to install Debian's chromium"
    return None


def _pipe() -> tuple[int, int]:
    """A pipe whose ends lie above 4, so that placing them on 3 and 4 in the child overwrites neither."""
    ends = []
    for fd in os.pipe():
        ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
        os.close(fd)
    return ends[0], ends[1]


class Chromium:
    def __init__(self, timeout: float = 30.0):
        self.timeout, self._next_id, self._buffer, self.failed_loads = timeout, 0, b"", []
        self._urls = {}  # request id -> URL, to name a failed request
        self._profile = tempfile.mkdtemp(prefix="lth-chromium-")
        cmd_read, self._cmd_write = _pipe()
        self._event_read, event_write = _pipe()

        def child_fds():  # the protocol's fixed descriptors: 3 reads commands, 4 writes answers
            os.dup2(cmd_read, 3)
            os.dup2(event_write, 4)
        self._proc = subprocess.Popen([EXECUTABLE, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, pass_fds=(3, 4), preexec_fn=child_fds)
        os.close(cmd_read)
        os.close(event_write)
        try:
            pages = [t for t in self._call("Target.getTargets")["targetInfos"] if t["type"] == "page"]
            target = pages[0]["targetId"] if pages else self._call("Target.createTarget", url="about:blank")["targetId"]
            self._session = self._call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Network", "Runtime"):
                self._call(f"{domain}.enable", session=self._session)
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for fd in (self._cmd_write, self._event_read):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def _send(self, method: str, session: str | None, params: dict) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._cmd_write, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._event_read], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer within {self.timeout:.0f} s")
            chunk = os.read(self._event_read, 1 << 16)
            if not chunk:
                raise RuntimeError(f"chromium exited (code {self._proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(message)
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            self._urls[params["requestId"]] = params["request"]["url"]
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            self.failed_loads.append(f"{self._urls.get(params['requestId'], '?')}: {params['errorText']}")
        return message

    def _wait(self, until) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._receive(deadline)
            if until(message):
                return message

    def _call(self, method: str, session: str | None = None, **params) -> dict:
        call = self._send(method, session, params)
        answer = self._wait(lambda m: m.get("id") == call)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def load(self, url: str) -> None:
        """Navigate to `url` and return once its load event fired (every image loaded or failed)."""
        self.failed_loads.clear()
        answer = self._call("Page.navigate", self._session, url=url)
        if answer.get("errorText"):
            raise RuntimeError(f"{url}: {answer['errorText']}")
        self._wait(lambda m: m.get("method") == "Page.loadEventFired")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-able values only)."""
        answer = self._call("Runtime.evaluate", self._session, expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def screenshot(self, path) -> None:
        """The whole page, not only the window, as PNG."""
        size = self._call("Page.getLayoutMetrics", self._session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self._call("Page.captureScreenshot", self._session, format="png", clip=clip,
                          captureBeyondViewport=True)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
