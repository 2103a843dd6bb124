"""The server side of the handshake: one session per connection, and what a handler sees of it.

``SessionHandler`` is what the generated Processor calls on each connection. It serves the session
methods itself (hello, ping, goodbye, stats) and passes every other method to the service handler,
but only once hello() has succeeded; before that they throw HandshakeRequired (or, for a method that
does not declare it, a TApplicationException) and the connection stays usable.

Handlers read their caller's session with ``current_session()``:

    def echo(self, message):
        if current_session().version >= 2:
            ...  # what echo means in version 2
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, Optional, Tuple

from thrift.Thrift import TApplicationException

from thrift_handshake_gen.session.ttypes import ClientHello, Farewell, HandshakeRejected, HandshakeRequired, ServerHello, ServerStats

from .states import SESSION_TRANSITIONS, SessionEvent, SessionPhase, StateMachine

if TYPE_CHECKING:  # pragma: no cover
    from .server import Connection, HandshakeServer

__all__ = ["SessionContext", "current_session", "negotiate_version"]

logger = logging.getLogger(__name__)

_local = threading.local()

#: Bounds on what a hello may carry (names end up in logs and in every handler's context).
MAX_NAME_LENGTH = 256
MAX_FEATURES = 64


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


def current_session() -> SessionContext:
    """The session of the connection whose call is running on this thread."""
    context = getattr(_local, "context", None)
    if context is None:
        raise RuntimeError("current_session() is only available inside a call served by HandshakeServer")
    return context


def bind_session(context: Optional[SessionContext]) -> None:
    """Makes ``context`` what current_session() returns on this thread (the server calls this)."""
    _local.context = context


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


class SessionHandler:
    """The per-connection handler given to the generated Processor."""

    def __init__(self, connection: "Connection", server: "HandshakeServer") -> None:
        self._connection = connection
        self._server = server
        self.context = connection.context
        self.calls = 0
        self._phase = StateMachine(SESSION_TRANSITIONS, SessionPhase.AWAITING_HELLO)
        self._session_methods: Dict[str, Callable[..., Any]] = {"goodbye": self._goodbye, "stats": self._stats}

    @property
    def phase(self) -> SessionPhase:
        return self._phase.phase

    # -- served before hello ------------------------------------------------------------------

    def hello(self, hello: ClientHello) -> ServerHello:
        config = self._server.config
        try:
            version = self._check_hello(hello)
        except ValueError as error:
            self._phase.apply(SessionEvent.HELLO_REJECTED)
            self._server.metrics.handshake_rejected()
            name = getattr(hello, "client_name", None)
            logger.info("handshake rejected peer=%s client=%r: %s", self.context.peer,
                        name[:MAX_NAME_LENGTH] if isinstance(name, str) else name, error)
            raise HandshakeRejected(reason=str(error), min_version=config.versions[0],
                                    max_version=config.versions[1]) from None
        context = self.context
        context.session_id = uuid.uuid4().hex
        context.version = version
        context.features = config.features & frozenset(hello.features or ())
        context.client_name = hello.client_name
        context.language = hello.language
        context.established_at = time.monotonic()
        self._phase.apply(SessionEvent.HELLO_ACCEPTED)
        self._connection.session_started()
        self._server.metrics.handshake_ok()
        logger.info("handshake ok peer=%s session=%s client=%r language=%r version=%d", context.peer,
                    context.session_id, context.client_name, context.language, version)
        return ServerHello(
            session_id=context.session_id,
            version=version,
            server_name=config.server_name,
            features=set(context.features),
            server_time_ms=int(time.time() * 1000),
            idle_timeout_ms=int(config.limits.idle_timeout * 1000),
            max_message_bytes=config.limits.max_message_bytes,
        )

    def ping(self) -> None:
        if self.phase is SessionPhase.ESTABLISHED:
            self.calls += 1

    def _check_hello(self, hello: ClientHello) -> int:
        """The negotiated version; ValueError with the reason to refuse."""
        if self.phase is SessionPhase.ESTABLISHED:
            raise ValueError(f"this connection already has session {self.context.session_id}")
        if hello is None or not hello.client_name:
            raise ValueError("client_name is required")
        if len(hello.client_name) > MAX_NAME_LENGTH or len(hello.language or "") > MAX_NAME_LENGTH:
            raise ValueError(f"client_name and language are limited to {MAX_NAME_LENGTH} characters")
        features = hello.features or ()
        if len(features) > MAX_FEATURES or any(len(f) > MAX_NAME_LENGTH for f in features):
            raise ValueError(f"at most {MAX_FEATURES} features of {MAX_NAME_LENGTH} characters each")
        token = self._server.config.auth_token
        if token is not None:
            if not hello.auth_token:
                raise ValueError("this server requires an auth token")
            if not hmac.compare_digest(hello.auth_token.encode(), token.encode()):
                raise ValueError("wrong auth token")
        return negotiate_version((hello.min_version, hello.max_version), self._server.config.versions)

    # -- served after hello -------------------------------------------------------------------

    def __getattr__(self, name: str) -> Callable[..., Any]:
        info = self._server.methods.get(name)
        if info is None:
            raise AttributeError(name)
        target = self._session_methods.get(name) or getattr(self._server.handler, name)
        gated = self._gate(info.name, info.oneway, info.declares(HandshakeRequired), target)
        setattr(self, name, gated)  # resolved once per connection
        return gated

    def _gate(self, name: str, oneway: bool, declares_required: bool,
              target: Callable[..., Any]) -> Callable[..., Any]:
        def gated(*args: Any) -> Any:
            if self._phase.phase is not SessionPhase.ESTABLISHED:
                message = f"{name}() needs a completed hello() on this connection"
                if oneway:
                    logger.warning("dropped one-way %s before hello peer=%s", name, self.context.peer)
                    return None
                if declares_required:
                    raise HandshakeRequired(message=message)
                raise TApplicationException(TApplicationException.UNKNOWN, message)
            try:
                result = target(*args)
                self._connection.replying = True
                return result
            finally:
                self.calls += 1
                if oneway:
                    self._connection.notifications += 1

        return gated

    def _goodbye(self) -> Farewell:
        context = self.context
        self._phase.apply(SessionEvent.GOODBYE)
        self._server.metrics.session_ended()
        self._connection.close_after_reply()
        duration_ms = int((time.monotonic() - context.established_at) * 1000)
        logger.info("goodbye peer=%s session=%s calls=%d duration_ms=%d", context.peer,
                    context.session_id, self.calls, duration_ms)
        return Farewell(session_id=context.session_id, calls=self.calls, duration_ms=duration_ms)

    def _stats(self) -> ServerStats:
        return self._server.metrics.snapshot()

    def disconnected(self) -> None:
        """The connection is gone; ends the session if one was open."""
        if self.phase is SessionPhase.ESTABLISHED:
            self._server.metrics.session_ended()
        self._phase.apply(SessionEvent.DISCONNECT)
