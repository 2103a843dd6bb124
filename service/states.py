"""The phases of a connection, as tables for both ends.

The tables say which phase follows which (``CLIENT_TRANSITIONS``, ``SESSION_TRANSITIONS``,
``CONNECTION_TRANSITIONS``) and which methods a server-side session admits in each phase
(``SESSION_ADMITS``); code elsewhere raises the events and looks the tables up (``StateMachine.apply``,
``admits``). An event the table does not allow raises ``PhaseError`` naming the event and the phase.
The client's table covers its whole life; on the server, one table covers a connection's session and
another where the connection itself is (waiting in the watch, served by a thread, closing). The
README's diagrams are generated from the transition tables (``mermaid_diagram``).
"""

from __future__ import annotations

import enum
from typing import Callable, Dict, FrozenSet, Generic, List, Mapping, Optional, Tuple, TypeVar

from .errors import PhaseError

__all__ = [
    "ClientPhase",
    "ClientEvent",
    "CLIENT_TRANSITIONS",
    "SessionPhase",
    "SessionEvent",
    "SESSION_TRANSITIONS",
    "SESSION_METHODS",
    "SERVICE_METHODS",
    "SESSION_ADMITS",
    "admits",
    "admitted",
    "ConnectionPhase",
    "ConnectionEvent",
    "CONNECTION_TRANSITIONS",
    "SocketMode",
    "StateMachine",
    "mermaid_diagram",
]


class TableEnum(enum.Enum):
    """An enum whose members are hashed by identity, in C: the tables below look members up on every
    move, and Enum's own ``__hash__`` is Python code (Python 3.11). Members compare by identity anyway."""

    __hash__ = object.__hash__


class ClientPhase(TableEnum):
    """Where a client is in the life of its connection."""

    NEW = "NEW"
    CONNECTING = "CONNECTING"  # transport opening, bounded by the connect timeout
    HANDSHAKING = "HANDSHAKING"  # hello(): version negotiation, auth, session
    HELLO_PENDING = "HELLO_PENDING"  # hello written, unanswered: the next exchange reads its answer first
    READY = "READY"  # calls allowed
    CLOSING = "CLOSING"  # goodbye(), then close
    CLOSED = "CLOSED"
    BROKEN = "BROKEN"  # a timeout or transport error: nothing is read from this connection again


class ClientEvent(TableEnum):
    CONNECT = "connect"
    TRANSPORT_OPEN = "transport_open"
    OPENED_WITHOUT_HELLO = "opened_without_hello"  # a plain service: no session to open
    CONNECT_FAILED = "connect_failed"
    HELLO_PIPELINED = "hello_pipelined"  # ClientOptions.pipeline_hello: connect() does not wait for the answer
    HELLO_ACCEPTED = "hello_accepted"
    HELLO_REJECTED = "hello_rejected"
    CALL = "call"
    FAILURE = "failure"
    GOODBYE = "goodbye"
    CLOSED = "closed"


_C, _E = ClientPhase, ClientEvent

CLIENT_TRANSITIONS: Mapping[ClientPhase, Mapping[ClientEvent, ClientPhase]] = {
    _C.NEW: {_E.CONNECT: _C.CONNECTING, _E.CLOSED: _C.CLOSED},
    _C.CONNECTING: {
        _E.TRANSPORT_OPEN: _C.HANDSHAKING,
        _E.OPENED_WITHOUT_HELLO: _C.READY,
        _E.CONNECT_FAILED: _C.CLOSED,
    },
    _C.HANDSHAKING: {
        _E.HELLO_PIPELINED: _C.HELLO_PENDING,
        _E.HELLO_ACCEPTED: _C.READY,
        _E.HELLO_REJECTED: _C.CLOSED,
        _E.FAILURE: _C.BROKEN,
    },
    # A call or goodbye writes its request, then reads hello's answer (which moves the phase), then its own.
    _C.HELLO_PENDING: {
        _E.CALL: _C.HELLO_PENDING,
        _E.HELLO_ACCEPTED: _C.READY,
        _E.HELLO_REJECTED: _C.CLOSED,
        _E.FAILURE: _C.BROKEN,
        _E.GOODBYE: _C.CLOSING,
        _E.CLOSED: _C.CLOSED,
    },
    _C.READY: {
        _E.CALL: _C.READY,
        _E.FAILURE: _C.BROKEN,
        _E.GOODBYE: _C.CLOSING,
        _E.CLOSED: _C.CLOSED,
    },
    # A pipelined goodbye is written before hello's answer is read: that answer still arrives here.
    _C.CLOSING: {
        _E.HELLO_ACCEPTED: _C.CLOSING,
        _E.HELLO_REJECTED: _C.CLOSED,
        _E.FAILURE: _C.BROKEN,
        _E.CLOSED: _C.CLOSED,
    },
    _C.CLOSED: {_E.CONNECT: _C.CONNECTING, _E.CLOSED: _C.CLOSED},
    _C.BROKEN: {_E.CLOSED: _C.CLOSED},
}


