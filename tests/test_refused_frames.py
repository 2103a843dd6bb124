"""Frames refused before their message is read still get an answer the peer can read in its own framing.

A frame over ``max_message_bytes`` is refused by its length, a THeader frame with a transform or a
protocol id this server does not read by its header: in both cases the message inside is never decoded.
The server answers from the frame's first bytes (the method and seqid when they can be read, "" and 0
otherwise), drops what the peer still sends for a bounded time and closes; it never reads the frame whole.
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import List, Tuple

import pytest
from conftest import encode_call, eventually, read_until_closed
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.THeaderTransport import THeaderClientType
from thrift.transport.TTransport import TMemoryBuffer

from thrift_handshake import Client, ClientOptions, ClientPhase, RemoteApplicationError, ServerLimits, Wire
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello

LIMIT = 1000


def _framed(message: bytes) -> bytes:
    return struct.pack("!i", len(message)) + message


def _hello() -> bytes:
    return encode_call("hello", SessionService.hello_args(ClientHello(client_name="frames", min_version=1, max_version=2)))


def _header_frame(payload: bytes, protocol_id: int = 0, transforms: Tuple[int, ...] = ()) -> bytes:
    """A THeader frame (one-byte varints: ids below 128) around ``payload``."""
    header = bytes([protocol_id, len(transforms), *transforms])
    header += b"\0" * (-len(header) % 4)
    return _framed(struct.pack("!HHiH", 0x0FFF, 0, 0, len(header) // 4) + header + payload)


def _framed_answers(data: bytes) -> List[Tuple[str, int, int, object]]:
    """(name, message type, seqid, TApplicationException or None) of each framed binary answer."""
    answers = []
    while len(data) >= 4:
        size, = struct.unpack("!i", data[:4])
        protocol = TBinaryProtocol(TMemoryBuffer(data[4:4 + size]))
        data = data[4 + size:]
        name, message_type, seqid = protocol.readMessageBegin()
        error = None
        if message_type == TMessageType.EXCEPTION:
            error = TApplicationException()
            error.read(protocol)
        answers.append((name, message_type, seqid, error))
    return answers


# -- frames over max_message_bytes ----------------------------------------------------------------

@pytest.mark.parametrize("wire", [Wire(transport="framed"), Wire(protocol="compact", transport="framed"),
                                  Wire(transport="header"), Wire(protocol="compact", transport="header")], ids=str)
@pytest.mark.parametrize("detect_wire", [True, False], ids=["any wire", "its wire only"])
def test_an_oversized_framed_request_is_answered_naming_the_limit(start_server, wire, detect_wire):
    server = start_server(limits=ServerLimits(max_message_bytes=LIMIT), wire=wire, detect_wire=detect_wire)
    with Client("127.0.0.1", server.port, ClientOptions(wire=wire), service=HandshakeService) as client:
        assert client.echo("a" * 500) == "a" * 500
        with pytest.raises(RemoteApplicationError) as caught:
            client.echo("a" * 2000)
        assert caught.value.type == TApplicationException.PROTOCOL_ERROR
        assert "cannot decode the echo request: a frame of " in str(caught.value)
        assert f"exceeds this server's limits (max_message_bytes={LIMIT})" in str(caught.value)
        assert client.phase is ClientPhase.BROKEN  # the server closes after a refused message
    with Client("127.0.0.1", server.port, ClientOptions(wire=wire), service=HandshakeService) as fresh:
        assert fresh.echo("still serving") == "still serving"


def test_a_frame_declaring_a_gigabyte_is_answered_without_being_read(start_server):
    """Only the frame's first bytes are read: the answer comes although the rest never will."""
    server = start_server(limits=ServerLimits(max_message_bytes=LIMIT))
    echo = encode_call("echo", HandshakeService.echo_args(message="x" * 100), seqid=7)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(_framed(_hello()) + struct.pack("!i", 1 << 30) + echo)
        answers = _framed_answers(read_until_closed(sock))
    assert [(name, kind, seqid) for name, kind, seqid, _ in answers] == [
        ("hello", TMessageType.REPLY, 1), ("echo", TMessageType.EXCEPTION, 7)]
    error = answers[1][3]
    assert error.type == TApplicationException.PROTOCOL_ERROR
    assert error.message == (f"cannot decode the echo request: a frame of {(1 << 30) + 4} bytes (its length field "
                             f"included) exceeds this server's limits (max_message_bytes={LIMIT})")


