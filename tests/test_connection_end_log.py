"""How a connection ended, in the server's one log line about it: a peer that resets its connection is
said to have reset it (Thrift reports ECONNRESET only as "unexpected exception")."""

from __future__ import annotations

import logging
import re
import socket
import struct
import time

import pytest
from conftest import encode_call, eventually

from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello

SERVER_LOG = "thrift_handshake.server"


def _ended(caplog: pytest.LogCaptureFixture, peer: str) -> str:
    """The server's line about how the connection from ``peer`` ended ("" until there is one)."""
    pattern = re.compile(rf"^(closed|dropped) peer={re.escape(peer)} ")
    return next((r.getMessage() for r in list(caplog.records) if r.name == SERVER_LOG and pattern.match(r.getMessage())), "")


def _reset(sock: socket.socket) -> None:
    """Closes with a TCP reset (SO_LINGER 0) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _call_and_reset(port: int, message: bytes) -> str:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    peer = "%s:%d" % sock.getsockname()
    sock.sendall(message)
    assert sock.recv(65536), "the call was answered"
    _reset(sock)
    return peer


def test_a_reset_after_hello_is_logged_as_a_reset_without_goodbye(start_server, caplog):
    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    server = start_server()
    hello = encode_call("hello", SessionService.hello_args(ClientHello(client_name="rst", min_version=1, max_version=2)))
    peer = _call_and_reset(server.port, hello)
    assert eventually(lambda: _ended(caplog, peer))
    line = _ended(caplog, peer)
    assert line.startswith("dropped") and line.endswith(": peer reset the connection without goodbye"), line


def test_a_reset_on_a_server_without_hello_is_logged_as_a_reset(start_server, caplog):
    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    server = start_server(handshake=False)
    peer = _call_and_reset(server.port, encode_call("echo", HandshakeService.echo_args(message="x")))
    assert eventually(lambda: _ended(caplog, peer))
    line = _ended(caplog, peer)
    assert line.startswith("dropped") and line.endswith(": peer reset the connection"), line


def _hello_and_half_a_call(port: int):
    """A connection with a session that has sent the first half of an echo call; (socket, peer)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(encode_call("hello", SessionService.hello_args(ClientHello(client_name="cut", min_version=1,
                                                                             max_version=2))))
    assert sock.recv(65536), "hello was answered"
    echo = encode_call("echo", HandshakeService.echo_args(message="never whole"), seqid=2)
    sock.sendall(echo[:len(echo) // 2])
    return sock, "%s:%d" % sock.getsockname()


def test_a_request_cut_off_by_a_half_close_is_answered_why_before_the_connection_closes(start_server, caplog):
    from conftest import read_until_closed
    from thrift.protocol.TBinaryProtocol import TBinaryProtocol
    from thrift.Thrift import TApplicationException, TMessageType
    from thrift.transport.TTransport import TMemoryBuffer

    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    server = start_server()
    sock, peer = _hello_and_half_a_call(server.port)
    with sock:
        sock.shutdown(socket.SHUT_WR)
        answer = TBinaryProtocol(TMemoryBuffer(read_until_closed(sock)))
    assert answer.readMessageBegin() == ("echo", TMessageType.EXCEPTION, 2)
    refusal = TApplicationException()
    refusal.read(answer)
    assert (refusal.type, refusal.message) == (
        TApplicationException.PROTOCOL_ERROR, "cannot decode the echo request: the request ended before it was complete")
    assert eventually(lambda: _ended(caplog, peer))
    assert _ended(caplog, peer).startswith("dropped")


def test_a_request_that_stops_arriving_is_dropped_at_the_request_timeout_unanswered(start_server, caplog):
    from conftest import read_until_closed

    from thrift_handshake import ServerLimits

    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    server = start_server(limits=ServerLimits(request_timeout=0.3))
    sock, peer = _hello_and_half_a_call(server.port)
    started = time.monotonic()
    with sock:
        assert read_until_closed(sock) == b""  # closed by the server, nothing said: the peer may still be sending
    assert time.monotonic() - started < 1.25  # at its 0.3 s: no wait for the rest lasts a second past it
    assert eventually(lambda: _ended(caplog, peer))
    line = _ended(caplog, peer)
    assert line.startswith("dropped") and line.endswith(": request timeout: the message did not arrive whole in time"), line


class _OpenWhenLogged(logging.Handler):
    """Records how many connections the server counts open at the moment each "closed" line is logged."""

    def __init__(self, server) -> None:
        super().__init__()
        self.server = server
        self.open_then: list = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("closed peer="):
            self.open_then.append(len(self.server.connections_now()))


def test_a_connection_logged_closed_no_longer_counts_among_the_open_ones(server, connect):
    # The asyncio server logged "closed" before it forgot the connection: a client reconnecting on that
    # line found a full server (max_connections) still counting the one just closed.
    seen = _OpenWhenLogged(server)
    logger = logging.getLogger("thrift_handshake")  # both servers' loggers are below it
    logger.addHandler(seen)
    logger.setLevel(logging.INFO)
    try:
        for _ in range(3):
            client = connect()
            client.echo("x")
            client.close()
            assert eventually(lambda: len(seen.open_then) == 1)
            assert seen.open_then.pop() == 0
    finally:
        logger.removeHandler(seen)
        logger.setLevel(logging.NOTSET)


def test_a_request_cut_off_by_a_peer_that_is_gone_is_dropped_without_an_error(start_server, caplog):
    """The answer to the cut-off request reaches a closed peer (whose kernel resets the connection): that
    fails quietly (no pool task fails), and the connection ends dropped."""
    caplog.set_level(logging.INFO)
    server = start_server()
    sock, peer = _hello_and_half_a_call(server.port)
    sock.close()  # nothing unread: a FIN, then a reset for whatever the server still writes
    assert eventually(lambda: _ended(caplog, peer))
    line = _ended(caplog, peer)
    assert line.startswith("dropped"), line
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
