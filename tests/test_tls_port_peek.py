"""The TLS port's look at a connection's first bytes before its handshake (``peek_first_bytes``): over
real loopback TCP connections, the bytes are left for the handshake, a dripping peer is waited for, a
closed or silent one is given up (at once, or at the socket's timeout)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator, Tuple

import pytest

from thrift_handshake.config import Wire
from thrift_handshake.wire import Dialect, DialectKind, peek_first_bytes

TLS_HELLO_START = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x5a"


@pytest.fixture
def pair() -> Iterator[Tuple[socket.socket, socket.socket]]:
    """(the server's end, the client's end) of one TCP connection on 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=5)
        ours, _ = listener.accept()
    yield ours, client
    ours.close()
    client.close()


def _later(seconds: float, action) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()))
    thread.start()
    return thread


def test_the_first_bytes_are_told_and_left_unread_for_the_handshake(pair):
    ours, client = pair
    ours.settimeout(5)
    client.sendall(TLS_HELLO_START)
    assert peek_first_bytes(ours) == (TLS_HELLO_START[:10], Dialect(DialectKind.TLS))  # at most SNIFF_BYTES
    assert ours.recv(64) == TLS_HELLO_START
    assert ours.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1


def test_a_peer_that_drips_its_first_bytes_is_waited_for_until_they_tell(pair):
    ours, client = pair
    ours.settimeout(5)
    framed_binary = b"\x00\x00\x00\x20\x80\x01\x00\x01"
    client.sendall(framed_binary[:3])
    dripping = _later(0.2, lambda: client.sendall(framed_binary[3:]))
    started = time.monotonic()
    data, dialect = peek_first_bytes(ours)
    dripping.join()
    assert dialect == Dialect(DialectKind.THRIFT, Wire(protocol="binary", transport="framed"))
    assert data == framed_binary
    assert time.monotonic() - started < 4, "told when the bytes came, not at the timeout"
    assert ours.recv(64) == framed_binary
    assert ours.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1


def test_a_peer_that_closes_before_its_bytes_tell_is_given_up_at_once(pair):
    ours, client = pair
    ours.settimeout(5)
    client.sendall(b"\x00\x00")
    closing = _later(0.2, client.close)
    started = time.monotonic()
    assert peek_first_bytes(ours) == (b"\x00\x00", None)
    closing.join()
    assert time.monotonic() - started < 2.5, "the close is seen when it comes, not at the 5 s timeout"
    assert ours.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1


def test_a_peer_that_resets_before_its_bytes_tell_is_given_up_at_once(pair):
    ours, client = pair
    ours.settimeout(5)
    client.sendall(b"\x00\x00")
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    closing = _later(0.2, client.close)
    started = time.monotonic()
    assert peek_first_bytes(ours) == (b"\x00\x00", None)
    closing.join()
    assert time.monotonic() - started < 2.5


def test_a_silent_peer_is_given_up_at_the_sockets_timeout(pair):
    ours, _client = pair
    ours.settimeout(0.6)
    started = time.monotonic()
    assert peek_first_bytes(ours) == (b"", None)
    took = time.monotonic() - started
    assert 0.6 <= took < 3.0, took


def test_a_peer_that_stops_before_its_bytes_tell_is_given_up_at_the_sockets_timeout(pair):
    ours, client = pair
    ours.settimeout(0.3)
    client.sendall(b"\x00\x00\x00")
    started = time.monotonic()
    assert peek_first_bytes(ours) == (b"\x00\x00\x00", None)
    took = time.monotonic() - started
    assert 0.3 <= took < 1.25, took  # the wait for more ends at the deadline, not a second after it
    assert ours.recv(64) == b"\x00\x00\x00", "nothing was consumed"
    assert ours.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1


def test_a_peer_whose_last_telling_byte_comes_alone_is_told_at_once(pair):
    ours, client = pair
    ours.settimeout(5)
    client.sendall(b"\x16")
    dripping = _later(0.2, lambda: client.sendall(b"\x03"))  # then it waits for the server's answer
    started = time.monotonic()
    assert peek_first_bytes(ours) == (b"\x16\x03", Dialect(DialectKind.TLS))
    dripping.join()
    assert time.monotonic() - started < 4, "told when the byte came, not at the timeout"


def test_a_peer_that_stops_before_its_bytes_tell_is_waited_for_without_spinning(pair):
    # the low-water mark above the bytes already there keeps poll asleep until new ones come
    ours, client = pair
    ours.settimeout(2.0)
    client.sendall(b"\x00\x00\x00")
    cpu = time.thread_time()
    assert peek_first_bytes(ours) == (b"\x00\x00\x00", None)
    assert time.thread_time() - cpu < 0.1, "the wait for more took the processor"


def test_a_peer_that_stops_before_its_bytes_tell_is_given_up_at_a_short_timeout(pair):
    # the wait for more ends at the deadline however near it is: not a second later
    ours, client = pair
    ours.settimeout(0.1)
    client.sendall(b"\x00\x00\x00")
    started = time.monotonic()
    assert peek_first_bytes(ours) == (b"\x00\x00\x00", None)
    took = time.monotonic() - started
    assert 0.1 <= took < 0.8, took
