"""A full server: who makes room for a newcomer (eviction), and "server full" in the newcomer's dialect."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from conftest import encode_call, eventually, read_until_closed, report_reliability

from thrift_handshake import (
    Client,
    ClientOptions,
    ClientPhase,
    ConnectError,
    ServerFull,
    ServerLimits,
    Wire,
)
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello


def test_a_full_server_says_so_and_the_client_raises_server_full(start_server):
    server = start_server(limits=ServerLimits(max_connections=1))
    with Client("127.0.0.1", server.port, service=HandshakeService) as first:
        extra = Client("127.0.0.1", server.port, service=HandshakeService)
        with pytest.raises(ServerFull, match="server full: 1 connections") as caught:
            extra.connect()
        assert isinstance(caught.value, ConnectError) and extra.phase is ClientPhase.CLOSED
        assert first.echo("first still served") == "first still served"


@pytest.mark.parametrize("wire", [Wire("binary", "framed"), Wire("compact"), Wire("compact", "framed")], ids=str)
def test_a_full_server_says_so_in_the_newcomers_own_dialect(start_server, wire):
    server = start_server(limits=ServerLimits(max_connections=1))
    with Client("127.0.0.1", server.port, service=HandshakeService):
        extra = Client("127.0.0.1", server.port, ClientOptions(wire=wire), service=HandshakeService)
        with pytest.raises(ServerFull, match="server full: 1 connections"):
            extra.connect()


def test_connections_that_never_say_hello_cannot_lock_everyone_out(start_server):
    server = start_server(limits=ServerLimits(max_connections=4, evict_after=0.2))
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]
    try:
        assert eventually(lambda: server.connection_count == 4)  # every slot taken by a silent socket
        time.sleep(0.3)  # all of them older than evict_after
        for n in range(3):  # each newcomer evicts the oldest connection without a session
            with Client("127.0.0.1", server.port, service=HandshakeService) as client:
                assert client.echo(f"served {n}") == f"served {n}"
        assert silent[0].recv(1) == b""  # the oldest silent socket was closed to make room
        report_reliability("4 silent sockets against max_connections 4 (no lock-out)", 3, True, 0)
    finally:
        for sock in silent:
            sock.close()


def test_connections_stuck_mid_hello_cannot_lock_everyone_out(start_server):
    server = start_server(limits=ServerLimits(max_connections=4, evict_after=0.2))
    hello = ClientHello(client_name="slow", min_version=1, max_version=2)
    hello_start = encode_call("hello", SessionService.hello_args(hello=hello))[:20]  # its header and a byte
    stuck = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]
    try:
        for sock in stuck:
            sock.sendall(hello_start)
        assert eventually(lambda: sum(1 for c in server._connections if c.in_flight) == 4)  # every slot mid-message
        time.sleep(0.3)  # stuck for longer than evict_after
        with Client("127.0.0.1", server.port, service=HandshakeService) as client:
            assert client.echo("let in") == "let in"
        report_reliability("4 hellos stuck mid-message against max_connections 4 (no lock-out)", 1, True, 0)
    finally:
        for sock in stuck:
            sock.close()


def test_a_flood_of_silent_connections_cannot_keep_good_clients_out(start_server):
    # Connections that have sent nothing are not a hello under way: once a moment old (well under
    # evict_after) they make room. A flood of them, each younger than evict_after, locked good clients out.
    server = start_server(limits=ServerLimits(max_connections=3, evict_after=5.0))
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3)]
    try:
        assert eventually(lambda: server.connection_count == 3)
        time.sleep(0.3)
        with Client("127.0.0.1", server.port, service=HandshakeService) as client:
            assert client.echo("let in") == "let in"
        assert silent[0].recv(1) == b""  # the oldest silent one made room
    finally:
        for sock in silent:
            sock.close()


def test_a_connection_whose_hello_is_under_way_is_not_evicted_for_a_newcomer(start_server):
    # A newcomer to a full server used to evict a connection accepted a moment before it, whose hello
    # had not been read yet (or was being answered): a well-behaved client got ConnectionBroken.
    server = start_server(limits=ServerLimits(max_connections=2, evict_after=1.0))
    with Client("127.0.0.1", server.port, service=HandshakeService) as settled:
        young = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        try:
            young.sendall(encode_call("hello", SessionService.hello_args(
                hello=ClientHello(client_name="slow", min_version=1, max_version=2)))[:20])  # under way
            assert eventually(lambda: server.connection_count == 2)
            with pytest.raises(ServerFull):
                Client("127.0.0.1", server.port, service=HandshakeService).connect()
            young.setblocking(False)
            with pytest.raises(BlockingIOError):  # still open: nothing, not even EOF, to read
                young.recv(1)
            time.sleep(1.0)  # now older than evict_after and still without hello: it makes room
            with Client("127.0.0.1", server.port, service=HandshakeService) as newcomer:
                assert newcomer.echo("admitted") == "admitted"
            young.setblocking(True)
            assert young.recv(1) == b""
            assert settled.echo("still served") == "still served"
        finally:
            young.close()



HELLO = encode_call("hello", SessionService.hello_args(hello=ClientHello(min_version=1, max_version=2,
                                                                         client_name="late")))


def test_a_newcomer_that_pauses_before_its_hello_is_still_told_the_server_is_full(start_server):
    server = start_server(limits=ServerLimits(max_connections=1))
    with Client("127.0.0.1", server.port, service=HandshakeService):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as newcomer:
            time.sleep(0.3)  # well within the refusal's second
            newcomer.sendall(HELLO)
            answer = newcomer.recv(65536)
    assert b"server full: 1 connections" in answer


def test_a_newcomer_speaking_http_to_a_full_server_gets_a_503(start_server):
    server = start_server(limits=ServerLimits(max_connections=1))
    with Client("127.0.0.1", server.port, service=HandshakeService):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as newcomer:
            newcomer.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]")
            answer = read_until_closed(newcomer)
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")  # Thrift over HTTP is served here
    assert b"Retry-After: 1\r\n" in answer and b"server full: 1 connections" in answer


def test_a_newcomer_to_a_full_server_whose_message_cannot_be_read_is_closed_quietly(start_server, monkeypatch):
    uncaught = []
    monkeypatch.setattr(threading, "excepthook", uncaught.append)
    server = start_server(limits=ServerLimits(max_connections=1))
    with Client("127.0.0.1", server.port, service=HandshakeService):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as newcomer:
            newcomer.sendall(b"\x80\x01\x00\x01\xff\xff\xff\xff")  # binary call header, negative name length
            newcomer.shutdown(socket.SHUT_WR)
            assert newcomer.recv(65536) == b""  # no answer: the refusal could not read the call it answers
    assert eventually(lambda: not any(t.name.startswith("refuse ") for t in threading.enumerate()))
    assert uncaught == []


def test_a_silent_newcomer_to_a_full_server_is_closed_after_its_second(start_server):
    server = start_server(limits=ServerLimits(max_connections=1))
    with Client("127.0.0.1", server.port, service=HandshakeService):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as newcomer:
            started = time.monotonic()
            assert read_until_closed(newcomer) == b""
            took = time.monotonic() - started
    assert 0.9 <= took < 1.9, took  # the refusal waits a second for its first message, not two


def _refusers() -> int:
    return sum(thread.name.startswith("refuse ") for thread in threading.enumerate())


def test_sixteen_newcomers_are_waited_for_at_once_and_a_seventeenth_is_closed_unanswered(start_server):
    server = start_server(limits=ServerLimits(max_connections=1))
    with Client("127.0.0.1", server.port, service=HandshakeService):
        newcomers = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(16)]
        try:
            assert eventually(lambda: _refusers() == 16, timeout=0.8)  # each refusal waits for its message
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as seventeenth:
                started = time.monotonic()
                assert read_until_closed(seventeenth) == b""
                assert time.monotonic() - started < 0.9  # closed at once, not after a refusal's second
            assert _refusers() <= 16
        finally:
            for newcomer in newcomers:
                newcomer.close()
