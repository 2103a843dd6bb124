"""Attacks from outside on the asyncio server's per-call path (a whole message into the read buffer,
headers and replies in one write, a reset asked for only before a read waits), on both loops."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
import time

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TMessageType
from thrift.transport.THeaderTransport import THeaderClientType
from thrift.transport.TTransport import TMemoryBuffer

from conftest import encode_call, eventually
from test_aio_tls_attacks import _client_context, _client_hello
from test_async_server import LOOPS, event_loop_thread, loop_factory, start_async  # noqa: F401 (fixtures)
from test_fairness_between_hosts import HELLO
from test_tls import SERVER_TLS

from thrift_handshake import ServerLimits, Wire
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello
from thrift_handshake_gen.ttypes import Event


def _frame(message: bytes) -> bytes:
    return struct.pack("!i", len(message)) + message


# -- a reset that comes with bytes that decrypt to nothing (TLS) -----------------------------------

def _tls_session(port: int):
    """A raw socket and the TLS client object over it, handshake done and hello answered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = _client_context().wrap_bio(incoming, outgoing)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            incoming.write(sock.recv(65536))
    sock.sendall(outgoing.read())
    tls.write(HELLO)
    sock.sendall(outgoing.read())
    while True:
        incoming.write(sock.recv(65536))
        try:
            if tls.read(65536):
                break
        except ssl.SSLWantReadError:
            continue
    return sock, tls, outgoing


