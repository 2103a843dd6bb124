"""The CLI server under signals (one, two, a burst) and its one log line per connection."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from server_process import Background, read_log_until, serve_subprocess, wait_remote_in_flight

from thrift_handshake import (
    Client,
    ClientOptions,
    HandshakeFailed,
    RemoteApplicationError,
)
from thrift_handshake_gen.ttypes import Request
from thrift_handshake_gen import HandshakeService


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_the_cli_server_gracefully(signum):
    process, port = serve_subprocess("--grace", "5")
    try:
        client = Client("127.0.0.1", port, service=HandshakeService)
        client.connect()
        call = Background(client.process, Request(request_id="sig", payload="", work_ms=500))
        wait_remote_in_flight(port, "process")
        os.kill(process.pid, signum)
        assert process.wait(timeout=10) == 0
        assert call.result().request_id == "sig"
        remaining = process.stderr.read()
        assert "stopped" in remaining
        client.close()
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()


def test_a_second_signal_stops_at_once():
    process, port = serve_subprocess("--grace", "30")
    try:
        client = Client("127.0.0.1", port, service=HandshakeService)
        client.connect()
        call = Background(client.process, Request(request_id="long", work_ms=3000))
        wait_remote_in_flight(port, "process")
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        read_log_until(process, "stopping:")  # the first signal is being handled: the drain began
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - started < 2.0  # not the 30 s grace, nor the 3 s of work
        outcome = call.result()  # told why: the server is stopping
        assert isinstance(outcome, RemoteApplicationError) and "server is stopping" in str(outcome), outcome
        client.close()
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()


def test_a_burst_of_signals_never_deadlocks_the_server():
    for _ in range(8):
        process, _ = serve_subprocess("--grace", "5")
        try:
            os.kill(process.pid, signal.SIGTERM)  # as `timeout`, systemd or a double Ctrl-C send them
            os.kill(process.pid, signal.SIGTERM)
            os.kill(process.pid, signal.SIGINT)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
            process.stderr.close()


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_cli_server_logs_one_line_per_connection_and_each_event_at_debug(raw, level):
    process, port = serve_subprocess("--log-level", level, env=dict(os.environ, THRIFT_HANDSHAKE_AUTH_TOKEN="t0ken"))
    try:
        with pytest.raises(HandshakeFailed):
            Client("127.0.0.1", port, ClientOptions(auth_token="bad"), service=HandshakeService).connect()
        with Client("127.0.0.1", port, ClientOptions(auth_token="t0ken"), service=HandshakeService) as client:
            client.echo("x")
        vanishing = raw(port)
        vanishing.hello(auth_token="t0ken")
        vanishing.close()  # gone without goodbye
        log = read_log_until(process, "without goodbye")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        log += process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    closed = re.findall(r"INFO thrift_handshake.server: closed peer=\S+ session=\w+ client='thrift-handshake-python' "
                        r"version=2 calls=1 duration_ms=\d+: after goodbye", log)
    assert len(closed) == 1, log  # the connection's one line says who it was and what it did
    assert re.search(r"WARNING thrift_handshake.server: dropped peer=\S+ session=\w+ client='raw-test' .*without goodbye", log)
    assert "handshake rejected" in log and "t0ken" not in log
    per_event = ["accepted", "handshake ok", "goodbye peer"]
    if level == "DEBUG":
        for event in per_event:
            assert event in log, f"no {event!r} line in:\n{log}"
    else:
        assert not [event for event in per_event if event in log], log

