"""One connection's session, without sockets: hello, the gate, counters, goodbye.

``Session`` is the server side of the handshake as plain logic (h11's sans-IO idea): it validates a
ClientHello, negotiates the version, says which methods its phase admits (``states.SESSION_ADMITS``),
counts calls and answers goodbye. It reads nothing from a socket and knows nothing of a server; what
it needs comes in through ``SessionSettings`` and a ``SessionListener`` (told when the session starts,
is refused or ends). The processor in ``gate`` feeds it; tests drive it with plain objects.

Handlers read their caller's session with ``current_session()``:

    def echo(self, message):
        if current_session().version >= 2:
            ...  # what echo means in version 2
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Optional, Tuple

from thrift_handshake_gen.session.ttypes import ClientHello, Farewell, HandshakeRejected, ServerHello

from .peerlog import WarningBudget, clip_for_log
from .states import (SERVICE_METHODS, SESSION_ADMITS, SESSION_TRANSITIONS, SessionEvent, SessionPhase, StateMachine,
                     admitted)

__all__ = [
    "Session",
    "SessionSettings",
    "SessionListener",
    "SessionContext",
    "current_session",
    "drop_oneway",
    "negotiate_version",
    "same_secret",
]

logger = logging.getLogger(__name__)
#: Refused hellos (wrong tokens among them) are logged at most 20 a second in this process, the rest summarised.
_REFUSALS = WarningBudget(logger, what="refused hellos")
# Read for every call: a module name is found faster than an enum member (Python 3.11).
_ESTABLISHED, _CLOSING = SessionPhase.ESTABLISHED, SessionPhase.CLOSING
_HELD = (_ESTABLISHED, SessionPhase.ANONYMOUS)  # a session holds the connection (by hello, or anonymous)

_local = threading.local()
#: The session of an asyncio task's connection (an asyncio server's coroutine handlers interleave on one
#: thread, so a thread-local cannot tell them apart), and of the pool threads its calls run on.
_task_session: ContextVar[Optional["SessionContext"]] = ContextVar("thrift_handshake_session", default=None)

#: The words ``Session.refusal_kind`` takes: a token missing or wrong, no common version, a second hello,
#: a hello that breaks the contract's bounds (no client name, names or features too long).
REFUSAL_KINDS = ("auth", "version", "already_open", "invalid")

#: Bounds on what a hello may carry (names end up in logs and in every handler's context).
MAX_NAME_LENGTH = 256
MAX_FEATURES = 64


def same_secret(given: bytes, expected: bytes) -> bool:
    """Whether ``given`` is the secret ``expected``, in a time that reveals neither its bytes nor its length."""
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest())


@dataclass(frozen=True)
class SessionSettings:
    """What a session needs to know of its server (taken from ServerConfig by the server)."""

    server_name: str = "thrift-handshake"
    versions: Tuple[int, int] = (1, 2)
    features: FrozenSet[str] = frozenset()
    auth_token: Optional[str] = None
    idle_timeout_ms: int = 0
    max_message_bytes: int = 0
    optional_hello: bool = False  # a first call other than hello (or ping) opens an anonymous session
    max_connection_age: float = 0.0  # seconds (+-connection_age.JITTER) a session's connection lives; 0: no limit


class SessionListener:
    """What a session tells the layer that hosts it (metrics, deadlines, logging): subclass it and
    override what you need (every method does nothing here)."""

    __slots__ = ()  # (a subclass may have slots only: the asyncio server's per-connection one has)

    def session_started(self, session: "Session") -> None:
        """hello() was accepted."""

    def session_rejected(self, session: "Session", reason: str) -> None:
        """hello() was refused for ``reason``."""

    def session_ended(self, session: "Session", goodbye: bool) -> None:
        """An established session ended: by goodbye(), or by the connection going away."""


@dataclass
class SessionContext:
    """The caller's connection and session, as the handler sees it.

    Before hello() only ``peer`` (and, with mutual TLS, ``peer_identity``: the common name of the
    client's certificate) is set. ``state`` is free for the handler's own per-session data.
    """

    peer: str
    peer_identity: Optional[str] = None
    session_id: Optional[str] = None
    version: Optional[int] = None
    features: FrozenSet[str] = frozenset()
    client_name: Optional[str] = None
    language: Optional[str] = None
    established_at: Optional[float] = None
    state: Dict[str, Any] = field(default_factory=dict)
    #: The W3C traceparent of the call being served, as its caller sent it (``tracing``), or None.
    traceparent: Optional[str] = None


def current_session() -> SessionContext:
    """The session of the connection whose call is running on this thread."""
    context = bound_session()
    if context is None:
        raise RuntimeError("current_session() is only available inside a call served through a SessionProcessor")
    return context


def bound_session() -> Optional[SessionContext]:
    """The session of the call being served on this thread (or in this asyncio task); None outside a call."""
    return getattr(_local, "context", None) or _task_session.get()


def bind_session(context: Optional[SessionContext]) -> None:
    """Makes ``context`` what current_session() returns on this thread (the processor calls this)."""
    _local.context = context
    _local.dropped_oneway = None


def bind_task_session(context: Optional[SessionContext]) -> None:
    """Makes ``context`` what current_session() returns in the current asyncio task, and on the threads
    that run its calls in a copy of its context: for a host serving many sessions on one thread (the
    asyncio server binds each connection's task once; its gate does not bind per call)."""
    _task_session.set(context)


def drop_oneway(reason: str) -> None:
    """Called by a one-way method's handler for input it cannot use, instead of raising (which would
    log a traceback per message): a one-way call cannot be answered, so the processor counts and logs
    it as dropped, like a one-way call its session refused. ``reason`` is the log's."""
    _local.dropped_oneway = reason


def take_dropped_oneway() -> Optional[str]:
    """Why the handler just dropped its one-way call on this thread (``drop_oneway``), or None."""
    reason = getattr(_local, "dropped_oneway", None)
    _local.dropped_oneway = None
    return reason


def negotiate_version(client: Tuple[Optional[int], Optional[int]], server: Tuple[int, int]) -> int:
    """The highest version in both inclusive ranges; ValueError (with the reason) if there is none."""
    low, high = client
    if low is None or high is None:
        raise ValueError("hello must carry min_version and max_version")
    if low > high:
        raise ValueError(f"min_version {low} is greater than max_version {high}")
    chosen = min(high, server[1])
    if chosen < max(low, server[0]):
        raise ValueError(f"no common version: client speaks {low}..{high}, server speaks {server[0]}..{server[1]}")
    return chosen


class _AuthFailed(ValueError):
    """A missing or wrong auth token: refused like any hello, and the connection is closed too, so a
    guesser pays a new connection per guess."""

    kind = "auth"


class _NoCommonVersion(ValueError):
    kind = "version"


class _AlreadyOpen(ValueError):
    kind = "already_open"


class Session:
    """The session of one connection, from AWAITING_HELLO to CLOSED (``states.SESSION_TRANSITIONS``).

    ``calls`` counts the calls served after hello (hello and goodbye excluded), as Farewell reports.
    """

    def __init__(self, settings: SessionSettings, context: SessionContext,
                 listener: Optional[SessionListener] = None) -> None:
        self.settings = settings
        self.context = context
        self.calls = 0
        self.close_reason = "after goodbye"  # why the session is CLOSING, once it is
        #: Why the last hello was refused, in one word (REFUSAL_KINDS), for the metrics.
        self.refusal_kind: Optional[str] = None
        self._listener = listener or SessionListener()
        #: What this phase admits (``states.SESSION_ADMITS``): session method names, and SERVICE_METHODS
        #: when it serves the service's own methods (read by the gate for every call, as is serves_calls).
        self.admitted = SESSION_ADMITS[SessionPhase.AWAITING_HELLO]
        self.serves_calls = SERVICE_METHODS in self.admitted
        # What the phase says, kept as plain attributes by every move (read for every message, no call each):
        #: A session holds the connection: hello succeeded, or (optional hello) it is anonymous.
        self.established = False
        #: Served without hello (``SessionSettings.optional_hello``): no id, no features.
        self.anonymous = False
        #: goodbye() was answered, auth failed, or the client was asked to reconnect: the connection
        #: closes after this reply.
        self.closing = False
        self._machine = StateMachine(SESSION_TRANSITIONS, SessionPhase.AWAITING_HELLO, self._moved)

    def _moved(self, old: SessionPhase, event: SessionEvent, new: SessionPhase) -> None:
        self.admitted = SESSION_ADMITS[new]  # looked up once per move, not per call
        self.serves_calls = SERVICE_METHODS in self.admitted
        self.established = new in _HELD
        self.anonymous = new is SessionPhase.ANONYMOUS
        self.closing = new is _CLOSING

    @property
    def phase(self) -> SessionPhase:
        return self._machine.phase

    def admits(self, method: str) -> bool:
        """Whether this phase serves ``method`` (see ``states.SESSION_ADMITS``)."""
        return admitted(self.admitted, method)

    def admit(self, method: str) -> bool:
        """Whether a call to ``method`` is served now. With optional hello, the first call that is neither
        hello nor ping opens an anonymous session (and is served)."""
        if admitted(self.admitted, method):
            return True
        if self._machine.phase is SessionPhase.AWAITING_HELLO and self.settings.optional_hello:
            self._machine.apply(SessionEvent.ANONYMOUS_CALL)
            self.context.established_at = time.monotonic()
            self._listener.session_started(self)
            logger.debug("anonymous session peer=%s: first call %s", self.context.peer, clip_for_log(method))
            return True
        return False

    def refusal(self, method: str) -> str:
        """Why ``method`` is refused in this phase, for the caller."""
        if self._machine.phase is SessionPhase.AWAITING_HELLO:
            return f"{method}() needs a completed hello() on this connection"
        return f"{method}() is not served: the session is {self._machine.phase.value.lower()}"

    def hello(self, hello: Optional[ClientHello]) -> ServerHello:
        """Opens the session; raises HandshakeRejected (the session stays as it was) with the reason."""
        settings = self.settings
        try:
            version = self._check_hello(hello)
        except _AuthFailed as error:
            self.close_reason = f"hello refused: {error}"
            self._refuse(hello, SessionEvent.AUTH_FAILED, error)
        except ValueError as error:
            self._refuse(hello, SessionEvent.HELLO_REJECTED, error)
        context = self.context
        context.session_id = os.urandom(16).hex()  # 128 random bits, as uuid4().hex less 6, with no Python frames
        context.version = version
        context.features = _shared(settings.features & frozenset(hello.features or ()))
        context.client_name = hello.client_name
        context.language = hello.language
        context.established_at = time.monotonic()
        self._machine.apply(SessionEvent.HELLO_ACCEPTED)
        self._listener.session_started(self)
        logger.debug("handshake ok peer=%s session=%s client=%r language=%r version=%d", context.peer,
                    context.session_id, context.client_name, context.language, version)
        return ServerHello(
            session_id=context.session_id,
            version=version,
            server_name=settings.server_name,
            features=set(context.features),
            server_time_ms=int(time.time() * 1000),
            idle_timeout_ms=settings.idle_timeout_ms,
            max_message_bytes=settings.max_message_bytes,
        )

    def _refuse(self, hello: Optional[ClientHello], event: SessionEvent, error: ValueError) -> None:
        self.refusal_kind = getattr(error, "kind", "invalid")
        self._machine.apply(event)
        self._listener.session_rejected(self, str(error))
        name = getattr(hello, "client_name", None)
        _REFUSALS.info("handshake rejected peer=%s client=%s: %s", self.context.peer,
                       clip_for_log(repr(name)), error)
        raise HandshakeRejected(reason=str(error), min_version=self.settings.versions[0],
                                max_version=self.settings.versions[1]) from None

    def _check_hello(self, hello: Optional[ClientHello]) -> int:
        """The negotiated version; ValueError with the reason to refuse."""
        phase = self._machine.phase
        if phase is SessionPhase.ANONYMOUS:
            raise _AlreadyOpen("hello must be the first call on a connection: this one is already served as an "
                               "anonymous session (open a new connection to say hello)")
        if phase in _HELD:
            raise _AlreadyOpen(f"this connection already has session {self.context.session_id}")
        if hello is None or not hello.client_name:
            raise ValueError("client_name is required")
        if len(hello.client_name) > MAX_NAME_LENGTH or len(hello.language or "") > MAX_NAME_LENGTH:
            raise ValueError(f"client_name and language are limited to {MAX_NAME_LENGTH} characters")
        features = hello.features or ()
        if len(features) > MAX_FEATURES or any(len(f) > MAX_NAME_LENGTH for f in features):
            raise ValueError(f"at most {MAX_FEATURES} features of {MAX_NAME_LENGTH} characters each")
        token = self.settings.auth_token
        if token is not None:
            if not hello.auth_token:
                raise _AuthFailed("this server requires an auth token")
            if not same_secret(hello.auth_token.encode(), token.encode()):
                raise _AuthFailed("wrong auth token")
        try:
            return negotiate_version((hello.min_version, hello.max_version), self.settings.versions)
        except ValueError as error:
            raise _NoCommonVersion(str(error)) from None

    def call_served(self) -> None:
        """A call other than hello/goodbye was served in this session (ping counts once established)."""
        if self._machine.phase in _HELD:
            self.calls += 1

    def goodbye(self) -> Farewell:
        """Ends the session (ESTABLISHED -> CLOSING); the connection closes after this reply."""
        context = self.context
        self._machine.apply(SessionEvent.GOODBYE)
        self._listener.session_ended(self, True)
        duration_ms = int((time.monotonic() - context.established_at) * 1000)
        logger.debug("goodbye peer=%s session=%s calls=%d duration_ms=%d", context.peer,
                    context.session_id, self.calls, duration_ms)
        return Farewell(session_id=context.session_id, calls=self.calls, duration_ms=duration_ms)

    def reconnect_asked(self, reason: str) -> None:
        """A call was answered "reconnect" instead of being run (the connection reached its max age):
        the session ends (ESTABLISHED or ANONYMOUS -> CLOSING) and the connection closes after this reply."""
        self._machine.apply(SessionEvent.RECONNECT_ASKED)
        self.close_reason = reason
        self._listener.session_ended(self, False)
        logger.debug("reconnect asked peer=%s session=%s calls=%d: %s", self.context.peer,
                     self.context.session_id, self.calls, reason)

    def disconnected(self) -> None:
        """The connection is gone; ends the session if one was open (idempotent)."""
        if self.established:
            self._listener.session_ended(self, False)
        self._machine.apply(SessionEvent.DISCONNECT)


#: The feature sets sessions have agreed so far, each held once (a set per session costs 200 bytes).
_AGREED: Dict[FrozenSet[str], FrozenSet[str]] = {}


def _shared(features: FrozenSet[str]) -> FrozenSet[str]:
    """``features``, as the one equal set other sessions hold (a few hundred are kept)."""
    if len(_AGREED) < 256:
        return _AGREED.setdefault(features, features)
    return _AGREED.get(features, features)
