"""The binary message header read from the read buffer (a few C calls) says exactly what Thrift's own
reading says, for every header, whole, cut short or spread over several refills of the buffer; and the
header (or a whole message) written in one write is the bytes Thrift writes."""

from __future__ import annotations

import itertools
import struct
from typing import Callable, List, Tuple, Union

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TApplicationException
from thrift.transport import TTransport

from thrift_handshake.config import Wire
from thrift_handshake.wire import protocol_factory
from thrift_handshake.wire.errors import UndecodableMethodName

from thrift_handshake_gen import HandshakeService

VERSION_1 = 0x80010000
LIMIT = 64


def header(name: bytes, message_type: int = 1, seqid: int = 7, length: Union[int, None] = None,
           version: int = VERSION_1) -> bytes:
    return struct.pack("!Ii", version | message_type, len(name) if length is None else length) + name + struct.pack(
        "!i", seqid)


CASES = {
    "call": header(b"echo"),
    "oneway": header(b"notify", message_type=4, seqid=-5),
    "empty-name": header(b""),
    "utf8-name": header("écho".encode()),
    "not-utf8-name": header(b"ec\xffho"),
    "at-the-limit": header(b"n" * LIMIT),
    "over-the-limit": header(b"n" * (LIMIT + 1)),
    "negative-length": header(b"", length=-1),
    "bad-version": header(b"echo", version=0x80020000),
    "bad-version-alone": struct.pack("!I", 0x80020001),  # (an HTTP body of 4 bytes: Thrift's error is the version)
    "no-version-alone": struct.pack("!i", 4),
    "no-version": struct.pack("!i", 4) + b"echo" + b"\x01" + struct.pack("!i", 7),
    "cut-in-version": header(b"echo")[:3],
    "cut-in-name": header(b"echo")[:10],
    "cut-in-seqid": header(b"echo")[:14],
    "empty": b"",
}


def _outcome(read: Callable[[], Tuple[str, int, int]]) -> object:
    try:
        return ("read", *read())
    except UndecodableMethodName as error:
        return ("undecodable", error.seqid, str(error))
    except (TProtocolException, TTransport.TTransportException) as error:
        return (type(error).__name__, error.type, str(error))
    except EOFError:  # (what Thrift's readAll raises when a memory buffer ends; a socket's read raises the above)
        return "EOFError"


def _protocol(data: bytes, accelerated: bool, buffer_size: int):
    """The server's binary protocol over Thrift's buffered transport, which refills ``buffer_size`` bytes
    at a time from the bytes (what follows the header is a byte that stays unread)."""
    transport = TTransport.TBufferedTransport(TTransport.TMemoryBuffer(data + b"\x00"), rbuf_size=buffer_size)
    return protocol_factory(Wire("binary", "buffered", accelerated), LIMIT, 100).getProtocol(transport)


