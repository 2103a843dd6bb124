"""The optional handshake (``ServerConfig(optional_hello=True)``, ``serve --hello optional``): a connection whose
first call is not hello is served as an anonymous session, while hello clients get theirs on the same port."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import eventually

from thrift_handshake import Client, ServerConfig
from thrift_handshake.states import SessionPhase, SocketMode
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session.ttypes import HandshakeRejected, HandshakeRequired


def test_a_call_without_hello_is_served_and_hello_clients_keep_their_sessions(start_server, raw) -> None:
    server = start_server(optional_hello=True, features=frozenset({"compression"}))
    anonymous = raw(server.port)
    assert anonymous.stub.echo("no hello") == "no hello"
    with Client(port=server.port, service=HandshakeService) as client:  # hello, on the same port
        assert client.session_id is not None and client.echo("with hello") == "with hello"
        stats = client.stats()
    assert (stats.sessions_active, stats.handshakes_ok) == (2, 1)  # the anonymous session counts, said no hello
    assert stats.calls["echo"] == 2
    state = server._connections[0].state
    assert state.session.phase is SessionPhase.ANONYMOUS and state.context.features == frozenset()
    assert state.context.session_id is None


def test_a_late_hello_is_refused_and_the_connection_kept(start_server, raw) -> None:
    server = start_server(optional_hello=True)
    anonymous = raw(server.port)
    anonymous.stub.echo("first")
    with pytest.raises(HandshakeRejected) as late:
        anonymous.hello()
    assert "hello must be the first call on a connection" in late.value.reason
    assert anonymous.stub.echo("still served") == "still served"
    assert server.metrics.snapshot().handshakes_rejected == 1


def test_ping_first_keeps_hello_possible(start_server, raw) -> None:
    server = start_server(optional_hello=True)
    connection = raw(server.port)
    connection.stub.ping()
    assert connection.hello().session_id
    assert server._connections[0].state.session.phase is SessionPhase.ESTABLISHED


def test_an_anonymous_session_has_the_session_limits_not_the_handshake_deadline(start_server, raw) -> None:
    server = start_server(optional_hello=True, limits=_limits(handshake_timeout=0.3))
    anonymous = raw(server.port)
    anonymous.stub.echo("first")
    assert eventually(lambda: server._connections[0].mode is SocketMode.SESSION)
    time.sleep(0.6)  # past the handshake deadline: the answer below proves the connection lived through it
    assert anonymous.stub.echo("later") == "later"


def test_an_anonymous_session_may_say_goodbye(start_server, raw) -> None:
    server = start_server(optional_hello=True)
    anonymous = raw(server.port)
    anonymous.stub.echo("one")
    farewell = anonymous.stub.goodbye()
    assert (farewell.session_id, farewell.calls) == (None, 1)
    assert eventually(lambda: server.connection_count == 0)
    assert server.metrics.snapshot().sessions_active == 0


def test_without_optional_hello_a_first_call_is_still_refused(start_server, raw) -> None:
    server = start_server()
    with pytest.raises(HandshakeRequired):
        raw(server.port).stub.echo("no hello")


def test_optional_hello_with_an_auth_token_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="a token means every caller must authenticate"):
        ServerConfig(optional_hello=True, auth_token="secret")
    with pytest.raises(ValueError, match="optional_hello needs the handshake on"):
        ServerConfig(optional_hello=True, handshake=False)


def test_serve_hello_optional_with_a_token_exits_2_before_listening(tmp_path) -> None:
    token = tmp_path / "token"
    token.write_text("secret")
    result = subprocess.run([sys.executable, "-m", "thrift_handshake", "serve", "--port", "0", "--hello", "optional",
                             "--auth-token-file", str(token)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "--hello optional with an auth token: a token means every caller must authenticate" in result.stderr
    assert "listening" not in result.stderr


def _limits(**fields):
    from thrift_handshake import ServerLimits

    return ServerLimits(**fields)


@pytest.mark.parametrize("transport", ["buffered", "framed"])
def test_a_first_call_larger_than_the_handshake_budget_is_served(start_server, transport) -> None:
    """It was dropped when framed ("more than 4096 bytes before hello() succeeded"): the whole frame is read
    before the gate knows the call is not hello, while --no-hello served it."""
    from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
    from thrift.transport import TSocket, TTransport

    server = start_server(optional_hello=True, limits=_limits(handshake_max_bytes=4096))
    sock = TSocket.TSocket("127.0.0.1", server.port)
    sock.setTimeout(5000)
    wire = TTransport.TFramedTransport(sock) if transport == "framed" else TTransport.TBufferedTransport(sock)
    client = HandshakeService.Client(TBinaryProtocolAccelerated(wire))
    wire.open()
    try:
        assert client.echo("x" * 100_000) == "x" * 100_000
    finally:
        wire.close()


def test_an_anonymous_session_holds_its_place_in_a_full_server(start_server, raw) -> None:
    """Like a session opened by hello, it is not evicted for a newcomer from its own host: the newcomer is
    told the server is full."""
    from thrift_handshake import ServerFull

    server = start_server(optional_hello=True, limits=_limits(max_connections=1, evict_after=0.1))
    anonymous = raw(server.port)
    assert anonymous.stub.echo("held") == "held"
    time.sleep(0.2)  # older than evict_after: only its session protects it
    newcomer = Client(port=server.port, service=HandshakeService)
    with pytest.raises(ServerFull, match="server full: 1 connections"):
        newcomer.connect()
    assert anonymous.stub.echo("still held") == "still held"


def test_over_tls_an_anonymous_session_leaves_the_handshake_deadline_too(start_server) -> None:
    """A TLS socket takes its own way out of the handshake's deadline (``settimeout``, not kernel timeouts); the
    cross test's optional column runs on plain TCP only, so this checks the TLS way."""
    import socket
    import ssl
    from pathlib import Path

    from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
    from thrift.transport import TSocket, TTransport

    from thrift_handshake import ServerTLS

    certs = Path(__file__).resolve().parent / "certs"
    server = start_server(optional_hello=True, tls=ServerTLS(str(certs / "server.pem"), str(certs / "server.key")),
                          limits=_limits(handshake_timeout=0.3))
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    raw = context.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=5),
                              server_hostname="localhost")
    sock = TSocket.TSocket()
    sock.setHandle(raw)
    transport = TTransport.TFramedTransport(sock)
    client = HandshakeService.Client(TBinaryProtocolAccelerated(transport))
    try:
        assert client.echo("first") == "first"
        assert eventually(lambda: server._connections[0].mode is SocketMode.SESSION)
        time.sleep(0.6)  # past the handshake deadline: the answer below proves the connection lived through it
        assert client.echo("later") == "later"
    finally:
        transport.close()


def test_the_asyncio_server_serves_optional_hello_the_same_way(raw) -> None:
    """The same gate and session behind ``AsyncHandshakeServer``: an anonymous first call larger than the
    handshake's byte budget (it was refused: "more than 4096 bytes before hello() succeeded"), the session's
    limits after it (past the handshake deadline), a late hello refused."""
    from test_async_server import EventLoopThread

    from thrift_handshake.aio import AsyncHandshakeServer
    from thrift_handshake.demo import HandshakeHandler

    loop = EventLoopThread()
    limits = _limits(handshake_timeout=0.3, handshake_max_bytes=4096)
    server = AsyncHandshakeServer(HandshakeHandler(), ServerConfig(port=0, optional_hello=True, limits=limits))
    loop.run(server.start())
    try:
        anonymous = raw(server.port)
        assert anonymous.stub.echo("x" * 100_000) == "x" * 100_000
        time.sleep(0.6)  # past the handshake deadline: the answer below proves the connection lived through it
        assert anonymous.stub.echo("later") == "later"
        with pytest.raises(HandshakeRejected, match="hello must be the first call on a connection"):
            anonymous.hello()
    finally:
        loop.run(server.stop(grace=5.0))
        loop.close()
