"""The AsyncClient against real servers on 127.0.0.1: the contract, pipelining, cancellation, timeouts.

The threaded HandshakeServer (the ``start_server`` fixture) answers in order; ``async_peer.Peer`` is an
asyncio Thrift peer that answers out of order (or with a foreign seqid) to prove replies go by seqid.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Awaitable, List, Optional, Tuple

import pytest

from thrift.Thrift import TApplicationException

from async_peer import Peer, echo_reply, encode_reply, reversed_after, silent_peer
from conftest import eventually
from test_async_server import aserver, event_loop_thread, loop_factory, start_async
from thrift_handshake import (
    ArgumentError,
    AsyncClient,
    CallTimeout,
    Client,
    ClientOptions,
    ClientPhase,
    ClientTLS,
    ConnectError,
    ConnectionBroken,
    HandshakeFailed,
    Interceptor,
    Outcome,
    PhaseError,
    RemoteApplicationError,
    RequestEncodingError,
    RetryPolicy,
    ServerDraining,
    ServerTLS,
    ServiceError,
    Timeouts,
    Wire,
)
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import AllTypes, Event, InvalidRequest, Request

CERTS = Path(__file__).resolve().parent / "certs"
__all__ = ["aserver", "event_loop_thread", "loop_factory", "start_async"]  # the asyncio server's fixtures, used here


def run(coroutine: Awaitable[Any], timeout: float = 30.0) -> Any:
    """Runs a test's coroutine on a fresh event loop, bounded so a hang fails instead of stalling the suite."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def client_for(port: int, **options: Any) -> AsyncClient:
    return AsyncClient("127.0.0.1", port, ClientOptions(**options), service=HandshakeService)


def request(request_id: str, work_ms: int = 0) -> Request:
    return Request(request_id=request_id, payload="数据", work_ms=work_ms, headers={"k": "v"})


class Recorder(Interceptor):
    """What the interceptors see: every start and end, in order."""

    def __init__(self) -> None:
        self.events: List[tuple] = []
        self.sessions: List[Optional[str]] = []

    def call_started(self, call) -> None:
        self.events.append(("started", call.method, call.seqid))

    def call_ended(self, call) -> None:
        self.events.append(("ended", call.method, call.seqid, call.outcome))
        self.sessions.append(call.session_id)


# -- the contract ---------------------------------------------------------------------------------

def test_the_whole_contract_hello_calls_submit_oneway_errors_goodbye(server):
    async def scenario() -> None:
        client = client_for(server.port)
        assert client.phase is ClientPhase.NEW
        async with client:
            assert client.phase is ClientPhase.READY
            assert client.version == 2 and client.session_id == client.server_hello.session_id
            assert await client.echo("hé") == "hé"
            response = await client.process(request("p1"))
            assert response.request_id == "p1" and response.session_id == client.session_id and response.sequence == 1
            ack = await client.submit(request("s1"))
            result = await client.get_result(ack.ticket, 5000)
            assert result.request_id == "s1" and result.digest == response.digest  # same payload
            assert await client.notify(Event(name="e", payload="p")) is None  # oneway: nothing to await but the write
            value = AllTypes(id="a", flag=True, number=7, big_number=2**40, text="t", data=b"\x00\xff", numbers=[1, 2])
            assert await client.echo_types(value) == value
            with pytest.raises(ServiceError) as declared:
                await client.process(request(""))
            assert isinstance(declared.value, InvalidRequest) and declared.value.field == "request_id"
            with pytest.raises(RemoteApplicationError) as crashed:
                await client.fail("boom")
            assert crashed.value.type == TApplicationException.INTERNAL_ERROR
            assert client.phase is ClientPhase.READY  # answers, not failures of the connection
        assert client.phase is ClientPhase.CLOSED
        assert client.farewell is not None and client.farewell.calls == 8  # echo ... fail (hello is not counted)

    run(scenario())


