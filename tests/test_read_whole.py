"""The asyncio server hands a whole message it cut straight to the read buffer of the server's buffered
or framed transport (``read_whole``): what the protocol then reads, and the errors it raises, are what it
reads through the memory pipe's refills; what does not fit one refill, or follows a message not read
to its end, goes through the pipe as before."""

from __future__ import annotations

import struct
from typing import Any, Callable, List, Tuple

import pytest
from thrift.transport.TTransport import TTransportException

from conftest import encode_call

from thrift_handshake.aio.pipe import MemoryPipe
from thrift_handshake.config import Wire
from thrift_handshake.wire import server_stack

from thrift_handshake_gen import HandshakeService

MESSAGE_LIMIT = 1 << 20


def _stack(transport: str, direct: bool) -> Tuple[Any, Any, MemoryPipe]:
    pipe = MemoryPipe()
    trans, protocol = server_stack(Wire("binary", transport, True), pipe, MESSAGE_LIMIT, 1000)
    pipe.above = trans if direct else None
    return trans, protocol, pipe


def _call(size: int, seqid: int, framed: bool) -> bytes:
    message = encode_call("echo", HandshakeService.echo_args(message="m" * size), seqid=seqid)
    return struct.pack("!i", len(message)) + message if framed else message


def _read(protocol: Any) -> Any:
    """The header and arguments of the message fed last, or the error reading them raised."""
    try:
        header = protocol.readMessageBegin()
        args = HandshakeService.echo_args()
        args.read(protocol)
        protocol.readMessageEnd()
        return header, args.message
    except TTransportException as error:
        return "error", error.type, str(error)


def _both(transport: str, feeds: List[bytes], between: Callable[[Any], None] = lambda protocol: None) -> List[Any]:
    """What each way reads of ``feeds`` (message by message), asserted the same; the direct way's reads."""
    outcomes = []
    for direct in (True, False):
        _, protocol, pipe = _stack(transport, direct)
        read = []
        for data in feeds:
            pipe.feed(data)
            read.append(_read(protocol))
            between(protocol)
        outcomes.append(read)
    assert outcomes[0] == outcomes[1]
    return outcomes[0]


@pytest.mark.parametrize("transport", ["buffered", "framed"])
def test_whole_messages_read_as_through_the_pipe(transport: str) -> None:
    framed = transport == "framed"
    feeds = [_call(size, seqid, framed) for seqid, size in enumerate((0, 32, 3000, 5000, 200_000, 7))]
    read = _both(transport, feeds)
    assert read == [(("echo", 1, seqid), "m" * size) for seqid, size in enumerate((0, 32, 3000, 5000, 200_000, 7))]


@pytest.mark.parametrize("transport", ["buffered", "framed"])
def test_a_message_cut_short_fails_as_through_the_pipe(transport: str) -> None:
    whole = _call(40, 3, framed=False)
    cut = whole[:-10]
    feeds = [struct.pack("!i", len(cut)) + cut if transport == "framed" else cut, _call(8, 4, transport == "framed")]
    read = _both(transport, feeds)
    assert read[0][0] == "error" and read[0][1] == TTransportException.END_OF_FILE
    assert read[1] == (("echo", 1, 4), "m" * 8)


def test_what_one_refill_does_not_hold_is_read_through_the_pipe() -> None:
    trans, _, _ = _stack("buffered", True)
    assert trans.read_whole(_call(4000, 1, framed=False))
    assert not trans.read_whole(_call(5000, 1, framed=False))  # over the 4 KiB read buffer: refills price it


@pytest.mark.parametrize("transport", ["buffered", "framed"])
def test_after_a_message_not_read_to_its_end_the_next_goes_through_the_pipe(transport: str) -> None:
    framed = transport == "framed"
    trans, protocol, pipe = _stack(transport, True)
    pipe.feed(_call(32, 1, framed))
    protocol.readMessageBegin()  # (its arguments left unread)
    assert not trans.read_whole(_call(8, 2, framed))


def test_a_frame_over_the_limit_is_not_taken() -> None:
    pipe = MemoryPipe()
    trans, _ = server_stack(Wire("binary", "framed", True), pipe, 100, 1000)
    assert not trans.read_whole(_call(200, 1, framed=True))
    assert trans.read_whole(_call(20, 1, framed=True))
