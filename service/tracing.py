"""Trace context from the client to the server: W3C ``traceparent``, and OpenTelemetry spans on both
ends when ``opentelemetry-api`` is installed (it is not required).

The carrier: over THeader every message may carry a ``traceparent`` header (the client writes it per
call), and so may every HTTP request (Thrift over HTTP); on every dialect hello carries one in
``ClientHello.traceparent``. The server reads it for the
call being served: handlers get it from ``current_trace()``, the access log and ``--log-format json``
put its trace id on every line about the call (``trace=`` and ``trace_id``). Calls without one cost
nothing extra: a connection that is neither THeader nor HTTP is never asked for headers.

    client = Client(port=9090, options=ClientOptions(interceptors=(ClientTracing(),)), service=MyService)
    server = HandshakeServer(handler, ServerConfig(interceptors=(ServerTracing(),)))

``ClientTracing`` gives each call a traceparent: its OpenTelemetry span's (a CLIENT span, child of the
current context) when a tracer records, else one under the trace id it was given, else a new trace.
``ServerTracing`` opens a SERVER span per call, child of the caller's, current while the handler runs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

from .interceptors import Call, Interceptor, Outcome, ServerCall
from .metrics import UNKNOWN_METHOD
from .session import SessionContext, bound_session

__all__ = ["ClientTracing", "ServerTracing", "TraceParent", "carry_trace", "current_trace", "opentelemetry_available",
           "parse_traceparent", "TRACEPARENT_HEADER", "header_trace", "hello_trace",
           "take_hello_trace"]

#: The THeader header (and W3C HTTP header) that carries the trace context.
TRACEPARENT_HEADER = b"traceparent"
#: version-trace id-parent id-flags; later versions may append fields after these (W3C, "future versions").
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\Z", re.ASCII)
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
#: Outcomes that are the call's own answers, not failures of it.
_ANSWERED = frozenset({Outcome.OK, Outcome.DECLARED_ERROR})


@dataclass(frozen=True)
class TraceParent:
    """One W3C ``traceparent``: the trace, the caller's span in it, and the flags (01: sampled)."""

    trace_id: str
    parent_id: str
    flags: str = "01"

    def __str__(self) -> str:
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags}"

    @property
    def sampled(self) -> bool:
        return int(self.flags, 16) & 1 == 1

    def child(self) -> "TraceParent":
        """The same trace, with a new span of its own as the parent."""
        return TraceParent(self.trace_id, os.urandom(8).hex(), self.flags)

    @classmethod
    def new(cls) -> "TraceParent":
        """A new trace (sampled)."""
        return cls(os.urandom(16).hex(), os.urandom(8).hex())


def parse_traceparent(value: Any) -> Optional[TraceParent]:
    """``value`` (str or bytes) as a traceparent, or None when it is not one (a peer's text: anything
    else is ignored, never logged)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or len(value) > 512:
        return None
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return TraceParent(trace_id, parent_id, flags)


def carry_trace(transport: Any, name: str, args: Tuple[Any, ...], traceparent: str) -> None:
    """Puts a request's trace context where the peer reads it: a header of its message when ``transport``
    takes headers (THeader, HTTP), and hello's own field (``ClientHello.traceparent``) on every wire."""
    set_header = getattr(transport, "set_header", None)  # per message: THeader clears it once flushed
    if set_header is not None:
        set_header(TRACEPARENT_HEADER, traceparent.encode("ascii"))
    if name == "hello" and args and hasattr(args[0], "traceparent"):
        args[0].traceparent = traceparent


def header_trace(headers: Mapping[bytes, bytes]) -> Optional[str]:
    """The traceparent a THeader message carries, if it is one."""
    value = headers.get(TRACEPARENT_HEADER)
    if value is None:
        return None
    trace = parse_traceparent(value)
    return None if trace is None else str(trace)


def hello_trace(call: ServerCall, args: Tuple[Any, ...]) -> None:
    """hello's trace context, taken before the chain hears of the call (watched)."""
    take_hello_trace(call.session, args[0] if args else None)


def take_hello_trace(context: SessionContext, hello: Any) -> None:
    """hello's trace context from ClientHello.traceparent, unless a THeader header gave one (or it was
    taken already): log lines written while hello is served carry it."""
    value = getattr(hello, "traceparent", None)
    if value is not None and context.traceparent is None:
        trace = parse_traceparent(value)
        context.traceparent = None if trace is None else str(trace)


def current_trace() -> Optional[TraceParent]:
    """The trace context of the call being served on this thread (or asyncio task), as its caller sent
    it; None outside a call or when the caller sent none."""
    context = bound_session()
    return None if context is None else parse_traceparent(context.traceparent)


