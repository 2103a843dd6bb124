"""What the server writes to a peer it refuses or cannot serve: the mismatch explanation (HTTP 400, a
TLS alert, or a TApplicationException in the peer's own framing), the exception that answers a message
in flight, and the peeking and draining around them.

These functions are kept as they were in the single-module server (to be replaced by the wire
package's answers in one place).
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any, Optional, Tuple

from thrift.Thrift import TApplicationException, TMessageType

from ..config import ServerConfig, Wire
from ..gate import ConnectionState
from ..peerlog import WarningBudget
from ..transport import SNIFF_BYTES, ConnectionSocket, Dialect, sniff
from .connection import Connection
from .stacks import stack_for, wire_of as _wire_of

#: After refusing a message, how long (and how many bytes of) the rest of it is read and dropped, so
#: the peer is not reset mid-write and gets to read the refusal.
_DISCARD_SECONDS = 1.0
_DISCARD_BYTES = 64 * 1024 * 1024
#: A fatal TLS alert (protocol_version): what a TLS client can read from a server without TLS.
_TLS_ALERT_PROTOCOL_VERSION = b"\x15\x03\x01\x00\x02\x02\x46"


def _discard_input(handle: socket.socket) -> None:
    """Reads and drops what the peer still sends (bounded), so closing does not reset it mid-write."""
    handle.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + _DISCARD_SECONDS
    dropped = 0
    while dropped < _DISCARD_BYTES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        handle.settimeout(remaining)
        chunk = handle.recv(65536)
        if not chunk:
            return
        dropped += len(chunk)


class Answers:
    """Answers to peers this server cannot serve, worded and framed for them."""

    def __init__(self, config: ServerConfig, warnings: WarningBudget) -> None:
        self.config = config
        self._warnings = warnings

    def _stack_for(self, wire: Wire, sock: ConnectionSocket, max_bytes: Optional[int] = None) -> Tuple[Any, Any]:
        return stack_for(self.config, wire, sock, max_bytes)

    def _explain_mismatch(self, connection: Connection, first: bytes, dialect: Optional[Dialect], expected: str) -> None:
        """Answers a peer this server cannot serve, where it can read the answer, and logs why."""
        said = "nothing it recognises" if dialect is None else str(dialect)
        explanation = f"the client speaks {said}; {expected}"
        self._warnings.warning("refused peer=%s: %s (first bytes %s)", connection.peer, explanation, first.hex(" "))
        handle = connection.socket.handle
        try:
            if dialect is not None and dialect.kind == "http":
                body = (f"This is a Thrift server (thrift-handshake), not an HTTP server: {explanation}.\n"
                        "Connect with a Thrift client.\n").encode()
                handle.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                               b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            elif dialect is not None and dialect.kind == "tls":
                handle.sendall(_TLS_ALERT_PROTOCOL_VERSION)  # all a TLS client can read from a plain server
            elif dialect is not None and dialect.kind in ("thrift", "header", "bad-version"):
                transport, protocol = self._stack_for(_wire_of(dialect), connection.socket)
                name, seqid = "", 0
                if dialect.kind != "bad-version":  # answer the very call it made, in its own framing
                    name, _, seqid = protocol.readMessageBegin()
                protocol.writeMessageBegin(name, TMessageType.EXCEPTION, seqid)
                TApplicationException(TApplicationException.INVALID_PROTOCOL, explanation).write(protocol)
                protocol.writeMessageEnd()
                transport.flush()
            _discard_input(handle)
        except Exception:  # the peer is gone, or its message was not even a header
            pass

    @staticmethod
    def _send_exception(state: ConnectionState, protocol: Any, kind: int, message: str) -> None:
        """Answers the message in flight with a TApplicationException, dropping any half-written reply."""
        name, seqid = state.in_flight
        protocol.trans.discard_unflushed()
        protocol.writeMessageBegin(name, TMessageType.EXCEPTION, seqid)
        TApplicationException(kind, message).write(protocol)
        protocol.writeMessageEnd()
        protocol.trans.flush()



def _peek(handle: socket.socket) -> Tuple[bytes, Optional[Dialect]]:
    """A plain socket's first bytes and their dialect, left unread (for the TLS port: before wrapping)."""
    deadline = time.monotonic() + (handle.gettimeout() or 10.0)
    data, dialect = b"", None
    while dialect is None and len(data) < SNIFF_BYTES and time.monotonic() < deadline:
        try:
            data = handle.recv(SNIFF_BYTES, socket.MSG_PEEK)
        except OSError:
            break
        if not data:
            break
        dialect = sniff(data)
        if dialect is None and not _wait_for_more(handle, len(data), deadline):
            break
    return data, dialect


_POLL_CLOSED = getattr(select, "POLLRDHUP", 0)  # the peer closed its end (Linux)


def _wait_for_more(handle: socket.socket, have: int, deadline: float) -> bool:
    """Waits until more than the ``have`` bytes already received (and peeked at) are readable; False
    when the peer closed or the deadline passed first. Poll alone would wake at once for the bytes
    already there; the low-water mark makes it wait for new ones (without spinning)."""
    handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, have + 1)
    try:
        waiter = select.poll()
        waiter.register(handle, select.POLLIN | _POLL_CLOSED)
        events = waiter.poll(max(deadline - time.monotonic(), 0.0) * 1000)
    finally:
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
    return bool(events) and not events[0][1] & (_POLL_CLOSED | select.POLLHUP | select.POLLERR)
