"""Attacks on the asyncio server's writes (issue 14): a peer that never reads a reply the kernel did
not take whole. Its connection ends within ``reply_timeout`` on the server AND on the wire (the peer is
reset), whether it half-closed after its call or stays silent, and the server's forced stop resets it:
what the server did not send is never held past the end of its connection (nor a refusal's answer past
its deadline). The same over TLS (``aio.tls_stream``), and a TLS session idle after a reply is served on."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from typing import Iterator, List

import pytest

from conftest import encode_call, eventually
from test_fairness_between_hosts import HELLO
from test_tls import CERTS, SERVER_TLS
from test_async_server import LOOPS, event_loop_thread, loop_factory  # noqa: F401 (fixtures)

from thrift_handshake import ServerConfig, ServerLimits, Wire
from thrift_handshake.aio import AsyncHandshakeServer
from thrift_handshake.demo import FEATURES, HandshakeHandler

from thrift_handshake_gen import HandshakeService

#: Linux's TCP_INFO tcpi_state values.
TCP_ESTABLISHED, TCP_FIN_WAIT2, TCP_CLOSE = 1, 5, 7
#: Larger than what the small buffers below take, but less than the stream's 64 KiB high-water mark.
REPLY = 40_000


DROPPED = "dropped: the peer did not read its reply within reply_timeout"


def _ends(caplog: pytest.LogCaptureFixture) -> List[str]:
    """How the server's log words the ends of connections."""
    return [f"{record.getMessage().split(' ', 1)[0]}: {record.getMessage().rsplit(': ', 1)[1]}"
            for record in caplog.records if record.getMessage().startswith(("closed peer", "dropped peer"))]


def _tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0]


def _small_buffers(event_loop_thread, reply_timeout: float, tls: bool = False, **settings) -> AsyncHandshakeServer:
    """A server whose accepted sockets have a small send buffer (fixed, not autotuned): a reply of
    ``REPLY`` bytes stays partly unsent while its peer does not read. ``settings``: more of its config."""
    listening = socket.create_server(("127.0.0.1", 0))
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # (inherited by the accepted sockets)
    config = ServerConfig(host="127.0.0.1", port=0, features=FEATURES, tls=SERVER_TLS if tls else None,
                          limits=ServerLimits(reply_timeout=reply_timeout, idle_timeout=60.0), **settings)
    server = AsyncHandshakeServer(HandshakeHandler(None), config)
    event_loop_thread.run(server.start(listening))
    return server


@pytest.fixture
def small_buffers_server(event_loop_thread, request) -> Iterator[AsyncHandshakeServer]:
    """``_small_buffers`` with a reply_timeout of 0.5 s; TLS with ``tls`` in the test's name."""
    server = _small_buffers(event_loop_thread, 0.5, "tls" in request.node.name)
    yield server
    event_loop_thread.run(server.stop(grace=5.0))


@pytest.fixture
def patient_server(event_loop_thread) -> Iterator[AsyncHandshakeServer]:
    """``_small_buffers`` with a reply_timeout longer than the stop's grace."""
    server = _small_buffers(event_loop_thread, 60.0)
    yield server
    event_loop_thread.run(server.stop(grace=0.0))


@pytest.fixture
def compact_server(event_loop_thread, request) -> Iterator[AsyncHandshakeServer]:
    """``_small_buffers`` serving only the compact protocol (a binary client is refused); TLS with ``tls``
    in the test's name."""
    server = _small_buffers(event_loop_thread, 0.5, "tls" in request.node.name, wire=Wire(protocol="compact"),
                            detect_wire=False)
    yield server
    event_loop_thread.run(server.stop(grace=5.0))


def _peer(port: int, tls: bool = False) -> socket.socket:
    """A client socket with a small receive buffer (fixed), connected (and with ``tls``, wrapped)."""
    peer = socket.socket()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    peer.settimeout(10)
    peer.connect(("127.0.0.1", port))
    if tls:
        context = ssl.create_default_context(cafile=str(CERTS / "ca.pem"))
        context.check_hostname = False
        peer = context.wrap_socket(peer)
    return peer


