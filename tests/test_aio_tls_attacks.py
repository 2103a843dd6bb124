"""Attacks on the asyncio server's TLS port (issue 14, ``aio.tls_stream``), from outside, on asyncio's loop
and on uvloop: first bytes that trickle in, a peer that never says ClientHello, records cut short,
many handshakes at once. Each ends the attacker's connection as it should and leaves the server serving."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import ssl
import time

import pytest

from conftest import eventually
from test_attacks_pool import good_client_echo
from test_fairness_between_hosts import HELLO
from test_tls import CERTS, SERVER_TLS
from test_async_server import LOOPS, event_loop_thread, loop_factory, start_async  # noqa: F401 (fixtures)

from thrift_handshake import ServerLimits

pytestmark = pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)


def test_waiting_for_the_rest_of_the_first_bytes_costs_no_cpu(start_async):
    """Telling TLS from plain needs a few bytes: the server peeked every 10 ms until they came, so 300
    one-byte connections kept a fifth of a core busy (3,000 would have taken the loop)."""
    server = start_async(tls=SERVER_TLS, limits=ServerLimits(handshake_timeout=8.0))
    peers = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(300)]
    try:
        for peer in peers:
            peer.sendall(b"\x16")  # the first byte of a TLS record, and nothing more
        assert eventually(lambda: server.connection_count == 300)
        time.sleep(0.3)  # (their first byte taken)
        before = os.times()
        time.sleep(1.0)
        after = os.times()
        busy = (after.user - before.user) + (after.system - before.system)
        assert busy < 0.1, f"the server used {busy:.2f} s of CPU in 1 s waiting on 300 silent peers"
        assert good_client_echo(server.port, tls=True) < 5
    finally:
        for peer in peers:
            peer.close()


@pytest.mark.parametrize("sent", [b"", b"\x16", "a ClientHello's first 100 bytes"])
def test_a_peer_that_never_ends_its_client_hello_is_cut_at_the_handshake_deadline(start_async, caplog, sent):
    """Nothing, a byte, or a ClientHello cut short: the connection is closed at handshake_timeout, and the
    log says why (it said "TLS handshake failed: " and no more)."""
    server = start_async(tls=SERVER_TLS, limits=ServerLimits(handshake_timeout=0.5))
    with socket.create_connection(("127.0.0.1", server.port)) as peer:
        peer.settimeout(5)
        peer.sendall(_client_hello()[:100] if isinstance(sent, str) else sent)
        assert peer.recv(100) == b""
    assert eventually(lambda: server.connection_count == 0)
    assert eventually(lambda: "TLS handshake failed: not done within handshake_timeout" in caplog.text), caplog.text


def _client_hello() -> bytes:
    """The first flight of a TLS client of the test CA."""
    outgoing = ssl.MemoryBIO()
    client = _client_context().wrap_bio(ssl.MemoryBIO(), outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def _client_context() -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(CERTS / "ca.pem"))
    context.check_hostname = False
    return context


@pytest.mark.parametrize("then", ["closes", "sends plain bytes"])
def test_a_session_whose_records_stop_making_sense_ends_at_once(start_async, caplog, then):
    """Half of a record, then the end (FIN); or bytes that are no record at all: the session ends now with
    a typed reason, not at its idle deadline, and the server serves on."""
    server = start_async(tls=SERVER_TLS, limits=ServerLimits(idle_timeout=30.0))
    with _client_context().wrap_socket(socket.create_connection(("127.0.0.1", server.port))) as peer:
        peer.settimeout(5)
        peer.sendall(HELLO)
        assert peer.recv(65536)
        if then == "closes":  # (written past the TLS object: raw bytes on its socket)
            os.write(peer.fileno(), b"\x17\x03\x03\x00\x40" + b"A" * 20)  # a record's header, a third of it
            socket.socket.shutdown(peer, socket.SHUT_WR)
        else:
            os.write(peer.fileno(), b"GET / HTTP/1.1\r\n\r\n")
        assert eventually(lambda: server.connection_count == 0, 5.0)
    reason = "peer closed the connection without goodbye" if then == "closes" else "wrong version number"
    assert eventually(lambda: reason in caplog.text), caplog.text
    assert good_client_echo(server.port, tls=True) < 5


def test_many_tls_handshakes_at_once_are_all_served(start_async):
    server = start_async(tls=SERVER_TLS)
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        took = list(pool.map(lambda _: good_client_echo(server.port, tls=True), range(100)))
    assert len(took) == 100
    assert eventually(lambda: server.connection_count == 0)