@pytest.mark.parametrize("wire", [
    Wire(), Wire(transport="framed"), Wire(protocol="compact"), Wire(protocol="compact", transport="framed"),
    Wire(transport="header"), Wire(protocol="compact", transport="header"), Wire(accelerated=False),
    Wire(protocol="compact", accelerated=False),
], ids=str)
def test_every_wire_pipelines(start_server, wire):
    server = start_server()  # detects the wire from the first bytes

    async def scenario() -> None:
        async with client_for(server.port, wire=wire) as client:
            texts = [f"m{i}" * (i + 1) for i in range(20)]
            assert await asyncio.gather(*(client.echo(text) for text in texts)) == texts
            assert (await client.process(request("w"))).request_id == "w"

    run(scenario())


@pytest.mark.parametrize("wire", [Wire(), Wire(transport="framed"), Wire(protocol="compact")], ids=str)
def test_replies_many_reads_long_come_whole_among_small_ones(start_server, wire):
    """The client reads at most 64 KiB at a time: a reply of a megabyte takes many reads, and the small
    replies around it still go to their own calls."""
    server = start_server()

    async def scenario() -> None:
        async with client_for(server.port, wire=wire) as client:
            texts = ["a", "b" * (1 << 20), "c", "d" * 100_000, "e"]
            assert await asyncio.gather(*(client.echo(text) for text in texts)) == texts

    run(scenario())


def test_a_client_made_before_the_event_loop_runs_works_in_it(server):
    """Python 3.9 binds an asyncio.Lock to the loop current when it is made: two closes at once then
    failed ("attached to a different loop") for a client made outside asyncio.run."""
    client = client_for(server.port)

    async def scenario() -> None:
        await client.connect()
        farewells = await asyncio.gather(client.close(), client.close())
        assert farewells[0] is not None and farewells[1] is None and client.phase is ClientPhase.CLOSED

    run(scenario())


def test_goodbye_returns_the_farewell_and_closes(server):
    async def scenario() -> None:
        client = client_for(server.port)
        await client.connect()
        await client.echo("x")
        farewell = await client.goodbye()
        assert farewell.calls == 1 and client.phase is ClientPhase.CLOSED
        assert await client.close() is None  # idempotent
        with pytest.raises(PhaseError, match="in phase CLOSED"):
            await client.echo("after")

    run(scenario())


@pytest.mark.parametrize("pipeline", [False, True])
def test_close_without_awaiting_the_farewell_still_ends_the_session_by_goodbye(server, caplog, pipeline):
    """goodbye was queued, then the socket aborted: the server never read it ("after goodbye" missing)."""
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        for _ in range(10):
            client = client_for(server.port, await_farewell=False, pipeline_hello=pipeline)
            await client.connect()
            assert await client.echo("x") == "x"
            assert await client.close() is None and client.phase is ClientPhase.CLOSED
            assert [r.name for r in client.timeline][-2:] == ["goodbye", "close"]

    run(scenario())
    ended = lambda: [r.getMessage() for r in caplog.records if r.getMessage().startswith("closed peer=")]
    assert eventually(lambda: len(ended()) == 10)
    assert all(message.endswith(": after goodbye") for message in ended()), ended()
    assert eventually(lambda: server.metrics.snapshot().sessions_active == 0)


def test_a_draining_server_refuses_new_sessions_and_tells_idle_ones(start_server):
    """As the threaded client: hello answered Draining is ServerDraining; an idle session told it is
    closed fails its next call with ConnectionBroken, may_have_run False (safe to send again)."""
    server = start_server(drain_notice=1.0, grace=10.0)

    async def scenario() -> None:
        idle = client_for(server.port)
        await idle.connect()
        server.request_stop()
        with pytest.raises(ServerDraining, match="draining"):
            await client_for(server.port).connect()
        while idle.phase is not ClientPhase.BROKEN:  # the notice comes unasked
            await asyncio.sleep(0.01)
        with pytest.raises(ConnectionBroken, match="the server closed the session: draining") as told:
            await idle.process(request("never run"))
        assert told.value.may_have_run is False
        with pytest.raises(PhaseError, match="in phase BROKEN"):  # told once, as the threaded client
            await idle.echo("again")
        await idle.close()

    run(scenario())


