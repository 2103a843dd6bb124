"""A client that becomes BROKEN closes its socket at once, and the server sees it: after a CallTimeout
the server's side of the connection ends as soon as its handler is done, not at its idle timeout."""

from __future__ import annotations

import logging
import re
import threading
import time

import pytest

from thrift_handshake import CallTimeout, Client, ClientOptions, ClientPhase, Timeouts
from thrift_handshake.demo import HandshakeHandler
from thrift_handshake_gen import HandshakeService

SERVER_LOG = "thrift_handshake.server"
HANDLER_SECONDS = 0.6  # the handler's work: well past the client's call timeout
CALL_TIMEOUT = 0.2


class SlowEcho(HandshakeHandler):
    """echo() takes HANDLER_SECONDS for the message "slow"; tells when it is done."""

    def __init__(self) -> None:
        super().__init__()
        self.done = threading.Event()

    def echo(self, message):
        if message == "slow":
            time.sleep(HANDLER_SECONDS)
            self.done.set()
        return message


def log_lines(caplog: pytest.LogCaptureFixture) -> "list[str]":
    return [r.getMessage() for r in list(caplog.records) if r.name == SERVER_LOG]


def wait_for_line(caplog: pytest.LogCaptureFixture, pattern: str, timeout: float) -> "re.Match[str]":
    deadline = time.monotonic() + timeout
    while True:
        for line in log_lines(caplog):
            match = re.search(pattern, line)
            if match:
                return match
        if time.monotonic() > deadline:
            pytest.fail(f"no server log line matching {pattern!r} within {timeout} s:\n" + "\n".join(log_lines(caplog)))
        time.sleep(0.01)


def test_the_server_sees_eof_right_after_a_client_call_timeout(start_server, caplog):
    caplog.set_level(logging.DEBUG, logger=SERVER_LOG)
    handler = SlowEcho()
    server = start_server(handler)  # the default idle timeout (300 s) would keep an open socket served
    client = Client("127.0.0.1", server.port, ClientOptions(timeouts=Timeouts(call=CALL_TIMEOUT)),
                    service=HandshakeService)
    client.connect()
    peer = wait_for_line(caplog, r"^accepted peer=(\S+)", 5).group(1)
    with pytest.raises(CallTimeout):
        client.echo("slow")
    assert client.phase is ClientPhase.BROKEN
    assert handler.done.wait(5), "the handler never finished"
    # the reply goes nowhere: the server finds the socket closed and ends the connection
    line = wait_for_line(caplog, rf"^(closed|dropped) peer={re.escape(peer)} ", 5).string
    assert line.startswith("dropped") and ("peer closed" in line or "peer reset" in line), line
    with Client("127.0.0.1", server.port) as observer:
        stats = observer.stats()
    assert stats.connections_open == 1, "only the observer's connection is left"
    assert stats.sessions_active == 1
    assert client.phase is ClientPhase.BROKEN  # the client object is alive: its socket did not close by GC
    client.close()
