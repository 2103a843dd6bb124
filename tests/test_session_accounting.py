"""stats().sessions_active counts each session once, from hello until it ends, whichever way it ends:
goodbye, the peer going away without goodbye, the idle timeout, a message the server cannot decode.

Each test waits for the server's log line that ends the connection ('closed ...' or 'dropped ...', the
last thing the connection's thread does), then reads the counters: no sleeps, no race with the thread.
"""

from __future__ import annotations

import logging
import socket
import time

import pytest

from thrift_handshake import Client, ClientOptions, HandshakeFailed, ServerLimits

SERVER_LOG = "thrift_handshake.server"


def wait_for_end(caplog: pytest.LogCaptureFixture, peer: str, timeout: float = 5.0) -> str:
    """The server's log line that ends ``peer``'s connection; fails if there is none within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        for record in list(caplog.records):
            message = record.getMessage()
            if record.name == SERVER_LOG and message.split(" ", 1)[0] in ("closed", "dropped") \
                    and f" peer={peer} " in message:
                return message
        if time.monotonic() > deadline:
            pytest.fail(f"the server did not end the connection of {peer} within {timeout} s")
        time.sleep(0.01)


def peer_of(connection) -> str:
    host, port = connection.socket.handle.getsockname()[:2]
    return f"{host}:{port}"


@pytest.fixture(autouse=True)
def server_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    return caplog


def test_a_session_ended_without_goodbye_is_no_longer_active(server, raw, caplog):
    connection = raw()
    connection.hello()
    peer = peer_of(connection)
    assert server.metrics.snapshot().sessions_active == 1
    connection.close()
    assert "peer closed the connection without goodbye" in wait_for_end(caplog, peer)
    stats = server.metrics.snapshot()
    assert stats.sessions_active == 0, "the session ended with its connection"
    assert stats.connections_open == 0 and stats.handshakes_ok == 1
    with Client("127.0.0.1", server.port) as observer:  # what a client sees: only its own session
        assert observer.stats().sessions_active == 1


def test_a_session_ended_by_goodbye_is_counted_once(server, raw, caplog):
    connection = raw()
    connection.hello()
    peer = peer_of(connection)
    connection.stub.goodbye()
    assert "after goodbye" in wait_for_end(caplog, peer)
    assert server.metrics.snapshot().sessions_active == 0  # not -1: goodbye and the close end it once


def test_a_session_ended_by_the_idle_timeout_is_no_longer_active(start_server, raw, caplog):
    server = start_server(limits=ServerLimits(idle_timeout=0.3))
    connection = raw(server.port)
    connection.hello()
    assert "idle timeout" in wait_for_end(caplog, peer_of(connection))
    assert server.metrics.snapshot().sessions_active == 0


def test_a_session_ended_by_an_undecodable_message_is_no_longer_active(server, raw, caplog):
    connection = raw()
    connection.hello()
    peer = peer_of(connection)
    connection.socket.handle.sendall(b"\x80\x01\x00\x01\x00\x00\x00\x04echo\x00\x00\x00\x00\x0b\x00\x01\xff\xff\xff\xff")
    connection.socket.handle.shutdown(socket.SHUT_WR)  # the server reads the rest of the message to its end
    assert wait_for_end(caplog, peer).startswith("dropped")
    assert server.metrics.snapshot().sessions_active == 0


def test_connections_without_a_session_never_count(server, raw, caplog):
    silent = raw()
    silent.stub.ping()  # allowed before hello, opens no session
    refused = Client("127.0.0.1", server.port, ClientOptions(versions=(7, 9)))
    with pytest.raises(HandshakeFailed):
        refused.connect()
    peer = peer_of(silent)
    silent.close()
    assert wait_for_end(caplog, peer).startswith("closed")
    stats = server.metrics.snapshot()
    assert stats.sessions_active == 0 and stats.handshakes_rejected == 1 and stats.handshakes_ok == 0


def test_many_sessions_ending_every_way_leave_none_behind(start_server, raw, caplog):
    server = start_server(limits=ServerLimits(idle_timeout=0.5))
    peers = []
    for n in range(12):
        connection = raw(server.port)
        connection.hello(client_name=f"c{n}")
        peers.append(peer_of(connection))
        if n % 3 == 0:
            connection.stub.goodbye()
        elif n % 3 == 1:
            connection.close()
        # n % 3 == 2: left to the idle timeout
    for peer in peers:
        wait_for_end(caplog, peer)
    stats = server.metrics.snapshot()
    assert stats.sessions_active == 0 and stats.handshakes_ok == 12
