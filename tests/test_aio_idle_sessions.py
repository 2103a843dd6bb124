"""The asyncio server's idle sessions wait without a task of their own (issue 14: 10,000 idle sessions
within the threaded server's memory): after ``PARK_AFTER`` between messages a session holds its
session, stream and transport, not a task and its coroutines. Parked, it is served, timed out, stopped
and evicted as before: the threaded tests below run against the asyncio server with every session
parked as soon as the sweep sees it idle."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Dict, Set, Tuple

import pytest

import test_fairness_between_hosts
from conftest import eventually, told_within
from on_asyncio import server, start_server  # noqa: F401 (fixtures: the threaded tests on the asyncio server)
from test_async_server import (LOOPS, connect, event_loop_thread, loop_factory, start_async)  # noqa: F401
from test_connection_end_log import _ended, _reset
from test_connection_end_log import test_a_connection_logged_closed_no_longer_counts_among_the_open_ones  # noqa: F401
from test_fairness_between_hosts import GOOD, HOG, _session
from test_fairness_between_hosts import test_idle_sessions_of_one_host_cannot_lock_out_another_host  # noqa: F401
from test_async_server import (  # noqa: F401 (run here with every idle session parked)
    test_an_idle_session_is_closed_after_idle_timeout, test_ping_and_hello_answer_draining_during_the_notice)

from thrift_handshake import ConnectionBroken, ServerLimits
from thrift_handshake.aio import connection as aio_connection
from thrift_handshake.aio.idle_watch import IdleWatch


@pytest.fixture(autouse=True)
def parks_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every session idle between messages parks at the sweep's next pass (0.1 s), not after 1 s; the
    threaded tests read the asyncio server's log."""
    monkeypatch.setattr(aio_connection, "PARK_AFTER", 0.0)
    monkeypatch.setattr(test_fairness_between_hosts, "SERVER_LOG", "thrift_handshake.aio")


def _tasks(loop_thread) -> int:
    """How many tasks the server's loop holds now (this count's own among them)."""
    async def count() -> int:
        return len(asyncio.all_tasks())

    return loop_thread.run(count())


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_idle_sessions_hold_no_task_and_are_served_when_they_call(start_async, event_loop_thread):
    server = start_async()
    baseline = _tasks(event_loop_thread)  # the accept loop and the sweep
    clients = [connect(server) for _ in range(20)]
    assert eventually(lambda: _tasks(event_loop_thread) == baseline), _tasks(event_loop_thread)
    assert server.connection_phases()["WAITING"] == 20
    for index, client in enumerate(clients):
        assert client.echo(f"parked {index}") == f"parked {index}"
    assert eventually(lambda: _tasks(event_loop_thread) == baseline)  # parked again
    for client in clients:
        client.close()
    assert eventually(lambda: server.connection_count == 0)


def _server_sockets(port: int) -> Tuple[int, Set[int]]:
    """This process's descriptors of the server on ``port``: its listening socket's, its connections'
    (from /proc: the socket inodes of /proc/net/tcp, then /proc/self/fd's links to them)."""
    listening, connections = set(), set()
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port:
                (listening if fields[3] == "0A" else connections).add(f"socket:[{fields[9]}]")
    fds: Dict[str, int] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[os.readlink(f"/proc/self/fd/{name}")] = int(name)
        except OSError:  # (the listing's own descriptor, closed since)
            continue
    return fds[listening.pop()], {fds[inode] for inode in connections if inode in fds}


