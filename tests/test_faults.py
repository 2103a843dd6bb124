"""Faults on real processes (loopback): a server killed with SIGKILL and restarted under load, a
client killed mid-call. Idempotent calls are retried on a new session; nothing else ever runs twice."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import eventually, report_reliability

from thrift_handshake import (
    Client,
    ClientOptions,
    ConnectionBroken,
    RetryPolicy,
    Timeouts,
)
from thrift_handshake.demo import IDEMPOTENT
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Request


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(port: int, *flags: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "thrift_handshake", "serve", "--port", str(port), *flags],
                               stderr=subprocess.PIPE, text=True)
    line = process.stderr.readline()
    while "C extension is missing" in line:  # thrift without fastbinary warns first
        line = process.stderr.readline()
    if not re.search(r"listening on \S+:%d" % port, line):
        process.kill()  # never leave a server behind
        process.wait(5)
        raise AssertionError(f"the server did not start: {line}")
    threading.Thread(target=process.stderr.read, daemon=True).start()  # keep the pipe from filling
    return process


def test_a_server_killed_and_restarted_costs_idempotent_calls_nothing(tmp_path):
    port = _free_port()
    server = _serve(port)
    retry = RetryPolicy(idempotent=IDEMPOTENT, attempts=40, backoff=0.05, max_backoff=0.2)
    client = Client("127.0.0.1", port, ClientOptions(retry=retry, timeouts=Timeouts(connect=1, call=5)),
                    service=HandshakeService)
    restarted = None
    try:
        client.connect()
        first_session = client.session_id
        in_flight = {}

        def long_process():
            try:
                in_flight["result"] = client.process(Request(request_id="long", work_ms=3000))
            except Exception as error:
                in_flight["result"] = error

        caller = threading.Thread(target=long_process)
        caller.start()
        time.sleep(0.3)  # the process() call is on the server (3 s of work): now the server dies
        os.kill(server.pid, signal.SIGKILL)
        server.wait(5)
        caller.join(10)
        error = in_flight["result"]
        assert isinstance(error, ConnectionBroken), error  # not retried: process is not idempotent
        assert "process" in str(error)

        def restart_later():
            nonlocal restarted
            time.sleep(0.5)
            restarted = _serve(port)

        restarter = threading.Thread(target=restart_later)
        restarter.start()
        assert client.echo("after the crash") == "after the crash"  # retried until the server is back
        restarter.join(10)
        assert client.session_id != first_session  # a new connection said hello again
        with pytest.raises(ConnectionBroken):
            os.kill(restarted.pid, signal.SIGKILL)
            restarted.wait(5)
            client.process(Request(request_id="never twice"))
        failed_connects = [r for r in client.timeline if r.phase == "connect" and not r.ok]
        assert failed_connects, "every attempt is visible in the timeline"
        report_reliability("server SIGKILLed under a call, restarted (idempotent echo retried)",
                           2, True, 0)
    finally:
        client.close()
        for process in (server, restarted):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(5)


CLIENT_THAT_DIES = """
import sys
from thrift_handshake import Client
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Request
client = Client("127.0.0.1", int(sys.argv[1]), service=HandshakeService)
client.connect()
print("in session", flush=True)
client.process(Request(request_id="dies", work_ms=1500))
"""


def test_a_client_killed_mid_call_leaves_no_session_behind(server):
    dying = subprocess.Popen([sys.executable, "-c", CLIENT_THAT_DIES, str(server.port)], stdout=subprocess.PIPE,
                             text=True)
    assert dying.stdout.readline().strip() == "in session"
    assert eventually(lambda: server.metrics.snapshot().calls.get("process", 0) == 1, timeout=10)
    os.kill(dying.pid, signal.SIGKILL)
    dying.wait(5)
    dying.stdout.close()
    assert eventually(lambda: server.metrics.snapshot().sessions_active == 0, timeout=10), \
        "the dead client's session is still counted"
    assert server.connection_count == 0
    report_reliability("client SIGKILLed mid-call (its session ends on the server)", 1, True, 0)


def test_acknowledged_tickets_survive_a_restart_or_are_reported_lost(tmp_path):
    """With --ticket-store, a ticket is on disk before submit answers: after SIGKILL and a restart a
    finished one still has its result, and an unfinished one is reported lost, never unknown."""
    from thrift_handshake_gen.ttypes import NotReady

    port, store = _free_port(), str(tmp_path / "tickets.db")
    server = _serve(port, "--ticket-store", store, "--submit-workers", "1")
    try:
        with Client("127.0.0.1", port, service=HandshakeService) as client:
            done = client.submit(Request(request_id="done", payload="kept")).ticket
            assert client.get_result(done, 5000).request_id == "done"
            running = client.submit(Request(request_id="running", work_ms=5000)).ticket
        os.kill(server.pid, signal.SIGKILL)
        server.wait(5)
        server = _serve(port, "--ticket-store", store, "--grace", "0.5", "--submit-workers", "1")
        with Client("127.0.0.1", port, service=HandshakeService) as client:
            result = client.get_result(done, 0)
            assert (result.request_id, result.digest) == ("done", __import__("hashlib").sha256(b"kept").hexdigest())
            with pytest.raises(NotReady, match="lost: the server stopped without finishing it"):
                client.get_result(running, 0)
            busy = client.submit(Request(request_id="busy", work_ms=5000)).ticket
            queued = client.submit(Request(request_id="queued", work_ms=5000)).ticket
        server.send_signal(signal.SIGTERM)  # a graceful stop: running work aborted at the end of the grace
        assert server.wait(15) == 0
        server = _serve(port, "--ticket-store", store)
        with Client("127.0.0.1", port, service=HandshakeService) as client:
            with pytest.raises(NotReady, match="aborted by shutdown"):
                client.get_result(queued, 0)
            with pytest.raises(NotReady, match="no result: aborted"):
                client.get_result(busy, 0)
        report_reliability("SIGKILL and SIGTERM with acknowledged tickets (--ticket-store)", 4, True, 0)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(5)
