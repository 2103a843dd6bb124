"""One accepted connection on the server: its socket, its stack once started, and where it is in
``states.CONNECTION_TRANSITIONS`` (waiting in the watch without a thread, or held by one).

Every move goes through the table under the connection's own lock; whoever moves a connection out of
the watch (input, expiry, eviction, stop) is the one that serves or closes it, so two never do.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

from ..config import ServerConfig
from ..gate_state import ConnectionState
from ..session import Session
from ..states import CONNECTION_TRANSITIONS, ConnectionEvent, ConnectionPhase, SocketMode, StateMachine
from ..wire import ConnectionSocket

__all__ = ["Connection", "ConnectionInfo", "LINGER"]

#: After a reply, how long a pool thread waits for the same peer's next message before the connection
#: goes back to wait in the watch (a thread hand-off costs more than a short wait for a busy peer).
LINGER = 0.005

_Phase, _Event = ConnectionPhase, ConnectionEvent
_IN_THE_WATCH = (_Phase.ACCEPTED, _Phase.WAITING)
_ON_A_THREAD = (_Phase.STARTING, _Phase.SERVING)
_ENDING = (_Phase.CLOSING, _Phase.CLOSED)  # a tuple of names: no enum member looked up per message


@dataclass(frozen=True)
class ConnectionInfo:
    """What an observer may see of one open connection, at the time it was asked."""

    peer: str
    phase: str  # a ``states.ConnectionPhase`` value
    age_seconds: float
    session_id: Optional[str]
    client_name: Optional[str]
    language: Optional[str]
    version: Optional[int]
    calls: int  # messages received so far


class Connection:
    """One accepted connection: its socket, its stack once started, and the processor's state for it.

    ``closer(connection)`` closes one taken out of the watch to close it (expired, evicted, stopping);
    its ``closed_by`` says which. It is the session's listener too: when hello succeeds, the socket
    leaves ``SocketMode.HANDSHAKE`` (one deadline) for ``SocketMode.SESSION`` (idle and request timeouts).

    A stop or an eviction is ordered against a message starting through the gate's
    ``ConnectionState.stop`` and ``close_if_idle`` (the gate's lock is taken before this one's, never after).
    """

    def __init__(self, client: ConnectionSocket, peer: str, config: ServerConfig,
                 closer: Callable[["Connection"], None], accepted_at: Optional[float] = None) -> None:
        self.socket = client
        self.fd = client.handle.fileno()
        self.peer = peer
        self.host = peer.rsplit(":", 1)[0]
        self.state: Optional[ConnectionState] = None
        self.transport: Any = None
        self.protocol: Any = None
        self.mode = SocketMode.HANDSHAKE
        self.accepted_at = time.monotonic() if accepted_at is None else accepted_at
        self.expires_at = float("inf")  # while in the watch: closed at this time.monotonic()
        self.expiry_reason = ""  # and why
        self.eviction_reason = ""  # when evicted: why, for the log ("" : the usual wording)
        self.closed_by: Optional[ConnectionEvent] = None  # the event that made it CLOSING
        self._limits = config.limits
        self._closer = closer  # closes (and logs) a connection taken out of the watch to be closed
        self._lock = threading.Lock()  # orders every move of the table below
        self._machine = StateMachine(CONNECTION_TRANSITIONS, _Phase.ACCEPTED)
        #: No new message may start: the connection closes once its current one is answered (CLOSING or
        #: CLOSED; kept with every move, a plain attribute: the message loop reads it twice per message).
        self.closing = False

    @property
    def phase(self) -> ConnectionPhase:
        return self._machine.phase

    def info(self, now: float) -> ConnectionInfo:
        """The connection as an observer sees it at ``now`` (``time.monotonic()``)."""
        context = None if self.state is None else self.state.context
        calls = 0 if self.state is None else sum(dict(self.state.counters.calls).values())
        return ConnectionInfo(self.peer, self.phase.value, now - self.accepted_at,
                              context and context.session_id, context and context.client_name,
                              context and context.language, context and context.version, calls)

    @property
    def in_the_watch(self) -> bool:
        """Waiting for input without a thread (ACCEPTED or WAITING)."""
        return self._machine.phase in _IN_THE_WATCH

    # -- session.SessionListener ----------------------------------------------------------------

    def session_started(self, session: Optional[Session] = None) -> None:
        """The session's limits apply from now on (hello succeeded, or no hello is expected)."""
        self.socket.start_session(self._limits, LINGER)
        self.mode = SocketMode.SESSION

    def session_rejected(self, session: Session, reason: str) -> None:
        pass

    def session_ended(self, session: Session, goodbye: bool) -> None:
        pass

    # -------------------------------------------------------------------------------------------

    @property
    def in_flight(self) -> Optional[Tuple[str, int]]:
        """(method, seqid) of the message being served, if any."""
        return None if self.state is None else self.state.in_flight

    @property
    def awaiting_hello(self) -> bool:
        """No session yet (TLS or hello still to come)."""
        state = self.state
        return state is None or (state.session is not None and not state.session.established)

    @property
    def established(self) -> bool:
        """Its hello succeeded (a session holds it)."""
        state = self.state
        return state is not None and state.session is not None and state.session.established

    def stalled(self, now: float, at_least: float) -> bool:
        """A session (or, without hello, a started connection) whose thread has waited ``at_least``
        seconds for the rest of a message from the peer (no handler runs for it: only the peer holds it)."""
        since = self.socket.stalled_since
        return since is not None and now - since >= at_least and not self.awaiting_hello

    def silent(self) -> bool:
        """Accepted and waiting, with nothing received: no hello under way."""
        if self._machine.phase is not _Phase.ACCEPTED:
            return False
        handle = self.socket.handle
        waiter = select.poll()  # not recv(MSG_DONTWAIT): in Python's timeout mode it waits for input first
        waiter.register(handle, select.POLLIN)
        if not waiter.poll(0):
            return True
        try:
            return not handle.recv(1, socket.MSG_PEEK)  # input waits: b"" if the peer left
        except OSError:  # reset: gone anyway
            return True

    # -- the table's events ---------------------------------------------------------------------

    def park(self, until: float, reason: str, watch: Callable[["Connection"], None]) -> bool:
        """Hands the connection to the watch until its next bytes (closed at ``until`` for
        ``reason``); False when it must close instead (it is closing)."""
        with self._lock:
            if self.closing:
                return False
            self.expires_at, self.expiry_reason = until, reason
            self._move(_Event.PARKED)
            watch(self)
        return True

    def take_input(self) -> bool:
        """Takes the connection out of the watch to be served (its input arrived); False if it was
        not there (closed meanwhile)."""
        return self._take(_Event.INPUT)

    def expire(self, now: float) -> bool:
        """Closes the connection if it waits in the watch and its time is up; returns whether it did."""
        with self._lock:
            if self._machine.phase not in _IN_THE_WATCH or self.expires_at > now:
                return False
            self._move(_Event.EXPIRED)
        self._closer(self)
        return True

    def started(self, transport: Any, protocol: Any, state: ConnectionState) -> None:
        """The stack for the peer's dialect is built and the processor serves it."""
        with self._lock:
            self.transport, self.protocol, self.state = transport, protocol, state
            self._move(_Event.STARTED)

    def replace_handle(self, handle: socket.socket) -> bool:
        """Puts ``handle`` (the TLS socket) under the connection, so a stop or an eviction reaches it;
        False when the connection is already closing."""
        with self._lock:
            self.socket.setHandle(handle)
            return not self.closing

    def evict(self, force: bool = False, session: bool = False, reason: str = "", stalled: float = 0.0) -> bool:
        """Closes the connection to make room; returns whether it did. One in the watch is closed here
        and now (one whose hello succeeded only if ``session``); one on a thread only while it awaits
        hello, or (with ``stalled``) while its session has waited that long for the rest of a message,
        and with no message in flight unless ``force``. ``reason`` words it for the log."""
        with self._lock:
            phase = self._machine.phase
            if phase in _IN_THE_WATCH:
                if self.established and not session:
                    return False
            elif phase not in _ON_A_THREAD:
                return False
            state = self.state
            if phase in _IN_THE_WATCH or state is None:
                self.eviction_reason = reason
                self._move(_Event.EVICTED)
                if phase in _ON_A_THREAD:
                    self._shut_socket()
        if phase in _IN_THE_WATCH:
            self._closer(self)
            return True
        if state is None:
            return True
        def evict_now() -> bool:
            if not (self.awaiting_hello or (stalled and self.stalled(time.monotonic(), stalled))):
                # its hello succeeded meanwhile, or its message arrived
                return False
            with self._lock:
                if self._machine.phase not in _ON_A_THREAD:  # parked meanwhile: the next try takes it there
                    return False
                self.eviction_reason = reason
                self._move(_Event.EVICTED)
            self._shut_socket()
            return True

        return state.close_if_idle(evict_now, force)

    def shutdown(self, force: bool = False) -> None:
        """For a stop: closes the connection now if no message is in flight (or if forced), else after
        the current reply. One in the watch is closed here and now."""
        with self._lock:
            in_the_watch = self._machine.phase in _IN_THE_WATCH
            self._move(_Event.STOPPING)
            state = self.state
            if state is None and not in_the_watch:
                self._shut_socket()
                return
        if in_the_watch:
            self._closer(self)
            return
        # Not forced, only the reading side: the thread waiting for the next message wakes, and the
        # session can still be told why it is closed.
        state.stop(self._shut_socket if force else self._shut_reading, force)

    def closed(self) -> None:
        """The socket is closed and the connection forgotten."""
        with self._lock:
            self._move(_Event.CLOSE)

    def _take(self, event: ConnectionEvent) -> bool:
        with self._lock:
            if self._machine.phase not in _IN_THE_WATCH:
                return False
            self._move(event)
            return True

    def _move(self, event: ConnectionEvent) -> None:
        phase = self._machine.apply(event)
        self.closing = phase in _ENDING
        if phase is _Phase.CLOSING and self.closed_by is None:
            self.closed_by = event

    def _shut_socket(self) -> None:
        handle = self.socket.handle
        if handle is not None:
            try:
                handle.shutdown(socket.SHUT_RDWR)  # wakes a thread in recv(), or the watch
            except OSError:
                pass

    def _shut_reading(self) -> None:
        handle = self.socket.handle
        if handle is not None:
            try:  # socket.socket's own: ssl.SSLSocket.shutdown would drop the TLS state the notice needs
                socket.socket.shutdown(handle, socket.SHUT_RD)
            except OSError:
                pass
