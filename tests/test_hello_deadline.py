"""handshake_timeout is a deadline for the whole hello, however its bytes arrive: a valid hello dripped one
byte at a time, each byte well within the timeout but the whole slower than it, is cut off at the
deadline (test_server_timeouts.py covers silence and pings; a drip has no reply that could re-arm it)."""

from __future__ import annotations

import logging
import select
import socket
import time

from conftest import eventually, read_until_closed
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.transport.TTransport import TMemoryBuffer

from thrift_handshake import ServerLimits
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session.ttypes import ClientHello

HANDSHAKE_TIMEOUT = 0.3
BYTE_INTERVAL = 0.03  # 10 bytes per handshake_timeout, each gap far below it; the ~70-byte hello takes ~2 s


def encoded_hello() -> bytes:
    buffer = TMemoryBuffer()
    HandshakeService.Client(TBinaryProtocol(buffer)).send_hello(
        ClientHello(client_name="dripping-client", language="python", min_version=1, max_version=2))
    return buffer.getvalue()


def drip(sock: socket.socket, data: bytes, interval: float = BYTE_INTERVAL) -> "tuple[int, float]":
    """Sends ``data`` a byte at a time; stops when the server ends the connection. Returns (bytes sent, when)."""
    started = time.monotonic()
    for sent in range(len(data)):
        readable, _, _ = select.select([sock], [], [], interval)
        if readable:  # EOF or a reset before the hello was complete
            return sent, time.monotonic() - started
        try:
            sock.sendall(data[sent:sent + 1])
        except OSError:
            return sent, time.monotonic() - started
    return len(data), time.monotonic() - started


def test_a_hello_dripped_past_the_handshake_timeout_is_cut_off_at_the_deadline(start_server, caplog):
    caplog.set_level(logging.INFO, logger="thrift_handshake.server")
    server = start_server(limits=ServerLimits(handshake_timeout=HANDSHAKE_TIMEOUT))
    hello = encoded_hello()
    assert len(hello) * BYTE_INTERVAL > 3 * HANDSHAKE_TIMEOUT, "the drip must take well past the deadline"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sent, elapsed = drip(sock, hello)
        reply = read_until_closed(sock, 2 * HANDSHAKE_TIMEOUT)
    assert sent < len(hello), f"the whole hello was accepted byte by byte over {elapsed:.2f} s"
    assert reply == b"", "no ServerHello for a hello that missed the deadline"
    assert elapsed >= 0.8 * HANDSHAKE_TIMEOUT, f"cut off after {elapsed:.2f} s, before the deadline"
    def ended_lines():
        return [r.getMessage() for r in list(caplog.records) if r.getMessage().startswith(("dropped", "closed"))]

    eventually(ended_lines)  # the server logs once its thread has closed the connection
    ended = ended_lines()
    assert len(ended) == 1 and ended[0].startswith("dropped") and "handshake timeout" in ended[0], ended
    assert server.metrics.snapshot().handshakes_ok == 0


def test_the_same_hello_dripped_within_the_deadline_is_answered(start_server):
    """The control: the drip itself is a valid hello, answered when it completes in time."""
    server = start_server(limits=ServerLimits(handshake_timeout=10.0))
    hello = encoded_hello()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sent, _ = drip(sock, hello, interval=0.005)
        sock.settimeout(5)
        reply = sock.recv(65536)
    assert sent == len(hello)
    assert b"hello" in reply and server.metrics.snapshot().handshakes_ok == 1


def test_a_hello_that_stops_half_way_is_cut_off_at_the_deadline_not_a_timeout_after_its_last_byte(start_server):
    server = start_server(limits=ServerLimits(handshake_timeout=2.0))
    hello = encoded_hello()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(hello[:10])
        time.sleep(0.95)  # pacing: the next bytes come late in the handshake's two seconds, yet within
        # a second of the timeout first set: re-armed only if a difference of 0.95 s counts (the slack is 50 ms)
        sock.sendall(hello[10:20])  # and then nothing more
        assert read_until_closed(sock, 8.0) == b""
        closed = time.monotonic() - started
    assert 1.8 <= closed < 2.8, f"closed {closed:.2f} s after connecting (the deadline is at 2 s)"
