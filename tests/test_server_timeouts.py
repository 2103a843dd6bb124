"""The server's clocks: the handshake deadline, the idle timeout, the request timeout."""

from __future__ import annotations

import time

import pytest
from conftest import eventually, encode_call, report_reliability
from server_process import closed_by_peer
from thrift.transport.TTransport import TTransportException

from thrift_handshake import (
    Client,
    ClientPhase,
    ConnectionBroken,
    ServerLimits,
)
from thrift_handshake_gen import HandshakeService


def test_handshake_timeout_closes_a_silent_connection(start_server, raw):
    server = start_server(limits=ServerLimits(handshake_timeout=0.3))
    connection = raw(server.port)
    connection.stub.ping()
    assert eventually(lambda: server.connection_count == 0, timeout=3)  # closed by the server
    with pytest.raises(TTransportException):
        connection.stub.ping()


def test_handshake_timeout_is_a_deadline_not_an_idle_timer(start_server, raw):
    server = start_server(limits=ServerLimits(handshake_timeout=0.5))
    connection = raw(server.port)
    started = time.monotonic()
    with pytest.raises(TTransportException):
        while time.monotonic() - started < 3.0:
            connection.stub.ping()  # activity without hello does not extend the deadline
            time.sleep(0.1)
    assert time.monotonic() - started < 1.5


def test_idle_timeout_closes_a_silent_session(start_server, raw):
    server = start_server(limits=ServerLimits(idle_timeout=0.3))
    connection = raw(server.port)
    assert connection.hello().idle_timeout_ms == 300
    connection.stub.echo("active")
    assert eventually(lambda: server.connection_count == 0, timeout=3)  # closed by the server
    with pytest.raises(TTransportException):
        connection.stub.echo("too late")


def test_the_client_knows_the_idle_timeout_and_says_so(start_server):
    server = start_server(limits=ServerLimits(idle_timeout=0.3))
    client = Client("127.0.0.1", server.port, service=HandshakeService)
    client.connect()
    client.echo("active")
    assert eventually(lambda: server.connection_count == 0, timeout=3)  # closed by the server
    with pytest.raises(ConnectionBroken) as caught:
        client.echo("too late")
    assert "idle" in str(caught.value) and "reconnect()" in str(caught.value)
    assert client.phase is ClientPhase.BROKEN
    client.reconnect()
    assert client.echo("again") == "again"
    client.close()


def test_a_request_dripped_byte_by_byte_is_bounded_by_the_request_timeout(start_server, raw):
    server = start_server(limits=ServerLimits(request_timeout=0.5, idle_timeout=5))
    connection = raw(server.port)
    connection.hello()
    message = encode_call("echo", HandshakeService.echo_args(message="slow"))
    handle = connection.socket.handle
    started = time.monotonic()
    for byte in message * 10:  # each byte well within the idle timeout, the whole far beyond 0.5 s
        if closed_by_peer(handle) or time.monotonic() - started > 5:
            break
        handle.sendall(bytes([byte]))
        time.sleep(0.1)
    assert closed_by_peer(handle), "the server still holds a connection that drips its request"
    assert time.monotonic() - started < 2.5
    report_reliability("a request dripped a byte at a time after hello (request_timeout)", 1, True, 0)



def test_a_message_begun_among_pipelined_bytes_may_finish_arriving_within_the_request_timeout(start_server, raw):
    server = start_server(limits=ServerLimits(request_timeout=10))
    connection = raw(server.port)
    connection.hello()
    first = encode_call("echo", HandshakeService.echo_args(message="first"), seqid=2)
    second = encode_call("echo", HandshakeService.echo_args(message="second"), seqid=3)
    handle = connection.socket.handle
    handle.sendall(first + second[:10])  # the second call's start arrives with the first call
    assert connection.stub.recv_echo() == "first"
    time.sleep(0.05)  # past the server's linger (5 ms): it waits for the rest under the call's deadline
    handle.sendall(second[10:])
    assert connection.stub.recv_echo() == "second"



def test_a_call_whose_rest_arrives_after_a_pause_is_served_within_the_request_timeout(start_server, raw):
    server = start_server(limits=ServerLimits(request_timeout=10))
    connection = raw(server.port)
    connection.hello()
    call = encode_call("echo", HandshakeService.echo_args(message="paused"), seqid=2)
    handle = connection.socket.handle
    handle.sendall(call[:10])
    assert eventually(lambda: any(c.socket.stalled_since is not None for c in server._connections))  # waits for the rest
    handle.sendall(call[10:])
    assert connection.stub.recv_echo() == "paused"


def test_a_message_begun_among_pipelined_bytes_that_never_ends_is_dropped_at_the_request_timeout(start_server, raw):
    server = start_server(limits=ServerLimits(request_timeout=1.5, idle_timeout=30))
    connection = raw(server.port)
    connection.hello()
    first = encode_call("echo", HandshakeService.echo_args(message="first"), seqid=2)
    second = encode_call("echo", HandshakeService.echo_args(message="second"), seqid=3)
    handle = connection.socket.handle
    handle.sendall(first + second[:10])  # the second call's start arrives with the first call, its rest never
    assert connection.stub.recv_echo() == "first"
    started = time.monotonic()
    assert eventually(lambda: closed_by_peer(handle), timeout=10)
    assert 1.5 - 0.2 <= time.monotonic() - started < 4.5  # its deadline ran from the bytes that came with the first


def test_after_a_call_whose_rest_came_after_a_pause_the_session_waits_in_the_watch_again(start_server, raw):
    server = start_server(limits=ServerLimits(request_timeout=10, idle_timeout=30))
    connection = raw(server.port)
    connection.hello()
    call = encode_call("echo", HandshakeService.echo_args(message="paused"), seqid=2)
    handle = connection.socket.handle
    handle.sendall(call[:10])
    (served,) = server._connections
    assert eventually(lambda: served.socket.stalled_since is not None)  # waits for the rest
    handle.sendall(call[10:])
    assert connection.stub.recv_echo() == "paused"
    assert eventually(lambda: served.in_the_watch, timeout=3), "a thread still waits on the idle session"


def test_a_session_that_says_goodbye_is_closed_in_order_not_reset(start_server):
    import socket

    from thrift_handshake_gen.session import SessionService
    from thrift_handshake_gen.session.ttypes import ClientHello

    server = start_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(encode_call("hello", SessionService.hello_args(
            hello=ClientHello(client_name="orderly", min_version=1, max_version=2))))
        assert sock.recv(65536)
        sock.sendall(encode_call("goodbye", SessionService.goodbye_args(), seqid=2))
        received = b""
        while True:
            more = sock.recv(65536)  # a reset (only for a reply not read in time) would raise here
            if not more:
                break
            received += more
    assert b"goodbye" in received
