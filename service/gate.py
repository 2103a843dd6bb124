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

``HandshakeServer`` hosts the same processor and adds limits, drain, TLS and logging. With
``handshake=False`` it gates nothing (a plain service whose clients know nothing of hello) but still
counts calls for ``metrics``.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

from thrift.protocol.TProtocol import TProtocolBase, TProtocolException
from thrift.Thrift import TApplicationException, TMessageType, TProcessor, TType
from thrift.transport.TTransport import TTransportException

from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import Farewell, HandshakeRequired, ServerHello, ServerStats

from .contract import MethodInfo, describe_service
from .metrics import ConnectionCounters, ServerMetrics
from .peerlog import WarningBudget, clip_for_log
from .session import Session, SessionContext, SessionListener, SessionSettings, bind_session, take_dropped_oneway
from .states import SESSION_METHODS
from .wire import AnswerableReadError, skip_value

__all__ = ["SessionProcessor", "ConnectionState"]

logger = logging.getLogger(__name__)

#: The attribute under which a connection's state rides on its input protocol (one per connection in
#: every Thrift server), so a stock server needs no callback to tell connections apart.
_STATE = "_thrift_handshake_connection"
#: Method names counted under their own name; any other name (junk, typos) is counted as this.
_UNKNOWN = "<unknown>"


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
        self._metrics = metrics
        self._closed = False
        metrics.connection_opened(self.counters)

    def begin(self, method: str, seqid: int) -> None:
        with self.lock:
            if self.closing:
                raise TTransportException(TTransportException.END_OF_FILE, "the server is stopping")
            self.in_flight = (method, seqid)

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


class _SessionMethods:
    """SessionService.Iface for one connection: the session methods, answered by its Session."""

    def __init__(self, session: Session, counters: ConnectionCounters, stats: Callable[[], ServerStats]) -> None:
        self._session = session
        self._counters = counters
        self._stats = stats

    def hello(self, hello: Any) -> ServerHello:
        return self._session.hello(hello)

    def ping(self) -> None:
        self._session.call_served()

    def stats(self) -> ServerStats:
        self._session.call_served()
        return self._stats()

    def goodbye(self) -> Farewell:
        self._counters.said_goodbye = True
        return self._session.goodbye()


def _socket_of(transport: Any) -> Optional[socket.socket]:
    """The socket under a (buffered or framed) transport, as far as it can be found."""
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


def _peer_of(transport: Any) -> str:
    handle = _socket_of(transport)
    try:
        return format_peer(handle.getpeername()) if handle is not None else "unknown"
    except OSError:
        return "unknown"


def _write_reply(protocol: TProtocolBase, name: str, message_type: int, seqid: int, body: Any) -> None:
    protocol.writeMessageBegin(name, message_type, seqid)
    body.write(protocol)
    protocol.writeMessageEnd()
    protocol.trans.flush()


