"""What a client decides without I/O, shared by the threaded ``Client`` and the ``AsyncClient``.

Both clients run the same phases (``states.CLIENT_TRANSITIONS``) and raise the same errors for the
same events; the rules live here once: the arguments a client accepts, hello's offer and whether its
answer keeps to it, what a server's first refusal means, which error a failed exchange is, what a
call's outcome is, and the idle check against the server's ``idle_timeout_ms``.
"""

from __future__ import annotations

import functools
import time
from types import ModuleType
from typing import Any, Dict, Generic, Optional, Tuple, TypeVar, Union

from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TTransportException

from thrift_handshake_gen.session.ttypes import ClientHello, Draining, HandshakeRejected, ServerHello

from .config import ClientOptions, RetryPolicy
from .connection_age import asks_to_reconnect
from .endpoints import Endpoints, format_address
from .errors import (
    ArgumentError,
    CallTimeout,
    ConnectError,
    ConnectionBroken,
    HandshakeFailed,
    PhaseError,
    ReconnectAsked,
    RemoteApplicationError,
    ServerDraining,
    ServerFull,
    ServiceError,
    WireMismatch,
)
from .client_methods import PHASE_METHODS, bind_arguments, methods_of
from .interceptors import InterceptorChain, Outcome
from .states import ClientEvent, ClientPhase, StateMachine
from .timing import Timeline
from .wire import explain_reply, explain_tls_error, is_timeout

__all__ = ["WENT_AWAY", "ClientBase", "ServerNotice", "server_notice", "check_client_arguments", "check_service", "client_hello", "negotiation_broken",
           "idle_limit", "idle_error", "refusal_error", "phase_error", "broken_error", "outcome_of",
           "over_size_limit", "with_inner_cause", "reconnect_asked", "OptionsCache", "ReplyGuard", "hello_refusal"]

#: A connection that was answered before ends without an answer: not a mismatch, the server is gone.
WENT_AWAY = ("the server went away without answering (it stopped, crashed or was killed, or closed the "
             "connection); reconnect() to try again")

_PHASE_HINTS: Dict[ClientPhase, str] = {
    ClientPhase.NEW: "call connect() or use 'with Client(...)'",
    ClientPhase.CLOSED: "the connection is closed; call connect()",
}


class ServerNotice(TProtocolException):
    """What the server said, unasked, before it closed the connection (an exception answering no call:
    it drains, or evicted this idle session)."""


def peer_name(options: ClientOptions, host: str, port: int) -> str:
    """How the timeline, logs and errors name the server: unix:PATH, or host:port."""
    return format_address(host, port) if options.unix_socket is None else f"unix:{options.unix_socket}"


def server_notice(protocol: Any) -> ServerNotice:
    """The notice whose header (an EXCEPTION named "", seqid 0) ``protocol`` has just read."""
    notice = TApplicationException()
    notice.read(protocol)
    return ServerNotice(TProtocolException.INVALID_DATA, f"the server closed the session: {notice.message}")


def check_client_arguments(port: Any, options: Any, service: Any) -> None:
    """Refuses what would fail later in a confusing way (or, for a port past 65535, reach another port)."""
    if isinstance(port, int) and not isinstance(port, bool) and not 0 < port <= 65535:
        raise ValueError(f"port must be 1..65535, not {port}")
    if options is not None and not isinstance(options, ClientOptions):
        raise TypeError(f"options must be a ClientOptions, not {options!r}")
    if not (isinstance(service, ModuleType) and hasattr(service, "Iface") and hasattr(service, "Client")):
        raise TypeError(f"service must be a generated service module (e.g. calc.Calculator, as imported by "
                        f"`from calc import Calculator`), not {service!r}")


def check_service(service: ModuleType, methods: Dict[str, Any], options: ClientOptions) -> None:
    """A handshake needs a service that extends session.SessionService."""
    if options.handshake and "hello" not in methods:
        raise ArgumentError(
            f"service {service.__name__} has no hello(): it does not extend session.SessionService, so "
            "its server cannot hold a session; pass ClientOptions(handshake=False) to call it as a plain "
            "Thrift service")


