"""What the session gate keeps per connection (``ConnectionState``), the error that ends a session
(``SessionClosed``), and how a peer's address is written.

A host (the threaded or the asyncio server, or a stock Thrift server through the gate) gets a
``ConnectionState`` from ``SessionProcessor.connection`` and asks it, not the gate, whether a
message may start (``begin``), whether the connection may be closed now (``close_if_idle``, ``stop``)
and to end it (``close``).
"""

from __future__ import annotations

import socket
import threading
from time import monotonic
from typing import Any, Callable, Mapping, Optional, Tuple

from thrift.Thrift import TProcessor
from thrift.transport.TTransport import TTransportException

from .metrics import ConnectionCounters, ServerMetrics
from .session import Session, SessionContext

__all__ = ["ConnectionState", "SessionClosed", "format_peer", "peer_of"]


class SessionClosed(TTransportException):
    """Raised by ``SessionProcessor.process`` once the answer that ends a session (goodbye, or a refused
    auth token) is flushed: every Thrift server closes a connection on a TTransportException."""


class ConnectionState:
    """One connection as the processor sees it: its session, counters and the message in flight."""

    def __init__(self, context: SessionContext, session: Optional[Session], metrics: ServerMetrics) -> None:
        self.context = context
        self.session = session
        self.counters = ConnectionCounters()
        self.lock = threading.Lock()
        self.in_flight: Optional[Tuple[str, int]] = None  # (method, seqid) of the message being served
        self.closing = False  # no new message may start (the server is stopping)
        self.dropped_oneway = 0
        self.session_processor: Optional[TProcessor] = None  # serves hello/ping/stats/goodbye
        self.host = context.peer.rsplit(":", 1)[0]
        self.reserved = 0  # decoded bytes the message in flight holds of the server's budget
        self.read_headers: Optional[Callable[[], Mapping[bytes, bytes]]] = None  # THeader: each message's headers
        self.opened_at = monotonic()  # when the connection was accepted (time.monotonic())
        self.reconnect_at: Optional[float] = None  # with a max connection age: when it is reached
        # Whether a call may be served quietly as far as the decoded-size budget goes (none, or one that
        # ``arm`` sets up), decided once per connection (see ``SessionProcessor._begin``).
        self.priced_by_refill = True
        self.arm: Optional[Callable[[], None]] = None
        self._metrics = metrics
        self._closed = False
        metrics.connection_opened(self.counters)

    def begin(self, method: str, seqid: int) -> None:
        with self.lock:
            if self.closing:
                raise TTransportException(TTransportException.END_OF_FILE, "the server is stopping")
            self.in_flight = (method, seqid)

    def stop(self, shut: Callable[[], None], force: bool = False) -> None:
        """No message may start from now on; ``shut()`` (which ends the connection) runs now if none is
        in flight, or anyway with ``force``; else the host ends it after the current reply."""
        with self.lock:
            self.closing = True
            if self.in_flight is None or force:
                shut()

    def close_if_idle(self, shut: Callable[[], bool], force: bool = False) -> bool:
        """Runs ``shut()`` unless a message is in flight (with ``force``, anyway); if it returns True no
        message may start from now on. Returns whether it ran and agreed."""
        with self.lock:  # no message can start between the check and ``shut``
            if self.in_flight is not None and not force:
                return False
            if not shut():
                return False
            self.closing = True
            return True

    def end(self) -> None:
        # No lock: a stop that still sees the message in flight closes the connection after this
        # reply anyway (the server checks ``closing`` after each message).
        self.in_flight = None

    def close(self) -> None:
        """The connection is gone: ends its session and folds its counters into the totals (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.session is not None:
            self.session.disconnected()
        self._metrics.connection_closed(self.counters)


def _socket_of(transport: Any) -> Optional[socket.socket]:
    """The socket under a (buffered or framed) transport, as far as it can be found (for the peer's
    address when a stock Thrift server hosts the gate)."""
    for _ in range(4):
        handle = getattr(transport, "handle", None)
        if handle is not None:
            return handle
        # Thrift's wrapping transports keep the wrapped one in a name-mangled attribute.
        transport = next((value for name, value in vars(transport).items() if name.endswith("__trans")), None)
        if transport is None:
            return None
    return None


def format_peer(address: Any) -> str:
    """host:port, with IPv6 hosts in brackets."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)


def peer_of(transport: Any) -> str:
    handle = _socket_of(transport)
    try:
        return format_peer(handle.getpeername()) if handle is not None else "unknown"
    except OSError:
        return "unknown"
