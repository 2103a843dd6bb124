"""The client pool: threads share at most max_size sessions, a borrower waits then gets PoolTimeout,
idle connections are pinged and replaced, old ones replaced, broken ones discarded, replacements fail
over to another server, and close() says goodbye."""

from __future__ import annotations

import hashlib
import logging
import os
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List

import pytest

from conftest import eventually
from server_process import Background
from thrift_handshake import (
    CallTimeout,
    ClientOptions,
    ClientTLS,
    ClientPhase,
    ClientPool,
    Endpoints,
    Interceptor,
    PhaseError,
    PoolOptions,
    PoolTimeout,
    RetryPolicy,
    ServerFull,
    ServerLimits,
    ServerTLS,
    Timeouts,
)
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Request

CERTS = Path(__file__).resolve().parent / "certs"


def _pool(port_or_endpoints, options: ClientOptions = None, **limits) -> ClientPool:
    if isinstance(port_or_endpoints, Endpoints):
        return ClientPool(port_or_endpoints, options=options, service=HandshakeService, limits=PoolOptions(**limits))
    return ClientPool("127.0.0.1", port_or_endpoints, options, HandshakeService, PoolOptions(**limits))


def _waits(client) -> List[float]:
    return [r.duration for r in client.timeline if r.phase == "pool" and r.name == "wait"]


def test_many_threads_share_four_sessions(server):
    pool = _pool(server.port, max_size=4, borrow_timeout=30.0)
    in_use_peak = []

    def work(n: int) -> str:
        with pool.client() as client:
            in_use_peak.append(pool.stats().in_use)
            response = client.process(Request(request_id=str(n), payload=f"p{n}", work_ms=2))
        assert response.digest == hashlib.sha256(f"p{n}".encode()).hexdigest()
        return response.session_id

    with ThreadPoolExecutor(max_workers=16) as threads:
        sessions = list(threads.map(work, range(200)))
    assert len(set(sessions)) == 4
    assert server.metrics.snapshot().connections_total == 4  # never a fifth connection at the server
    assert server.connection_count == 4
    stats = pool.stats()
    assert (stats.size, stats.idle, stats.in_use, stats.waiting, stats.created, stats.borrows) == (4, 4, 0, 0, 4, 200)
    assert stats.waited > 0 and stats.wait_seconds >= stats.wait_max > 0  # 16 threads, 4 connections
    assert max(in_use_peak) <= 4
    assert pool.close() == 0
    assert eventually(lambda: server.connection_count == 0)


def test_a_borrower_waits_for_a_connection_then_times_out(server):
    pool = _pool(server.port, max_size=1, borrow_timeout=0.2)
    held = pool.borrow()
    with pytest.raises(PoolTimeout, match="no pooled connection came free within 0.2 s") as timed_out:
        pool.borrow()
    assert timed_out.value.waited >= 0.2
    assert pool.stats().timeouts == 1

    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.borrow(timeout=30.0)))
    waiter.start()
    assert eventually(lambda: pool.stats().waiting == 1)
    time.sleep(0.2)  # keeps the borrower waiting a measurable while
    pool.give_back(held)
    with pytest.raises(PoolTimeout, match="within 0 s"):  # the waiter is served first: no barging past it
        pool.borrow(timeout=0)
    waiter.join(10)
    assert got == [held]  # the same connection and session, lent again
    waits = _waits(held)
    assert len(waits) == 2 and waits[0] < 0.1 and waits[1] >= 0.2  # the first borrow did not wait, the second did
    stats = pool.stats()
    assert (stats.created, stats.borrows, stats.waited, stats.waiting, stats.in_use) == (1, 2, 2, 0, 1)
    assert stats.timeouts == 2
    assert stats.wait_max >= waits[1]
    pool.give_back(held)
    with pytest.raises(ValueError, match="not borrowed from this pool"):
        pool.give_back(held)
    pool.close()


