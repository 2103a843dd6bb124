"""``serve --max-connection-age``: past its age (drawn within +-10%), a session's next call is answered
"reconnect" before it runs and the connection closes; the client connects again and sends the call once
more, so no call fails and none runs twice, and load moves to servers started since."""

from __future__ import annotations

import asyncio
import collections
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
from thrift.transport.TTransport import TTransportException

from thrift_handshake import (AsyncClient, Client, ClientOptions, Endpoints, HandshakeServer, Interceptor,
                              ReconnectAsked, ServerConfig, ServerLimits)
from thrift_handshake.cli import build_parser
from thrift_handshake.client_pool import ClientPool, PoolOptions
from thrift_handshake.connection_age import JITTER, age_deadline, asks_to_reconnect
from thrift_handshake.demo.handler import HandshakeHandler
from thrift_handshake.states import ClientPhase
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Event, Request
from thrift_handshake_gen.session.ttypes import HandshakeRequired

from conftest import RawConnection, eventually
from test_async_server import event_loop_thread, loop_factory, start_async  # noqa: F401 (fixtures)
from test_workers import serve  # noqa: F401 (fixture)

#: Short enough that a test crosses it a few times, long enough that hello and a call fit in it.
AGE = 0.3


class CountingHandler(HandshakeHandler):
    """The demo service, counting how often each echo message and each submitted request id ran."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: Dict[str, int] = collections.Counter()
        self._count_lock = threading.Lock()

    def _ran(self, key: str) -> None:
        with self._count_lock:
            self.runs[key] += 1

    def echo(self, message: str) -> str:
        self._ran("echo:" + message)
        return message

    def submit(self, request: Request) -> Any:
        self._ran("submit:" + request.request_id)
        return super().submit(request)


@pytest.fixture
def counting(start_server) -> Callable[..., HandshakeServer]:
    """Starts a server of ``CountingHandler`` (``counting(**ServerConfig fields)``)."""

    def start(**config: Any) -> HandshakeServer:
        handler = CountingHandler()
        server = start_server(handler, **config)
        server.on_stop(handler.close)
        return server

    return start


def aged(seconds: float = AGE) -> ServerLimits:
    return ServerLimits(max_connection_age=seconds)


def open_client(target: Any, port: int = 9090, **options: Any) -> Client:
    client = Client(target, port, ClientOptions(**options), service=HandshakeService)
    client.connect()
    return client


def submit_for(client: Client, seconds: float) -> int:
    """Submits requests one after another for ``seconds``, each acknowledged; returns how many."""
    deadline = time.monotonic() + seconds
    number = 0
    while time.monotonic() < deadline:
        number += 1
        assert client.submit(Request(request_id=f"r{number}")).request_id == f"r{number}"
        time.sleep(0.01)
    return number


def reconnects(client: Client) -> List[Any]:
    return [record for record in client.timeline if record.phase == "reconnect"]


# -- the deadline, without sockets -----------------------------------------------------------------

def test_each_connection_draws_its_age_within_the_jitter():
    assert age_deadline(100.0, 10.0, draw=lambda: 0.0) == pytest.approx(100.0 + 10.0 * (1 - JITTER))
    assert age_deadline(100.0, 10.0, draw=lambda: 0.5) == pytest.approx(110.0)
    assert age_deadline(100.0, 10.0, draw=lambda: 0.999999) == pytest.approx(100.0 + 10.0 * (1 + JITTER), abs=1e-4)
    ages = [age_deadline(0.0, 10.0) for _ in range(2000)]
    assert all(10.0 * (1 - JITTER) <= age <= 10.0 * (1 + JITTER) for age in ages)
    # spread over the whole band, not bunched: a fleet's connections do not all end together
    assert min(ages) < 9.2 and max(ages) > 10.8
    with pytest.raises(ValueError, match="max_age must be positive"):
        age_deadline(0.0, 0.0)


def test_the_limit_is_off_by_default_and_validated():
    assert ServerLimits().max_connection_age == 0
    with pytest.raises(ValueError, match=r"max_connection_age must be a number in \[0, 86400\]"):
        ServerLimits(max_connection_age=-1)
    with pytest.raises(ValueError, match="max_connection_age needs the handshake on"):
        ServerConfig(handshake=False, limits=aged(5))
    args = build_parser().parse_args(["serve", "--max-connection-age", "2.5"])
    assert args.max_connection_age == 2.5


# -- the threaded client and server ----------------------------------------------------------------

def test_calls_across_the_age_run_once_and_none_fails(counting):
    server = counting(limits=aged())
    handler = server.handler
    client = open_client("127.0.0.1", server.port, timeline_size=100_000)
    sent = collections.Counter()
    submitted: List[str] = []
    events: List[str] = []
    deadline = time.monotonic() + 4 * AGE
    number = 0
    while time.monotonic() < deadline:
        number += 1
        assert client.echo(f"m{number}") == f"m{number}"
        sent[f"echo:m{number}"] += 1
        request_id = f"r{number}"
        assert client.submit(Request(request_id=request_id, payload="x")).request_id == request_id
        submitted.append(request_id)
        client.notify(Event(name=f"e{number}"))
        events.append(f"e{number}")
        time.sleep(0.005)
    time.sleep(AGE * (1 + JITTER) + 0.05)  # the next call finds the connection past its age: a submit
    assert client.submit(Request(request_id="asked", payload="x")).request_id == "asked"
    submitted.append("asked")
    client.stats()
    # every call ran exactly once, the non-idempotent submit included
    assert dict(handler.runs) == {**sent, **{f"submit:{r}": 1 for r in submitted}}
    # the one-way calls all arrived, in order: none was dropped at a reconnect
    assert eventually(lambda: [e.name for e in handler.recent_events][-len(events[-100:]):] == events[-100:])
    # the client was asked, reconnected, and the server saw several sessions
    assert len(reconnects(client)) >= 2
    asked = [r for r in client.timeline.calls() if r.error]
    assert asked and all("ReconnectAsked" in r.error for r in asked)
    assert {r.name for r in asked} >= {"submit"}
    stats = server.metrics.snapshot()
    assert stats.handshakes_ok == len(reconnects(client)) + 1
    client.close()


def test_a_call_in_flight_at_the_age_finishes_and_the_next_one_reconnects(counting):
    server = counting(limits=aged())
    client = open_client("127.0.0.1", server.port)
    session = client.session_id
    response = client.process(Request(request_id="long", work_ms=int(AGE * 2000)))  # runs across the age
    assert response.request_id == "long" and response.session_id == session
    assert not reconnects(client)
    assert client.echo("after") == "after"
    assert len(reconnects(client)) == 1 and client.session_id != session
    assert server.handler.runs["echo:after"] == 1
    client.close()


def test_ping_and_one_way_calls_past_the_age_are_served_on_the_same_connection(counting):
    server = counting(limits=aged())
    client = open_client("127.0.0.1", server.port)
    session = client.session_id
    time.sleep(AGE * (1 + JITTER) + 0.05)  # lets the connection pass its age (not a proof of anything)
    client.ping()
    client.notify(Event(name="past-the-age"))
    assert eventually(lambda: [e.name for e in server.handler.recent_events] == ["past-the-age"])
    assert client.session_id == session and not reconnects(client)
    assert client.echo("next") == "next"  # the first call that can be told: answered "reconnect", resent
    assert client.session_id != session and len(reconnects(client)) == 1
    assert server.handler.runs["echo:next"] == 1
    client.close()


def test_goodbye_past_the_age_ends_the_session_as_usual(server_with_age):
    client = open_client("127.0.0.1", server_with_age.port)
    time.sleep(AGE * (1 + JITTER) + 0.05)
    farewell = client.goodbye()
    assert farewell.session_id is not None and client.phase is ClientPhase.CLOSED


@pytest.fixture
def server_with_age(start_server) -> HandshakeServer:
    return start_server(limits=aged())


def test_a_client_that_does_not_follow_gets_reconnect_asked_and_the_call_did_not_run(counting):
    server = counting(limits=aged())
    client = open_client("127.0.0.1", server.port, reconnect_when_asked=False)
    assert client.echo("young") == "young"  # a session is asked only once it has served a call
    time.sleep(AGE * (1 + JITTER) + 0.05)
    with pytest.raises(ReconnectAsked, match="max connection age") as asked:
        client.echo("not run")
    assert asked.value.may_have_run is False
    assert client.phase is ClientPhase.BROKEN
    assert server.handler.runs["echo:not run"] == 0
    client.reconnect()
    assert client.echo("run") == "run"
    client.close()


def test_with_hello_pipelined_the_resent_call_rides_behind_the_new_hello(counting):
    server = counting(limits=aged())
    client = open_client("127.0.0.1", server.port, pipeline_hello=True)
    assert client.echo("first") == "first"
    time.sleep(AGE * (1 + JITTER) + 0.05)
    assert client.echo("resent") == "resent"
    assert len(reconnects(client)) == 1 and server.handler.runs["echo:resent"] == 1
    handshakes = [r for r in client.timeline if r.phase == "handshake"]
    assert len(handshakes) == 2 and all(r.pipelined for r in handshakes)
    client.close()


class SlowCalls(Interceptor):
    """Lets 20 ms pass before each call of the client goes out (hello aside)."""

    def call_started(self, call: Any) -> None:
        if call.method != "hello":
            time.sleep(0.02)


def test_however_short_the_age_every_call_is_served_once(counting):
    server = counting(limits=aged(0.001))  # every connection is past its age by its first call
    client = open_client("127.0.0.1", server.port, interceptors=[SlowCalls()])
    for number in range(6):  # each connection serves its first call, and is asked to reconnect at the next
        assert client.echo(f"m{number}") == f"m{number}"
    assert dict(server.handler.runs) == {f"echo:m{number}": 1 for number in range(6)}
    assert len(reconnects(client)) == 5
    client.close()


class AlwaysReconnect(CountingHandler):
    """A server that answers every echo "reconnect" (as no server of this project does: it serves a
    session's first call), to pin the client's own limit."""

    def echo(self, message: str) -> str:
        self._ran("echo:" + message)
        raise HandshakeRequired(message="connect again", reconnect=True)


def test_a_call_is_sent_again_once_not_for_ever(start_server):
    server = start_server(AlwaysReconnect())
    client = open_client("127.0.0.1", server.port)
    with pytest.raises(ReconnectAsked, match="echo: the server asked this client to reconnect"):
        client.echo("again")
    assert len(reconnects(client)) == 1 and server.handler.runs["echo:again"] == 2
    assert server.metrics.snapshot().handshakes_ok == 2


def test_a_plain_thrift_client_sees_the_declared_answer_then_a_clean_close(server_with_age):
    raw = RawConnection(server_with_age.port)
    try:
        raw.hello()
        assert raw.stub.echo("young") == "young"
        time.sleep(AGE * (1 + JITTER) + 0.05)
        with pytest.raises(HandshakeRequired) as answer:
            raw.stub.echo("old")
        assert answer.value.reconnect is True and asks_to_reconnect(answer.value)
        assert "was not run" in answer.value.message and "connect again" in answer.value.message
        with pytest.raises(TTransportException):  # the server closed after its answer
            raw.stub.echo("again")
    finally:
        raw.close()
    assert eventually(lambda: server_with_age.connection_count == 0)


def test_a_server_without_the_limit_never_asks(counting):
    server = counting()
    client = open_client("127.0.0.1", server.port)
    time.sleep(AGE * (1 + JITTER) + 0.05)
    assert client.echo("still") == "still" and not reconnects(client)
    client.close()


# -- load moves to a server started later ----------------------------------------------------------

def _reserved_port() -> socket.socket:
    """A loopback port bound but not listening (connections to it are refused) until released."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    return holder


def test_after_the_age_calls_move_to_a_server_started_later(counting):
    first = counting(limits=aged())
    holder = _reserved_port()
    later_port = holder.getsockname()[1]
    endpoints = Endpoints([("127.0.0.1", first.port), ("127.0.0.1", later_port)], avoid_failed=0)
    client = open_client(endpoints)
    assert client.port == first.port  # the later one refuses for now
    for number in range(5):
        client.echo(f"before{number}")
    holder.close()
    later = counting(port=later_port, limits=aged())
    deadline = time.monotonic() + 10 * AGE
    number = 0
    while time.monotonic() < deadline and later.handler.runs.total() < 5:
        number += 1
        request_id = f"r{number}"
        assert client.submit(Request(request_id=request_id)).request_id == request_id
        time.sleep(0.01)
    runs = first.handler.runs + later.handler.runs
    assert later.handler.runs.total() >= 5, "no call moved to the server started later"
    assert all(count == 1 for count in runs.values()) and runs.total() == number + 5
    client.close()


# -- the asyncio server: the same gate ---------------------------------------------------------------

def test_the_asyncio_server_asks_the_same_and_the_client_follows(start_async):
    server = start_async(limits=aged())
    client = open_client("127.0.0.1", server.port)
    submit_for(client, 3 * AGE)
    assert len(reconnects(client)) >= 2
    assert server.metrics.snapshot().handshakes_ok == len(reconnects(client)) + 1
    client.close()


# -- serve --workers: the flag reaches every worker --------------------------------------------------

def test_every_worker_asks_and_the_client_follows(serve):
    workers = serve("--workers", "2", "--max-connection-age", str(AGE))
    client = workers.connect(timeline_size=100_000)
    submit_for(client, 4 * AGE)
    assert len(reconnects(client)) >= 2
    assert client.stats().handshakes_ok >= len(reconnects(client)) + 1  # summed over the workers
    workers.wait_for(r"closed peer=.*max connection age", count=2)
    assert workers.stop() == 0


# -- AsyncClient: calls pipelined across the age --------------------------------------------------------

def test_the_async_client_resends_what_was_written_behind_the_asked_call(counting):
    server = counting(limits=aged())
    handler = server.handler

    async def load() -> AsyncClient:
        client = AsyncClient("127.0.0.1", server.port, ClientOptions(timeline_size=100_000), service=HandshakeService)
        await client.connect()
        deadline = time.monotonic() + 4 * AGE
        batch = 0
        while time.monotonic() < deadline:
            batch += 1
            calls = []
            for number in range(8):  # two-way and one-way calls interleaved, all in flight at once
                key = f"{batch}.{number}"
                calls.append(client.echo(key))
                calls.append(client.notify(Event(name=key)))
                calls.append(client.submit(Request(request_id=key)))
            results = await asyncio.gather(*calls)
            assert results[0::3] == [f"{batch}.{number}" for number in range(8)]
            assert [ack.request_id for ack in results[2::3]] == [f"{batch}.{number}" for number in range(8)]
        await client.close()
        return client, batch

    client, batches = asyncio.run(asyncio.wait_for(load(), 60))
    keys = [f"{batch}.{number}" for batch in range(1, batches + 1) for number in range(8)]
    assert dict(handler.runs) == {**{f"echo:{k}": 1 for k in keys}, **{f"submit:{k}": 1 for k in keys}}
    assert len(reconnects(client)) >= 2
    assert server.metrics.snapshot().notifications == len(keys)  # every one-way call delivered, none twice


def test_a_cancelled_call_answered_reconnect_still_moves_the_calls_behind_it(counting):
    server = counting(limits=aged())
    handler = server.handler

    async def cancel_the_asked_call() -> AsyncClient:
        client = AsyncClient("127.0.0.1", server.port, service=HandshakeService)
        await client.connect()
        assert await client.echo("young") == "young"  # a session is asked only once it has served a call
        await asyncio.sleep(AGE * (1 + JITTER) + 0.05)  # the next call is answered "reconnect"
        cancelled = asyncio.ensure_future(client.echo("cancelled"))
        await asyncio.sleep(0)  # written
        await client.notify(Event(name="behind"))
        behind = asyncio.ensure_future(client.echo("behind"))
        await asyncio.sleep(0)
        cancelled.cancel()
        assert await behind == "behind"
        await client.close()
        return client

    client = asyncio.run(asyncio.wait_for(cancel_the_asked_call(), 30))
    assert len(reconnects(client)) == 1
    assert handler.runs == {"echo:young": 1, "echo:behind": 1}
    assert [event.name for event in handler.recent_events] == ["behind"]


# -- a pool of clients: each pooled Client follows on its own -----------------------------------------

def test_threads_sharing_a_pool_see_no_failed_call_across_the_age(counting):
    server = counting(limits=aged())
    handler = server.handler
    failures: List[BaseException] = []
    done: Dict[str, int] = collections.Counter()

    def work(thread: int) -> None:
        deadline = time.monotonic() + 4 * AGE
        number = 0
        while time.monotonic() < deadline:
            number += 1
            key = f"{thread}.{number}"
            try:
                assert pool.call("submit", Request(request_id=key)).request_id == key
                done[key] += 1
            except BaseException as error:  # collected: the test asserts there is none
                failures.append(error)
            time.sleep(0.005)

    with ClientPool("127.0.0.1", server.port, service=HandshakeService, limits=PoolOptions(max_size=2)) as pool:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    assert dict(handler.runs) == {f"submit:{key}": 1 for key in done}
    assert server.metrics.snapshot().handshakes_ok >= 4  # each pooled connection reconnected at least once
