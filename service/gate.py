"""The session gate as a Thrift processor: wraps any generated Processor, one session per connection.

``SessionProcessor`` is a ``TProcessor`` like Thrift's own ``TMultiplexedProcessor``: it reads each
message's header, serves the session methods (hello, ping, stats, goodbye) itself and hands every
other method to the wrapped Processor, but only when the connection's session admits it
(``states.SESSION_ADMITS``). A refused call is answered from its name alone, before its arguments are
decoded: ``HandshakeRequired`` where the method declares it, a ``TApplicationException`` otherwise,
nothing for a one-way call; the connection stays usable. A two-way method sent as a one-way call
(ONEWAY) is dropped unanswered; a one-way method sent as CALL is served without an answer, as in every
Thrift server.

Any Thrift server can host it. With Apache Thrift's stock server, as in Thrift's tutorial:

    processor = SessionProcessor(Calculator.Processor(CalculatorHandler()))
    server = TServer.TThreadedServer(processor, TSocket.TServerSocket(port=9090),
                                     TTransport.TBufferedTransportFactory(),
                                     TBinaryProtocol.TBinaryProtocolAcceleratedFactory())

Several generated Processors by name share one port and one session per connection: a message called
``Service:method`` (Apache's TMultiplexedProtocol) is served by that service (see ``multiplex``).

``HandshakeServer`` hosts the same processor and adds limits, drain, TLS and logging. With
``handshake=False`` it gates nothing (a plain service whose clients know nothing of hello) but still
counts calls for ``metrics``.
"""

from __future__ import annotations

import logging
import sys
import weakref
from time import monotonic, perf_counter
from typing import Any, Awaitable, Callable, Mapping, Optional, Sequence, Tuple, Union

from thrift.protocol.TProtocol import TProtocolBase, TProtocolException
from thrift.Thrift import TApplicationException, TMessageType, TProcessor, TType
from thrift.transport.THeaderTransport import THeaderTransport
from thrift.transport.TTransport import TTransportException

from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import Draining, Farewell, HandshakeRequired, ServerHello, ServerStats

from .calllog import CallLog
from .connection_age import age_deadline, reconnect_answer
from .contract import MethodInfo, describe_service
from .decoded_budget import DecodedBudget
from .gate_state import ConnectionState, SessionClosed, format_peer, peer_of
from .interceptors import InterceptorChain, Outcome, ServerCall
from .multiplex import Routes, ServiceTable
from .metrics import CallCounter, ConnectionCounters, ServerMetrics
from .peerlog import WarningBudget
from .session import Session, SessionContext, SessionListener, SessionSettings, bind_session, take_dropped_oneway
from .states import SESSION_METHODS
from .tracing import header_trace, hello_trace, take_hello_trace
from .watched import serve_watched, watched_class, watched_processor
from .wire import AnswerableReadError, skip_value

__all__ = ["SessionProcessor", "ConnectionState", "SessionClosed", "format_peer"]

logger = logging.getLogger(__name__)

#: The attribute under which a connection's state rides on its input protocol (one per connection in
#: every Thrift server), so a stock server needs no callback to tell connections apart.
_STATE = "_thrift_handshake_connection"
#: Method names counted under their own name; any other name (junk, typos) is counted as this.
_UNKNOWN = "<unknown>"


class _SessionMethods:
    """SessionService.Iface for one connection: the session methods, answered by its Session (or, while
    the server drains, ``Draining`` from hello and ping)."""

    def __init__(self, session: Session, counters: ConnectionCounters, gate: "SessionProcessor") -> None:
        self._session = session
        self._counters = counters
        self._gate = gate

    def hello(self, hello: Any) -> ServerHello:
        take_hello_trace(self._session.context, hello)  # served quietly, nothing took it before
        if self._gate._drain_until is not None and not self._session.established:  # a second hello: its own refusal
            self._refuse_if_draining()
        return self._session.hello(hello)

    def ping(self) -> None:
        self._refuse_if_draining()
        self._session.call_served()

    def _refuse_if_draining(self) -> None:
        draining = self._gate.draining_answer()
        if draining is not None:
            raise draining

    def stats(self) -> ServerStats:
        self._session.call_served()
        return self._gate.metrics.snapshot()

    def goodbye(self) -> Farewell:
        self._counters.said_goodbye = True
        return self._session.goodbye()