def test_a_plain_service_without_hello(start_server):
    server = start_server(handshake=False)

    async def scenario() -> None:
        client = client_for(server.port, handshake=False)
        assert await client.connect() is None and client.phase is ClientPhase.READY
        assert await asyncio.gather(*(client.echo(str(i)) for i in range(10))) == [str(i) for i in range(10)]
        assert await client.close() is None and client.phase is ClientPhase.CLOSED
        assert [r.name for r in client.timeline if r.phase != "call"] == [f"127.0.0.1:{server.port}", "close"]

    run(scenario())


def test_refusals_are_the_threaded_clients_errors(start_server):
    server = start_server(auth_token="secret")

    async def scenario() -> None:
        with pytest.raises(ConnectError, match="cannot connect"):
            await client_for(1).connect()
        client = client_for(server.port, auth_token="wrong")
        with pytest.raises(HandshakeFailed):
            await client.connect()
        assert client.phase is ClientPhase.CLOSED
        client = client_for(server.port, auth_token="secret", versions=(5, 6))
        with pytest.raises(HandshakeFailed, match="server supports versions 1..2"):
            await client.connect()
        async with client_for(server.port, auth_token="secret") as client:
            with pytest.raises(RequestEncodingError, match="nothing was sent"):
                await client.notify("not an Event")
            with pytest.raises(ArgumentError, match="unknown method"):
                await client.call("nope")
            with pytest.raises(ArgumentError, match="goodbye is a phase"):
                await client.call("goodbye")
            assert await client.echo("still") == "still" and client.phase is ClientPhase.READY
        with pytest.raises(PhaseError, match="cannot call echo in phase NEW"):
            await client_for(server.port).echo("x")

    run(scenario())


def test_a_hello_that_cannot_be_encoded_leaves_closed(server):
    async def scenario() -> None:
        client = client_for(server.port, client_name=255)  # not a str
        with pytest.raises(RequestEncodingError):
            await client.connect()
        assert client.phase is ClientPhase.CLOSED
        client.options = ClientOptions()
        assert (await client.connect()).version == 2
        await client.close()

    run(scenario())


def test_garbage_after_hellos_answer_breaks_connect():
    """The answer was taken, then the bytes after it broke the connection before connect() resumed: it
    applied hello_accepted in phase BROKEN (a PhaseError) instead of saying the connection broke."""
    async def scenario() -> None:
        async with Peer(reversed_after(1), after_hello=b"GET / HTTP/1.1\r\n\r\n") as peer:
            client = client_for(peer.port)
            with pytest.raises(ConnectionBroken, match="answered with HTTP"):
                await client.connect()
            assert client.phase is ClientPhase.BROKEN
            await client.close()

    run(scenario())


def test_tls(start_server):
    server = start_server(tls=ServerTLS(str(CERTS / "server.pem"), str(CERTS / "server.key")))

    async def scenario() -> None:
        async with client_for(server.port, tls=ClientTLS(ca_file=str(CERTS / "ca.pem"))) as client:
            assert await asyncio.gather(*(client.echo(str(i)) for i in range(10))) == [str(i) for i in range(10)]
        with pytest.raises(ConnectError, match="not trusted"):
            await client_for(server.port, tls=ClientTLS(ca_file=str(CERTS / "other-ca.pem"))).connect()

    run(scenario())


# -- hello pipelined with the first calls ---------------------------------------------------------

def test_a_pipelined_hello_is_answered_before_the_calls_written_behind_it(server):
    async def scenario() -> None:
        recorder = Recorder()
        client = client_for(server.port, pipeline_hello=True, interceptors=(recorder,))
        assert await client.connect() is None and client.phase is ClientPhase.HELLO_PENDING
        texts = [str(i) for i in range(10)]
        assert await asyncio.gather(*(client.echo(text) for text in texts)) == texts
        assert client.phase is ClientPhase.READY and client.version == 2
        handshake = next(r for r in client.timeline if r.phase == "handshake")
        assert handshake.ok and handshake.pipelined
        assert recorder.sessions == [None] + [client.session_id] * 10  # hello, then echo calls in its session
        farewell = await client.goodbye()
        assert farewell.calls == 10 and farewell.session_id == client.session_id

    run(scenario())


