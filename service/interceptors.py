"""The one per-call path's hooks: interceptors see every call, on the server and on the client.

An interceptor is any object with ``call_started(call)`` and ``call_ended(call)`` (subclass
``Interceptor`` and override what you need). The server's gate runs its chain for every message it
handles (served, refused, unknown, dropped); the client runs its chain for every request it writes.
Both ends build one ``Call`` per call and hand the same object to both hooks, so an interceptor may
keep its own data in ``call.attributes`` between them.

    class Audit(Interceptor):
        def call_ended(self, call):
            audit_log.info("%s %s %s %.1f ms", call.peer, call.method, call.outcome.value, call.duration * 1e3)

    HandshakeServer(handler, ServerConfig(interceptors=(Audit(),)))
    Client(port=9090, options=ClientOptions(interceptors=(Audit(),)), service=MyService)

The runtime's own timing (the client's timeline), counting (``stats()``) and logging are interceptors
in the same chain, ahead of the user's. Interceptors observe: they cannot change arguments or results.
One that raises is reported in the log (rate-limited) and the call and the connection go on as if it
had not been there. Hooks run on the thread serving the call, so they should be quick.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Type

from .peerlog import clip_for_log

__all__ = ["Call", "ClientCall", "Interceptor", "InterceptorChain", "Outcome", "ServerCall"]

logger = logging.getLogger(__name__)

#: How often one interceptor's failures are logged at most (the rest are counted into the next line).
_REPORT_EVERY = 10.0


class Outcome(enum.Enum):
    """How a call ended, as both ends tell it."""

    OK = "ok"  # answered with its result, or a one-way call handed to its handler
    DECLARED_ERROR = "declared_error"  # answered with an exception the IDL declares
    FAILED = "failed"  # an undeclared error: the handler raised one, or the call failed on the wire
    REFUSED = "refused"  # the session does not admit the method in its phase (e.g. before hello)
    UNKNOWN_METHOD = "unknown_method"  # the service has no such method
    DROPPED = "dropped"  # a one-way call not run: refused, misdirected, or dropped by its handler


class Call:
    """One call as interceptors see it; ``ServerCall`` and ``ClientCall`` add each end's own view.

    Times are ``time.perf_counter()`` values. ``args`` are the positional arguments in IDL order (None
    when the call was refused before they were decoded). ``result`` and ``error`` are set once the call
    ended, with ``outcome``.
    """

    __slots__ = ("method", "seqid", "oneway", "peer", "args", "result", "error", "outcome", "started", "ended",
                 "_attributes")

    def __init__(self, method: str, seqid: int, oneway: bool, peer: str, started: float) -> None:
        self.method = method
        self.seqid = seqid
        self.oneway = oneway
        self.peer = peer
        self.args: Optional[Tuple[Any, ...]] = None
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.outcome: Optional[Outcome] = None
        self.started = started
        self.ended: Optional[float] = None
        self._attributes: Optional[Dict[str, Any]] = None

    @property
    def attributes(self) -> Dict[str, Any]:
        """Free for interceptors' own data between ``call_started`` and ``call_ended``."""
        if self._attributes is None:
            self._attributes = {}
        return self._attributes

    @property
    def duration(self) -> Optional[float]:
        """Seconds from the call's start to its end (None while it runs)."""
        return None if self.ended is None else self.ended - self.started

    def __repr__(self) -> str:
        outcome = "running" if self.outcome is None else self.outcome.value
        return f"<{type(self).__name__} {self.method} seqid={self.seqid} peer={self.peer} {outcome}>"


class ServerCall(Call):
    """A call as the server's gate handles it.

    ``started``: its header was read; ``ended``: its answer was flushed (or, one-way, its handler
    returned). ``oneway``: no answer is written (a one-way method, or any message sent as ONEWAY).
    A call refused from its name alone already has its ``outcome`` and ``reason`` in ``call_started``
    (REFUSED, UNKNOWN_METHOD or DROPPED) and no ``args``. ``session`` is the caller's ``SessionContext`` (peer, session id, version, features...);
    ``handler_seconds`` the time inside the handler (None when no handler ran). ``connection`` is the
    gate's per-connection state, for the runtime's own interceptors. On a port hosting several services
    (``multiplex``), ``method`` is the bare method name and ``service`` the name before ``:`` (None for
    a bare name); ``name`` is the message's name as the caller wrote it.
    """

    __slots__ = ("session", "connection", "handler_seconds", "reason", "announced", "service")

    def __init__(self, method: str, seqid: int, oneway: bool, started: float, connection: Any,
                 service: Optional[str] = None) -> None:
        # Call.__init__ written out: this runs for every message the server handles.
        context = connection.context
        self.method = method
        self.seqid = seqid
        self.oneway = oneway
        self.peer = context.peer
        self.args = None
        self.result = None
        self.error = None
        self.outcome = None
        self.started = started
        self.ended = None
        self._attributes = None
        self.service = service
        self.session = context
        self.connection = connection
        self.handler_seconds: Optional[float] = None
        self.reason: Optional[str] = None  # why it was refused or dropped
        self.announced = False  # call_started has run


    @property
    def name(self) -> str:
        """The message's name as the caller wrote it: ``Service:method`` on a multiplexed port."""
        return self.method if self.service is None else f"{self.service}:{self.method}"