def test_an_idle_connection_the_server_closed_is_replaced(start_server, caplog):
    caplog.set_level(logging.INFO, logger="thrift_handshake.client_pool")
    server = start_server(limits=ServerLimits(idle_timeout=0.3))
    pool = _pool(server.port, max_size=2, check_after_idle=0.1)
    with pool.client() as first:
        first_session = first.session_id
    assert eventually(lambda: server.connection_count == 0)  # the server closed the idle session
    with pool.client() as second:
        assert second.session_id != first_session
        assert second.process(Request(request_id="1", payload="x")).session_id == second.session_id
    replaced = [r.getMessage() for r in caplog.records if r.name == "thrift_handshake.client_pool"]
    assert len(replaced) == 1 and "the server ended its session while it was idle" in replaced[0], replaced
    assert first.phase is ClientPhase.CLOSED  # closed for good, never lent again
    stats = pool.stats()
    assert (stats.created, stats.replaced, stats.size) == (2, 1, 1)
    pool.close()


def test_an_idle_connection_that_answers_ping_is_kept(server):
    pool = _pool(server.port, max_size=1, check_after_idle=0.0)
    with pool.client() as client:
        session = client.session_id
    with pool.client() as again:
        assert again is client and again.session_id == session
    assert [r.name for r in client.timeline if r.phase == "call"] == ["ping"]
    assert pool.stats().replaced == 0
    pool.close()


def test_an_idle_session_is_pinged_before_the_server_would_close_it(start_server):
    server = start_server(limits=ServerLimits(idle_timeout=1.5))
    pool = _pool(server.port, max_size=1, check_after_idle=None)  # the server's limit still applies
    with pool.client() as client:
        session = client.session_id
    time.sleep(0.9)  # past half the server's idle timeout
    with pool.client() as again:
        assert again is client and again.session_id == session
        time.sleep(0.9)  # 1.8 s since hello, 0.9 s since the ping: the session is still open
        assert again.echo("still here") == "still here"
    assert [r.name for r in client.timeline.calls()] == ["ping", "echo"]
    assert pool.stats().replaced == 0
    pool.close()


def test_a_pipelined_hello_is_lent_and_checked_like_any_other(server):
    pool = _pool(server.port, ClientOptions(pipeline_hello=True), max_size=1, check_after_idle=0.0)
    with pool.client() as client:
        assert client.phase is ClientPhase.HELLO_PENDING  # hello written, its answer read by the first call
    with pool.client() as again:  # lent again; its ping reads hello's answer first
        assert again is client and again.phase is ClientPhase.READY
        assert again.echo("hi") == "hi"
    assert [r.name for r in client.timeline.calls()] == ["ping", "echo"]
    assert (pool.stats().created, pool.stats().replaced) == (1, 0)
    pool.close()


def test_a_connection_past_max_lifetime_says_goodbye_and_is_replaced(server):
    pool = _pool(server.port, max_size=1, max_lifetime=0.2, check_after_idle=None)
    with pool.client() as old:
        old.process(Request(request_id="1", payload="x"))
    time.sleep(0.3)  # ages the connection past max_lifetime
    with pool.client() as new:
        assert new is not old and new.session_id != old.session_id
    assert old.phase is ClientPhase.CLOSED and old.farewell.calls == 1  # goodbye answered
    assert (pool.stats().replaced, pool.stats().created) == (1, 2)
    assert eventually(lambda: server.connection_count == 1)
    pool.close()


def test_a_broken_connection_given_back_is_discarded(server):
    pool = _pool(server.port, ClientOptions(timeouts=Timeouts(call=0.2)), max_size=1)
    with pytest.raises(CallTimeout):
        with pool.client() as broken:
            broken.process(Request(request_id="slow", payload="x", work_ms=1000))
    assert broken.phase is ClientPhase.CLOSED  # it came back BROKEN, and was closed
    stats = pool.stats()
    assert (stats.size, stats.idle, stats.discarded) == (0, 0, 1)
    with pool.client() as fresh:
        assert fresh is not broken and fresh.phase is ClientPhase.READY
    assert pool.stats().created == 2
    pool.close()