def test_a_refused_pipelined_hello_is_raised_by_the_first_call(start_server):
    server = start_server(auth_token="secret")

    async def scenario() -> None:
        client = client_for(server.port, pipeline_hello=True, auth_token="wrong")
        assert await client.connect() is None
        results = await asyncio.gather(client.echo("a"), client.echo("b"), return_exceptions=True)
        assert [type(r) for r in results] == [HandshakeFailed, HandshakeFailed], results
        assert client.phase is ClientPhase.CLOSED
        await client.close()

    run(scenario())


@pytest.mark.parametrize("await_farewell", [True, False])
def test_closing_with_a_pipelined_hello_unanswered(server, await_farewell):
    async def scenario() -> None:
        client = client_for(server.port, pipeline_hello=True, await_farewell=await_farewell)
        await client.connect()
        farewell = await client.close()
        assert client.phase is ClientPhase.CLOSED and client.session_id is not None
        assert (farewell is not None) is await_farewell

    run(scenario())


# -- many calls in flight -------------------------------------------------------------------------

def test_a_hundred_calls_are_written_before_the_first_reply_is_read(server):
    """Pipelined: every request is on the wire before any reply arrives, so 100 calls cost one round
    trip, not 100 (the timeline says when each request left and when its reply's first byte came)."""
    async def scenario() -> None:
        async with client_for(server.port) as client:
            texts = [str(i) for i in range(100)]
            assert await asyncio.gather(*(client.echo(text) for text in texts)) == texts
            calls = client.timeline.calls("echo")
            assert len(calls) == 100
            last_written = max(r.start + r.send for r in calls)
            first_answered = min(r.start + r.send + r.wait for r in calls)
            assert last_written <= first_answered
            assert client.in_flight == 0

    run(scenario())


def test_on_uvloop_too(server):
    """uvloop (in the test extras) is what ``serve --asyncio`` runs on; the client keeps its contract there."""
    import uvloop

    async def scenario() -> None:
        async with client_for(server.port, timeouts=Timeouts(call=0.3)) as client:
            texts = [str(i) for i in range(100)]
            assert await asyncio.gather(*(client.echo(text) for text in texts)) == texts
            slow = asyncio.ensure_future(client.process(request("slow", work_ms=100)))
            await asyncio.sleep(0)
            slow.cancel()
            assert await client.echo("after") == "after"
            results = await asyncio.gather(client.process(request("late", work_ms=800)), client.echo("x"),
                                           return_exceptions=True)
            assert [type(r) for r in results] == [CallTimeout, CallTimeout]
            assert client.phase is ClientPhase.BROKEN

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(), 30))
    finally:
        loop.close()


def test_replies_out_of_order_go_to_their_own_calls():
    async def scenario() -> None:
        async with Peer(reversed_after(50)) as peer:
            async with client_for(peer.port) as client:
                texts = [f"t{i}" for i in range(50)]
                assert await asyncio.gather(*(client.echo(text) for text in texts)) == texts
                assert client.phase is ClientPhase.READY

    run(scenario())


def test_a_reply_with_a_seqid_no_call_has_breaks_every_call_in_flight():
    def foreign(held):
        return [echo_reply(9999, "stale")] if len(held) == 3 else None

    async def scenario() -> None:
        async with Peer(foreign) as peer:
            client = client_for(peer.port)
            await client.connect()
            results = await asyncio.gather(*(client.echo(str(i)) for i in range(3)), return_exceptions=True)
            assert [type(r) for r in results] == [ConnectionBroken] * 3
            assert "seqid 9999" in str(results[0]) and "stale or foreign reply" in str(results[0])
            assert client.phase is ClientPhase.BROKEN and client.in_flight == 0
            await client.close()

    run(scenario())


@pytest.mark.parametrize("wire", [Wire(), Wire(transport="framed"), Wire(protocol="compact")], ids=str)
def test_a_reply_over_the_clients_limits_breaks_every_call_and_says_so(start_server, wire):
    server = start_server()

    async def scenario() -> None:
        client = client_for(server.port, wire=wire, max_reply_bytes=1000)
        await client.connect()
        results = await asyncio.gather(client.echo("x" * 2000), client.echo("small"), return_exceptions=True)
        assert [type(r) for r in results] == [ConnectionBroken, ConnectionBroken]
        assert "over this client's limits (ClientOptions.max_reply_bytes=1000" in str(results[0])
        assert client.phase is ClientPhase.BROKEN
        await client.close()

    run(scenario())