def client_hello(options: ClientOptions) -> ClientHello:
    """What hello() offers."""
    return ClientHello(
        client_name=options.client_name,
        language=options.language,
        min_version=options.versions[0],
        max_version=options.versions[1],
        auth_token=options.auth_token,
        features=set(options.features),
    )


def negotiation_broken(options: ClientOptions, answer: ServerHello) -> str:
    """What ``answer`` chose that this client never offered ("" when it keeps to the offer)."""
    low, high = options.versions
    if answer.version is None or not low <= answer.version <= high:
        return f"it chose version {answer.version}, outside the {low}..{high} this client offered"
    unoffered = set(answer.features or ()) - set(options.features)
    if unoffered:
        return f"it chose features it was not offered: {', '.join(sorted(unoffered))}"
    return ""


def idle_limit(answer: ServerHello) -> Optional[float]:
    """Seconds the server lets a session stay silent, from its hello answer (None: no limit)."""
    limit_ms = answer.idle_timeout_ms
    return limit_ms / 1000 if limit_ms and limit_ms > 0 else None


def idle_error(method: str, idle: float, limit: Optional[float]) -> Optional[ConnectionBroken]:
    """The error for a session idle past the server's limit (None while it is within it)."""
    if limit is None or idle < limit:
        return None
    return ConnectionBroken(f"{method}: the session was idle {idle:.1f} s and the server closes "
                            f"sessions idle for {limit:g} s; call reconnect()")


def refusal_error(peer: str, error: TApplicationException) -> Optional[ConnectError]:
    """The typed error for a server's first answer on a connection that refuses it (full, or
    another wire), if it is one."""
    if error.message.startswith("server full"):
        return ServerFull(f"{peer}: {error.message}")
    if error.type == TApplicationException.INVALID_PROTOCOL:
        return WireMismatch(f"{peer}: {error.message}")
    return None


def phase_error(phase: ClientPhase, action: str, broken_by: Optional[BaseException]) -> PhaseError:
    """``action`` is not allowed in ``phase``, with what to do about it."""
    hint = (f"the connection broke ({broken_by!r}); call reconnect()" if phase is ClientPhase.BROKEN
            else _PHASE_HINTS.get(phase, ""))
    return PhaseError(action, phase.value, hint)


def over_size_limit(error: BaseException) -> bool:
    """Whether decoding stopped at a size limit: a SIZE_LIMIT TProtocolException or TTransportException
    in pure Python, an OverflowError from Thrift's C extension."""
    if isinstance(error, TProtocolException):
        return error.type == TProtocolException.SIZE_LIMIT
    if isinstance(error, TTransportException):
        return error.type == TTransportException.SIZE_LIMIT
    return isinstance(error, OverflowError) and str(error).startswith("size exceeded")


def with_inner_cause(error: BaseException) -> str:
    """The error with the cause Thrift keeps in ``inner`` (e.g. the TLS verification failure)."""
    inner = getattr(error, "inner", None)
    return f"{error} ({inner})" if inner is not None else str(error)


