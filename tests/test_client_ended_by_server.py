"""Client.ended_by_server(): whether the server has spoken on, or closed, an idle READY connection (the
pool asks it before lending a connection), told without waiting and without taking a byte of a live session."""

from __future__ import annotations

import socket
import threading

from thrift_handshake import Client, ClientOptions
from thrift_handshake.states import ClientPhase
from thrift_handshake_gen import HandshakeService

from conftest import eventually
from test_client_phases import _hello_reply, _reply, loopback_peer


def test_an_idle_session_the_server_keeps_is_not_ended_and_one_it_closed_is(start_server):
    server = start_server()
    client = Client("127.0.0.1", server.port, service=HandshakeService)
    assert client.ended_by_server() is False  # NEW: nothing to tell
    client.connect()
    assert client.echo("hi") == "hi"
    assert client.ended_by_server() is False
    assert client.echo("still served") == "still served"  # asking took no byte of the session
    server.stop()
    assert eventually(client.ended_by_server)
    client.close()
    assert client.phase is ClientPhase.CLOSED and client.ended_by_server() is False


def test_bytes_the_server_sent_behind_a_reply_are_the_server_speaking():
    """They came in with the reply, in one read: the socket has nothing left to show, the transport's
    buffer has."""
    def serve(connection: socket.socket) -> None:
        connection.recv(65536)
        connection.sendall(_hello_reply())
        connection.recv(65536)
        connection.sendall(_reply("echo", HandshakeService.echo_result(success="hi")) + b"\x80\x01\x00\x04")
        connection.recv(1)  # open until the client goes

    with loopback_peer(serve) as port:
        client = Client("127.0.0.1", port, service=HandshakeService)
        client.connect()
        assert client.echo("hi") == "hi"
        assert client.ended_by_server() is True
        client.close()


def test_a_pipelined_hellos_answer_waiting_unread_is_not_the_server_ending_the_session():
    answered = threading.Event()

    def serve(connection: socket.socket) -> None:
        connection.recv(65536)
        connection.sendall(_hello_reply())  # on loopback, in the client's socket when sendall returns
        answered.set()
        connection.recv(65536)

    with loopback_peer(serve) as port:
        client = Client("127.0.0.1", port, ClientOptions(pipeline_hello=True), service=HandshakeService)
        client.connect()
        assert answered.wait(5)
        assert client.phase is ClientPhase.HELLO_PENDING and client.ended_by_server() is False
        assert client.server_hello.session_id == "s"
        assert client.ended_by_server() is False
        client.close()