# -- cancellation ---------------------------------------------------------------------------------

def test_a_cancelled_call_drops_its_reply_and_breaks_nothing_else(server):
    """The slow call's reply comes first (the server answers in order): it is read and dropped, and
    the next call gets its own reply."""
    async def scenario() -> None:
        recorder = Recorder()
        async with client_for(server.port, interceptors=(recorder,)) as client:
            slow = asyncio.ensure_future(client.process(request("slow", work_ms=300)))
            quick = asyncio.ensure_future(client.echo("quick"))
            await asyncio.sleep(0)  # both written
            assert client.in_flight == 2
            slow.cancel()
            assert await quick == "quick"
            with pytest.raises(asyncio.CancelledError):
                await slow
            assert client.phase is ClientPhase.READY and client.in_flight == 0
            assert await client.echo("after") == "after"
            ended = [e for e in recorder.events if e[0] == "ended" and e[1] == "process"]
            assert ended == [("ended", "process", 2, Outcome.FAILED)]
            assert "cancelled by its caller" in client.timeline.calls("process")[0].error

    run(scenario())


def test_cancelling_one_of_many_out_of_order_calls():
    async def scenario() -> None:
        async with Peer(reversed_after(5)) as peer:
            async with client_for(peer.port) as client:
                tasks = [asyncio.ensure_future(client.echo(f"c{i}")) for i in range(5)]
                await asyncio.sleep(0)
                tasks[4].cancel()  # its reply comes first
                done = await asyncio.gather(*tasks, return_exceptions=True)
                assert done[:4] == ["c0", "c1", "c2", "c3"] and isinstance(done[4], asyncio.CancelledError)
                assert client.phase is ClientPhase.READY and client.in_flight == 0

    run(scenario())


# -- timeouts and transport errors ----------------------------------------------------------------