def test_replacements_fail_over_when_a_server_stops(start_server):
    a = start_server(server_name="a")
    b = start_server(server_name="b")
    endpoints = Endpoints([("127.0.0.1", a.port), ("127.0.0.1", b.port)], policy="first_available")
    pool = _pool(endpoints, max_size=2, check_after_idle=0.0)
    clients = [pool.borrow(), pool.borrow()]
    assert [c.server_hello.server_name for c in clients] == ["a", "a"]
    for client in clients:
        pool.give_back(client)
    a.stop(grace=1.0)  # its sessions are closed; the pooled clients do not know yet
    moved = [pool.borrow(), pool.borrow()]
    for n, client in enumerate(moved):
        assert client.server_hello.server_name == "b"
        client.process(Request(request_id=str(n), payload="x"))
        pool.give_back(client)
    for client in clients:  # each seen closed by the server (it said why), without a ping, then closed
        assert client.phase is ClientPhase.CLOSED
        assert [r for r in client.timeline if r.name == "ping"] == []
    stats = pool.stats()
    assert (stats.replaced, stats.created, stats.size) == (2, 4, 2)
    assert b.metrics.snapshot().connections_total == 2
    pool.close()


def test_no_idempotent_call_is_lost_when_a_server_stops_under_load(start_server):
    a = start_server(server_name="a")
    b = start_server(server_name="b")
    endpoints = Endpoints([("127.0.0.1", a.port), ("127.0.0.1", b.port)], policy="round_robin")
    options = ClientOptions(retry=RetryPolicy(idempotent={"echo", "ping"}))
    pool = _pool(endpoints, options, max_size=4, borrow_timeout=30.0)
    stop = threading.Event()
    answered = []
    served_by = set()

    def work(n: int) -> None:
        count = 0
        while not stop.is_set():
            with pool.client() as client:
                assert client.echo(f"{n}-{count}") == f"{n}-{count}"
                served_by.add(client.server_hello.server_name)
            count += 1
        answered.append(count)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    assert eventually(lambda: served_by == {"a", "b"})
    a.stop(grace=2.0)
    before = b.metrics.snapshot().calls.get("echo", 0)
    assert eventually(lambda: b.metrics.snapshot().calls.get("echo", 0) > before + 50)  # load goes on, at b
    stop.set()
    for thread in threads:
        thread.join(30)
    assert len(answered) == 8  # no thread died of an error (without the RetryPolicy some do)
    assert pool.stats().size <= 4 and b.connection_count <= 4
    pool.close()


def test_replacements_leave_a_draining_server(start_server):
    a = start_server(server_name="a", drain_notice=30.0, grace=30.0)
    b = start_server(server_name="b")
    endpoints = Endpoints([("127.0.0.1", a.port), ("127.0.0.1", b.port)], policy="first_available")
    pool = _pool(endpoints, max_size=1, check_after_idle=0.0)
    with pool.client() as client:
        assert client.server_hello.server_name == "a"
    a.request_stop()
    assert eventually(lambda: a.draining)
    with pool.client() as moved:
        assert moved.server_hello.server_name == "b"
    assert client.phase is ClientPhase.CLOSED
    pool.close()
    a.stop(grace=0)


def test_an_idle_connection_whose_server_stopped_answering_fails_its_ping_and_is_replaced(start_server, caplog):
    # Nothing on the socket tells a server that hangs: the ping does.
    caplog.set_level(logging.INFO, logger="thrift_handshake.client_pool")
    answer_pings = threading.Event()

    class HeldPing(Interceptor):
        def call_started(self, call):
            if call.method == "ping":
                answer_pings.wait(10)

    a = start_server(server_name="a", interceptors=(HeldPing(),))
    b = start_server(server_name="b")
    endpoints = Endpoints([("127.0.0.1", a.port), ("127.0.0.1", b.port)], policy="first_available")
    pool = _pool(endpoints, ClientOptions(timeouts=Timeouts(call=0.3)), max_size=1, check_after_idle=0.0)
    try:
        with pool.client() as client:
            assert client.server_hello.server_name == "a"
        with pool.client() as moved:  # the ping timed out: replaced, and the call timeout moved it to b
            assert moved.server_hello.server_name == "b"
    finally:
        answer_pings.set()
    replaced = [r.getMessage() for r in caplog.records if r.name == "thrift_handshake.client_pool"]
    assert len(replaced) == 1 and "ping failed: ping: no reply within the timeout" in replaced[0], replaced
    assert pool.stats().replaced == 1
    pool.close()


