"""For tests that run ``thrift-handshake serve`` as a subprocess: the port it took, and its log."""

from __future__ import annotations

import re
import subprocess
import threading
from typing import List

import pytest

LISTENING = re.compile(r"listening on (\[?[^\s\]]*\]?:\d+|unix:\S+)")


def listening_endpoint(process: subprocess.Popen, log: List[str], timeout: float = 30) -> str:
    """Reads the server's stderr (into ``log``) until its ``listening on HOST:PORT`` (or ``unix:PATH``) line
    and returns that endpoint; the rest of its stderr keeps flowing into ``log``. A server that does not say
    so in ``timeout`` is killed and the test fails with what it said."""
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        for line in process.stderr:
            log.append(line)
            match = LISTENING.search(line)
            if match:
                threading.Thread(target=lambda: log.extend(process.stderr), daemon=True).start()
                return match.group(1)
    finally:
        timer.cancel()
    process.kill()
    pytest.fail("the server did not start:\n" + "".join(log))


def listening_port(process: subprocess.Popen, log: List[str], timeout: float = 30) -> int:
    """The PORT of a server listening on HOST:PORT (see ``listening_endpoint``)."""
    return int(listening_endpoint(process, log, timeout).rsplit(":", 1)[1])
