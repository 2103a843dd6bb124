"""The byte budgets, counted exactly, as wire bytes and, for a TZlibTransport peer, once inflated:
``handshake_max_bytes`` before hello() succeeds, ``max_message_bytes`` for each message after."""

from __future__ import annotations

import socket
import zlib

import pytest
from conftest import encode_call
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TMemoryBuffer

from thrift_handshake import ServerLimits
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.ttypes import AllTypes
from thrift_handshake_gen.session.ttypes import ClientHello, ServerHello

BUDGET = 1024


def _hello_of(size: int) -> bytes:
    """A hello call of exactly ``size`` bytes (strict binary, unframed), padded with five unknown
    features (ignored; each 4 length bytes and at most 256 characters)."""
    def encode(features) -> bytes:
        hello = ClientHello(client_name="budget", min_version=1, max_version=2, features=features)
        return encode_call("hello", SessionService.hello_args(hello=hello))
    characters = size - len(encode(set())) - 5 * 4
    call = encode({letter * (characters // 5 + (n < characters % 5)) for n, letter in enumerate("abcde")})
    assert len(call) == size
    return call


def _answer(port: int, data: bytes, compressed: bool, result_class: type = SessionService.hello_result) -> object:
    """What the server answers ``data`` with: the reply's success (or the whole result), or the
    TApplicationException."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        inflater = zlib.decompressobj()
        while True:
            more = sock.recv(65536)
            received += inflater.decompress(more) if compressed else more
            if not more or len(received) > 4 and _whole(received, result_class):
                break
    reply = TBinaryProtocol(TMemoryBuffer(received))
    _, kind, _ = reply.readMessageBegin()
    result = TApplicationException() if kind == TMessageType.EXCEPTION else result_class()
    result.read(reply)
    return result if kind == TMessageType.EXCEPTION else (result.success or result)


def _whole(received: bytes, result_class: type) -> bool:
    try:
        reply = TBinaryProtocol(TMemoryBuffer(received))
        _, kind, _ = reply.readMessageBegin()
        (TApplicationException() if kind == TMessageType.EXCEPTION else result_class()).read(reply)
        return True
    except Exception:  # not all of it yet (EOF inside the buffer)
        return False


def _zlib(data: bytes) -> bytes:
    stream = zlib.compressobj(9)
    return stream.compress(data) + stream.flush(zlib.Z_SYNC_FLUSH)


@pytest.mark.parametrize("compressed", [False, True], ids=["wire bytes", "inflated from zlib"])
def test_a_hello_of_exactly_handshake_max_bytes_is_answered(start_server, compressed):
    server = start_server(limits=ServerLimits(handshake_max_bytes=BUDGET))
    call = _hello_of(BUDGET)
    answer = _answer(server.port, _zlib(call) if compressed else call, compressed)
    assert isinstance(answer, ServerHello) and answer.session_id


@pytest.mark.parametrize("compressed", [False, True], ids=["wire bytes", "inflated from zlib"])
def test_a_hello_one_byte_over_handshake_max_bytes_is_refused(start_server, compressed):
    server = start_server(limits=ServerLimits(handshake_max_bytes=BUDGET))
    call = _hello_of(BUDGET + 1)
    answer = _answer(server.port, _zlib(call) if compressed else call, compressed)
    assert isinstance(answer, TApplicationException)
    limit = (f"more than {BUDGET} bytes once inflated from zlib (handshake_max_bytes)" if compressed
             else f"more than {BUDGET} bytes before hello() succeeded (handshake_max_bytes)")
    assert (answer.type, answer.message) == (TApplicationException.PROTOCOL_ERROR,
                                             f"cannot decode the hello request: {limit}")


def _echo_of(size: int) -> bytes:
    """An echo call of exactly ``size`` bytes."""
    call = encode_call("echo", HandshakeService.echo_args(message=""))
    call = encode_call("echo", HandshakeService.echo_args(message="x" * (size - len(call))))
    assert len(call) == size
    return call


@pytest.mark.parametrize("compressed", [False, True], ids=["wire bytes", "inflated from zlib"])
def test_without_hello_the_first_message_may_take_exactly_max_message_bytes(start_server, compressed):
    server = start_server(handshake=False, limits=ServerLimits(max_message_bytes=BUDGET))
    call = _echo_of(BUDGET)
    answer = _answer(server.port, _zlib(call) if compressed else call, compressed, HandshakeService.echo_result)
    assert answer == "x" * (BUDGET - len(encode_call("echo", HandshakeService.echo_args(message=""))))


@pytest.mark.parametrize("compressed", [False, True], ids=["wire bytes", "inflated from zlib"])
def test_without_hello_a_first_message_one_byte_over_max_message_bytes_is_refused(start_server, compressed):
    server = start_server(handshake=False, limits=ServerLimits(max_message_bytes=BUDGET))
    call = _echo_of(BUDGET + 1)
    answer = _answer(server.port, _zlib(call) if compressed else call, compressed, HandshakeService.echo_result)
    assert isinstance(answer, TApplicationException)
    assert answer.type == TApplicationException.PROTOCOL_ERROR
    assert answer.message.startswith("cannot decode the echo request: ")


def test_a_message_over_max_message_bytes_is_refused_when_it_came_in_one_read_with_the_one_before(start_server, raw):
    """Part of a pipelined message arrives with the message before it (read ahead into the transport's
    buffer): those bytes count against its own budget too."""
    server = start_server(limits=ServerLimits(max_message_bytes=BUDGET))
    connection = raw(server.port)
    connection.hello()
    small = encode_call("echo", HandshakeService.echo_args(message="s"), seqid=2)
    big = encode_call("echo_types", HandshakeService.echo_types_args(  # no string over the budget, the whole is
        value=AllTypes(id="b", text="t" * 700, data=b"d" * 700)), seqid=3)
    assert len(big) == 1475
    connection.socket.handle.sendall(small + big)
    assert connection.stub.recv_echo() == "s"
    with pytest.raises(TApplicationException) as refused:
        connection.stub.recv_echo_types()
    assert (refused.value.type, refused.value.message) == (
        TApplicationException.PROTOCOL_ERROR,
        f"cannot decode the echo_types request: a message of more than {BUDGET} bytes (max_message_bytes)")


@pytest.mark.parametrize("compressed", [False, True], ids=["wire bytes", "inflated from zlib"])
@pytest.mark.parametrize("over", [0, 1], ids=["exactly max_message_bytes", "one byte over"])
def test_a_message_after_hello_may_take_exactly_max_message_bytes(start_server, compressed, over):
    server = start_server(limits=ServerLimits(max_message_bytes=BUDGET))
    hello = _hello_of(200)
    call = _echo_of(BUDGET + over)
    data = hello + call
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        deflate = zlib.compressobj(9)
        inflate = zlib.decompressobj()
        sock.sendall(deflate.compress(hello) + deflate.flush(zlib.Z_SYNC_FLUSH) if compressed else hello)
        received = b""
        while not _whole(received, SessionService.hello_result):  # hello's answer: the session has started
            received += _read(sock, inflate if compressed else None)
        sock.sendall(deflate.compress(call) + deflate.flush(zlib.Z_SYNC_FLUSH) if compressed else call)
        received = b""
        while not _whole(received, HandshakeService.echo_result):
            more = _read(sock, inflate if compressed else None)
            assert more, "closed without an answer"
            received += more
    reply = TBinaryProtocol(TMemoryBuffer(received))
    _, kind, _ = reply.readMessageBegin()
    assert len(data) == 200 + BUDGET + over
    if over:
        assert kind == TMessageType.EXCEPTION
        refused = TApplicationException()
        refused.read(reply)
        assert refused.message.startswith("cannot decode the echo request: ")
    else:
        assert kind == TMessageType.REPLY


def _read(sock: socket.socket, inflate) -> bytes:
    more = sock.recv(65536)
    return inflate.decompress(more) if inflate is not None and more else more