@pytest.mark.parametrize("tls", [False, True])
def test_a_connection_the_server_closed_while_idle_is_not_lent(start_server, tls):
    # Without a ping due (check_after_idle not reached), a session the server had ended while it sat in
    # the pool (drained: told why and closed) was lent: a non-idempotent call on it failed.
    server_tls = {"tls": ServerTLS(str(CERTS / "server.pem"), str(CERTS / "server.key"))} if tls else {}
    a = start_server(server_name="a", drain_notice=30.0, grace=30.0, **server_tls)
    b = start_server(server_name="b", **server_tls)
    endpoints = Endpoints([("127.0.0.1", a.port), ("127.0.0.1", b.port)], policy="first_available")
    options = ClientOptions(tls=ClientTLS(ca_file=str(CERTS / "ca.pem"))) if tls else None
    pool = _pool(endpoints, options, max_size=2, check_after_idle=None)
    with pool.client() as first, pool.client() as second:
        assert [first.server_hello.server_name, second.server_hello.server_name] == ["a", "a"]
    with pool.client() as kept:  # a live idle connection is lent as it is (TLS: after its session tickets)
        assert kept.server_hello.server_name == "a"
    assert pool.stats().replaced == 0
    a.request_stop()
    assert eventually(lambda: a.connection_count == 0)  # both sessions told and closed
    response = pool.call("process", Request(request_id="once", payload="x"))
    assert response.request_id == "once" and response.session_id != first.server_hello.session_id
    with pool.client() as one, pool.client() as two:  # the other one ended too: replaced as well
        assert [one.server_hello.server_name, two.server_hello.server_name] == ["b", "b"]
    assert [r for c in (first, second) for r in c.timeline if r.name == "ping"] == []  # no round trip needed
    stats = pool.stats()
    assert (stats.replaced, stats.discarded, stats.size) == (2, 0, 2)
    pool.close()
    a.stop(grace=0)


def test_a_connection_above_file_descriptor_1024_is_checked_too(server):
    # select() refuses descriptors past FD_SETSIZE: a process holding many files could borrow once only.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"descriptors are limited to {hard} here: none can be past 1024")
    if soft != resource.RLIM_INFINITY and soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096 if hard == resource.RLIM_INFINITY else min(hard, 4096), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        pool = _pool(server.port, max_size=1)
        with pool.client() as client:
            assert client.echo("first") == "first"
        with pool.client() as again:
            assert again is client and again.echo("again") == "again"
        pool.close()
    finally:
        for fd in held:
            os.close(fd)


def test_close_says_goodbye_and_waits_for_borrowed_connections(server):
    pool = _pool(server.port, max_size=3)
    idle, borrowed, last = pool.borrow(), pool.borrow(), pool.borrow()
    pool.give_back(idle)
    left = []
    closer = threading.Thread(target=lambda: left.append(pool.close(grace=30.0)))
    closer.start()
    assert eventually(lambda: idle.phase is ClientPhase.CLOSED) and idle.farewell is not None
    with pytest.raises(PhaseError, match="cannot borrow a connection in phase CLOSED: the pool is closed"):
        pool.borrow()
    pool.give_back(borrowed)
    assert borrowed.phase is ClientPhase.CLOSED and borrowed.farewell is not None
    assert closer.is_alive()  # still waiting for the last one
    pool.give_back(last)
    closer.join(10)
    assert left == [0] and last.farewell is not None
    assert eventually(lambda: server.connection_count == 0)
    stats = pool.stats()
    assert (stats.size, stats.discarded) == (0, 0)  # closed by close(), not because they broke


