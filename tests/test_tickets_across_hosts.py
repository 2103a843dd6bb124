"""Tickets across hosts: demo servers sharing one Redis server (``--ticket-store redis://...``) answer for
each other's tickets, report a killed server's running tickets lost once its lease expires, and turn a
Redis server that is down, or restarted empty, into clear typed answers while they stay up.

Each test starts a real ``redis-server`` on loopback (scripts/test installs Debian's ``redis-server``)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator, List

import pytest
import redis  # the test extras install it; never skipped
from conftest import eventually, report_reliability
from server_process import Background, serve_subprocess
from test_workers import serve  # noqa: F401 (the fixture: a `serve --workers` process)

from thrift_handshake import Client, HandshakeServer, ServerConfig
from thrift_handshake.demo import DemoLimits, demo_server
from thrift_handshake.demo.redis_store import ANSWER_TIMEOUT
from thrift_handshake.demo.store import CANCELLED, DONE, open_store
from thrift_handshake.demo.tickets import TicketBoard
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import NotReady, Overloaded, Request, Response, UnknownTicket


#: The owners' lease in these tests: a killed server's tickets read lost this soon.
LEASE = 1.0


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port, without persistence (a restart empties it)."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is missing: scripts/test installs it (Debian: apt-get install redis-server)"
        self._binary = binary
        self._directory = directory
        self.port = _free_port()
        self._process: "subprocess.Popen[bytes] | None" = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self._directory), "--logfile", str(self._directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        try:
            assert eventually(lambda: self._answers(client), 10), "redis-server did not start"
        finally:
            client.close()

    @staticmethod
    def _answers(client: "redis.Redis") -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    def pause(self, paused: bool = True) -> None:
        """Stops (SIGSTOP) or resumes (SIGCONT) the server: connections are accepted, nothing answered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)
        self._process = None