def opentelemetry_available() -> bool:
    """Whether ``opentelemetry-api`` can be imported here."""
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


def _tracer(tracer: Any) -> Any:
    if tracer is not None or not opentelemetry_available():
        return tracer
    from opentelemetry import trace

    return trace.get_tracer("thrift_handshake")


def _span_traceparent(span: Any) -> Optional[TraceParent]:
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return TraceParent(f"{context.trace_id:032x}", f"{context.span_id:016x}", f"{int(context.trace_flags):02x}")


def _end_span(span: Any, call: Call) -> None:
    from opentelemetry.trace import Status, StatusCode

    outcome = call.outcome
    span.set_attribute("rpc.thrift_handshake.outcome", outcome.value if outcome is not None else "unknown")
    if outcome not in _ANSWERED:
        span.set_status(Status(StatusCode.ERROR, outcome.value if outcome is not None else None))
    span.end()


class ClientTracing(Interceptor):
    """Client interceptor: each call carries a ``traceparent`` (see the module).

    ``traceparent``: the trace to put the calls in (the parent of their spans; without a recording
    tracer each call gets a new span id under its trace id); None: the current OpenTelemetry context's
    trace, else a new trace per call. ``tracer``: an OpenTelemetry tracer (default: the global
    provider's, when opentelemetry-api is installed).
    """

    observes_handler = False

    def __init__(self, traceparent: Optional[str] = None, tracer: Any = None) -> None:
        self._given = None
        if traceparent is not None:
            self._given = parse_traceparent(traceparent)
            if self._given is None:
                raise ValueError(f"{traceparent!r} is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)")
        self._tracer = _tracer(tracer)

    def call_started(self, call: Any) -> None:
        traceparent = None
        if self._tracer is not None:
            from opentelemetry.trace import SpanKind
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            parent = (None if self._given is None  # the current context
                      else TraceContextTextMapPropagator().extract({"traceparent": str(self._given)}))
            span = self._tracer.start_span(call.method, context=parent, kind=SpanKind.CLIENT,
                                           attributes={"rpc.system": "thrift", "rpc.method": call.method})
            call.attributes["span"] = span
            traceparent = _span_traceparent(span)
        if traceparent is None:
            traceparent = TraceParent.new() if self._given is None else self._given.child()
        call.traceparent = str(traceparent)

    def call_ended(self, call: Any) -> None:
        span = call.attributes.get("span") if self._tracer is not None else None
        if span is not None:
            _end_span(span, call)


class ServerTracing(Interceptor):
    """Server interceptor: an OpenTelemetry SERVER span per call, child of the caller's trace context
    (a new trace when it sent none), current while the handler runs. Needs opentelemetry-api."""

    observes_handler = False

    def __init__(self, tracer: Any = None) -> None:
        if not opentelemetry_available():
            raise RuntimeError("ServerTracing needs opentelemetry-api: pip install opentelemetry-api")
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._tracer = _tracer(tracer)
        self._context = context
        self._trace = trace
        self._propagator = TraceContextTextMapPropagator()

    def call_started(self, call: Any) -> None:
        from opentelemetry.trace import SpanKind

        traceparent = call.session.traceparent
        parent = None if traceparent is None else self._propagator.extract({"traceparent": traceparent})
        name = UNKNOWN_METHOD if call.outcome is Outcome.UNKNOWN_METHOD else call.name  # not the peer's any name
        span = self._tracer.start_span(name, context=parent, kind=SpanKind.SERVER,
                                       attributes={"rpc.system": "thrift", "rpc.method": name,
                                                   "net.peer.name": call.peer})
        session_id = call.session.session_id
        if session_id:
            span.set_attribute("rpc.thrift_handshake.session", session_id)
        attributes = call.attributes
        attributes["span"] = span
        attributes["otel_token"] = self._context.attach(self._trace.set_span_in_context(span))

    def call_ended(self, call: Any) -> None:
        attributes = call.attributes
        span = attributes.pop("span", None)
        if span is None:
            return
        self._context.detach(attributes.pop("otel_token"))
        _end_span(span, call)


def server_tracing_if_configured() -> Optional[ServerTracing]:
    """A ``ServerTracing`` when opentelemetry-api is installed and a tracer provider was set up (e.g.
    by ``opentelemetry-instrument``); else None, so an untraced server pays nothing per call."""
    if not opentelemetry_available():
        return None
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if type(provider).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider"):
        return None
    return ServerTracing()