def test_close_tells_waiting_borrowers_and_gives_up_after_its_grace(server):
    pool = _pool(server.port, max_size=1, borrow_timeout=30.0)
    held = pool.borrow()
    refused = []

    def borrow_while_closing():
        try:
            pool.borrow()
        except PhaseError as error:
            refused.append(str(error))

    waiter = threading.Thread(target=borrow_while_closing)
    waiter.start()
    assert eventually(lambda: pool.stats().waiting == 1)
    assert pool.close(grace=0.1) == 1  # the one still borrowed
    waiter.join(10)
    assert refused == ["cannot borrow a connection in phase CLOSED: the pool is closed"]
    pool.give_back(held)  # closed as it comes back
    assert held.phase is ClientPhase.CLOSED and held.farewell is not None and pool.stats().size == 0


def test_a_borrow_still_saying_hello_when_the_pool_closes_is_refused(start_server):
    hello_reached, hello_may_go = threading.Event(), threading.Event()

    class HeldHello(Interceptor):
        def call_started(self, call):
            if call.method == "hello":
                hello_reached.set()
                hello_may_go.wait(10)

    server = start_server(interceptors=(HeldHello(),))
    pool = _pool(server.port, max_size=2, close_grace=10.0)
    borrow = Background(pool.borrow)
    assert hello_reached.wait(5)
    closing = Background(pool.close)
    assert eventually(lambda: pool.closed)
    hello_may_go.set()
    refused = borrow.result()
    assert isinstance(refused, PhaseError), f"a closed pool lent {refused!r}"
    assert str(refused) == "cannot borrow a connection in phase CLOSED: the pool is closed"
    assert closing.result() == 0  # nothing left borrowed: close() did not wait its grace for it
    assert pool.stats().size == 0
    assert eventually(lambda: server.connection_count == 0)  # the new connection said goodbye


def test_pool_call_borrows_for_one_call(server):
    with _pool(server.port, max_size=2) as pool:
        assert pool.call("echo", "hi") == "hi"
        assert pool.call("echo", message="again") == "again"
        assert (pool.stats().created, pool.stats().borrows, pool.stats().in_use) == (1, 2, 0)


def test_an_idempotent_pool_call_borrows_again_when_its_new_connection_is_refused(start_server, caplog):
    # Behind a balancer a new connection may reach a server that is full or draining; the RetryPolicy
    # tried such a call again only once it had a connection: the borrow's refusal reached the caller.
    server = start_server(limits=ServerLimits(max_connections=1))
    holder = _pool(server.port).borrow()  # the one slot, in a session: a newcomer is told "server full"

    class FreeTheSlot(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "borrowing again" in record.getMessage() and holder.phase is ClientPhase.READY:
                holder.close()
                assert eventually(lambda: server.connection_count == 0)

    retry = RetryPolicy(idempotent={"echo"}, backoff=0.01)
    pool = _pool(server.port, ClientOptions(retry=retry), max_size=1)
    with pytest.raises(ServerFull):  # not idempotent: never tried again, as a call is not
        pool.call("process", Request(request_id="once"))
    handler = FreeTheSlot()
    caplog.set_level(logging.INFO, logger="thrift_handshake.client_pool")
    logging.getLogger("thrift_handshake.client_pool").addHandler(handler)
    try:
        assert pool.call("echo", "through") == "through"
    finally:
        logging.getLogger("thrift_handshake.client_pool").removeHandler(handler)
    assert pool.stats().size == 1
    pool.close()


def test_options_are_checked():
    for bad in (dict(max_size=0), dict(max_size=True), dict(borrow_timeout=-1), dict(check_after_idle="1"),
                dict(close_grace=None), dict(max_lifetime=10 ** 6)):
        with pytest.raises(ValueError, match="PoolOptions"):
            PoolOptions(**bad)
    with pytest.raises(TypeError, match="limits must be a PoolOptions"):
        ClientPool("127.0.0.1", 9090, limits={"max_size": 2})
