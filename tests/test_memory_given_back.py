"""The heap memory a large turn of messages freed is given back to the system by the server itself (the
RSS measurements are in test_memory_after_hello.py; this checks the decision, in process)."""

from __future__ import annotations

from typing import List

import pytest
from conftest import eventually

from thrift_handshake import Client, ClientOptions, ServerLimits
from thrift_handshake.memory import MemoryReturn, give_back
from thrift_handshake_gen import HandshakeService


@pytest.mark.skipif(not give_back(), reason="memory can be given back only with glibc's malloc_trim")
def test_a_turn_that_moved_a_mebibyte_or_more_gives_its_memory_back(start_server):
    server = start_server(handshake=False)
    memory = server._loop.memory
    assert memory.given_back == 0
    with Client("127.0.0.1", server.port, ClientOptions(handshake=False), service=HandshakeService) as client:
        big = "Z" * (512 * 1024)
        assert client.echo(big) == big  # the connection's first turn: 1 MiB in and out together
        assert eventually(lambda: memory.given_back == 1)  # on the watch's tick, once releases stopped


class _Releases(MemoryReturn):
    """Notes each release the server reports (and gives nothing back)."""

    def __init__(self) -> None:
        super().__init__()
        self.released_bytes: List[int] = []

    def released(self, nbytes: int) -> None:
        self.released_bytes.append(nbytes)


def test_only_a_turn_of_a_mebibyte_or_more_is_reported_freed(start_server):
    server = start_server(handshake=False)
    server._loop.memory = releases = _Releases()
    server._loop._released(1024 * 1024 - 1)
    server._loop._released(1024 * 1024)
    assert releases.released_bytes == [1024 * 1024]


def test_a_large_turn_reports_its_own_bytes_not_the_connections_earlier_ones(start_server):
    server = start_server(handshake=False)
    server._loop.memory = releases = _Releases()
    with Client("127.0.0.1", server.port, ClientOptions(handshake=False), service=HandshakeService) as client:
        small, large = "s" * (300 * 1024), "L" * (600 * 1024)
        assert client.echo(small) == small  # about 600 KiB in and out: not a large turn
        assert eventually(lambda: [c.phase for c in server.connections_now()] == ["WAITING"])  # that turn ended
        assert client.echo(large) == large  # about 1.2 MiB: a large one
        assert eventually(lambda: releases.released_bytes)
    assert len(releases.released_bytes) == 1
    assert 2 * len(large) <= releases.released_bytes[0] < 2 * len(large) + 200  # its request and reply


def test_a_call_whose_reply_cannot_be_encoded_is_freed_with_its_turn_not_at_a_collection(start_server):
    """The failed call refers to its error, whose traceback refers back to the frames that hold the
    call: the server clears those frames, so the call's result goes with its turn, not when the
    garbage collector runs (off here)."""
    import gc
    import weakref

    from thrift_handshake import Interceptor, RemoteApplicationError
    from thrift_handshake.demo import HandshakeHandler

    class Opaque:
        """Not a string: the reply cannot be encoded."""

    class Unencodable(HandshakeHandler):
        def __init__(self) -> None:
            super().__init__()
            self.results = []

        def echo(self, message):
            result = Opaque()
            self.results.append(weakref.ref(result))
            return result

    class Observe(Interceptor):  # an observed call keeps its error
        def call_ended(self, call) -> None:
            pass

    handler = Unencodable()
    server = start_server(handler, handshake=False, interceptors=[Observe()])
    gc.collect()
    gc.disable()
    try:
        with Client("127.0.0.1", server.port, ClientOptions(handshake=False), service=HandshakeService) as client:
            with pytest.raises(RemoteApplicationError, match="could not encode the echo reply"):
                client.echo("x")
            assert eventually(lambda: [c.phase for c in server.connections_now()] == ["WAITING"])  # its turn ended
            assert len(handler.results) == 1 and handler.results[0]() is None, "the result is still held"
    finally:
        gc.enable()


def test_the_walk_of_a_request_refused_midway_is_freed_with_its_turn_not_at_a_collection(start_server):
    """An unframed request refused midway by its decoded price: the walk that refused it keeps its
    error, whose traceback (the context of the refusal the server answers) holds the walk and the
    request's bytes. The server clears those frames too, so nothing waits for the garbage collector
    (off here)."""
    import gc
    import socket
    import struct

    from conftest import encode_call, read_until_closed
    from thrift.Thrift import TMessageType

    from thrift_handshake_gen.session import SessionService
    from thrift_handshake_gen.session.ttypes import ClientHello

    count = 200_000
    request = (struct.pack("!iI", -2147418112 | TMessageType.CALL, 10) + b"echo_types" + struct.pack("!i", 7)
               + struct.pack("!bh", 12, 1) + struct.pack("!bhbbi", 13, 19, 11, 15, 1) + struct.pack("!i", 1) + b"g"
               + struct.pack("!bi", 12, count) + b"\0" * count + b"\0\0")  # a list of empty structs: ~32 MB decoded

    def walks() -> int:
        return sum(type(item).__name__ == "ArgumentsFramer" for item in gc.get_objects())

    server = start_server(limits=ServerLimits(max_decoded_bytes=16 << 20))
    gc.collect()
    gc.disable()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as peer:
            peer.sendall(encode_call("hello", SessionService.hello_args(
                hello=ClientHello(client_name="raw", min_version=1, max_version=2))))
            assert peer.recv(65536)
            peer.sendall(request)
            assert b"decoded" in read_until_closed(peer)  # refused, then the connection ends
        assert eventually(lambda: server.connections_now() == [])
        assert walks() == 0, "the refused walk is still held"
    finally:
        gc.enable()