def test_a_timeout_fails_every_call_in_flight_and_breaks_the_client(server):
    async def scenario() -> None:
        client = client_for(server.port, timeouts=Timeouts(call=0.3))
        await client.connect()
        calls = [client.process(request("slow", work_ms=1500))] + [client.echo(str(i)) for i in range(5)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert [type(r) for r in results] == [CallTimeout] * 6
        assert "no reply within the timeout" in str(results[0])
        assert "the connection broke on process" in str(results[1])
        assert client.phase is ClientPhase.BROKEN and client.in_flight == 0
        with pytest.raises(PhaseError, match="in phase BROKEN.*call reconnect"):
            await client.echo("late")
        await client.reconnect()
        assert await client.echo("again") == "again"
        await client.close()
        assert [r.error for r in client.timeline.calls("echo")[:5]] == [repr(r) for r in results[1:]]

    run(scenario())


def test_a_hello_without_answer_times_out_and_breaks_the_client():
    async def scenario() -> None:
        async with silent_peer() as port:
            client = client_for(port, timeouts=Timeouts(handshake=0.2))
            with pytest.raises(CallTimeout, match="hello: no reply within the timeout"):
                await client.connect()
            assert client.phase is ClientPhase.BROKEN
            await client.close()
            assert client.phase is ClientPhase.CLOSED

    run(scenario())


def test_cancelling_connect_while_hello_waits_leaves_a_broken_client():
    """Whether the server opened a session is unknown: the connection is given up, as an interrupted hello
    of the threaded client."""
    async def scenario() -> None:
        async with silent_peer() as port:
            client = client_for(port)
            connecting = asyncio.ensure_future(client.connect())
            while not client.in_flight:  # hello written
                await asyncio.sleep(0.01)
            connecting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await connecting
            assert client.phase is ClientPhase.BROKEN and client.in_flight == 0
            await client.close()
            assert client.phase is ClientPhase.CLOSED

    run(scenario())


def test_the_server_closing_the_connection_fails_every_call_in_flight():
    async def scenario() -> None:
        async with Peer(reversed_after(3), closes_after_hello=True) as peer:
            client = client_for(peer.port)
            await client.connect()
            results = await asyncio.gather(*(client.echo(str(i)) for i in range(3)), return_exceptions=True)
            assert [type(r) for r in results] == [ConnectionBroken] * 3
            assert "went away" in str(results[0])
            assert client.phase is ClientPhase.BROKEN
            await client.close()
            assert client.phase is ClientPhase.CLOSED

    run(scenario())


def test_a_reply_that_trickles_in_is_read_whole_and_timed_from_its_first_byte():
    async def scenario() -> None:
        async with Peer(reversed_after(2), drip=0.002) as peer:
            async with client_for(peer.port) as client:
                assert await asyncio.gather(client.echo("a"), client.echo("b")) == ["a", "b"]
                for record in client.timeline.calls("echo"):
                    assert record.receive > 0.02  # from the first byte to the last, a byte every 2 ms
                    assert abs(record.send + record.wait + record.receive - record.duration) < 1e-6

    run(scenario())


def test_the_call_timeout_bounds_a_reply_that_trickles():
    """A peer dripping its reply a byte at a time cannot stretch a call past its timeout."""
    async def scenario() -> None:
        async with Peer(reversed_after(1), drip=0.05) as peer:
            client = client_for(peer.port, timeouts=Timeouts(call=0.5))
            await client.connect()
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(CallTimeout):
                await client.echo("x" * 100)
            assert loop.time() - started < 3.0 and client.phase is ClientPhase.BROKEN
            await client.close()

    run(scenario())


def test_the_call_timeout_bounds_writing_to_a_peer_that_does_not_read():
    """The deadline runs from the call's start: a request stuck behind a full send buffer fails on time."""
    async def scenario() -> None:
        async with Peer(reversed_after(1), stops_reading_after_hello=True) as peer:
            client = client_for(peer.port, timeouts=Timeouts(call=0.5))
            await client.connect()
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(CallTimeout):
                await client.echo("x" * (16 << 20))  # more than both ends' socket buffers hold
            assert loop.time() - started < 10.0  # 0.5 s once queued; checking and encoding 16 MiB come first
            assert client.phase is ClientPhase.BROKEN
            await client.close()

    run(scenario())


# -- retries ------------------------------------------------------------------------------------

def test_idempotent_calls_reopen_a_broken_client_once_for_all_of_them(server):
    async def scenario() -> None:
        retry = RetryPolicy(idempotent={"echo"}, attempts=2, backoff=0.01)
        client = client_for(server.port, timeouts=Timeouts(call=0.3), retry=retry)
        await client.connect()
        first_session = client.session_id
        with pytest.raises(CallTimeout):
            await client.process(request("slow", work_ms=800))
        assert client.phase is ClientPhase.BROKEN
        with pytest.raises(PhaseError, match="in phase BROKEN"):  # not idempotent: never reopened for it
            await client.process(request("again"))
        texts = [str(i) for i in range(5)]
        assert await asyncio.gather(*(client.echo(text) for text in texts)) == texts
        assert client.phase is ClientPhase.READY and client.session_id != first_session
        assert [r.phase for r in client.timeline].count("connect") == 2  # one reopening for the five
        await client.close()
        with pytest.raises(PhaseError, match="cannot call echo in phase CLOSED"):  # its user closed it
            await client.echo("after close")

    run(scenario())


def test_a_refused_connect_is_retried_until_attempts_run_out():
    async def scenario() -> None:
        retry = RetryPolicy(idempotent={"echo"}, attempts=3, backoff=0.01)
        client = client_for(1, retry=retry)
        with pytest.raises(ConnectError):
            await client.connect()
        with pytest.raises(ConnectError):
            await client.echo("nobody there")
        assert [r.phase for r in client.timeline].count("connect") == 4  # connect(), then 3 attempts

    run(scenario())


# -- interceptors and the timeline ----------------------------------------------------------------

def test_each_record_has_the_bytes_its_own_call_wrote_and_read():
    """Replies of another size than their requests, answered last first: each call's record carries its own
    request's size out and its own reply's size in (the peer encodes them as the client reads them)."""
    def answer(held: List[Tuple[int, str]]) -> Optional[List[Tuple[str, int, object]]]:
        if len(held) < 2:
            return None
        return [("echo", seqid, HandshakeService.echo_result(success=message * 10)) for seqid, message in reversed(held)]

    async def scenario() -> None:
        async with Peer(answer) as peer:
            async with client_for(peer.port) as client:
                assert await asyncio.gather(client.echo("ab"), client.echo("c")) == ["ab" * 10, "c" * 10]
            records = client.timeline.calls("echo")
        request = [len(encode_reply("echo", 0, HandshakeService.echo_args(message=text))) for text in ("ab", "c")]
        reply = [len(encode_reply("echo", 0, HandshakeService.echo_result(success=text * 10))) for text in ("ab", "c")]
        assert sorted((record.bytes_out, record.bytes_in) for record in records) == sorted(zip(request, reply))

    run(scenario())


def test_interceptors_see_each_pipelined_call_start_and_end_once(server):
    async def scenario() -> None:
        recorder = Recorder()
        async with client_for(server.port, interceptors=(recorder,), server_timed_methods={"process"}) as client:
            await asyncio.gather(*(client.process(request(f"r{i}")) for i in range(10)))
        started = [e for e in recorder.events if e[0] == "started"]
        ended = [e for e in recorder.events if e[0] == "ended"]
        assert [e[1] for e in started] == ["hello"] + ["process"] * 10 + ["goodbye"]
        assert sorted(e[2] for e in ended) == sorted(e[2] for e in started)
        assert all(e[3] is Outcome.OK for e in ended)
        for record in client.timeline.calls("process"):
            assert record.ok and record.bytes_out > 0 and record.bytes_in > 0 and record.server_us is not None
            assert abs(record.send + record.wait + record.receive - record.duration) < 1e-6
        assert [r.phase for r in client.timeline][:2] == ["connect", "handshake"]

    run(scenario())


def test_the_readme_snippet_runs():
    import readme

    snippet = next(content for language, content in readme.blocks(readme.section("On asyncio, `AsyncClient`", "\n## "))
                   if language == "python")
    done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1:] == ["99", "typed"], done.stdout


