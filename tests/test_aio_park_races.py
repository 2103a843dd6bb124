"""Attacks on the asyncio server's parked sessions (issue 14): a session parks (its read gives up its
task) exactly as the peer's next bytes arrive, and hundreds of sessions park and resume at once while
their calls come in pieces. Every call is served whole, in order; no piece of one is lost at a park."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import List, Tuple

import pytest

from conftest import encode_call
from test_fairness_between_hosts import HELLO
from test_async_server import LOOPS, event_loop_thread, loop_factory, start_async  # noqa: F401 (fixtures)

from thrift_handshake.aio import connection as aio_connection
from thrift_handshake.aio.socket_transport import PlainSocketStream

from thrift_handshake_gen import HandshakeService


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_read_parked_as_bytes_arrive_leaves_the_next_read_waiting(event_loop_thread):
    """The sweep's ``park`` and the peer's bytes land in one turn of the loop: the read returns the
    bytes, and the next read (the rest of that message, say) waits for bytes instead of giving up."""
    async def attack() -> Tuple[bytes, bool]:
        loop = asyncio.get_running_loop()
        with socket.create_server(("127.0.0.1", 0)) as listening, \
                socket.create_connection(listening.getsockname()) as peer:
            accepted, _ = listening.accept()
            accepted.setblocking(False)
            stream = PlainSocketStream(loop, 1 << 17, accepted)
            first = loop.create_task(stream.read(100))
            await asyncio.sleep(0)  # the read waits for bytes
            peer.sendall(b"half a call")
            loop.call_soon(stream.park)  # in the turn whose poll finds those bytes
            got = await first
            second = loop.create_task(stream.read(100))
            peer.sendall(b" and the rest")
            rest = await second
            stream.abort()
            return got, rest

    assert event_loop_thread.run(attack()) == (b"half a call", b" and the rest")


async def _split_calls(port: int, name: int, rounds: int, failures: List[str]) -> None:
    """A session whose every call comes in two pieces, the second after a pause that may span a park."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HELLO)
    assert await reader.read(65536)
    rng = random.Random(name)
    try:
        for index in range(rounds):
            message = f"peer {name} call {index} " + "x" * 40
            call = encode_call("echo", HandshakeService.echo_args(message=message), seqid=index + 2)
            reply = encode_call("echo", HandshakeService.echo_result(success=message), seqid=index + 2, message_type=2)
            cut = rng.randrange(1, len(call))
            writer.write(call[:cut])
            await asyncio.sleep(rng.random() * 0.05)  # (the peer's pace)
            writer.write(call[cut:])
            answered = await reader.readexactly(len(reply))
            if answered != reply:
                failures.append(f"peer {name} call {index}: {answered[18:90]!r}")
                return
    finally:
        writer.close()


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_hundreds_of_sessions_parking_between_the_pieces_of_their_calls(start_async, monkeypatch):
    monkeypatch.setattr(aio_connection, "PARK_AFTER", 0.0)  # every idle read parks at the sweep's next pass
    server = start_async()
    failures: List[str] = []

    async def peers() -> None:
        await asyncio.gather(*(_split_calls(server.port, name, 12, failures) for name in range(150)))

    asyncio.run(peers())
    assert failures == []