def broken_error(name: str, error: BaseException, options: ClientOptions, first_reply: bytes,
                 answered_before: bool) -> ConnectionBroken:
    """The error a call gets when its exchange failed with ``error`` (the connection is then BROKEN):
    CallTimeout, or ConnectionBroken saying why (over the reply limits, TLS, the server went away,
    a wire it does not speak), judged from the first bytes the server ever answered. After a server's
    notice the call did not run (``may_have_run`` False)."""
    if isinstance(error, ReconnectAsked):  # written behind a call answered "reconnect": never read
        return ReconnectAsked(f"{name}: written behind a call the server answered 'reconnect': not run ({error})")
    if isinstance(error, ServerNotice):  # said before the server read the call
        broken = ConnectionBroken(f"{name}: {error}; the call did not run; reconnect() to try again")
        broken.may_have_run = False
        return broken
    if is_timeout(error):
        return CallTimeout(f"{name}: no reply within the timeout; the connection is closed")
    if over_size_limit(error):
        explanation = (f"the reply is over this client's limits (ClientOptions.max_reply_bytes="
                       f"{options.max_reply_bytes} per string, binary or frame, max_reply_items="
                       f"{options.max_reply_items} per container)")
    else:
        explanation = explain_tls_error(error) or (WENT_AWAY if answered_before and not first_reply
                                                   else explain_reply(first_reply, options.wire))
    return ConnectionBroken(f"{name}: connection failed: {with_inner_cause(error)}: {explanation}")


def hello_refusal(peer: str, error: BaseException) -> Tuple[BaseException, bool]:
    """What a client raises when hello is answered ``error``, and whether the server refused it (full,
    draining: the endpoint is then tried last for a while, so a retry goes elsewhere)."""
    if isinstance(error, HandshakeRejected):
        return HandshakeFailed(error), False
    if isinstance(error, Draining):
        return ServerDraining(peer, error), True
    if isinstance(error, RemoteApplicationError):
        refused = refusal_error(peer, error.error)
        return refused or error, refused is not None
    return error, False


def reconnect_asked(name: str, answer: BaseException) -> Optional[ReconnectAsked]:
    """The error for a declared answer that says the call did not run and the connection closes
    (``HandshakeRequired`` with ``reconnect`` set, at the server's max connection age), else None."""
    if not asks_to_reconnect(answer):
        return None
    return ReconnectAsked(f"{name}: the server asked this client to reconnect: {answer.message}")


def outcome_of(error: Optional[BaseException]) -> Outcome:
    """A finished call's outcome from the error it raises (None: answered)."""
    if error is None:
        return Outcome.OK
    return Outcome.DECLARED_ERROR if isinstance(error, ServiceError) else Outcome.FAILED


_Value = TypeVar("_Value")


