"""Helpers for the server's tests: a call run in the background, waits for a call to reach a server
(in this process or a CLI server in another), and that CLI server's log."""

from __future__ import annotations

import json
import re
import select
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Tuple

from conftest import eventually

from thrift_handshake import Client
from thrift_handshake_gen import HandshakeService


def wait_in_flight(server, method: str, timeout: float = 5.0) -> None:
    """Waits until ``server`` has started serving a ``method`` message (counted at message begin)."""
    assert eventually(lambda: server.metrics.snapshot().calls.get(method, 0) >= 1, timeout), \
        f"no {method} call reached the server"


def wait_remote_in_flight(port: int, method: str, timeout: float = 5.0) -> None:
    """The same, for a server in another process: asks its stats() from a second connection."""
    with Client("127.0.0.1", port, service=HandshakeService) as observer:
        assert eventually(lambda: observer.stats().calls.get(method, 0) >= 1, timeout), \
            f"no {method} call reached the server"


class Background:
    """Runs one call on a thread; ``outcome`` is its result or the exception it raised."""

    def __init__(self, call, *args) -> None:
        self.outcome = None
        self._thread = threading.Thread(target=self._run, args=(call, args))
        self._thread.start()

    def _run(self, call, args) -> None:
        try:
            self.outcome = call(*args)
        except Exception as error:  # the outcome under test
            self.outcome = error

    def result(self, timeout: float = 10.0):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the call did not finish"
        return self.outcome


def serve_subprocess(*flags: str, env=None) -> Tuple[subprocess.Popen, int]:
    """The CLI server in its own process on an ephemeral port; its log on ``stderr``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "thrift_handshake.cli", "serve", "--port", "0", *flags],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        match = re.search(r"listening on \S+:(\d+)", line)
        if match:
            return process, int(match.group(1))
    process.kill()
    raise AssertionError("the server did not report its port")


def read_log_until(process: subprocess.Popen, text: str, timeout: float = 10.0) -> str:
    """Reads the server's log until a line contains ``text`` (the server reached that state)."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        if text in line:
            return "".join(lines)
        assert line, f"the server's log ended without {text!r}:\n{''.join(lines)}"
    raise AssertionError(f"no {text!r} in the server's log within {timeout} s")


def closed_by_peer(handle: socket.socket) -> bool:
    """Whether the other end closed (or reset) ``handle``, without waiting."""
    if not select.select([handle], [], [], 0)[0]:
        return False
    try:
        return handle.recv(1, socket.MSG_PEEK) == b""
    except OSError:  # reset
        return True


def memory_kib(pid: int) -> Dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    return fields


def json_log_of_one_session(use: Callable[[int], Any], *flags: str) -> List[Dict[str, Any]]:
    """Runs ``serve --log-format json`` with ``flags``, calls ``use(port)`` (one session), and returns the
    server's JSON lines up to the one that says that connection closed."""
    process = subprocess.Popen([sys.executable, "-m", "thrift_handshake.cli", "--log-format", "json", "serve",
                                "--port", "0", *flags], stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(process.stderr.readline())
        use(int(first["msg"].split()[2].rsplit(":", 1)[1]))
        lines: List[Dict[str, Any]] = []
        while not any(line["msg"].startswith("closed") for line in lines):
            lines.append(json.loads(process.stderr.readline()))
        return lines
    finally:
        process.terminate()
        process.wait(20)
        process.stderr.close()