def _unread_call(port: int, tls: bool = False) -> socket.socket:
    """A session that calls for a ``REPLY``-byte reply and reads none of it."""
    peer = _peer(port, tls)
    peer.sendall(HELLO)
    assert peer.recv(65536)
    peer.sendall(encode_call("echo", HandshakeService.echo_args(message="z" * REPLY), seqid=2))
    return peer


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_peer_that_half_closes_and_never_reads_is_reset_within_reply_timeout(small_buffers_server, caplog):
    with _unread_call(small_buffers_server.port) as peer:
        peer.shutdown(socket.SHUT_WR)
        assert eventually(lambda: small_buffers_server.connection_count == 0, 5.0)
        assert eventually(lambda: _tcp_state(peer) == TCP_CLOSE, 5.0), _tcp_state(peer)  # was FIN_WAIT2 for ever
    assert _ends(caplog) == [DROPPED]  # as the threaded server words it (was "peer closed the connection")


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_silent_peer_that_never_reads_is_reset_within_reply_timeout(small_buffers_server, caplog):
    with _unread_call(small_buffers_server.port) as peer:
        assert eventually(lambda: _tcp_state(peer) == TCP_CLOSE, 5.0), _tcp_state(peer)
        assert small_buffers_server.connection_count == 0
    assert _ends(caplog) == [DROPPED]  # (was "idle timeout", once idle_timeout had passed)


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_silent_tls_peer_that_never_reads_is_reset_within_reply_timeout(small_buffers_server, caplog):
    with _unread_call(small_buffers_server.port, tls=True) as peer:
        assert eventually(lambda: _tcp_state(peer) == TCP_CLOSE, 5.0), _tcp_state(peer)
        assert small_buffers_server.connection_count == 0
    assert _ends(caplog) == [DROPPED]


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_peer_not_reading_at_the_stop_is_reset_once_the_grace_is_over(patient_server, event_loop_thread, caplog):
    caplog.set_level(logging.INFO, logger="thrift_handshake.aio")
    with _unread_call(patient_server.port) as peer:
        assert eventually(lambda: patient_server.connection_phases()["SERVING"] == 1, 5.0)  # its reply waits
        event_loop_thread.run(patient_server.stop(grace=0.2))
        assert patient_server.connection_count == 0
        assert eventually(lambda: _tcp_state(peer) == TCP_CLOSE, 5.0), _tcp_state(peer)
    assert _ends(caplog) == ["closed: server stopping"]


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_call_begun_before_the_stop_and_never_read_is_reset_once_the_grace_is_over(patient_server, event_loop_thread,
                                                                                      caplog):
    """The stop serves a message begun before it; its reply is not read. The stop's forced cancel lands on
    the reply's drain, then the notice that the server stops is written: it was left to reply_timeout
    (the stop returned with the connection open)."""
    caplog.set_level(logging.INFO, logger="thrift_handshake.aio")
    call = encode_call("echo", HandshakeService.echo_args(message="z" * REPLY), seqid=2)
    with _peer(patient_server.port) as peer:
        peer.sendall(HELLO)
        assert peer.recv(65536)
        peer.sendall(call[:100])
        assert eventually(lambda: patient_server.connection_phases()["SERVING"] == 1, 5.0)  # mid-message
        stopping = asyncio.run_coroutine_threadsafe(patient_server.stop(grace=0.2), event_loop_thread.loop)
        assert eventually(lambda: any(r.getMessage().startswith("stopping:") for r in caplog.records), 5.0)
        peer.sendall(call[100:])
        stopping.result(10)
        assert patient_server.connection_count == 0
        assert eventually(lambda: _tcp_state(peer) == TCP_CLOSE, 5.0), _tcp_state(peer)
    assert _ends(caplog) == ["closed: server stopping"]


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_tls_session_idle_past_reply_timeout_after_a_reply_is_served(small_buffers_server):
    """A reply read whole leaves nothing for the drain to wait for (a TLS transport's flow control
    paused at 0 bytes pending would have held it until reply_timeout, then dropped the session)."""
    with _unread_call(small_buffers_server.port, tls=True) as peer:
        reply = encode_call("echo", HandshakeService.echo_result(success="z" * REPLY), seqid=2, message_type=2)
        assert _read_exactly(peer, len(reply)) == reply
        time.sleep(3 * 0.5)  # (the peer's pace: idle three reply_timeouts)
        peer.sendall(encode_call("echo", HandshakeService.echo_args(message="still here"), seqid=3))
        reply = encode_call("echo", HandshakeService.echo_result(success="still here"), seqid=3, message_type=2)
        assert _read_exactly(peer, len(reply)) == reply


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_refusal_the_peer_never_reads_is_reset_after_its_deadline(compact_server, caplog):
    """A refused call is answered with its own name: one of ``REPLY`` bytes is more than the buffers take.
    Once the refusal's deadline is over, the connection is reset (it stayed open for ever, unlisted)."""
    _refused_unread(compact_server, caplog, tls=False)


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_tls_refusal_the_peer_never_reads_is_reset_after_its_deadline(compact_server, caplog):
    """(The loops' TLS transports gave a close 30 s, their ssl_shutdown_timeout.)"""
    _refused_unread(compact_server, caplog, tls=True)


def _refused_unread(server: AsyncHandshakeServer, caplog: pytest.LogCaptureFixture, tls: bool) -> None:
    with _peer(server.port, tls) as peer:
        peer.sendall(encode_call("n" * REPLY, HandshakeService.echo_args(message="refused"), seqid=2))
        assert eventually(lambda: _tcp_state(peer) == TCP_CLOSE, 5.0), _tcp_state(peer)
        assert server.connection_count == 0
    assert any(record.getMessage().startswith("refused peer=") for record in caplog.records)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"closed after {len(data)} of {size} bytes"
        data += chunk
    return data