class BreakingRelay:
    """A TCP relay to a Redis server that can make the next command vanish with a reset, as a Redis
    that dies (or fails over) mid-command does; or ``cut()`` it off (open connections closed, new ones
    closed at once, nothing delivered) until ``mend()``, as a Redis host that drops off the network."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.break_next = threading.Event()
        self.broken = 0
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._open: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, query: str = "") -> str:
        return f"redis://127.0.0.1:{self.port}/0" + (f"?{query}" if query else "")

    def cut(self) -> None:
        with self._lock:
            self._cut.set()
            for sock in self._open:
                sock.close()
            self._open.clear()

    def mend(self) -> None:
        self._cut.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            if self._cut.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        while not self._cut.is_set():
            try:
                data = source.recv(65536)
            except OSError:
                break
            if not data:
                break
            if from_client and self.break_next.is_set():
                self.break_next.clear()
                self.broken += 1
                source.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                break
            try:
                sink.sendall(data)
            except OSError:
                break
        source.close()
        sink.close()

    def close(self) -> None:
        self._listener.close()
        self.cut()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def demo_on() -> Iterator:
    """``demo_on(store_url)``: a demo server in this process on that store; all stopped afterwards, and
    the test fails if a lease's thread outlives its server."""
    servers: List[HandshakeServer] = []

    def start(url: str) -> HandshakeServer:
        servers.append(demo_server(ServerConfig(port=0), ticket_store=url).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop(grace=5.0)
    assert eventually(lambda: not [t for t in threading.enumerate() if t.name == "ticket-lease"]), \
        "a ticket store's lease is still renewed after its server stopped"


def _free_port() -> int:
    with socket.socket() as probe:  # redis-server has no --port 0: a port free now, taken at once
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def connect(server: HandshakeServer) -> Client:
    return Client("127.0.0.1", server.port, service=HandshakeService)


def test_a_ticket_submitted_on_one_server_is_answered_by_another(redis_server, demo_on):
    # Each server knew only its own tickets (or those of its host's SQLite file): B answered UnknownTicket.
    a, b = demo_on(redis_server.url), demo_on(redis_server.url)
    with connect(a) as on_a, connect(b) as on_b:
        ack = on_a.submit(Request(request_id="across", payload="x", work_ms=300))
        with pytest.raises(NotReady) as caught:
            on_b.get_result(ack.ticket, 0)
        assert caught.value.message == "still running after waiting 0 ms"
        result = on_b.get_result(ack.ticket, 10_000)  # waits on A's work, through the store
        assert result.request_id == "across"
        assert result == on_a.get_result(ack.ticket, 0)
        with pytest.raises(UnknownTicket) as unknown:
            on_b.get_result("never-issued", 0)
        assert unknown.value.ticket == "never-issued"


def test_workers_open_the_redis_store_each_and_give_their_leases_up_at_a_stop(redis_server, serve):
    workers = serve("--workers", "2", "--ticket-store", redis_server.url)
    first, second = workers.clients_on_each_worker().values()
    ack = first.submit(Request(request_id="w", payload="x", work_ms=100))
    assert second.get_result(ack.ticket, 5000).request_id == "w"
    client = redis.Redis(port=redis_server.port)
    try:
        assert len(client.keys("thrift-handshake:tickets:owner:*")) == 2  # one lease a worker
        assert workers.stop() == 0
        assert client.keys("thrift-handshake:tickets:owner:*") == []
    finally:
        client.close()


def test_a_killed_servers_running_ticket_reads_lost_on_another_host_after_its_lease(redis_server, demo_on):
    # No pid to check across hosts: without a lease the ticket would read "still running" for ever.
    url = f"{redis_server.url}?lease={LEASE:g}"
    process, port = serve_subprocess("--ticket-store", url)
    try:
        b = demo_on(url)
        with Client("127.0.0.1", port, service=HandshakeService) as on_a, connect(b) as on_b:
            ticket = on_a.submit(Request(request_id="doomed", payload="x", work_ms=10_000)).ticket
            renewals = _lease_renewals(redis_server, process.pid, count=4)  # more than a lease went by
            assert renewals >= 4
            with pytest.raises(NotReady) as caught:
                on_b.get_result(ticket, 0)
            assert caught.value.message == "still running after waiting 0 ms", "a live owner's ticket"
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            killed = time.monotonic()
            answers = []

            def lost() -> bool:
                try:
                    on_b.get_result(ticket, 0)
                except NotReady as error:
                    answers.append(error.message)
                return answers[-1].startswith("lost: ")

            assert eventually(lost, LEASE + 5), answers[-1]
            after = time.monotonic() - killed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        process.stderr.close()
    figure = f"read lost {after:.2f} s after the SIGKILL (lease {LEASE:g} s); 'still running' for ever before"
    print("\n" + figure)
    report_reliability("two hosts on one Redis store, one SIGKILLed: its running ticket", 1, True, 0, figure=figure)
    assert answers[-1] == "lost: the server stopped without finishing it (killed?); submit it again"
    assert after <= LEASE + 1.0


def _lease_renewals(redis_server: RedisServer, pid: int, count: int) -> int:
    """Waits until the lease of the server process ``pid`` has been renewed ``count`` times; how many."""
    client = redis.Redis(port=redis_server.port)
    seen = {"renewals": 0, "ttl": None}

    def renewed() -> bool:
        keys = [key for key in client.keys("thrift-handshake:tickets:owner:*") if f":{pid}:".encode() in key]
        ttl = client.pttl(keys[0]) if keys else None
        if ttl is not None and seen["ttl"] is not None and ttl > seen["ttl"]:
            seen["renewals"] += 1
        seen["ttl"] = ttl
        return seen["renewals"] >= count

    try:
        assert eventually(renewed, LEASE * count), f"the lease was renewed {seen['renewals']} times"
        return seen["renewals"]
    finally:
        client.close()


def test_a_stopped_redis_is_a_typed_error_logged_once_and_the_server_stays_up(redis_server, demo_on, caplog):
    # What the SQLite store does for a vanished file, the Redis store does for a server that is down.
    server = demo_on(redis_server.url)
    caplog.set_level(logging.INFO)
    with connect(server) as client:
        ack = client.submit(Request(request_id="before", payload="x"))
        assert client.get_result(ack.ticket, 5000).request_id == "before"
        redis_server.stop()
        for n in range(20):
            with pytest.raises(Overloaded) as caught:
                client.submit(Request(request_id=f"during-{n}", payload="x"))
            assert caught.value.message.startswith("the ticket store cannot record this ticket now")
        with pytest.raises(NotReady) as caught:
            client.get_result("a-ticket-only-the-store-knows", 0)
        assert caught.value.message == "the ticket store cannot be read now (the server's log says why)"
        assert client.get_result(ack.ticket, 0).request_id == "before"  # this server's own, from memory
        assert client.echo("still up") == "still up"
        redis_server.start()  # back (empty): the next submit reconnects
        again = client.submit(Request(request_id="after", payload="x"))
        assert client.get_result(again.ticket, 5000).request_id == "after"
    server.stop()
    failures = [r.getMessage() for r in caplog.records if r.name == "thrift_handshake.demo.tickets"]
    # one line for the kind of error, one counting its repeats (19 submits and the look-up) at the stop
    assert len(failures) == 2, failures
    assert failures[0].startswith(f"the ticket store failed: LedgerError: ticket store {redis_server.url}: ")
    assert "Connection refused" in failures[0], failures[0]
    assert failures[1].endswith("Connection refused.: 20 more times"), failures
    assert not [r for r in caplog.records if r.exc_info], "a traceback"


def test_a_redis_that_hangs_holds_only_the_calls_that_need_it(redis_server, demo_on):
    # The store was written under the board's lock: one submit waiting on a hung Redis held every other
    # submit and every get_result of the server, even of tickets it held in memory.
    server = demo_on(redis_server.url)
    with connect(server) as client, connect(server) as other:
        ack = client.submit(Request(request_id="before", payload="x"))
        assert client.get_result(ack.ticket, 5000).request_id == "before"
        redis_server.pause()
        try:
            started = time.monotonic()
            waiting = Background(client.submit, Request(request_id="during", payload="x"))
            assert eventually(lambda: server.metrics.snapshot().calls.get("submit", 0) == 2)  # in the handler
            answered = time.monotonic()
            assert other.get_result(ack.ticket, 0).request_id == "before"
            answered = time.monotonic() - answered
            refused = waiting.result(ANSWER_TIMEOUT + 10)
            waited = time.monotonic() - started
        finally:
            redis_server.pause(False)
    print(f"\nwhile a submit waited {waited:.2f} s on a hung Redis, get_result answered in {answered * 1e3:.1f} ms")
    assert isinstance(refused, Overloaded), refused
    assert refused.message.startswith("the ticket store cannot record this ticket now")
    assert ANSWER_TIMEOUT <= waited < ANSWER_TIMEOUT + 3
    assert answered < ANSWER_TIMEOUT / 2, answered


def test_a_result_is_answered_only_once_its_outcome_is_recorded(redis_server, demo_on, caplog):
    # The submitting server answered get_result from memory as soon as the work ended, before the outcome
    # was in the store: killed then, its ticket read "done" to one client and "lost" to the next.
    server = demo_on(redis_server.url)
    caplog.set_level(logging.ERROR)
    with connect(server) as client:
        ack = client.submit(Request(request_id="slow-to-record", payload="x", work_ms=300))
        redis_server.pause()  # the outcome cannot be written until the store's answer timeout
        try:
            result = client.get_result(ack.ticket, 10_000)
            recorded = [r.getMessage() for r in caplog.records if r.name == "thrift_handshake.demo.tickets"]
        finally:
            redis_server.pause(False)
    assert result.request_id == "slow-to-record"
    assert len(recorded) == 1 and "Timeout" in recorded[0], recorded  # tried, and said so, first


def test_a_ticket_being_recorded_when_the_board_stops_is_recorded_cancelled(redis_server):
    # The store is written outside the board's lock: a stop may come in between; the ticket must not be
    # left "accepted" by a live process that will never run it.
    board = TicketBoard(DemoLimits(), open_store(redis_server.url, ttl=600))
    try:
        redis_server.pause()
        try:
            waiting = Background(board.submit, lambda: Response(request_id="never"), 0, "s1")
            assert eventually(lambda: len(board._unfinished) == 1)  # its place taken, its record on the way
            board.stop()
        finally:
            redis_server.pause(False)
        refused = waiting.result(ANSWER_TIMEOUT + 10)
        assert isinstance(refused, Overloaded) and refused.message == "the server is stopping", refused
        assert board.drain(5)
        client = redis.Redis(port=redis_server.port)
        keys = client.keys("thrift-handshake:tickets:ticket:*")
        client.close()
        assert len(keys) == 1, keys
        reader = open_store(redis_server.url, ttl=600)
        assert reader.outcome(keys[0].rsplit(b":", 1)[1].decode()) == (CANCELLED, None, "")
        reader.close()
    finally:
        board.close_store()


def test_a_redis_restarted_empty_answers_unknown_ticket_and_says_why_in_the_log(redis_server, demo_on, caplog):
    # Nothing survived the restart: a look-up must not claim the ticket runs, nor fail for ever.
    url = f"{redis_server.url}?lease={LEASE:g}"
    a, b = demo_on(url), demo_on(url)
    caplog.set_level(logging.WARNING)
    with connect(a) as on_a, connect(b) as on_b:
        ack = on_a.submit(Request(request_id="before", payload="x"))
        assert on_b.get_result(ack.ticket, 5000).request_id == "before"
        redis_server.stop()
        redis_server.start()
        with pytest.raises(UnknownTicket) as caught:
            on_b.get_result(ack.ticket, 0)
        assert caught.value.ticket == ack.ticket
        assert on_a.get_result(ack.ticket, 0).request_id == "before"  # its own server still holds it
        fresh = on_a.submit(Request(request_id="after", payload="x"))
        assert on_b.get_result(fresh.ticket, 5000).request_id == "after"
        assert eventually(lambda: len(_data_lost(caplog)) == 2, LEASE * 3), _data_lost(caplog)
    assert _data_lost(caplog)[0] == (f"ticket store {redis_server.url} lost its data (the Redis server restarted "
                                     f"without persistence, or was flushed): the tickets acknowledged before are "
                                     f"unknown now")


def _data_lost(caplog) -> List[str]:
    return [r.getMessage() for r in caplog.records if "lost its data" in r.getMessage()]


def test_an_unreachable_or_unknown_store_is_refused_at_start(redis_server):
    port = redis_server.port
    redis_server.stop()
    with pytest.raises(ValueError) as caught:
        open_store(f"redis://:secret@127.0.0.1:{port}/0", ttl=600)
    assert str(caught.value).startswith(f"ticket store redis://127.0.0.1:{port}/0: ")
    assert "secret" not in str(caught.value)
    with pytest.raises(ValueError) as caught:
        open_store("postgres://127.0.0.1/tickets", ttl=600)
    assert "unknown kind of store" in str(caught.value)
    with pytest.raises(ValueError) as caught:
        open_store(f"redis://127.0.0.1:{port}/0?lease=soon", ttl=600)
    assert str(caught.value) == "ticket store: lease='soon' is not a number of seconds"


def test_stores_with_another_prefix_share_nothing(redis_server):
    ours, theirs = (open_store(f"{redis_server.url}?prefix={name}:", ttl=600) for name in ("ours", "theirs"))
    try:
        ours.accepted("t1")
        ours.finished("t1", DONE, Response(request_id="r1"))
        assert ours.outcome("t1") == (DONE, Response(request_id="r1"), "")
        assert theirs.outcome("t1") is None
    finally:
        ours.close()
        theirs.close()


def test_a_connection_that_breaks_mid_command_is_retried_once_on_a_new_one(redis_server):
    # A Redis restart or failover reset the connection under a command: the call failed (a submit
    # refused) although the store was there again.
    relay = BreakingRelay(redis_server.port)
    store = open_store(f"redis://127.0.0.1:{relay.port}/0?lease=60", ttl=600)  # renewals out of the way
    try:
        store.accepted("t1")
        relay.break_next.set()
        store.finished("t1", DONE, Response(request_id="r1"))
        assert relay.broken == 1
        assert store.outcome("t1") == (DONE, Response(request_id="r1"), "")
    finally:
        store.close()
        relay.close()
