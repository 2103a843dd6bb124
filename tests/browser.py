"""Headless Chromium (Debian's chromium, which scripts/test installs) as the admin page's tests drive it."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

__all__ = ["chromium", "browse", "Page"]


def chromium() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "Chromium is needed (scripts/test installs Debian's chromium as root)"
    return browser


def browse(url: str, *flags: str, budget_ms: int = 3000) -> str:
    """What Chromium prints for ``url`` (the DOM with ``--dump-dom``) once the page has run ``budget_ms`` of
    virtual time (time stands still while requests are in flight)."""
    done = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--virtual-time-budget={budget_ms}", *flags, url],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Page:
    """One tab of a headless Chromium driven over the DevTools protocol (``--remote-debugging-pipe``: no
    driver, no package): real time, unlike ``--virtual-time-budget``, so the page's own clock measures real
    calls. ``with Page(url) as page: page.wait_for("js expression"); page.evaluate("...")``."""

    def __init__(self, url: str, width: int = 1100, height: int = 1000) -> None:
        self.url = url
        self._size = (width, height)
        self._buffer = b""
        self._last_id = 0

    def __enter__(self) -> "Page":
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-")
        commands, self._to_chrome = os.pipe()
        self._from_chrome, answers = os.pipe()
        # Chromium reads commands on fd 3 and writes answers on fd 4 (NUL-separated JSON): a Python trampoline
        # puts the pipes there (no preexec_fn, which is unsafe with the servers' threads in this process)
        self._process = subprocess.Popen(
            [sys.executable, "-c", _ONTO_3_AND_4, str(commands), str(answers), chromium(), "--headless",
             "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--remote-debugging-pipe",
             f"--user-data-dir={self._profile.name}", f"--window-size={self._size[0]},{self._size[1]}",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(commands, answers))
        os.close(commands)
        os.close(answers)
        try:
            target = self._command("Target.createTarget", url="about:blank")["targetId"]
            self._session = self._command("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self._command("Page.navigate", url=self.url)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            if self._process.poll() is None:
                os.write(self._to_chrome, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
                self._process.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait(10)
        finally:
            os.close(self._to_chrome)
            os.close(self._from_chrome)
            self._profile.cleanup()

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        answer = self._command("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in answer, answer["exceptionDetails"]
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """The expression's first truthy value, read every 50 ms; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"{expression!r} still false after {timeout} s on {self.url}"
            time.sleep(0.05)

    def screenshot(self, path: Path) -> None:
        data = self._command("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def _command(self, method: str, **params: Any) -> Dict[str, Any]:
        self._last_id += 1
        message: Dict[str, Any] = {"id": self._last_id, "method": method, "params": params}
        if method.split(".")[0] not in ("Target", "Browser"):
            message["sessionId"] = self._session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 30
        while True:  # events arrive between the answers: skipped
            while b"\0" not in self._buffer:
                ready, _, _ = select.select([self._from_chrome], [], [], max(0.0, deadline - time.monotonic()))
                assert ready, f"Chromium did not answer {method} within 30 s"
                chunk = os.read(self._from_chrome, 1 << 16)
                assert chunk, f"Chromium closed its pipe (exit status {self._process.poll()})"
                self._buffer += chunk
            line, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(line)
            if answer.get("id") == self._last_id:
                assert "error" not in answer, f"{method}: {answer['error']}"
                return answer["result"]


#: Moves the fds named by argv[1] and argv[2] to 3 and 4 (copied away first: neither overwrites the other;
#: a copy that landed on 3 or 4 already is made inheritable all the same), then runs argv[3:].
_ONTO_3_AND_4 = ("import os, sys; a, b = os.dup(int(sys.argv[1])), os.dup(int(sys.argv[2])); "
                 "os.dup2(a, 3); os.dup2(b, 4); os.set_inheritable(3, True); os.set_inheritable(4, True); "
                 "os.execvp(sys.argv[3], sys.argv[3:])")