def _write_reply(protocol: TProtocolBase, name: str, message_type: int, seqid: int, body: Any) -> None:
    protocol.writeMessageBegin(name, message_type, seqid)
    body.write(protocol)
    protocol.writeMessageEnd()
    protocol.trans.flush()


class SessionProcessor(TProcessor):
    """A TProcessor around ``processor`` (any generated Processor) that holds one session per connection.

    processor: one generated Processor, or several by service name, served on one port behind
    TMultiplexedProtocol's names (``Service:method``; see ``multiplex``), one session per connection
    shared by all; ``default_service`` names the one that bare method names reach (none by default).

    settings: what hello() negotiates (versions, features, auth token, ...).
    metrics: where connections, sessions and calls are counted (``stats()`` answers from it).
    handshake: False serves every method at once (no session; for plain services).
    warnings: the rate limit its warnings about peers share (a server passes its own).
    interceptors: the user's, run after the runtime's own (counting and the call log) on every message
    (see ``interceptors``). call_log_level: the level of the call log's line for every call.
    binds_session: False for a host that serves many sessions on one thread and binds each connection's
    session itself (``session.bind_task_session``), as the asyncio server does.
    decoded_budget: when set, a request over 64 KiB is priced before it is decoded (an unframed one
    as it is read, ``wire.whole_arguments``) and refused (PROTOCOL_ERROR) when its decoded size does
    not fit. The handler is reached through a copy of ``processor`` whose handler is
    wrapped, so that interceptors see the arguments and the result; ``processor`` itself is unchanged.
    """

    def __init__(
        self,
        processor: Union[TProcessor, Mapping[str, TProcessor]],
        settings: Optional[SessionSettings] = None,
        metrics: Optional[ServerMetrics] = None,
        handshake: bool = True,
        warnings: Optional[WarningBudget] = None,
        interceptors: Sequence[Any] = (),
        decoded_budget: Optional[DecodedBudget] = None,
        call_log_level: int = logging.DEBUG,
        binds_session: bool = True,
        default_service: Optional[str] = None,
    ) -> None:
        # what current_session() returns is bound per call, on the serving thread; a host serving many
        # sessions on one thread (asyncio) binds it per connection task instead (session.bind_task_session)
        self._bind = bind_session if binds_session else _no_binding
        self.settings = settings or SessionSettings()
        self.decoded_budget = decoded_budget
        self.metrics = metrics or ServerMetrics()
        self.handshake = handshake
        self.warnings = warnings or WarningBudget(logger)
        call_log = CallLog(self.warnings, call_log_level)
        self.chain = InterceptorChain((CallCounter(), call_log, *interceptors), contained=BaseException)
        # With the runtime's own chain only, a served two-way call that the call log does not log is served
        # quietly: counted in place, no ServerCall, no hooks (what they would do for it is nothing).
        self._counts_only = not interceptors
        self._logs_every_call = call_log.logs_every_call
        session_methods = describe_service(SessionService) if handshake else {}
        self._session_methods = watched_class(_SessionMethods, session_methods, self.chain, ("hello",), hello_trace)
        self._routes: Optional[Routes] = None
        if isinstance(processor, Mapping):  # several services on one port (see ``multiplex``)
            self._routes = Routes({name: self._table(name, each) for name, each in processor.items()},
                                  default_service, session_methods)
            self._bare_table = self._routes.default
        else:
            self._bare_table = self._table(None, processor)
        self.processor = self._bare_table.processor  # what serves the service's methods, handler called directly
        self.methods: Mapping[str, MethodInfo] = self._bare_table.methods
        self._drain_until: Optional[float] = None  # while draining: when the server stops at the latest

    def _table(self, name: Optional[str], processor: TProcessor) -> ServiceTable:
        """How the gate serves ``processor``'s service (hosted as ``name`` on a multiplexed port)."""
        methods = describe_service(sys.modules[type(processor).__module__])
        if self.handshake:
            methods.update(describe_service(SessionService))
        oneway = frozenset(method for method, info in methods.items() if info.oneway)
        # The service's methods by the message type that may carry them, so that the common case finds its
        # method and checks its type in one look-up: ONEWAY only one-way methods; CALL every method, as in
        # every Thrift server (Go's library up to 0.17 sends one-way calls as CALL and reads no reply).
        served = {method: function for method, function in processor._processMap.items()
                  if not (self.handshake and method in SESSION_METHODS)}
        by_type = {TMessageType.CALL: served,
                   TMessageType.ONEWAY: {method: function for method, function in served.items() if method in oneway}}
        return ServiceTable(name, processor, watched_processor(processor, methods, self.chain), methods, by_type, oneway,
                            session=self.handshake)

    # -- draining -----------------------------------------------------------------------------

    def drain(self, until: float) -> None:
        """From now on hello and ping answer ``Draining`` (the server stops by ``until``, a
        ``time.monotonic()``); takes no lock, so a signal handler may call it."""
        self._drain_until = until

    @property
    def draining(self) -> bool:
        return self._drain_until is not None

    def draining_answer(self) -> Optional[Draining]:
        """What hello and ping answer while the server drains (None while it does not)."""
        until = self._drain_until
        if until is None:
            return None
        remaining_ms = max(int((until - monotonic()) * 1000), 0)
        return Draining(message=f"the server is draining (stopping within {remaining_ms} ms): it opens no new "
                                "session; connect to another server", remaining_ms=remaining_ms)

    # -- connections --------------------------------------------------------------------------

    def connection(self, iprot: TProtocolBase, peer: Optional[str] = None, peer_identity: Optional[str] = None,
                   listener: Optional[SessionListener] = None, opened_at: Optional[float] = None) -> ConnectionState:
        """Starts serving a connection whose messages arrive on ``iprot``; returns its state.

        ``listener`` is told about the session besides ``metrics``. ``opened_at``: when it was accepted
        (``time.monotonic()``; default now), from which its max connection age counts. A stock server
        never calls this: the first message of a connection does, and the state closes when ``iprot`` is
        collected.
        """
        context = SessionContext(peer=peer or peer_of(iprot.trans), peer_identity=peer_identity)
        session = None
        if self.handshake:
            session = Session(self.settings, context, _Listeners(self.metrics, listener))
        state = ConnectionState(context, session, self.metrics)
        if opened_at is not None:
            state.opened_at = opened_at
        if session is not None and self.settings.max_connection_age:
            state.reconnect_at = age_deadline(state.opened_at, self.settings.max_connection_age)
        if session is not None:
            state.session_processor = SessionService.Processor(
                self._session_methods(session, state.counters, self))
        if self.decoded_budget is not None:
            state.arm = self.decoded_budget.arming(state, iprot)
            state.priced_by_refill = state.arm is not None
        if isinstance(iprot.trans, THeaderTransport) or hasattr(iprot.trans, "get_headers"):
            state.read_headers = iprot.trans.get_headers  # THeader's or an HTTP request's (a trace context)
        setattr(iprot, _STATE, state)
        weakref.finalize(iprot, state.close)
        return state

    # -- messages -----------------------------------------------------------------------------

    def process(self, iprot: TProtocolBase, oprot: TProtocolBase) -> bool:
        """Serves one message. After the answer to goodbye (or to a refused token) is flushed it raises
        ``SessionClosed``, a TTransportException: any Thrift server then closes the connection."""
        state, call, serve, table = self._begin(iprot, quiet=True)
        if call is None:
            if serve is None:  # a session method (hello, goodbye, ...) its session admits
                return self._serve_session_quietly(state, iprot, oprot)
            self._serve_quietly(state, serve, table, iprot, oprot)
            return True
        try:
            self._dispatch(state, call, serve, iprot, oprot, table)
        except BaseException as error:
            self._failed(call, error)
            raise
        finally:
            self._ended(state, call)
        return self._after(state)

    async def process_async(self, iprot: TProtocolBase, oprot: TProtocolBase) -> bool:
        """``process`` for an asyncio host, on its event loop: a method whose serving function returns an
        awaitable (a coroutine handler, or a call handed to a thread pool) is awaited; the rest (the
        session methods, refusals) is served at once. Same answers, chain and ``SessionClosed``."""
        state, call, serve, table = self._begin(iprot, quiet=True)
        if call is None:
            if serve is None:  # a session method its session admits: answered at once
                return self._serve_session_quietly(state, iprot, oprot)
            await self._serve_quietly_async(state, serve, table, iprot, oprot)
            return True
        try:
            pending = self._dispatch(state, call, serve, iprot, oprot, table)
            if pending is not None:
                await pending
        except BaseException as error:
            self._failed(call, error)
            raise
        finally:
            self._ended(state, call)
        return self._after(state)

    def _begin(self, iprot: TProtocolBase, quiet: bool = False
               ) -> Tuple[ConnectionState, Optional[ServerCall], Optional[Callable[..., Any]], ServiceTable]:
        """Reads a message's header: its connection's state, the call, the function that serves it (None
        when its message type may not carry that method) and its service's table. With ``quiet``, a call
        that nothing but the counting observes is counted here and comes without a ServerCall (None): the
        caller serves it with ``_serve_quietly``."""
        state = getattr(iprot, _STATE, None) or self.connection(iprot)
        try:
            name, message_type, seqid = iprot.readMessageBegin()
        except AnswerableReadError as error:  # e.g. a name that is not UTF-8: the server says why, then closes
            state.begin(error.name, error.seqid)
            raise
        read_headers = state.read_headers
        if read_headers is not None:  # THeader: the call's own trace context, if it sent one
            state.context.traceparent = header_trace(read_headers())
        elif state.context.traceparent is not None:  # hello's (ClientHello.traceparent) was hello's alone
            state.context.traceparent = None
        table, service, written = self._bare_table, None, name
        if self._routes is not None:  # ``Service:method``: the service's table and the bare name
            table, name, service = self._routes.route(name)
        state.begin(name, seqid)
        methods = table.by_type.get(message_type)
        if methods is None:
            raise TProtocolException(TProtocolException.INVALID_DATA,
                                     f"message type {message_type} is not a call (1) or one-way call (4)")
        oneway = message_type == TMessageType.ONEWAY or name in table.oneway  # no answer is written
        serve = methods.get(name)
        if (quiet and not oneway and self._counts_only and state.priced_by_refill
                and (state.reconnect_at is None or monotonic() < state.reconnect_at) and not self._logs_every_call()):
            session = state.session
            if serve is not None:
                quietly = session is None or session.serves_calls
            else:  # a session method its session admits now: served by the connection's session processor
                quietly = session is not None and table.session and name in session.admitted and name in SESSION_METHODS
            if quietly:
                calls = state.counters.calls  # as CallCounter counts: Service:method when multiplexed
                calls[written] = calls.get(written, 0) + 1
                return state, None, serve, table
        return state, ServerCall(name, seqid, oneway, perf_counter(), state, service), serve, table

    def _serve_quietly(self, state: ConnectionState, serve: Callable[..., Any], table: ServiceTable,
                       iprot: TProtocolBase, oprot: TProtocolBase) -> None:
        """Serves a two-way service call (already counted; its session serves calls) that no hook observes:
        what the chain's hooks would do for it is nothing, whether it is served or fails (the host handles
        that). Such a call cannot end its session, so it is done when its handler has answered."""
        arm = state.arm
        if arm is not None:  # the decoded-size budget prices its arguments if they grow large
            arm()
        self._bind(state.context)
        try:
            serve(table.processor, state.in_flight[1], iprot, oprot)
        finally:
            self._quiet_call_over(state)
        if state.session is not None:
            state.session.call_served()
        state.in_flight = None  # state.end(), written out

    async def _serve_quietly_async(self, state: ConnectionState, serve: Callable[..., Any], table: ServiceTable,
                                   iprot: TProtocolBase, oprot: TProtocolBase) -> None:
        """``_serve_quietly`` for ``process_async``: the awaitable ``serve`` returns is awaited before the
        call is done (its decoded-size reservation held until then)."""
        if state.arm is not None:
            state.arm()
        self._bind(state.context)
        try:
            pending = serve(table.processor, state.in_flight[1], iprot, oprot)
            if pending is not None:
                await pending
        finally:
            self._quiet_call_over(state)
        if state.session is not None:
            state.session.call_served()
        state.in_flight = None

    def _quiet_call_over(self, state: ConnectionState) -> None:
        """A call served quietly is over, served or failed: its decoded-size reservation back, the session
        unbound (on failure the host reports it, with the call still in flight)."""
        if state.reserved:
            self.decoded_budget.release(state.host, state.reserved)
            state.reserved = 0
        self._bind(None)

    def _serve_session_quietly(self, state: ConnectionState, iprot: TProtocolBase, oprot: TProtocolBase) -> bool:
        """Serves a session method its session admits (already counted) that no hook observes, as
        ``_dispatch`` would: its handler (the connection's ``_SessionMethods``) answers, counts and refuses
        for itself. Returns as ``process`` does: raises ``SessionClosed`` when the answer ended the session
        (goodbye, a wrong token). Without a call log line, hello's trace context (ClientHello.traceparent)
        has no reader and is not taken."""
        arm = state.arm
        if arm is not None:  # hello's arguments are priced as any call's
            arm()
        name, seqid = state.in_flight
        processor = state.session_processor
        bind = self._bind
        bind(state.context)
        try:
            processor._processMap[name](processor, seqid, iprot, oprot)
        finally:
            if state.reserved:
                self.decoded_budget.release(state.host, state.reserved)
                state.reserved = 0
            bind(None)
        return self._after(state)

    def _failed(self, call: ServerCall, error: BaseException) -> None:
        if not call.announced:  # e.g. arguments that could not be decoded
            self._announce(call)
        call.outcome, call.error = Outcome.FAILED, error

    @staticmethod
    def _after(state: ConnectionState) -> bool:
        """The message is done; raises ``SessionClosed`` when its answer ended the session."""
        state.end()
        session = state.session
        if session is not None and session.closing:
            raise SessionClosed(TTransportException.END_OF_FILE, f"the session ended ({session.close_reason})")
        return True

    def _ended(self, state: ConnectionState, call: ServerCall) -> None:
        """A message is done with (served, refused or failed): its budget back, the chain told."""
        if state.reserved:
            self.decoded_budget.release(state.host, state.reserved)
            state.reserved = 0
        call.ended = perf_counter()
        self.chain.ended(call)
        self._bind(None)  # lines logged between calls belong to no session (and the context is freed)

    def _dispatch(self, state: ConnectionState, call: ServerCall, serve: Optional[Callable[..., Any]],
                  iprot: TProtocolBase, oprot: TProtocolBase, table: ServiceTable) -> Optional[Awaitable[None]]:
        """Runs ``call`` (``serve``: the service's function for it, if its message type may carry it) or
        answers why not, without decoding what is not served. When ``serve`` returns an awaitable (an
        asyncio host's), returns what finishes the call once awaited."""
        name, session = call.method, state.session
        processor, watched = table.processor, False
        if state.reconnect_at is not None and not call.oneway and monotonic() >= state.reconnect_at:
            if self._ask_to_reconnect(state, call, table, iprot, oprot):
                return None
        if serve is None and session is not None and name in SESSION_METHODS and not call.oneway and table.session:
            processor, watched = state.session_processor, True
            serve = processor._processMap[name]
        if serve is not None and (session is None or session.admit(name)):
            if state.arm is not None:  # the budget's pricing of unframed arguments, decided per connection
                state.arm()
            elif self.decoded_budget is not None and not self._reserve(state, call, iprot, oprot):
                return
            if not watched and self.chain.observes_handler():
                processor, watched = table.watched, True
            self._bind(state.context)
            if watched:
                pending = serve_watched(call, serve, processor, iprot, oprot)
            else:  # the handler called directly: call_started runs before the arguments are decoded
                call.announced = True
                self.chain.started(call)
                pending = serve(processor, call.seqid, iprot, oprot)
            if pending is not None:
                return self._complete(pending, state, call, processor, watched)
            self._served(state, call, processor, watched)
            return None
        info = table.methods.get(name)
        if info is None:
            call.outcome = Outcome.UNKNOWN_METHOD
            call.reason = table.missing(name, call.oneway)
        elif call.oneway and not info.oneway:
            call.outcome, call.reason = Outcome.DROPPED, f"{name} is a two-way method: not run, not answered"
        else:
            call.reason = session.refusal(name)
            call.outcome = Outcome.DROPPED if info.oneway else Outcome.REFUSED
        skip_value(iprot, TType.STRUCT)  # refused from its name alone: the arguments are never built
        iprot.readMessageEnd()
        self._announce(call)
        if call.oneway:
            return
        if call.outcome is Outcome.UNKNOWN_METHOD:
            answer = TApplicationException(TApplicationException.UNKNOWN_METHOD, call.reason)
        else:
            answer = self._refusal(info, call.reason)
        _write_reply(oprot, name, TMessageType.EXCEPTION if isinstance(answer, TApplicationException) else TMessageType.REPLY,
                     call.seqid, answer)
        return None

    def _ask_to_reconnect(self, state: ConnectionState, call: ServerCall, table: ServiceTable,
                          iprot: TProtocolBase, oprot: TProtocolBase) -> bool:
        """Past its max age, a session's call that declares HandshakeRequired (goodbye aside) is answered
        with it, ``reconnect`` set, instead of being run, and the session ends (the connection closes after
        this reply); False for any other call, served as usual (ping, hello, one-way calls: nothing is lost),
        and for a session's first call: however short the age, a reconnected client is served."""
        session, name = state.session, call.method
        info = table.methods.get(name)
        field = None if info is None or name == "goodbye" else info.exception_field(HandshakeRequired)
        if field is None or not session.established or not session.calls:
            return False  # a session is asked only once it has served a call: every connection makes progress
        age = monotonic() - state.opened_at
        skip_value(iprot, TType.STRUCT)  # never run: its arguments are not built
        iprot.readMessageEnd()
        call.outcome, call.reason = Outcome.REFUSED, "max connection age: asked to reconnect, not run"
        self._announce(call)
        session.reconnect_asked(f"max connection age ({age:.1f} s): asked to reconnect")
        result = info.result()
        setattr(result, field, reconnect_answer(name, age))
        _write_reply(oprot, name, TMessageType.REPLY, call.seqid, result)
        return True

    def _served(self, state: ConnectionState, call: ServerCall, processor: TProcessor, watched: bool) -> None:
        """``call`` was served: counted for its session, OK unless its handler's run said otherwise."""
        if not watched:
            call.outcome = _OK
        if state.session is not None and processor is not state.session_processor:
            state.session.call_served()
        if call.oneway:
            self._served_oneway(call)

    async def _complete(self, pending: Awaitable[None], state: ConnectionState, call: ServerCall,
                        processor: TProcessor, watched: bool) -> None:
        await pending
        self._served(state, call, processor, watched)

    def _reserve(self, state: ConnectionState, call: ServerCall, iprot: TProtocolBase, oprot: TProtocolBase) -> bool:
        """Reserves a request's decoded size before it is decoded; False when it was refused instead
        (answered PROTOCOL_ERROR; the rest of its frame read past, the stream intact)."""
        state.reserved, refusal = self.decoded_budget.reserve_request(state, iprot)
        if refusal is None:
            return True
        iprot.readMessageEnd()
        call.outcome, call.reason = Outcome.REFUSED, refusal
        self._announce(call)
        if not call.oneway:
            _write_reply(oprot, call.method, TMessageType.EXCEPTION, call.seqid,
                         TApplicationException(TApplicationException.PROTOCOL_ERROR, refusal))
        return False

    def _announce(self, call: ServerCall) -> None:
        call.announced = True
        self.chain.started(call)

    @staticmethod
    def _refusal(info: MethodInfo, reason: str) -> Any:
        """The answer to a call its session does not admit: its declared HandshakeRequired, if any."""
        field = info.exception_field(HandshakeRequired)
        if field is None:
            return TApplicationException(TApplicationException.UNKNOWN, reason)
        result = info.result()
        setattr(result, field, HandshakeRequired(message=reason))
        return result

    @staticmethod
    def _served_oneway(call: ServerCall) -> None:
        """A one-way call its handler dropped (``session.drop_oneway``) ends DROPPED, not OK."""
        reason = take_dropped_oneway()
        if reason is not None and call.outcome is Outcome.OK:
            call.outcome, call.reason = Outcome.DROPPED, reason


def _no_binding(context: Optional[SessionContext]) -> None:
    """The host binds sessions itself (``binds_session=False``)."""


#: Session methods that are phases, not calls: Farewell's count leaves them out.
_UNCOUNTED = frozenset({"hello", "goodbye"})

#: Outcome.OK, read for every call: a module name is found faster than an enum member (Python 3.11).
_OK = Outcome.OK

class _Listeners:
    """Tells the metrics and, if any, the host's own listener."""

    def __init__(self, metrics: ServerMetrics, other: Optional[SessionListener]) -> None:
        self._all = (metrics,) if other is None else (metrics, other)

    def session_started(self, session: Session) -> None:
        for listener in self._all:
            listener.session_started(session)

    def session_rejected(self, session: Session, reason: str) -> None:
        for listener in self._all:
            listener.session_rejected(session, reason)

    def session_ended(self, session: Session, goodbye: bool) -> None:
        for listener in self._all:
            listener.session_ended(session, goodbye)
