"""The AsyncClient's deadlines share one timer (``aio.inflight``), armed for the earliest: each call still
times out by its own deadline, whatever the calls before it did (answered, cancelled, longer limits).
A cancelled call is over for its caller at once, whatever its deadline and its reply do."""

from __future__ import annotations

import asyncio
import time
from typing import List, Optional

import pytest

from async_peer import Held, Peer, echo_reply, silent_peer
from test_async_client import Recorder, client_for, run
from thrift_handshake import CallTimeout, ClientPhase, Outcome, Timeouts


def first_only(held: List[Held]) -> Optional[list]:
    """Answers the echo of "first"; holds every other call."""
    return [echo_reply(seqid, text) for seqid, text in held if text == "first"] or None


def test_a_call_behind_an_answered_one_still_times_out():
    """The timer armed for the first call's deadline finds it answered and is armed for the next one's."""
    async def scenario() -> None:
        async with Peer(first_only) as peer:
            client = client_for(peer.port, timeouts=Timeouts(call=0.4))
            await client.connect()
            assert await client.echo("first") == "first"
            await asyncio.sleep(0.2)  # the second call's deadline is past the first one's
            with pytest.raises(CallTimeout, match="echo: no reply within the timeout"):
                await client.echo("second")
            assert client.phase is ClientPhase.BROKEN
            await client.close()

    run(scenario())


def test_a_cancelled_calls_deadline_passes_without_breaking_the_client():
    """A cancelled call's deadline was its caller's: it stays in flight (its reply to be dropped) untimed."""
    async def scenario() -> None:
        async with Peer(first_only) as peer:
            client = client_for(peer.port, timeouts=Timeouts(call=0.3))
            await client.connect()
            held = asyncio.ensure_future(client.echo("held"))
            await asyncio.sleep(0.1)
            held.cancel()
            answered = asyncio.ensure_future(client.echo("first"))  # its deadline is after the cancelled one's
            await asyncio.sleep(0.3)  # past the cancelled call's deadline
            assert client.phase is ClientPhase.READY and await answered == "first"
            assert client.in_flight == 1  # the cancelled call, awaiting its reply
            await client.close()

    run(scenario())


def test_a_call_with_a_shorter_limit_than_the_one_before_it_times_out_first():
    """A pipelined hello (20 s) is in flight when a call (0.3 s) is written: the call's deadline comes
    first and it is the call that breaks the connection, on time, not hello."""
    async def scenario() -> None:
        async with silent_peer() as port:
            client = client_for(port, pipeline_hello=True, timeouts=Timeouts(handshake=20.0, call=0.3))
            await client.connect()
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(CallTimeout, match=r"the connection broke on echo"):
                await client.echo("x")
            assert loop.time() - started < 10.0 and client.phase is ClientPhase.BROKEN
            await client.close()

    run(scenario())


def test_a_call_cancelled_as_its_deadline_passes_breaks_nothing():
    """The loop, busy past both, runs a call's cancellation and its deadline in one turn, before the
    cancelled caller resumes: the cancellation wins (it breaks only its own call), not the deadline."""
    async def scenario() -> None:
        async with Peer(first_only) as peer:
            client = client_for(peer.port, timeouts=Timeouts(call=0.3))
            await client.connect()
            loop = asyncio.get_running_loop()
            held = asyncio.ensure_future(client.echo("held"))
            await asyncio.sleep(0)  # written: its deadline runs
            loop.call_later(0.2, held.cancel)
            loop.call_later(0.1, time.sleep, 0.4)  # the loop is busy until both are due
            with pytest.raises(asyncio.CancelledError):
                await held
            assert client.phase is ClientPhase.READY
            assert await client.echo("first") == "first"
            await client.close()

    run(scenario())


def test_a_cancelled_call_ends_for_the_interceptors_when_it_is_cancelled():
    """Not when its reply comes (this one never does): the timeline and interceptors hear it at once."""
    async def scenario() -> None:
        recorder = Recorder()
        async with Peer(first_only) as peer:
            client = client_for(peer.port, interceptors=(recorder,))
            await client.connect()
            held = asyncio.ensure_future(client.echo("held"))
            await asyncio.sleep(0)  # written
            held.cancel()
            with pytest.raises(asyncio.CancelledError):
                await held
            assert [e for e in recorder.events if e[0] == "ended" and e[1] == "echo"] == [
                ("ended", "echo", 2, Outcome.FAILED)]
            assert "cancelled by its caller" in client.timeline.calls("echo")[0].error
            assert client.in_flight == 1  # its reply, should it come, is still recognised and dropped
            await client.close()

    run(scenario())