class OptionsCache(Generic[_Value]):
    """A value made once per ``ClientOptions`` (the same object: options are immutable), for the most
    recent ``size`` options; past that all are forgotten and made again as needed."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._kept: Dict[int, Tuple[ClientOptions, _Value]] = {}  # by id, kept with their options: the id stays theirs

    def get(self, options: ClientOptions) -> Optional[_Value]:
        known = self._kept.get(id(options))
        return known[1] if known is not None and known[0] is options else None

    def keep(self, options: ClientOptions, value: _Value) -> None:
        if len(self._kept) >= self._size:
            self._kept.clear()
        self._kept[id(options)] = (options, value)


class ReplyGuard:
    """Makes every reply read through ``protocol`` prove it answers the call in flight (``expected``: its
    method and seqid). Thrift's generated Python client checks neither, so a stale or duplicated reply
    would be taken as the answer; one that does not match raises and breaks the connection instead."""

    __slots__ = ("expected",)

    def __init__(self, protocol: Any) -> None:
        self.expected: Tuple[str, int] = ("", 0)
        read_message_begin = protocol.readMessageBegin

        def checked() -> Tuple[str, int, int]:
            name, message_type, seqid = read_message_begin()
            expected = self.expected
            if message_type != TMessageType.REPLY and message_type != TMessageType.EXCEPTION:
                raise TProtocolException(
                    TProtocolException.INVALID_DATA,
                    f"the answer to {expected[0]} has message type {message_type}, not a reply (2) or an "
                    f"exception (3): is the peer a Thrift server?")
            if (name, seqid) != expected:
                if (name, seqid) == ("", 0) and message_type == TMessageType.EXCEPTION:
                    raise server_notice(protocol)
                raise TProtocolException(
                    TProtocolException.INVALID_DATA,
                    f"the reply is for {name or '?'} (seqid {seqid}), the call was {expected[0]} (seqid "
                    f"{expected[1]}): a stale or foreign reply")
            return name, message_type, seqid

        protocol.readMessageBegin = checked


class ClientBase:
    """What both clients hold and check alike: where they connect, their options and service, the
    timeline first in the interceptor chain, the phase, the session, the idle check; each client adds
    its I/O and its own ``server_hello`` and ``_break``."""

    _state: StateMachine
    _broken_by: Optional[BaseException]
    _idle_limit: Optional[float]
    _last_activity: float
    _epoch: float

    def __init__(self, host: Union[str, Endpoints], port: int, options: Optional[ClientOptions],
                 service: ModuleType) -> None:
        check_client_arguments(port, options, service)
        #: With ``Endpoints`` for ``host``: where connect() goes (several addresses, failover between them);
        #: ``host`` and ``port`` are then the current connection's.
        self.endpoints = host if isinstance(host, Endpoints) else None
        if self.endpoints is not None:
            host, port = self.endpoints.addresses[0]
        self.host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1] as in URLs
        self.port = port
        self.options = options or ClientOptions()
        self.service = service
        self.timeline = Timeline(self.options.timeline_size)
        #: Whether the user's interceptors watch the calls; without them the timeline alone is fed, directly.
        self._observed = bool(self.options.interceptors)
        if self._observed:  # made now, so that what is no interceptor is refused here
            self.__dict__["_chain"] = InterceptorChain((self.timeline, *self.options.interceptors))
        self._peer = peer_name(self.options, self.host, self.port)
        self._service_methods = methods_of(service)
        check_service(service, self._service_methods, self.options)

    @functools.cached_property
    def _chain(self) -> InterceptorChain:
        """The timeline, then the user's interceptors (without any, made only if something asks)."""
        return InterceptorChain((self.timeline, *self.options.interceptors))

    @property
    def phase(self) -> ClientPhase:
        """The current phase (see ``states.ClientPhase``)."""
        return self._state.phase

    @property
    def idle_seconds(self) -> float:
        """Seconds since the connection's last exchange (since the client was made, before any)."""
        return time.perf_counter() - self._last_activity

    @property
    def epoch(self) -> float:
        """The ``time.perf_counter()`` instant the timeline's record starts count from."""
        return self._epoch

    @property
    def server_hello(self) -> Optional[ServerHello]:
        raise NotImplementedError

    @property
    def session_id(self) -> Optional[str]:
        hello = self.server_hello
        return hello.session_id if hello else None

    @property
    def version(self) -> Optional[int]:
        """The protocol version negotiated in hello()."""
        hello = self.server_hello
        return hello.version if hello else None

    def _arguments(self, method: str, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Tuple[Any, ...]:
        """A call's arguments in IDL order; ArgumentError for a phase method or arguments that do not bind."""
        if method in PHASE_METHODS and self.options.handshake:
            raise ArgumentError(f"{method} is a phase: use {PHASE_METHODS[method]}")
        return bind_arguments(self.service, method, args, kwargs) if kwargs else args

    def _retry_policy(self, method: str) -> Optional[RetryPolicy]:
        """The retry policy if it covers ``method`` (an idempotent one), else None: never sent twice."""
        policy = self.options.retry
        return policy if policy is not None and method in policy.idempotent else None

    def _require(self, event: ClientEvent, action: str) -> None:
        if not self._state.allows(event):
            raise self._phase_error(action)

    def _phase_error(self, action: str) -> PhaseError:
        return phase_error(self.phase, action, self._broken_by)

    def _check_idle(self, method: str) -> None:
        """Fails fast (BROKEN) when the session outlived the server's idle timeout from ServerHello."""
        limit = self._idle_limit
        if limit is None:
            return
        idle = time.perf_counter() - self._last_activity
        if idle >= limit:  # idle_error's own test, made here: it runs before every call
            error = idle_error(method, idle, limit)
            self._break(error)
            raise error

    def _break(self, error: BaseException) -> None:
        raise NotImplementedError
