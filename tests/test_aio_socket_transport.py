"""The asyncio server serves plain sockets through ``aio.socket_transport.PlainSocketStream`` (not a
transport of the loop's), on both loops: a reply larger than the kernel takes at once goes out whole,
in order, behind a peer that reads slowly, and the next call is served once it went out; a peer that
resets while its reply is being written ends only its own connection; so does one whose reset comes with
its last bytes (on asyncio's loop: uvloop drops the reader then, left)."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from conftest import encode_call, eventually
from test_fairness_between_hosts import HELLO
from test_async_server import LOOPS, connect, event_loop_thread, loop_factory, start_async  # noqa: F401 (fixtures)

from thrift_handshake import ServerLimits

from thrift_handshake_gen import HandshakeService

MIB = 1024 * 1024


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_replies_larger_than_the_kernel_takes_arrive_whole_and_in_order(start_async):
    server = start_async()
    client = connect(server)
    for size in (3 * MIB, 5, 2 * MIB + 7):
        message = "".join(chr(ord("a") + index % 26) for index in range(26)) * (size // 26 + 1)
        assert client.echo(message[:size]) == message[:size]
    client.close()


def _session(port: int) -> socket.socket:
    """A raw connection with a small receive buffer (the server's writes outrun it) whose hello succeeded."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(HELLO)
    assert sock.recv(65536)
    return sock


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_slow_reader_gets_its_large_reply_whole(start_async):
    server = start_async()
    with _session(server.port) as sock:
        sock.sendall(encode_call("echo", HandshakeService.echo_args(message="s" * (4 * MIB)), seqid=7))
        letters = 0
        while letters < 4 * MIB:
            time.sleep(0.001)  # (the peer's pace: the server's writes wait for it)
            chunk = sock.recv(256 * 1024)
            assert chunk, f"closed after {letters} letters"
            letters += chunk.count(b"s")
        assert letters == 4 * MIB
        sock.sendall(encode_call("echo", HandshakeService.echo_args(message="next"), seqid=8))  # served on
        assert b"next" in sock.recv(65536)


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_peer_reset_mid_reply_ends_only_its_connection(start_async):
    server = start_async()
    other = connect(server)
    sock = _session(server.port)
    sock.sendall(encode_call("echo", HandshakeService.echo_args(message="r" * (8 * MIB)), seqid=7))
    assert sock.recv(4096)  # the reply has begun
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a reset, with most of the reply unsent
    assert eventually(lambda: server.connection_count == 1, 10.0)
    assert other.echo("still served") == "still served"
    other.close()


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_reset_that_comes_with_the_last_bytes_ends_the_connection_at_once(start_async, event_loop_thread):
    """Half a message and the reset reach the server in one wakeup of its loop (held meanwhile): it ends
    then, not at request_timeout."""
    server = start_async(limits=ServerLimits(request_timeout=30.0))
    peer = _session(server.port)
    held, sent = threading.Event(), threading.Event()
    event_loop_thread.loop.call_soon_threadsafe(lambda: (held.set(), sent.wait(5)))  # (the loop waits)
    assert held.wait(5)
    peer.sendall(encode_call("echo", HandshakeService.echo_args(message="x" * 100))[:50])
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()
    sent.set()
    assert eventually(lambda: server.connection_count == 0, 3.0)