@pytest.mark.parametrize("buffer_size", [1, 3, 8, 13, 4096])
@pytest.mark.parametrize("accelerated", [True, False], ids=["accelerated", "python"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_header_read_from_the_buffer_is_thrifts_reading(case: str, accelerated: bool, buffer_size: int) -> None:
    fast = _protocol(CASES[case], accelerated, buffer_size)
    thrifts = _protocol(CASES[case], accelerated, buffer_size)
    outcome = _outcome(fast.readMessageBegin)
    assert outcome == _outcome(thrifts._read_message_begin)
    if outcome[0] == "read":
        assert fast.trans.read(1) == thrifts.trans.read(1) == b"\x00"  # both stop right after the header


def test_pipelined_headers_are_read_in_turn_across_refills() -> None:
    messages = [header(name.encode(), seqid=n) for n, name in enumerate(("hello", "echo", "goodbye"))]
    data = b"".join(messages)
    transport = TTransport.TBufferedTransport(TTransport.TMemoryBuffer(data), rbuf_size=5)
    protocol = protocol_factory(Wire("binary", "buffered", True), LIMIT, 100).getProtocol(transport)
    read: List[Tuple[str, int, int]] = [protocol.readMessageBegin() for _ in messages]
    assert read == [("hello", 1, 0), ("echo", 1, 1), ("goodbye", 1, 2)]


def test_every_cut_of_a_header_reads_as_thrift_reads_it() -> None:
    whole = header(b"process")
    for cut, size in itertools.product(range(len(whole) + 1), (1, 4, 64)):
        fast = _protocol(whole[:cut], True, size)
        thrifts = _protocol(whole[:cut], True, size)
        assert _outcome(fast.readMessageBegin) == _outcome(thrifts._read_message_begin), (cut, size)


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "old-unversioned"])
@pytest.mark.parametrize("accelerated", [True, False], ids=["accelerated", "python"])
def test_the_header_written_is_the_bytes_thrift_writes(accelerated: bool, strict: bool) -> None:
    for name, message_type, seqid in [("echo", 2, 7), ("", 3, 0), ("écho", 2, -5), ("Service:n" * 40, 1, 2**31 - 1),
                                      ("notify", 4, -2**31)]:
        ours = protocol_factory(Wire("binary", "buffered", accelerated), LIMIT, 100).getProtocol(
            TTransport.TMemoryBuffer())
        ours.strictWrite = strict
        thrifts = TBinaryProtocol(TTransport.TMemoryBuffer(), strictWrite=strict)
        for protocol in (ours, thrifts):
            protocol.writeMessageBegin(name, message_type, seqid)
        assert ours.trans.getvalue() == thrifts.trans.getvalue(), (name, message_type, seqid)


def test_a_whole_message_written_at_once_is_the_bytes_thrift_writes() -> None:
    structs = [HandshakeService.echo_result(success="écho " * 9), HandshakeService.echo_result(),
               HandshakeService.echo_args(message="")]
    for body, (name, message_type, seqid) in itertools.product(structs, [("echo", 2, 7), ("écho", 3, -1)]):
        ours = protocol_factory(Wire("binary", "buffered", True), LIMIT, 100).getProtocol(TTransport.TMemoryBuffer())
        thrifts = TBinaryProtocol(TTransport.TMemoryBuffer())
        assert ours.write_whole(name, message_type, seqid, body)
        thrifts.writeMessageBegin(name, message_type, seqid)
        body.write(thrifts)
        thrifts.writeMessageEnd()
        assert ours.trans.getvalue() == thrifts.trans.getvalue(), (body, name)


def test_what_the_c_encoder_does_not_take_is_left_to_the_usual_writes() -> None:
    unversioned = protocol_factory(Wire("binary", "buffered", True), LIMIT, 100).getProtocol(TTransport.TMemoryBuffer())
    unversioned.strictWrite = False
    assert not unversioned.write_whole("echo", 2, 1, HandshakeService.echo_result(success="x"))
    ours = protocol_factory(Wire("binary", "buffered", True), LIMIT, 100).getProtocol(TTransport.TMemoryBuffer())
    assert not ours.write_whole("echo", 3, 1, TApplicationException(TApplicationException.INTERNAL_ERROR, "x"))
    assert unversioned.trans.getvalue() == ours.trans.getvalue() == b""


def test_a_struct_that_cannot_be_encoded_leaves_what_the_usual_writes_leave() -> None:
    unencodable = HandshakeService.echo_result(success=7)  # not a string
    ours = protocol_factory(Wire("binary", "buffered", True), LIMIT, 100).getProtocol(TTransport.TMemoryBuffer())
    thrifts = TBinaryProtocol(TTransport.TMemoryBuffer())
    thrifts._fast_encode = ours._fast_encode  # (the C encoder, as the accelerated protocol's writes use it)
    with pytest.raises(TypeError, match="expected bytes, int found"):
        ours.write_whole("echo", 2, 9, unencodable)
    thrifts.writeMessageBegin("echo", 2, 9)
    with pytest.raises(TypeError, match="expected bytes, int found"):
        unencodable.write(thrifts)
    assert ours.trans.getvalue() == thrifts.trans.getvalue() == header(b"echo", message_type=2, seqid=9)
