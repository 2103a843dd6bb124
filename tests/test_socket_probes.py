"""wire/sockets.py's probes of a socket that never wait for its peer (``spoke_or_closed``) or wait a
bounded time (``wait_readable``), over real socket pairs and a TLS connection on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from thrift_handshake.wire import spoke_or_closed
from thrift_handshake.wire.sockets import wait_readable

CERTS = Path(__file__).resolve().parent / "certs"


@pytest.fixture
def pair() -> Iterator[Tuple[socket.socket, socket.socket]]:
    """(ours, the peer's) ends of a TCP connection on 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        ours = socket.create_connection(listener.getsockname(), timeout=5)
        theirs, _ = listener.accept()
    with ours, theirs:
        yield ours, theirs


@pytest.fixture
def tls_pair() -> Iterator[Tuple[ssl.SSLSocket, ssl.SSLSocket]]:
    """(ours: the client, the peer's: the server) ends of a TLS connection on 127.0.0.1, handshake done."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(str(CERTS / "server.pem"), str(CERTS / "server.key"))
    accepted = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def accept() -> None:
            raw, _ = listener.accept()
            raw.settimeout(5)
            accepted.append(server_context.wrap_socket(raw, server_side=True))

        acceptor = threading.Thread(target=accept)
        acceptor.start()
        raw = socket.create_connection(listener.getsockname(), timeout=5)
        ours = ssl.create_default_context(cafile=str(CERTS / "ca.pem")).wrap_socket(raw, server_hostname="localhost")
        acceptor.join(5)
    with ours, accepted[0] as theirs:
        yield ours, theirs


def test_a_silent_peer_has_not_spoken_and_the_sockets_timeout_is_kept(pair):
    ours, _ = pair
    for timeout in (2.5, None):
        ours.settimeout(timeout)
        assert spoke_or_closed(ours) is False
        assert ours.gettimeout() == timeout


def test_a_peer_that_sent_bytes_has_spoken_and_the_bytes_are_still_there(pair):
    ours, theirs = pair
    theirs.sendall(b"ab")
    assert wait_readable(ours, 5.0)
    assert spoke_or_closed(ours) is True
    assert ours.gettimeout() == 5
    assert ours.recv(2) == b"ab"


def test_a_peer_that_closed_or_reset_has_spoken(pair):
    ours, theirs = pair
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    theirs.close()  # a reset: the recv raises ConnectionResetError
    assert wait_readable(ours, 5.0)
    assert spoke_or_closed(ours) is True
    assert ours.gettimeout() == 5


def test_a_silent_tls_peer_has_not_spoken(tls_pair):
    ours, _ = tls_pair
    assert spoke_or_closed(ours) is False  # at most its session tickets were read
    assert spoke_or_closed(ours) is False
    assert ours.gettimeout() == 5


def test_a_tls_peer_whose_record_is_read_in_part_has_spoken_without_a_recv(tls_pair):
    ours, theirs = tls_pair
    theirs.sendall(b"abc")
    assert ours.recv(1) == b"a"  # the rest of the record waits in the TLS layer, none in the kernel
    assert ours.pending() == 2
    assert spoke_or_closed(ours) is True
    assert ours.pending() == 2, "nothing was taken to find it out"


def test_a_tls_peer_that_sent_bytes_has_spoken(tls_pair):
    ours, theirs = tls_pair
    assert spoke_or_closed(ours) is False  # the session tickets, if any, out of the way
    theirs.sendall(b"abc")
    assert wait_readable(ours, 5.0)
    assert spoke_or_closed(ours) is True
    assert ours.gettimeout() == 5


def test_waiting_for_input_that_is_there_returns_at_once(pair):
    ours, theirs = pair
    theirs.sendall(b"x")
    started = time.monotonic()
    assert wait_readable(ours, 30.0) is True
    assert time.monotonic() - started < 5.0


def test_waiting_for_input_that_does_not_come_lasts_the_timeout_and_no_longer(pair):
    ours, _ = pair
    started = time.monotonic()
    assert wait_readable(ours, 0.3) is False
    took = time.monotonic() - started
    assert 0.3 <= took < 1.0, took


def test_a_timeout_already_past_does_not_wait(pair):
    ours, theirs = pair
    answers = []
    waiter = threading.Thread(target=lambda: answers.append(wait_readable(ours, -5.0)))
    waiter.start()
    waiter.join(5.0)
    waited = waiter.is_alive()
    theirs.close()  # a waiter still waiting wakes now
    waiter.join(5.0)
    assert not waited and answers == [False]