class ClientCall(Call):
    """A request as the client sends it (hello and goodbye included: ``phase`` says which).

    ``record`` is the timeline's record of it once it ended (bytes, send/wait/receive, the server's
    own time where the reply reports it); ``session_id`` the session it ran in (None before hello).
    ``traceparent``: a W3C trace context an interceptor sets in ``call_started`` (``tracing.ClientTracing``);
    the request carries it (a THeader header; hello's ``ClientHello.traceparent`` on any wire).
    """

    __slots__ = ("phase", "session_id", "record", "traceparent")

    def __init__(self, method: str, seqid: int, oneway: bool, peer: str, started: float, phase: str,
                 session_id: Optional[str]) -> None:
        super().__init__(method, seqid, oneway, peer, started)
        self.phase = phase
        self.session_id = session_id
        self.record: Any = None
        self.traceparent: Optional[str] = None


class Interceptor:
    """Sees every call: override either hook (both do nothing here).

    ``observes_handler``: whether it reads what only the handler's run tells (``args``, ``result``,
    ``error``, ``handler_seconds``, and DECLARED_ERROR told apart from OK) of served calls on the server.
    When no interceptor in a chain does, the server's gate calls the handler directly, which saves about
    a microsecond per call; served calls then end OK, or FAILED when serving them raised. May be a
    property, read per call (the call log reads them only while DEBUG logging is on).
    """

    observes_handler: bool = True

    def call_started(self, call: Call) -> None:
        """The call begins: on the server, its arguments are decoded (``call.args``) and its handler
        is about to run, or it is about to be refused; on the client, its request is about to be written."""

    def call_ended(self, call: Call) -> None:
        """The call is over: ``outcome``, ``result`` or ``error`` and ``ended`` are set."""


class InterceptorChain:
    """Runs interceptors in order (``call_ended`` in reverse, so the first one wraps the rest), and
    reports one that raises instead of letting it break the call.

    ``contained``: what an interceptor may raise and still be only reported. The client's chain runs on
    the caller's thread, so Ctrl-C (KeyboardInterrupt) passes through it; the server's runs on pool
    threads, which get no signals, so it contains every BaseException (SystemExit, GeneratorExit...)."""

    def __init__(self, interceptors: Sequence[Any] = (), contained: Type[BaseException] = Exception) -> None:
        self.interceptors: Tuple[Any, ...] = tuple(interceptors)
        self._contained = contained
        for interceptor in self.interceptors:
            if not (callable(getattr(interceptor, "call_started", None))
                    and callable(getattr(interceptor, "call_ended", None))):
                raise TypeError(f"{interceptor!r} is not an interceptor: it needs call_started(call) and "
                                "call_ended(call) (subclass thrift_handshake.Interceptor)")
        # Whether a served call's handler must be watched: decided now where an interceptor's answer is a
        # class attribute, per call for those whose answer is a property.
        static = [getattr(i, "observes_handler", True) for i in self.interceptors
                  if not isinstance(getattr(type(i), "observes_handler", None), property)]
        self._always_observes = any(static)
        self._sometimes_observes = tuple(i for i in self.interceptors
                                         if isinstance(getattr(type(i), "observes_handler", None), property))
        self._starters = _overridden(self.interceptors, "call_started")
        self._enders = tuple(reversed(_overridden(self.interceptors, "call_ended")))
        self._lock = threading.Lock()
        self._failures: Dict[Tuple[int, str], Tuple[float, int]] = {}  # per hook: last report, failures since

    def observes_handler(self) -> bool:
        """Whether an interceptor of this chain needs a served call's handler watched (see ``Interceptor``)."""
        if self._always_observes:
            return True
        for interceptor in self._sometimes_observes:  # a loop, not any(): this runs for every served call
            if interceptor.observes_handler:
                return True
        return False

    def started(self, call: Call) -> None:
        for hook in self._starters:
            try:
                hook(call)
            except self._contained as error:
                self._report(hook, call, error)

    def ended(self, call: Call) -> None:
        for hook in self._enders:
            try:
                hook(call)
            except self._contained as error:
                self._report(hook, call, error)

    def _report(self, hook: Callable[[Call], None], call: Call, error: BaseException) -> None:
        """Logs a failing interceptor: the first failure with its traceback, then at most one line per
        ``_REPORT_EVERY`` seconds per hook, counting the ones in between."""
        owner = getattr(hook, "__self__", hook)
        key = (id(owner), getattr(hook, "__name__", ""))
        now = time.monotonic()
        with self._lock:
            last, since = self._failures.get(key, (None, 0))
            due = last is None or now - last >= _REPORT_EVERY
            self._failures[key] = (now, 0) if due else (last, since + 1)
        if not due:
            return
        more = f" ({since} more failures since the last report)" if since else ""
        logger.warning("interceptor %s failed in %s for %s; the call goes on without it: %s: %s%s",
                       type(owner).__name__, getattr(hook, "__name__", "?"), clip_for_log(call.method),
                       type(error).__name__, clip_for_log(error), more, exc_info=last is None)


def _overridden(interceptors: Tuple[Any, ...], hook: str) -> Tuple[Callable[[Call], None], ...]:
    """The bound hooks that do something (the base class's empty ones are skipped: they cost a call each)."""
    empty = getattr(Interceptor, hook)
    return tuple(getattr(i, hook) for i in interceptors if getattr(type(i), hook, None) is not empty)