def _mypy(tmp_path: Path, user_code: str) -> str:
    """mypy's lines about ``user_code`` (run with the package as installed: thrift_handshake is service/)."""
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    if mypy is None:
        pytest.skip("mypy is not installed")
    user = tmp_path / "user.py"
    user.write_text(user_code, encoding="utf-8")
    root = Path(__file__).resolve().parent.parent
    packages = tmp_path / "packages"
    packages.mkdir()
    (packages / "thrift_handshake").symlink_to(root / "service")
    done = subprocess.run([mypy, "--no-incremental", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary",
                           "--follow-imports=silent", str(user)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "MYPYPATH": os.pathsep.join(
                              [str(packages), str(root / "gen-py"), str(tmp_path)])})
    return "".join(line for line in done.stdout.splitlines(keepends=True) if line.startswith((str(user), user.name)))


def test_typed_view_awaits_and_mypy_checks_it(server, tmp_path):
    async def scenario() -> None:
        async with client_for(server.port) as client:
            service = client.typed(HandshakeService.Iface)
            assert await service.echo("typed") == "typed"
            with pytest.raises(TypeError):
                client.typed(int)

    run(scenario())
    out = _mypy(tmp_path, TYPED_USER)
    assert 'Revealed type is "thrift_handshake_gen.HandshakeService.Iface"' in out, out
    assert '"Iface" has no attribute "echoo"' in out, out
    assert out.count("error") == 1, out  # awaiting the typed calls is fine


TYPED_USER = """
from thrift_handshake import AsyncClient
from thrift_handshake_gen import HandshakeService

async def main() -> None:
    async with AsyncClient("127.0.0.1", 9090, service=HandshakeService) as client:
        service = client.typed(HandshakeService.Iface)
        reveal_type(service)
        print(await service.echo("x"))
        await service.echoo("x")
"""