def _epoll_sets() -> Dict[int, Set[int]]:
    """Each epoll set of this process (its descriptor) and the descriptors it watches (/proc/self/fdinfo)."""
    sets = {}
    for name in os.listdir("/proc/self/fdinfo"):
        try:
            with open(f"/proc/self/fdinfo/{name}") as info:
                text = info.read()
        except OSError:
            continue
        if "tfd:" in text or os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[eventpoll]":
            sets[int(name)] = {int(line.split()[1]) for line in text.splitlines() if line.startswith("tfd:")}
    return sets


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_parked_sessions_are_watched_apart_from_the_loops_readers(start_async, event_loop_thread):
    """A parked session's socket is in one epoll set shared by the parked ones (the loop watches that
    set's descriptor), not a reader of its own on the loop (half a kilobyte each); served, it is back on
    the loop."""
    server = start_async()
    baseline = _tasks(event_loop_thread)
    clients = [connect(server) for _ in range(20)]
    assert eventually(lambda: _tasks(event_loop_thread) == baseline)  # all parked
    listening, sessions = _server_sockets(server.port)
    assert len(sessions) == 20

    def watched_apart() -> bool:
        sets = _epoll_sets()
        loops = [fds for fds in sets.values() if listening in fds]
        parked = [fds for fds in sets.values() if fds & sessions]
        return len(loops) == 1 and not loops[0] & sessions and len(parked) == 1 and parked[0] == sessions

    assert eventually(watched_apart), _epoll_sets()
    assert clients[0].echo("awake") == "awake"
    assert eventually(lambda: _tasks(event_loop_thread) == baseline)  # parked again
    assert eventually(watched_apart), _epoll_sets()
    for client in clients:
        client.close()
    assert eventually(lambda: server.connection_count == 0)
    assert eventually(lambda: not any(fds & sessions for fds in _epoll_sets().values()))


def test_a_descriptor_epoll_refuses_leaves_no_idle_watch_open(tmp_path):
    """A file epoll cannot watch is refused, and the watch it would have opened is closed again."""
    loop = asyncio.new_event_loop()
    try:
        before = set(_epoll_sets())
        watch = IdleWatch(loop)
        with open(tmp_path / "plain-file", "w") as file, pytest.raises(PermissionError):
            watch.add(file.fileno(), None)
        assert len(watch) == 0
        assert set(_epoll_sets()) == before
    finally:
        loop.close()


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_parked_session_reset_by_its_peer_is_released_and_logged(start_async, event_loop_thread, caplog,
                                                                   monkeypatch):
    monkeypatch.setattr("test_connection_end_log.SERVER_LOG", "thrift_handshake.aio")
    caplog.set_level(logging.INFO, logger="thrift_handshake.aio")
    server = start_async()
    baseline = _tasks(event_loop_thread)
    sock = _session(GOOD, server.port)
    peer = "%s:%d" % sock.getsockname()
    assert eventually(lambda: _tasks(event_loop_thread) == baseline)  # parked
    _reset(sock)
    assert eventually(lambda: _ended(caplog, peer))
    line = _ended(caplog, peer)
    assert line.startswith("dropped") and line.endswith(": peer reset the connection without goodbye"), line
    assert server.connection_count == 0


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_parked_session_is_told_the_server_stops(start_async, event_loop_thread):
    server = start_async()
    baseline = _tasks(event_loop_thread)
    idle = connect(server)
    assert eventually(lambda: _tasks(event_loop_thread) == baseline)  # its task is gone: parked
    stopping = asyncio.run_coroutine_threadsafe(server.stop(grace=5.0), event_loop_thread.loop)
    stopping.result(10)
    assert server.connection_count == 0
    with pytest.raises(ConnectionBroken, match="the server closed the session: draining"):  # told, then closed
        idle.echo("too late")
    idle.close()


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_parked_session_evicted_for_another_host_is_told_why(start_async, event_loop_thread):
    server = start_async(limits=ServerLimits(max_connections=2))  # host_share 0.5: one each
    baseline = _tasks(event_loop_thread)
    hog = [_session(HOG, server.port) for _ in range(2)]
    try:
        assert eventually(lambda: _tasks(event_loop_thread) == baseline)  # both parked
        good = _session(GOOD, server.port)  # takes the place of one of them
        hog.append(good)
        told = told_within(hog[:2])
        evicted = [data for data in told if data]
        assert len(evicted) == 1 and b"evicted: host 127.0.0.3 holds 2 of max_connections 2" in evicted[0], told
        assert eventually(lambda: server.connection_count == 2)
    finally:
        for sock in hog:
            sock.close()
