"""``handshake_max_bytes``: what a connection may send before its hello() succeeds, counted exactly,
as wire bytes and, for a TZlibTransport peer, once inflated."""

from __future__ import annotations

import socket
import zlib

import pytest
from conftest import encode_call
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TMemoryBuffer

from thrift_handshake import ServerLimits
from thrift_handshake_gen.session import SessionService
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


def _answer(port: int, data: bytes, compressed: bool) -> object:
    """The ServerHello or TApplicationException the server answers ``data`` with."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        inflater = zlib.decompressobj()
        while True:
            more = sock.recv(65536)
            received += inflater.decompress(more) if compressed else more
            if not more or len(received) > 4 and _whole(received):
                break
    reply = TBinaryProtocol(TMemoryBuffer(received))
    _, kind, _ = reply.readMessageBegin()
    result = TApplicationException() if kind == TMessageType.EXCEPTION else SessionService.hello_result()
    result.read(reply)
    return result if kind == TMessageType.EXCEPTION else (result.success or result)


def _whole(received: bytes) -> bool:
    try:
        reply = TBinaryProtocol(TMemoryBuffer(received))
        _, kind, _ = reply.readMessageBegin()
        (TApplicationException() if kind == TMessageType.EXCEPTION else SessionService.hello_result()).read(reply)
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