def test_the_written_async_interface_types_every_call(server, tmp_path):
    """``python -m thrift_handshake.aio.stubs``: coroutines with the IDL's types, so mypy sees a wrong
    argument, a missing await and the result's type."""
    done = subprocess.run([sys.executable, "-m", "thrift_handshake.aio.stubs", "thrift_handshake_gen.HandshakeService"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (tmp_path / "handshake_async.py").write_text(done.stdout, encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        from handshake_async import HandshakeServiceAsync
    finally:
        sys.path.remove(str(tmp_path))

    async def scenario() -> None:
        async with client_for(server.port) as client:
            service = client.typed(HandshakeServiceAsync)
            assert await service.echo("typed") == "typed"
            assert (await service.process(request("t"))).request_id == "t"
            with pytest.raises(TypeError):  # the threaded client's calls are not coroutines
                Client("127.0.0.1", server.port, service=HandshakeService).typed(HandshakeServiceAsync)

    run(scenario())
    out = _mypy(tmp_path, WRITTEN_USER)
    assert re.search(r'Revealed type is "(builtins\.)?str"', out), out
    assert 'Revealed type is "thrift_handshake_gen.ttypes.Response"' in out, out
    assert 'Argument 1 to "echo" of "HandshakeServiceAsync" has incompatible type "int"' in out, out
    assert "must be used" in out and "unused-coroutine" in out, out
    assert out.count("error") == 2, out


WRITTEN_USER = """
from thrift_handshake import AsyncClient
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Request
from handshake_async import HandshakeServiceAsync

async def main() -> None:
    async with AsyncClient("127.0.0.1", 9090, service=HandshakeService) as client:
        service = client.typed(HandshakeServiceAsync)
        reveal_type(await service.echo("x"))
        reveal_type(await service.process(Request(request_id="r")))
        await service.echo(1)
        service.echo("no await")
"""


# -- both ends on asyncio -------------------------------------------------------------------------

@pytest.mark.parametrize("wire", [Wire(), Wire(protocol="compact", transport="framed"), Wire(transport="header")],
                         ids=str)
def test_against_the_asyncio_server(aserver, wire):
    """The asyncio server answers each connection's messages in order; the client pipelines into it."""
    async def scenario() -> None:
        async with client_for(aserver.port, wire=wire, features={"submit"}) as client:
            texts = [f"t{i}" for i in range(100)]
            assert await asyncio.gather(*(client.echo(text) for text in texts)) == texts
            ack = await client.submit(request("s"))
            assert (await client.get_result(ack.ticket, 5000)).request_id == "s"
            slow = asyncio.ensure_future(client.process(request("slow", work_ms=200)))
            await asyncio.sleep(0)
            slow.cancel()
            assert await client.echo("after") == "after" and client.in_flight == 0
            with pytest.raises(ServiceError):
                await client.process(request(""))
        assert client.farewell is not None and client.farewell.calls == 100 + 5

    run(scenario())


class ClosesOnHello(Interceptor):
    """Closes its client from one hook of hello: a hook cannot await, so it starts ``close()`` as a task."""

    def __init__(self, hook: str) -> None:
        self.hook = hook
        self.client: Optional[AsyncClient] = None
        self.closing: Optional[asyncio.Task] = None

    def _maybe(self, call: Any, hook: str) -> None:
        if self.client is not None and call.method == "hello" and hook == self.hook:
            client, self.client = self.client, None
            self.closing = asyncio.ensure_future(client.close())

    def call_started(self, call: Any) -> None:
        self._maybe(call, "call_started")

    def call_ended(self, call: Any) -> None:
        self._maybe(call, "call_ended")


@pytest.mark.parametrize("pipeline_hello", [False, True])
@pytest.mark.parametrize("hook", ["call_started", "call_ended"])
def test_a_close_started_by_a_hook_of_hello_leaves_a_client_that_reconnects(server, hook, pipeline_hello):
    """(The threaded Client's defect: closed from a hook of hello, it stayed HANDSHAKING without a socket.) The
    close waits for hello's step to end, then closes: the client ends CLOSED, and connects again."""
    async def scenario() -> None:
        closer = ClosesOnHello(hook)
        client = client_for(server.port, pipeline_hello=pipeline_hello, interceptors=(closer,))
        closer.client = client
        await client.connect()
        if pipeline_hello and hook == "call_ended":  # hello's answer is read with the first call
            assert await client.echo("first") == "first"
        assert closer.closing is not None
        await asyncio.wait_for(closer.closing, 10)
        assert client.phase is ClientPhase.CLOSED and client.in_flight == 0
        await client.connect()
        assert await client.echo("again") == "again"
        await client.close()
        assert client.phase is ClientPhase.CLOSED

    run(scenario())