class SessionPhase(TableEnum):
    """Where one server-side connection is in its session."""

    AWAITING_HELLO = "AWAITING_HELLO"  # only hello() and ping() are served
    ESTABLISHED = "ESTABLISHED"  # every method is served
    ANONYMOUS = "ANONYMOUS"  # hello is optional and the first call was not hello: served without features
    CLOSING = "CLOSING"  # goodbye(), a failed auth or "reconnect" answered; the connection closes after the reply
    CLOSED = "CLOSED"


class SessionEvent(TableEnum):
    HELLO_ACCEPTED = "hello_accepted"
    HELLO_REJECTED = "hello_rejected"
    AUTH_FAILED = "auth_failed"  # a missing or wrong token: refused, and the connection closes
    ANONYMOUS_CALL = "anonymous_call"  # hello is optional and the first call (other than ping) is not hello
    GOODBYE = "goodbye"
    RECONNECT_ASKED = "reconnect_asked"  # past the max connection age, a call answered "reconnect", not run
    DISCONNECT = "disconnect"


_S, _V = SessionPhase, SessionEvent

SESSION_TRANSITIONS: Mapping[SessionPhase, Mapping[SessionEvent, SessionPhase]] = {
    _S.AWAITING_HELLO: {
        _V.HELLO_ACCEPTED: _S.ESTABLISHED,
        _V.HELLO_REJECTED: _S.AWAITING_HELLO,
        _V.AUTH_FAILED: _S.CLOSING,
        _V.ANONYMOUS_CALL: _S.ANONYMOUS,
        _V.DISCONNECT: _S.CLOSED,
    },
    # hello must come first: a late one is refused and the session stays anonymous.
    _S.ANONYMOUS: {
        _V.HELLO_REJECTED: _S.ANONYMOUS,
        _V.GOODBYE: _S.CLOSING,
        _V.RECONNECT_ASKED: _S.CLOSING,
        _V.DISCONNECT: _S.CLOSED,
    },
    # A second hello is refused and the session stays as it was.
    _S.ESTABLISHED: {
        _V.HELLO_REJECTED: _S.ESTABLISHED,
        _V.GOODBYE: _S.CLOSING,
        _V.RECONNECT_ASKED: _S.CLOSING,
        _V.DISCONNECT: _S.CLOSED,
    },
    _S.CLOSING: {_V.DISCONNECT: _S.CLOSED},
    _S.CLOSED: {_V.DISCONNECT: _S.CLOSED},
}

#: The methods the session layer serves itself (session.thrift's SessionService).
SESSION_METHODS: FrozenSet[str] = frozenset({"hello", "ping", "stats", "goodbye"})
#: Stands for every method of the hosted service (whatever their names) in ``SESSION_ADMITS``.
SERVICE_METHODS = "<service methods>"

#: Which methods a session admits in each phase; anything else is refused without being decoded.
#: hello is admitted again once established (or anonymous) so that a second (or late) hello gets its
#: named refusal. With optional hello, a call AWAITING_HELLO does not admit (other than ping) first moves
#: the session to ANONYMOUS (``ANONYMOUS_CALL``).
SESSION_ADMITS: Mapping[SessionPhase, FrozenSet[str]] = {
    _S.AWAITING_HELLO: frozenset({"hello", "ping"}),
    _S.ESTABLISHED: frozenset({"hello", "ping", "stats", "goodbye", SERVICE_METHODS}),
    _S.ANONYMOUS: frozenset({"hello", "ping", "stats", "goodbye", SERVICE_METHODS}),
    _S.CLOSING: frozenset(),
    _S.CLOSED: frozenset(),
}


def admits(phase: SessionPhase, method: str) -> bool:
    """Whether a session in ``phase`` serves ``method`` (a session method's name, or any other)."""
    return admitted(SESSION_ADMITS[phase], method)


def admitted(methods: FrozenSet[str], method: str) -> bool:
    """Whether ``method`` is among ``methods`` (one phase's entry in ``SESSION_ADMITS``)."""
    return (method if method in SESSION_METHODS else SERVICE_METHODS) in methods


