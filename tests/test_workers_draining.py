"""SIGTERM to ``serve --workers 2``: the whole service drains as one. Every worker answers ``ping`` with
``Draining`` at once, serves its calls in flight to the end, tells its idle sessions, and the port
closes when the notice is over (not only when the supervisor exits); all within the grace period.

Which worker holds a connection is read from the workers' log lines (each carries its pid).
"""

from __future__ import annotations

import signal
import socket
import time
from typing import Dict

import pytest
from server_process import Background
from test_draining import _check_bytes, _reply
from test_workers import Workers, serve  # noqa: F401 (the fixture)

from conftest import eventually
from thrift_handshake import Client, ConnectionBroken, ServerDraining
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Request

GRACE = 10.0


def _raw_on_each_worker(workers: Workers) -> Dict[int, socket.socket]:
    """A connection without hello held by each worker (opened until every worker holds one)."""
    held: Dict[int, socket.socket] = {}
    for _ in range(100):
        sock = socket.create_connection(("127.0.0.1", workers.port), timeout=5)
        local = sock.getsockname()[1]
        pid = int(workers.wait_for(r"\[(\d+)\]: accepted peer=127\.0\.0\.1:%d\b" % local).group(1))
        if pid in held:
            sock.close()
        else:
            held[pid] = sock
            if len(held) == len(workers.pids):
                return held
    raise AssertionError(f"100 connections, held by {sorted(held)} only; workers {workers.pids}")


def test_sigterm_makes_every_worker_answer_draining_and_finish_its_calls(serve):
    workers = serve("--workers", "2", "--grace", str(GRACE), "--drain-notice", "2",
                    "--handshake-timeout", "60")
    request, healthy = _check_bytes()  # the balancer's health check (deploy/haproxy.cfg)
    checks = _raw_on_each_worker(workers)
    busy = workers.clients_on_each_worker()
    idle = workers.clients_on_each_worker()
    calls = {pid: Background(client.process, Request(request_id=f"r{pid}", work_ms=1500))
             for pid, client in busy.items()}
    observer = next(iter(idle.values()))
    assert eventually(lambda: observer.stats().calls.get("process", 0) == len(calls))  # both under way
    started = time.monotonic()
    workers.process.send_signal(signal.SIGTERM)
    for pid in workers.pids:
        workers.wait_for(r"\[%d\]: draining: " % pid)
    for pid, check in checks.items():  # each worker, not just the one a new connection lands on
        check.sendall(request)
        reply = _reply(check, len(healthy), until=b"draining")
        assert reply.startswith(healthy[:-1] + bytes.fromhex("0c0001")), (pid, reply)  # ping's Draining field
        check.close()
    for _ in range(4):  # newcomers, wherever they land
        with pytest.raises(ServerDraining):
            Client("127.0.0.1", workers.port, service=HandshakeService).connect()
    for pid, client in idle.items():  # told why, so the call was never run
        with pytest.raises(ConnectionBroken, match="draining") as told:
            client.echo("never run")
        assert told.value.may_have_run is False, pid
    for pid, call in calls.items():
        assert call.result().request_id == f"r{pid}"
    assert workers.process.wait(GRACE) == 0
    assert time.monotonic() - started < GRACE
    for pid in workers.pids:
        workers.wait_for(r"worker \d \(pid %d\) exited with code 0" % pid)


def test_the_port_closes_when_the_workers_notice_is_over(serve):
    # The supervisor kept its copy of the listening socket until it exited: after the workers' notice a
    # newcomer was accepted into the backlog and hung, unanswered, until the last call in flight ended.
    workers = serve("--workers", "2", "--grace", str(GRACE), "--drain-notice", "0.3")
    client = workers.connect()
    call = Background(client.process, Request(request_id="long", work_ms=3000))
    observer = workers.connect()
    assert eventually(lambda: observer.stats().calls.get("process", 0) == 1)
    workers.process.send_signal(signal.SIGTERM)
    for pid in workers.pids:
        workers.wait_for(r"\[%d\]: stopping: " % pid)  # logged once its listener is closed
    assert call.outcome is None, "the call ended before the port was tried"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", workers.port), timeout=2).close()
    assert call.result().request_id == "long"
    assert workers.process.wait(GRACE) == 0