class SessionProcessor(TProcessor):
    """A TProcessor around ``processor`` (any generated Processor) that holds one session per connection.

    settings: what hello() negotiates (versions, features, auth token, ...).
    metrics: where connections, sessions and calls are counted (``stats()`` answers from it).
    handshake: False serves every method at once (no session; for plain services).
    warnings: the rate limit its warnings about peers share (a server passes its own).
    """

    def __init__(
        self,
        processor: TProcessor,
        settings: Optional[SessionSettings] = None,
        metrics: Optional[ServerMetrics] = None,
        handshake: bool = True,
        warnings: Optional[WarningBudget] = None,
    ) -> None:
        self.processor = processor
        self.settings = settings or SessionSettings()
        self.metrics = metrics or ServerMetrics()
        self.handshake = handshake
        self.warnings = warnings or WarningBudget(logger)
        self.methods: Dict[str, MethodInfo] = describe_service(sys.modules[type(processor).__module__])
        if handshake:
            self.methods.update(describe_service(SessionService))
        self._oneway = frozenset(name for name, info in self.methods.items() if info.oneway)
        # The service's methods by the message type that may carry them, so that the common case finds its
        # method and checks its type in one look-up: ONEWAY only one-way methods; CALL every method, as in
        # every Thrift server (Go's library up to 0.17 sends one-way calls as CALL and reads no reply).
        served = {name: function for name, function in processor._processMap.items()
                  if not (handshake and name in SESSION_METHODS)}
        self._service_map: Dict[int, Dict[str, Callable[..., Any]]] = {
            TMessageType.CALL: served,
            TMessageType.ONEWAY: {name: function for name, function in served.items() if name in self._oneway},
        }

    # -- connections --------------------------------------------------------------------------

    def connection(self, iprot: TProtocolBase, peer: Optional[str] = None, peer_identity: Optional[str] = None,
                   listener: Optional[SessionListener] = None) -> ConnectionState:
        """Starts serving a connection whose messages arrive on ``iprot``; returns its state.

        ``listener`` is told about the session besides ``metrics``. A stock server never calls this:
        the first message of a connection does, and the state closes when ``iprot`` is collected.
        """
        context = SessionContext(peer=peer or _peer_of(iprot.trans), peer_identity=peer_identity)
        session = None
        if self.handshake:
            session = Session(self.settings, context, _Listeners(self.metrics, listener))
        state = ConnectionState(context, session, self.metrics)
        if session is not None:
            state.session_processor = SessionService.Processor(
                _SessionMethods(session, state.counters, self.metrics.snapshot))
        setattr(iprot, _STATE, state)
        weakref.finalize(iprot, state.close)
        return state

    # -- messages -----------------------------------------------------------------------------

    def process(self, iprot: TProtocolBase, oprot: TProtocolBase) -> bool:
        """Serves one message; returns False once the connection should close (after goodbye)."""
        state = getattr(iprot, _STATE, None) or self.connection(iprot)
        try:
            name, message_type, seqid = iprot.readMessageBegin()
        except AnswerableReadError as error:  # e.g. a name that is not UTF-8: the server says why, then closes
            state.begin(error.name, error.seqid)
            raise
        state.begin(name, seqid)
        state.counters.message(name if name in self.methods else _UNKNOWN)
        methods = self._service_map.get(message_type)
        if methods is None:
            raise TProtocolException(TProtocolException.INVALID_DATA,
                                     f"message type {message_type} is not a call (1) or one-way call (4)")
        session = state.session
        serve = methods.get(name)  # None too for a method sent with the other type than the IDL's
        if serve is not None and (session is None or session.serves_calls):  # the common case, kept short
            bind_session(state.context)
            serve(self.processor, seqid, iprot, oprot)
            if session is not None:
                session.calls += 1
            if name in self._oneway:
                self._served_oneway(state, name)
            state.in_flight = None
            return True
        if message_type == TMessageType.ONEWAY and name not in self._oneway:
            self._drop_misdirected_oneway(state, name, iprot)
        elif session is not None and name in SESSION_METHODS:
            if session.admits(name):
                processor = state.session_processor
                processor._processMap[name](processor, seqid, iprot, oprot)
            else:
                self._refuse(state, name, seqid, iprot, oprot)
        elif serve is None:
            self._unknown(name, seqid, iprot, oprot)
        elif session is None or session.admits(name):
            bind_session(state.context)
            serve(self.processor, seqid, iprot, oprot)
            if session is not None:
                session.call_served()
            if name in self._oneway:
                self._served_oneway(state, name)
        else:
            self._refuse(state, name, seqid, iprot, oprot)
        state.end()
        if session is not None and session.closing:
            handle = _socket_of(oprot.trans)  # the reply is flushed: end the connection
            if handle is not None:
                try:
                    handle.shutdown(socket.SHUT_RDWR)  # a stock server's next read sees EOF and ends
                except OSError:
                    pass
            return False
        return True

    def _refuse(self, state: ConnectionState, name: str, seqid: int, iprot: TProtocolBase,
                oprot: TProtocolBase) -> None:
        """Answers a call its session does not admit, without decoding its arguments."""
        skip_value(iprot, TType.STRUCT)
        iprot.readMessageEnd()
        message = state.session.refusal(name)
        info = self.methods[name]
        if info.oneway:
            self._drop_oneway(state, name, message)
            return
        field = info.exception_field(HandshakeRequired)
        if field is not None:
            result = info.result()
            setattr(result, field, HandshakeRequired(message=message))
            _write_reply(oprot, name, TMessageType.REPLY, seqid, result)
        else:
            _write_reply(oprot, name, TMessageType.EXCEPTION, seqid,
                         TApplicationException(TApplicationException.UNKNOWN, message))

    def _served_oneway(self, state: ConnectionState, name: str) -> None:
        """Counts a one-way call its handler took, or dropped (``session.drop_oneway``)."""
        reason = take_dropped_oneway()
        if reason is None:
            state.counters.notifications += 1
        else:
            self._drop_oneway(state, name, reason)

    def _drop_oneway(self, state: ConnectionState, name: str, reason: str) -> None:
        """Counts a one-way call that was not served; only a connection's first is a warning (within
        the shared rate limit), so a flood of them is not a flood of log lines."""
        state.dropped_oneway += 1
        message = "dropped one-way %s peer=%s: %s (further drops on this connection are not logged)"
        name = clip_for_log(name)  # the peer's: any length
        if state.dropped_oneway == 1:
            self.warnings.warning(message, name, state.context.peer, reason, log=logger)
        else:
            logger.debug(message, name, state.context.peer, reason)

    def _drop_misdirected_oneway(self, state: ConnectionState, name: str, iprot: TProtocolBase) -> None:
        """A one-way call to a two-way method or to no method at all is not run and not answered: its
        sender expects no answer, and a pipelining one would take it for the answer to its next call."""
        skip_value(iprot, TType.STRUCT)
        iprot.readMessageEnd()
        what = f"{name} is a two-way method" if name in self.methods else "no such method"
        self._drop_oneway(state, name, f"{what}: not run, not answered")

    @staticmethod
    def _unknown(name: str, seqid: int, iprot: TProtocolBase, oprot: TProtocolBase) -> None:
        skip_value(iprot, TType.STRUCT)
        iprot.readMessageEnd()
        _write_reply(oprot, name, TMessageType.EXCEPTION, seqid,
                     TApplicationException(TApplicationException.UNKNOWN_METHOD, f"Unknown function {name}"))


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