@pytest.mark.parametrize("size", [1 << 24, (1 << 31) - 1], ids=["16MiB", "2GiB"])
def test_a_first_frame_of_16_mib_or_more_is_recognised_and_answered(start_server, size):
    """A first frame whose length's top byte is not 0 used to be taken for something that is not Thrift
    and closed unanswered."""
    server = start_server(limits=ServerLimits(max_message_bytes=LIMIT))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(struct.pack("!i", size) + _hello())
        answers = _framed_answers(read_until_closed(sock))
    assert [(name, kind, seqid) for name, kind, seqid, _ in answers] == [("hello", TMessageType.EXCEPTION, 1)]
    assert answers[0][3].message.startswith(f"cannot decode the hello request: a frame of {size + 4} bytes")


@pytest.mark.parametrize("size", [LIMIT - 1, LIMIT, LIMIT + 1])
def test_max_message_bytes_counts_the_frame_length_field(start_server, size):
    """ServerHello's max_message_bytes is the whole message, framing included: one byte over is answered."""
    server = start_server(limits=ServerLimits(max_message_bytes=LIMIT))
    empty = len(encode_call("echo", HandshakeService.echo_args(message=""), seqid=2)) + 4
    echo = encode_call("echo", HandshakeService.echo_args(message="a" * (size - empty)), seqid=2)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(_framed(_hello()) + _framed(echo))
        sock.shutdown(socket.SHUT_WR)
        answers = _framed_answers(read_until_closed(sock))
    kind = TMessageType.REPLY if size <= LIMIT else TMessageType.EXCEPTION
    assert [(name, kind, seqid) for name, kind, seqid, _ in answers] == [("hello", TMessageType.REPLY, 1), ("echo", kind, 2)]


def test_an_oversized_frame_that_is_not_a_message_is_answered_to_seqid_0(start_server):
    server = start_server(limits=ServerLimits(max_message_bytes=LIMIT))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(_framed(_hello()) + struct.pack("!i", 5000) + b"\x01" * 5000)
        answers = _framed_answers(read_until_closed(sock))
    assert [(name, kind, seqid) for name, kind, seqid, _ in answers] == [
        ("hello", TMessageType.REPLY, 1), ("", TMessageType.EXCEPTION, 0)]
    assert answers[1][3].message == ("cannot decode the request: a frame of 5004 bytes (its length field included) "
                                     f"exceeds this server's limits (max_message_bytes={LIMIT})")


# -- THeader frames this server does not read -----------------------------------------------------

def _header_answer(data: bytes) -> Tuple[str, int, int, TApplicationException]:
    protocol = THeaderProtocol(TMemoryBuffer(data), [THeaderClientType.HEADERS])
    name, message_type, seqid = protocol.readMessageBegin()
    assert message_type == TMessageType.EXCEPTION
    error = TApplicationException()
    error.read(protocol)
    return name, message_type, seqid, error


@pytest.mark.parametrize("frame, problem", [
    (dict(transforms=(9,)), "THeader transform 9 is not accepted by this server"),
    (dict(transforms=(1,)), "THeader transform 1 is not accepted by this server (compression)"),
    (dict(protocol_id=99), "THeader protocol id 99 is not binary (0) or compact (2)"),
], ids=["unknown transform", "zlib", "unknown protocol"])
def test_a_theader_frame_it_cannot_read_is_answered_in_theader(start_server, caplog, frame, problem):
    server = start_server()
    ping = encode_call("ping", SessionService.ping_args(), seqid=7)
    with caplog.at_level(logging.WARNING), socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(_header_frame(ping, **frame))
        name, _, seqid, error = _header_answer(read_until_closed(sock))
    assert (name, seqid, error.type) == ("", 0, TApplicationException.PROTOCOL_ERROR)
    assert error.message == f"cannot decode the request: {problem}"
    assert eventually(lambda: f"bad message: {problem}" in caplog.text)  # the log line follows the close
    assert "TypeError" not in caplog.text
