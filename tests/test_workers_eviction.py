"""``serve --workers 2 --max-connections N`` as one service: a worker with nothing of its own to evict
asks its sibling to give up a silent connection, instead of telling the newcomer "server full".

Which worker holds a connection is read from the workers' log lines (each carries its pid): "accepted
peer=127.0.0.1:PORT" for a raw socket, "handshake ok ... session=ID" for a client.
"""

from __future__ import annotations

import socket
import time
from typing import List

import pytest
from test_workers import Workers, serve  # noqa: F401 (the fixture)

from conftest import eventually
from thrift_handshake import Client, ServerFull

LIMIT = 8
SILENT = 4  # held by the second worker; the first holds LIMIT - SILENT sessions


def _worker_of(workers: Workers, sock: socket.socket) -> int:
    local = sock.getsockname()[1]
    return int(workers.wait_for(r"\[(\d+)\]: accepted peer=127\.0\.0\.1:%d\b" % local).group(1))


def _gone(workers: Workers, port: int) -> None:
    """Waits until the server has closed its side of the connection from ``port``."""
    workers.wait_for(r"closed peer=127\.0\.0\.1:%d\b" % port)


def _silent_on(workers: Workers, pid: int, count: int) -> List[socket.socket]:
    """``count`` raw connections (no byte sent) held by worker ``pid``; the others are closed."""
    kept: List[socket.socket] = []
    for _ in range(100):
        sock = socket.create_connection(("127.0.0.1", workers.port), timeout=5)
        if _worker_of(workers, sock) == pid:
            kept.append(sock)
            if len(kept) == count:
                return kept
        else:
            port = sock.getsockname()[1]
            sock.close()
            _gone(workers, port)
    raise AssertionError(f"100 connections, {len(kept)} held by worker {pid}")


def _sessions_on(workers: Workers, pid: int, count: int) -> List[Client]:
    """``count`` clients after hello held by worker ``pid``; the others are closed."""
    kept: List[Client] = []
    for _ in range(100):
        client = workers.connect()
        if workers.pid_of(client) == pid:
            kept.append(client)
            if len(kept) == count:
                return kept
        else:
            client.close()
            workers.wait_for(r"closed peer=.* session=%s" % client.session_id)
    raise AssertionError(f"100 clients, {len(kept)} held by worker {pid}")


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_newcomer_is_not_refused_while_a_sibling_holds_a_silent_connection(serve):
    # A worker evicted only its own connections: a newcomer landing on the worker holding sessions was
    # told "server full" while its sibling held connections that never said hello.
    workers = serve("--workers", "2", "--max-connections", str(LIMIT), "--handshake-timeout", "60")
    busy, holder = workers.pids
    for attempt in range(30):  # until a newcomer lands on the worker with nothing to evict (the kernel picks)
        silent = _silent_on(workers, holder, SILENT)
        sessions = _sessions_on(workers, busy, LIMIT - SILENT) if attempt == 0 else sessions
        time.sleep(0.2)  # older than the silent grace (0.1 s): evictable, not a hello under way
        newcomers = [workers.connect() for _ in range(SILENT)]  # raises ServerFull when refused
        served_by = [workers.pid_of(client) for client in newcomers]
        assert all(_closed_by_server(sock) for sock in silent)
        if busy in served_by:
            break
        for client in newcomers:  # all landed where the silent ones were: again
            client.close()
            workers.wait_for(r"closed peer=.* session=%s" % client.session_id)
    else:
        raise AssertionError("in 30 rounds no newcomer landed on the worker without silent connections")
    workers.wait_for(r"\[%d\]: evicted peer=" % holder)
    workers.wait_for(r"\[%d\]: .*closed a connection for worker \d's newcomer" % holder)
    assert workers.stop() == 0


def test_the_service_wide_limit_holds_while_the_workers_make_room(serve):
    workers = serve("--workers", "2", "--max-connections", "4", "--handshake-timeout", "60")
    busy, holder = workers.pids
    silent = _silent_on(workers, holder, 2)
    _sessions_on(workers, busy, 2)
    time.sleep(0.2)  # older than the silent grace
    newcomers = [workers.connect() for _ in range(2)]
    assert all(_closed_by_server(sock) for sock in silent)
    observer = newcomers[0]
    assert eventually(lambda: observer.stats().connections_open == 4)
    with pytest.raises(ServerFull, match="server full: 4 connections"):  # sessions only: nothing to evict
        workers.connect()
    assert observer.stats().connections_open == 4
    assert workers.stop() == 0
