"""Many connections on few threads: idle sessions wait in the server's watch without a thread, a
bounded pool serves the connections that have input, and pipelined messages are all answered."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.transport.TTransport import TMemoryBuffer

from thrift_handshake import Client, ServerLimits
from thrift_handshake.pool import ReadinessWatch, WorkerPool
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello

from conftest import encode_call, eventually


def _pool_threads(server) -> int:
    prefix = f"thrift-handshake:{server.port} "
    return sum(1 for thread in threading.enumerate() if thread.name.startswith(prefix))


def test_idle_sessions_hold_no_thread_and_still_answer(start_server, raw):
    server = start_server(limits=ServerLimits(max_threads=4))
    sessions = []
    for _ in range(200):
        connection = raw(server.port)
        connection.hello()
        sessions.append(connection)
    assert server.connection_count == 200
    assert _pool_threads(server) <= 4, "a thread per connection"
    for n, connection in enumerate(sessions):  # every idle session is still served, in any order
        assert connection.stub.echo(f"idle {n}") == f"idle {n}"
    assert _pool_threads(server) <= 4
    assert server.metrics.snapshot().sessions_active == 200


def test_more_busy_clients_than_threads_are_all_served(start_server):
    server = start_server(limits=ServerLimits(max_threads=2))
    results, errors = {}, []

    def run(n: int) -> None:
        try:
            with Client("127.0.0.1", server.port, service=HandshakeService) as client:
                results[n] = [client.echo(f"{n}:{i}") for i in range(20)]
        except Exception as error:  # reported below
            errors.append(repr(error))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert results == {n: [f"{n}:{i}" for i in range(20)] for n in range(12)}


def _replies(data: bytes, count: int) -> list:
    """Reads ``count`` replies (name, seqid) from the bytes a server sent."""
    protocol = TBinaryProtocol(TMemoryBuffer(data))
    replies = []
    for _ in range(count):
        name, _, seqid = protocol.readMessageBegin()
        protocol.skip(12)  # the result struct
        protocol.readMessageEnd()
        replies.append((name, seqid))
    return replies


def test_pipelined_messages_in_one_write_are_all_answered_in_order(server):
    hello = SessionService.hello_args(ClientHello(client_name="pipeline", min_version=1, max_version=2))
    wire = (encode_call("hello", hello, seqid=1)
            + b"".join(encode_call("echo", HandshakeService.echo_args(message=f"m{n}"), seqid=2 + n) for n in range(5))
            + encode_call("goodbye", SessionService.goodbye_args(), seqid=7))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(wire)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:  # the server closes after goodbye
                break
            received += chunk
    assert _replies(received, 7) == [("hello", 1)] + [("echo", n) for n in range(2, 7)] + [("goodbye", 7)]


def test_a_message_split_across_a_pause_is_still_served(server, raw):
    """The thread that starts a message finishes it, waiting past its linger for the rest."""
    connection = raw(server.port)
    connection.hello()
    message = encode_call("echo", HandshakeService.echo_args(message="split"), seqid=9)
    handle = connection.socket.handle
    handle.sendall(message[:7])
    time.sleep(0.3)  # far longer than the linger
    handle.sendall(message[7:])
    name, _, seqid = connection.stub._iprot.readMessageBegin()
    assert (name, seqid) == ("echo", 9)
    result = HandshakeService.echo_result()
    result.read(connection.stub._iprot)
    assert result.success == "split"


def test_an_idle_session_is_closed_at_its_idle_timeout(start_server, raw):
    server = start_server(limits=ServerLimits(idle_timeout=0.3))
    connection = raw(server.port)
    connection.hello()
    assert connection.socket.handle.recv(1) == b""  # closed by the server, without a thread waiting
    assert eventually(lambda: server.connection_count == 0)


@pytest.mark.parametrize("use_epoll", [True, False], ids=["epoll", "selector"])
def test_the_watch_reports_each_descriptor_once_until_rearmed(use_epoll):
    watch = ReadinessWatch(use_epoll=use_epoll)
    left, right = socket.socketpair()
    try:
        watch.add(left.fileno(), "left")
        assert watch.wait(0.05) == []
        right.send(b"x")
        assert watch.wait(1.0) == ["left"]
        assert watch.wait(0.05) == [], "reported again before rearm"
        watch.rearm(left.fileno())
        assert watch.wait(1.0) == ["left"]  # the byte is still unread
        left.recv(1)
        watch.rearm(left.fileno())
        watch.remove(left.fileno(), "another")  # the number stands for "left": nothing happens
        right.send(b"y")
        assert watch.wait(1.0) == ["left"]
        left.recv(1)
        watch.rearm(left.fileno())
        watch.remove(left.fileno(), "left")
        right.send(b"z")
        assert watch.wait(0.05) == []
        threading.Timer(0.05, watch.wake).start()
        started = time.monotonic()
        assert watch.wait(5.0) == []
        assert time.monotonic() - started < 2.0, "wake() did not end the wait"
    finally:
        watch.close()
        left.close()
        right.close()


def test_the_pool_reuses_threads_bounds_them_and_lets_idle_ones_end():
    pool = WorkerPool("test-pool", maximum=3, idle_seconds=0.2)
    seen, done = set(), threading.Semaphore(0)
    gate = threading.Event()

    def task(n: int) -> None:
        gate.wait(5)
        seen.add(threading.current_thread().name)
        done.release()

    for n in range(10):
        pool.submit(task, n)
    assert pool.threads == 3
    gate.set()
    for _ in range(10):
        assert done.acquire(timeout=5)
    assert len(seen) == 3
    assert eventually(lambda: pool.threads == 0), "idle threads did not end"
    pool.submit(task, 11)
    assert done.acquire(timeout=5)
    pool.close()
    assert eventually(lambda: pool.threads == 0)


def test_a_peer_that_leaves_right_after_goodbye_is_logged_as_closed(server, caplog):
    """A client that sends goodbye and closes without reading the Farewell (await_farewell=False)
    ended its session properly: one "closed ... after goodbye" line, never a "dropped" warning."""
    import logging
    import struct

    caplog.set_level(logging.INFO, logger="thrift_handshake.server")
    hello = SessionService.hello_args(ClientHello(client_name="leaver", min_version=1, max_version=2))
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(encode_call("hello", hello, seqid=1))
            sock.recv(65536)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset at close
            sock.sendall(encode_call("goodbye", SessionService.goodbye_args(), seqid=2))
    assert eventually(lambda: server.connection_count == 0)
    lines = [r.getMessage() for r in caplog.records if r.name == "thrift_handshake.server"]
    assert not [line for line in lines if line.startswith("dropped")], lines
    assert sum(1 for line in lines if line.startswith("closed") and line.endswith("after goodbye")) == 20, lines


def test_the_pool_adds_threads_when_every_thread_is_stuck():
    pool = WorkerPool("test-relief", maximum=1, idle_seconds=0.2)
    release, quick_done = threading.Event(), threading.Event()
    pool.submit(lambda _: release.wait(10), None)  # holds the only thread
    pool.submit(lambda _: quick_done.set(), None)
    try:
        assert not quick_done.wait(0.2), "the task ran although the only thread was busy"
        pool.relieve(ceiling=1)  # the ceiling is reached: nothing added
        assert not quick_done.wait(0.2)
        pool.relieve(ceiling=2)  # nothing finished since the last look while a task waits: one more thread
        assert quick_done.wait(5)
    finally:
        release.set()
        pool.close()
    assert eventually(lambda: pool.threads == 0)
