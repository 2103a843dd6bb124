"""Draining that a load balancer can see: once a stop is requested, ping and hello answer Draining
for the drain notice while calls in flight are served to the end, idle sessions are told, and the
server is gone within the grace period."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest
from server_process import Background, read_log_until, serve_subprocess, wait_in_flight, wait_remote_in_flight

from conftest import eventually
from thrift_handshake import (
    Client,
    ClientOptions,
    ConnectError,
    ConnectionBroken,
    RetryPolicy,
    ServerDraining,
    ServiceError,
)
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import Draining
from thrift_handshake_gen.ttypes import Request


def _health_check(port: int) -> None:
    """A ping before any hello, as a load balancer's health check sends it (raises what it answered)."""
    with Client("127.0.0.1", port, ClientOptions(handshake=False), service=SessionService) as probe:
        probe.ping()


def test_ping_and_hello_answer_draining_while_in_flight_calls_finish(start_server):
    server = start_server(drain_notice=1.0, grace=10.0)
    busy = Client("127.0.0.1", server.port, service=HandshakeService)
    idle = Client("127.0.0.1", server.port, service=HandshakeService)
    busy.connect()
    idle.connect()
    _health_check(server.port)  # healthy: no answer but the reply
    call = Background(busy.process, Request(request_id="in-flight", work_ms=600))
    wait_in_flight(server, "process")
    started = time.monotonic()
    server.request_stop()

    with pytest.raises(Draining) as pinged:  # the health check can tell, before the port closes
        _health_check(server.port)
    assert isinstance(pinged.value, ServiceError)
    assert 0 < pinged.value.remaining_ms <= 10_000
    newcomer = Client("127.0.0.1", server.port, service=HandshakeService)
    with pytest.raises(ServerDraining, match="draining") as refused:  # no new session
        newcomer.connect()
    assert isinstance(refused.value, ConnectError) and isinstance(refused.value.draining, Draining)
    with pytest.raises(ConnectionBroken, match="the server closed the session: draining") as told:
        idle.process(Request(request_id="never run"))
    assert told.value.may_have_run is False  # told before the server read it: safe to send again
    assert call.result().request_id == "in-flight"  # in-flight work is served to the end
    with pytest.raises(ConnectionBroken, match="draining") as told:
        busy.echo("closed after its reply, and told")
    assert told.value.may_have_run is False
    assert server.metrics.snapshot().calls.get("process") == 1  # the in-flight one alone

    assert eventually(lambda: server._stopped.is_set(), 5.0)
    assert 0.9 < time.monotonic() - started < 3.0  # the notice, then the (empty) rest of the drain
    with pytest.raises(ConnectError):
        Client("127.0.0.1", server.port, service=HandshakeService).connect()
    for client in (busy, idle, newcomer):
        client.close()


def test_the_notice_ends_with_the_grace_period(start_server):
    server = start_server(drain_notice=60.0, grace=0.5)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2.0


def test_a_second_stop_request_ends_the_notice(start_server):
    server = start_server(drain_notice=30.0, grace=30.0)
    server.request_stop()
    assert eventually(lambda: server.draining)
    started = time.monotonic()
    server.request_stop(grace=0)  # as a second SIGTERM does
    assert eventually(lambda: server._stopped.is_set(), 2.0)
    assert time.monotonic() - started < 2.0


def test_a_plain_service_has_no_notice(start_server):
    server = start_server(drain_notice=30.0, grace=30.0, handshake=False)
    started = time.monotonic()
    server.stop()  # nothing could answer Draining: the port closes at once
    assert time.monotonic() - started < 2.0


def test_without_a_notice_the_port_closes_at_once(start_server):
    server = start_server(grace=10.0)
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        server.request_stop()
        assert eventually(lambda: server._stopped.is_set(), 2.0)
        with pytest.raises(ConnectionBroken, match="draining"):
            client.echo("told")


def test_an_idempotent_call_on_a_drained_session_is_retried_and_meets_the_drain(start_server):
    draining = start_server(drain_notice=5.0, grace=10.0)
    policy = RetryPolicy(idempotent={"echo"}, attempts=3, backoff=0.01)
    with Client("127.0.0.1", draining.port, ClientOptions(retry=policy), service=HandshakeService) as client:
        draining.request_stop()
        assert eventually(lambda: draining.draining)  # the drain began (request_stop only asks)
        with pytest.raises(ServerDraining):  # a server on its own: every retry meets the drain
            client.echo("once told, then refused")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_drains_the_cli_server_visibly(workers):
    process, port = serve_subprocess("--grace", "10", "--drain-notice", "1", "--workers", workers)
    try:
        client = Client("127.0.0.1", port, service=HandshakeService)
        client.connect()
        call = Background(client.process, Request(request_id="sig", work_ms=500))
        wait_remote_in_flight(port, "process")
        started = time.monotonic()
        os.kill(process.pid, signal.SIGTERM)
        read_log_until(process, "draining:")
        with pytest.raises(Draining):
            _health_check(port)
        assert call.result().request_id == "sig"
        assert process.wait(timeout=10) == 0
        assert 0.9 < time.monotonic() - started < 5.0
        client.close()
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()


def _check_bytes() -> tuple:
    """The request and the healthy reply of deploy/haproxy.cfg's health check."""
    recipe = (Path(__file__).resolve().parent.parent / "deploy" / "haproxy.cfg").read_text()
    send = re.search(r"^\s*tcp-check send-binary ([0-9a-f]+)", recipe, re.M).group(1)
    expect = re.search(r"^\s*tcp-check expect min-recv (\d+) binary ([0-9a-f]+)", recipe, re.M)
    assert int(expect.group(1)) == len(expect.group(2)) // 2
    return bytes.fromhex(send), bytes.fromhex(expect.group(2))


def _reply(sock: socket.socket, at_least: int, until: bytes = b"") -> bytes:
    reply = b""
    while len(reply) < at_least or until not in reply:
        chunk = sock.recv(4096)
        assert chunk, f"closed after {reply!r}"
        reply += chunk
    return reply


def test_the_balancer_check_bytes_tell_healthy_from_draining(start_server):
    """The bytes HAProxy sends and expects (deploy/haproxy.cfg): the healthy reply exactly; while the
    server drains, a reply of the same length at least that is not it, carrying Draining. A connection
    opened before the stop, still without hello, is answered the same way, not dropped."""
    request, healthy = _check_bytes()
    server = start_server(drain_notice=5.0, grace=10.0)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as check:
        check.sendall(request)
        assert _reply(check, len(healthy)) == healthy
    early = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with early:
        assert eventually(lambda: server.connection_count == 1)
        server.request_stop()
        assert eventually(lambda: server.draining)
        for sock in (early, socket.create_connection(("127.0.0.1", server.port), timeout=5)):
            sock.sendall(request)
            reply = _reply(sock, len(healthy), until=b"draining")
            assert reply[:len(healthy)] != healthy
            assert reply.startswith(healthy[:-1] + bytes.fromhex("0c0001"))  # field 1 of ping's result
            if sock is not early:
                sock.close()