def _reset_in_one_wakeup(event_loop_thread, sock: socket.socket, data: bytes) -> None:
    """``data`` and then a reset reach the server while its loop is held: one wakeup sees both."""
    held, sent = threading.Event(), threading.Event()
    event_loop_thread.loop.call_soon_threadsafe(lambda: (held.set(), sent.wait(5)))
    assert held.wait(5)
    if data:
        sock.sendall(data)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    sent.set()


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_reset_after_half_a_tls_record_ends_the_session_at_once(start_async, event_loop_thread):
    server = start_async(tls=SERVER_TLS, limits=ServerLimits(idle_timeout=30.0, request_timeout=30.0))
    sock, tls, outgoing = _tls_session(server.port)
    assert eventually(lambda: server.connection_count == 1)
    tls.write(encode_call("echo", HandshakeService.echo_args(message="x" * 100)))
    record = outgoing.read()
    _reset_in_one_wakeup(event_loop_thread, sock, record[:len(record) // 2])
    assert eventually(lambda: server.connection_count == 0, 3.0)


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_reset_after_half_a_client_hello_ends_the_connection_at_once(start_async, event_loop_thread):
    """Bytes that decrypt to nothing wake no read, so no read asks for the reset that came with them
    (uvloop stops watching the socket then): they ask at once, or the peer held its slot until
    handshake_timeout."""
    server = start_async(tls=SERVER_TLS, limits=ServerLimits(handshake_timeout=30.0))
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(b"\x16")  # (told TLS: the stream is built and waits for the rest of the ClientHello)
    assert eventually(lambda: server.connection_count == 1)
    _reset_in_one_wakeup(event_loop_thread, sock, _client_hello()[1:100])
    assert eventually(lambda: server.connection_count == 0, 3.0)


# -- a reset that comes with the peer's last bytes (plain) ----------------------------------------

def _plain_session(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(HELLO)
    assert sock.recv(65536)
    return sock


class SlowEcho(HandshakeService.Iface):
    """A coroutine echo that takes its time."""

    async def echo(self, message: str) -> str:
        await asyncio.sleep(2.0)
        return message


def _notify(seqid: int) -> bytes:
    return encode_call("notify", HandshakeService.notify_args(event=Event(name="n", payload="p")), seqid=seqid,
                       message_type=TMessageType.ONEWAY)


def _echo(seqid: int, size: int = 10) -> bytes:
    return encode_call("echo", HandshakeService.echo_args(message="e" * size), seqid=seqid)


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
@pytest.mark.parametrize("sent", ["a one-way call", "two one-way calls", "a call and a one-way call",
                                  "a one-way call and half a call", "a call of 4096 bytes and a one-way call"])
def test_a_reset_with_the_last_bytes_ends_the_session_at_once(start_async, event_loop_thread, sent):
    server = start_async(limits=ServerLimits(idle_timeout=30.0, request_timeout=30.0))
    sock = _plain_session(server.port)
    data = {"a one-way call": _notify(2),
            "two one-way calls": _notify(2) + _notify(3),
            "a call and a one-way call": _echo(2) + _notify(3),
            "a one-way call and half a call": _notify(2) + _echo(3)[:20],
            "a call of 4096 bytes and a one-way call": _echo(2, 4096 - len(_echo(2, 0))) + _notify(3)}[sent]
    _reset_in_one_wakeup(event_loop_thread, sock, data)
    assert eventually(lambda: server.connection_count == 0, 3.0)


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_reset_behind_a_call_to_a_slow_coroutine_ends_the_session_once_it_answers(start_async, event_loop_thread,
                                                                                    tls):
    server = start_async(SlowEcho(), tls=SERVER_TLS if tls else None,
                         limits=ServerLimits(idle_timeout=30.0, request_timeout=30.0))
    if tls:
        sock, client, outgoing = _tls_session(server.port)
        client.write(_echo(2) + _notify(3))
        data = outgoing.read()
    else:
        sock, data = _plain_session(server.port), _echo(2) + _notify(3)
    _reset_in_one_wakeup(event_loop_thread, sock, data)
    assert eventually(lambda: server.connection_count == 0, 4.0)


# -- request_timeout and idle_timeout against the framer's pending bytes --------------------------

def _trickle(sock: socket.socket, data: bytes, every: float, closed: threading.Event) -> None:
    for byte in data:
        if closed.is_set():
            return
        try:
            sock.send(bytes([byte]))
        except OSError:
            return
        time.sleep(every)


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
@pytest.mark.parametrize("before", ["nothing", "a whole call"])
def test_a_call_trickled_byte_by_byte_ends_at_request_timeout(start_async, before):
    """Bytes keep coming, but the message is not whole within request_timeout of its first byte (counted
    from there even when it came behind a whole call in one segment): the session ends then."""
    server = start_async(limits=ServerLimits(request_timeout=0.5, idle_timeout=30.0))
    sock = _plain_session(server.port)
    call = _echo(3, 400)
    if before == "a whole call":
        sock.sendall(_echo(2) + call[:5])
        call = call[5:]
        assert b"eeeeeeeeee" in sock.recv(65536)  # the whole one answered
    closed = threading.Event()
    sender = threading.Thread(target=_trickle, args=(sock, call, 0.02, closed), daemon=True)
    started = time.monotonic()
    sender.start()
    try:
        assert eventually(lambda: server.connection_count == 0, 5.0)
        assert time.monotonic() - started < len(call) * 0.02, "ended only because the message was whole"
    finally:
        closed.set()
        sender.join(5)
        sock.close()


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_a_whole_call_then_silence_waits_for_idle_timeout_not_request_timeout(start_async):
    server = start_async(limits=ServerLimits(request_timeout=0.3, idle_timeout=30.0))
    sock = _plain_session(server.port)
    sock.sendall(_echo(2) + _notify(3) + _echo(4))
    received = b""
    while received.count(b"eeeeeeeeee") < 2:
        received += sock.recv(65536)
    time.sleep(1.0)  # (past request_timeout: nothing is pending, so only idle_timeout may end it)
    assert server.connection_count == 1
    sock.sendall(_echo(5))
    assert b"eeeeeeeeee" in sock.recv(65536)
    sock.close()


# -- a frame that holds two messages -----------------------------------------------------------------

def _replies(sock: socket.socket, count: int, framed: bool) -> list:
    """The seqids of the next ``count`` replies (strict binary or compact, framed or not)."""
    received, seqids = b"", []
    while len(seqids) < count:
        chunk = sock.recv(65536)
        assert chunk, f"closed after the replies to {seqids}"
        received += chunk
        while len(received) >= 4:
            size = struct.unpack("!i", received[:4])[0]
            if len(received) < 4 + size:
                break
            reply = TBinaryProtocol(TMemoryBuffer(received[4:4 + size]))
            seqids.append(reply.readMessageBegin()[2])
            received = received[4 + size:]
    return seqids


@pytest.mark.parametrize("loop_factory", LOOPS, indirect=True)
def test_every_message_of_a_frame_that_holds_two_is_answered_and_the_next_frame_too(start_async):
    """A framed client that flushes two calls at once sends them in one frame; the threaded server
    answers both and then the next frame. The asyncio server answered the second only when the next
    frame came, read in its stead, and never answered that frame's call (the client waited forever)."""
    server = start_async(wire=Wire(protocol="binary", transport="framed"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(_frame(HELLO))
        assert _replies(sock, 1, True) == [1]
        sock.sendall(_frame(_echo(2) + _echo(3)))
        assert _replies(sock, 2, True) == [2, 3]
        sock.sendall(_frame(_echo(4)) + _frame(_echo(5)))
        assert _replies(sock, 2, True) == [4, 5]


def test_a_theader_frame_that_holds_two_messages_is_answered_as_the_threaded_server_does(start_async):
    """THeader reads one message per frame, the rest of the frame dropped (Thrift's THeaderTransport, on
    the threaded server too): the first is answered, then the next frame's, the connection kept."""
    server = start_async(detect_wire=True)

    def frame_of(*calls: tuple) -> bytes:
        buffer = TMemoryBuffer()
        protocol = THeaderProtocol(buffer, allowed_client_types=[THeaderClientType.HEADERS])
        for name, args, seqid in calls:
            protocol.writeMessageBegin(name, TMessageType.CALL, seqid)
            args.write(protocol)
            protocol.writeMessageEnd()
        protocol.trans.flush()
        return buffer.getvalue()

    def echo(seqid: int) -> tuple:
        return "echo", HandshakeService.echo_args(message="e" * seqid), seqid

    hello = SessionService.hello_args(hello=ClientHello(min_version=1, max_version=2, client_name="theader"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(frame_of(("hello", hello, 1)) + frame_of(echo(2), echo(3)) + frame_of(echo(4)))
        assert _header_replies(sock, 3) == [1, 2, 4]


def _header_replies(sock: socket.socket, count: int) -> list:
    received, seqids = b"", []
    while len(seqids) < count:
        chunk = sock.recv(65536)
        assert chunk, f"closed after the replies to {seqids}"
        received += chunk
        while len(received) >= 4 and len(received) >= 4 + struct.unpack("!i", received[:4])[0]:
            size = 4 + struct.unpack("!i", received[:4])[0]
            protocol = THeaderProtocol(TMemoryBuffer(received[:size]), [THeaderClientType.HEADERS])
            seqids.append(protocol.readMessageBegin()[2])
            received = received[size:]
    return seqids
