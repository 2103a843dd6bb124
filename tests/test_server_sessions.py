"""A session's end on the server (goodbye), a handler's exception, and IPv6."""

from __future__ import annotations


import pytest
from thrift.transport.TTransport import TTransportException

from thrift_handshake import (
    Client,
    RemoteApplicationError,
)
from thrift_handshake_gen import HandshakeService


def test_goodbye_returns_the_farewell_then_the_server_closes(raw):
    connection = raw()
    hello = connection.hello()
    connection.stub.echo("one")
    connection.stub.echo("two")
    farewell = connection.stub.goodbye()
    assert farewell.session_id == hello.session_id
    assert farewell.calls == 2
    assert farewell.duration_ms >= 0
    with pytest.raises(TTransportException):
        connection.stub.echo("after goodbye")


def test_goodbye_ends_the_session_in_stats(client, connect):
    other = connect()
    assert client.stats().sessions_active == 2
    other.goodbye()
    stats = client.stats()
    assert stats.sessions_active == 1
    assert stats.connections_open == 1, "a connection that said goodbye no longer counts as open"
    assert stats.calls["goodbye"] == 1


def test_a_handler_exception_keeps_connection_and_server(client, connect):
    for _ in range(3):
        with pytest.raises(RemoteApplicationError):
            client.fail("boom")
    assert client.echo("alive") == "alive"
    assert connect().echo("server alive") == "server alive"


def test_the_server_serves_on_ipv6_loopback(start_server):
    server = start_server(host="::1")
    with Client("::1", server.port, service=HandshakeService) as client:
        assert client.echo("v6") == "v6"
        assert client.stats().connections_open == 1