class ConnectionPhase(TableEnum):
    """Where one accepted connection is on the server: waiting without a thread, or held by one."""

    ACCEPTED = "ACCEPTED"  # in the watch until its first bytes (no thread, no stack yet)
    STARTING = "STARTING"  # a pool thread runs TLS and reads the first bytes to pick the stack
    SERVING = "SERVING"  # a pool thread serves its messages
    WAITING = "WAITING"  # between messages, parked in the watch (no thread)
    CLOSING = "CLOSING"  # no new message starts: closed once its thread (or the closer) is done
    CLOSED = "CLOSED"


class ConnectionEvent(TableEnum):
    INPUT = "input"  # the watch saw bytes (or a close) on a waiting connection
    STARTED = "started"  # the stack for the peer's dialect is built
    PARKED = "parked"  # no more input for now: back to the watch
    EXPIRED = "expired"  # its handshake or idle time ran out while waiting
    EVICTED = "evicted"  # closed to make room for a newcomer to a full server
    STOPPING = "stopping"  # the server is stopping
    CLOSE = "close"  # the socket is closed and the connection forgotten


_N, _X = ConnectionPhase, ConnectionEvent

CONNECTION_TRANSITIONS: Mapping[ConnectionPhase, Mapping[ConnectionEvent, ConnectionPhase]] = {
    _N.ACCEPTED: {
        _X.INPUT: _N.STARTING,
        _X.EXPIRED: _N.CLOSING,
        _X.EVICTED: _N.CLOSING,
        _X.STOPPING: _N.CLOSING,
    },
    # TLS failed or the peer speaks no dialect served here: closed by its thread at once.
    _N.STARTING: {
        _X.STARTED: _N.SERVING,
        _X.EVICTED: _N.CLOSING,
        _X.STOPPING: _N.CLOSING,
        _X.CLOSE: _N.CLOSED,
    },
    _N.SERVING: {
        _X.PARKED: _N.WAITING,
        _X.EVICTED: _N.CLOSING,
        _X.STOPPING: _N.CLOSING,
        _X.CLOSE: _N.CLOSED,
    },
    _N.WAITING: {
        _X.INPUT: _N.SERVING,
        _X.EXPIRED: _N.CLOSING,
        _X.EVICTED: _N.CLOSING,
        _X.STOPPING: _N.CLOSING,
    },
    # A stack finished while closing is not served; a stop that finds it closing changes nothing.
    _N.CLOSING: {
        _X.STARTED: _N.CLOSING,
        _X.STOPPING: _N.CLOSING,
        _X.CLOSE: _N.CLOSED,
    },
    _N.CLOSED: {_X.STOPPING: _N.CLOSED},
}


class SocketMode(TableEnum):
    """What bounds a server connection's reads and writes."""

    HANDSHAKE = "handshake"  # before the session: one deadline and one byte budget for everything
    SESSION = "session"  # after it: idle timeout between messages, request timeout within one


P = TypeVar("P", bound=enum.Enum)
E = TypeVar("E", bound=enum.Enum)


class StateMachine(Generic[P, E]):
    """A current phase plus the table that moves it; ``on_change`` (None: nobody) sees every move."""

    def __init__(
        self,
        table: Mapping[P, Mapping[E, P]],
        initial: P,
        on_change: Optional[Callable[[P, E, P], None]] = None,
    ) -> None:
        self._table = table
        self.phase: P = initial
        self.on_change = on_change

    def allows(self, event: E) -> bool:
        """Whether ``event`` is allowed in the current phase."""
        return event in self._table[self.phase]

    def apply(self, event: E) -> P:
        """Moves to the phase the table gives for ``event``; raises PhaseError if there is none."""
        old = self.phase
        try:
            new = self._table[old][event]
        except KeyError:
            allowed = ", ".join(e.value for e in self._table[old]) or "nothing"
            raise PhaseError(event.value, old.value, f"allowed here: {allowed}") from None
        self.phase = new
        if self.on_change is not None and new is not old:
            self.on_change(old, event, new)
        return new


def mermaid_diagram(table: Mapping[P, Mapping[E, P]]) -> str:
    """The table as a Mermaid state diagram (for the docs)."""
    lines: List[str] = ["stateDiagram-v2"]
    edges: Dict[Tuple[str, str], List[str]] = {}
    for source, moves in table.items():
        for event, target in moves.items():
            edges.setdefault((source.value, target.value), []).append(event.value)
    for (source, target), events in edges.items():
        lines.append(f"    {source} --> {target}: {' / '.join(events)}")
    return "\n".join(lines)
