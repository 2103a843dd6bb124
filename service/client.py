"""The phased client: connect, hello, calls, goodbye, close, each one visible in a timeline.

    with Client("127.0.0.1", 9090, service=Calculator) as client:   # CONNECTING -> HANDSHAKING -> READY
        client.add(1, 2)                                            # READY: calls
        calculator = client.typed(Calculator.Iface)                 # the same calls, typed for an IDE
    # on exit: goodbye() then close (CLOSING -> CLOSED), also when the block raises

The phases follow ``states.CLIENT_TRANSITIONS``. With ``ClientOptions.pipeline_hello`` connect()
only writes hello (HELLO_PENDING) and the first exchange reads its answer before its own; with
``await_farewell=False`` close() writes goodbye without waiting for the Farewell. A timeout or transport error moves the client to
BROKEN and closes the socket at once, so neither a half-written request nor a late reply can reach a
later call; only ``reconnect()`` (a new connection and a new session) leaves BROKEN.
One client is one connection; calls from several threads are serialized.
"""

from __future__ import annotations

import logging
import threading
import time
from types import ModuleType
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple, Union

from thrift.Thrift import TApplicationException, TException
from thrift.transport.TTransport import TTransportException

from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello, Farewell, ServerHello

from .config import DEFAULT_HOST, DEFAULT_PORT, ClientOptions
from .endpoints import Endpoints, connect_any
from .client_core import (ClientBase, broken_error, client_hello, idle_limit, negotiation_broken, outcome_of,
                          peer_name, reconnect_asked, refusal_error, with_inner_cause, OptionsCache, ReplyGuard,
                          hello_refusal)
from .client_methods import PHASE_METHODS, ServiceMethods, checker_of
from .interceptors import ClientCall, Outcome
from .tracing import carry_trace
from .errors import (ArgumentError, CallTimeout, ConnectError, ConnectionBroken, HandshakeFailed, ReconnectAsked,
                     RemoteApplicationError, RequestEncodingError, ServiceError, ThriftHandshakeError)
from .states import CLIENT_TRANSITIONS, ClientEvent, ClientPhase, StateMachine
from .timing import Record
from .multiplex import name_requests
from .wire import ClientParts, client_parts, client_stack, explain_tls_error, spoke_or_closed, unread_bytes

__all__ = ["Client"]

logger = logging.getLogger(__name__)

#: What the connections of every client with the same ClientOptions share: the hello, checked once (for
#: clients without interceptors, whose hooks could change it: a trace context), and the stacks' TLS
#: context and factories (certificate files read once: new files need new options).
_HELLOS: OptionsCache[ClientHello] = OptionsCache()
_PARTS: OptionsCache[ClientParts] = OptionsCache()

_OK = Outcome.OK  # read per call without interceptors: a module name is found faster than an enum member
_Method = Tuple[Callable[..., None], Optional[Callable[[], Any]], Callable[[Tuple[Any, ...]], None]]


class _Sent(NamedTuple):
    """A request on the wire whose reply is still to be read."""

    name: str
    phase: str  # the timeline's phase: "handshake", "call" or "disconnect"
    receive: Optional[Callable[[], Any]]  # None for a oneway call: no reply of any kind
    seqid: int
    start: float
    sent: float
    bytes_out: int
    in_before: int  # the socket's bytes_in before this reply
    deadline: Optional[float]
    call: ClientCall  # what the interceptors see of it


class Client(ClientBase, ServiceMethods):
    """A connection to a Thrift service, phase by phase.

    ``service`` is the generated service module (default: the session methods alone). With
    ``options.handshake`` (the default) the service is expected to extend session.SessionService and
    ``connect()`` says hello; with ``handshake=False`` any Thrift service can be called and no
    hello/goodbye is sent. Calls are ``client.call("echo", "hi")``, ``client.echo("hi")``, or typed
    through ``client.typed(Service.Iface)``. Declared IDL exceptions are raised as ``ServiceError``
    instances that are also instances of their generated class; everything else raised is a
    ``ThriftHandshakeError``.
    """

    def __init__(
        self,
        host: Union[str, Endpoints] = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        options: Optional[ClientOptions] = None,
        service: ModuleType = SessionService,
    ) -> None:
        super().__init__(host, port, options, service)
        self._server_hello: Optional[ServerHello] = None
        self._pending_hello: Optional[_Sent] = None  # a pipelined hello, until its answer is read
        self._idle_limit: Optional[float] = None  # seconds, from ServerHello.idle_timeout_ms
        self.farewell: Optional[Farewell] = None
        # Phase moves are logged at DEBUG; whether they are is asked again by each connect, not on each move.
        self._state = StateMachine(CLIENT_TRANSITIONS, ClientPhase.NEW,
                                   self._log_change if logger.isEnabledFor(logging.DEBUG) else None)
        self._peer_of: Tuple[Any, ...] = (self.host, self.port, self.options)  # what self._peer names
        self._lock = threading.RLock()
        self._epoch = self._last_activity = time.perf_counter()
        self._broken_by: Optional[BaseException] = None
        self._refused = False  # CLOSED because connecting failed or the server refused us (retries reopen it)
        self._seqid = 0
        self._replies: Optional[ReplyGuard] = None  # what the reply now awaited must answer
        self._sock = self._transport = self._stub = None
        self._methods: Dict[str, _Method] = {}

    # -- phases -------------------------------------------------------------------------------

    @property
    def server_hello(self) -> Optional[ServerHello]:
        """The server's answer to hello (None before it or without a handshake). With a pipelined hello
        still unanswered, reading it reads the answer (and raises HandshakeFailed if it was a refusal)."""
        if self._pending_hello is not None:
            with self._lock:
                if self._pending_hello is not None:
                    self._answer_pending_hello()
        return self._server_hello

    def connect(self) -> Optional[ServerHello]:
        """Opens the transport and says hello; returns the server's answer (READY afterwards).

        With ``options.handshake`` False no hello is sent and None is returned; with
        ``options.pipeline_hello`` hello is written, None is returned (HELLO_PENDING) and the next
        exchange reads the answer and raises what follows here otherwise. Raises ConnectError (the
        client is CLOSED and may connect again), HandshakeFailed (refused; the transport is closed)
        or ConnectionBroken/CallTimeout (BROKEN).
        """
        with self._lock:
            if self.endpoints is None:
                return self._connect_to(self.host, self.port)
            return connect_any(self.endpoints, self._connect_to_endpoint)

    def _connect_to_endpoint(self, host: str, port: int) -> Optional[ServerHello]:
        """``_connect_to`` one of several addresses: a hello that broke leaves the client CLOSED, so the
        next address can be tried."""
        try:
            return self._connect_to(host, port)
        except ConnectionBroken:
            if self.phase is ClientPhase.BROKEN:
                self._close_transport(ClientEvent.CLOSED)
            raise

    def _connect_to(self, host: str, port: int) -> Optional[ServerHello]:
        with self._lock:
            if (host, port, self.options) != self._peer_of:  # the same as last time: the same name
                self.host, self.port, self._peer = host, port, peer_name(self.options, host, port)
                self._peer_of = (host, port, self.options)
            self._require(ClientEvent.CONNECT, "connect")
            self._state.on_change = self._log_change if logger.isEnabledFor(logging.DEBUG) else None
            self._state.apply(ClientEvent.CONNECT)
            self._open_transport()
            if not self.options.handshake:
                self._state.apply(ClientEvent.OPENED_WITHOUT_HELLO)
                return None
            self._state.apply(ClientEvent.TRANSPORT_OPEN)
            return self._hello()

    def reconnect(self) -> Optional[ServerHello]:
        """Closes whatever is left of the connection, then connects again with a new session."""
        with self._lock:
            self.close()
            return self.connect()

    def goodbye(self) -> Farewell:
        """Ends the session (READY -> CLOSING -> CLOSED); waits for the server's Farewell and returns it."""
        with self._lock:
            self._require(ClientEvent.GOODBYE, "say goodbye")
            self._check_idle("goodbye")
            self._state.apply(ClientEvent.GOODBYE)
            try:
                self.farewell = self._invoke("goodbye", (), "disconnect", self.options.timeouts.call)
            finally:
                self._close_transport()
            return self.farewell

    def close(self) -> Optional[Farewell]:
        """Says goodbye if a session is open, then closes; idempotent and never raises for I/O. Returns the
        Farewell when goodbye() was answered, else None (``options.await_farewell`` False: goodbye is
        written and the connection closed without waiting)."""
        with self._lock:
            try:
                if self.phase in (ClientPhase.READY, ClientPhase.HELLO_PENDING) and self.options.handshake:
                    try:
                        if self.options.await_farewell:
                            return self.goodbye()
                        self._write_goodbye()
                    except (ConnectionBroken, RemoteApplicationError, ServiceError, HandshakeFailed,
                            ConnectError) as error:
                        logger.info("goodbye failed while closing: %s", error)
            finally:  # also when interrupted (Ctrl-C) while saying goodbye
                if self.phase is ClientPhase.HANDSHAKING:  # by an interceptor of hello: its fate is unknown
                    self._state.apply(ClientEvent.FAILURE)
                self._close_transport()
                self._refused = False
            return None

    def __enter__(self) -> "Client":
        self.connect()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- calls --------------------------------------------------------------------------------

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Calls ``method`` with ``args`` (and ``kwargs`` by parameter name, as the generated ``Iface``
        allows); returns its result (None for oneway/void).

        With ``options.retry`` and a method it marks idempotent, a broken connection (or a server that
        is down or full) is retried on a new connection and session, with backoff; any other method
        fails at once, so it never runs twice.
        """
        if kwargs or method in PHASE_METHODS:  # the common case needs neither look (they run per call)
            args = self._arguments(method, args, kwargs)
        policy = self.options.retry
        if policy is None or method not in policy.idempotent:  # never sent twice
            return self._call_once(method, args)
        delay = policy.backoff
        for attempt in range(1, policy.attempts + 1):
            try:
                with self._lock:
                    if attempt > 1 or self.phase is ClientPhase.BROKEN or self._refused:
                        self.close()
                        self.connect()
                return self._call_once(method, args)
            except (ConnectionBroken, ConnectError) as error:
                if attempt == policy.attempts:
                    raise
                logger.info("%s failed (%s); retry %d of %d in %.2fs", method, error, attempt,
                            policy.attempts - 1, delay)
            time.sleep(delay)
            delay = min(delay * 2, policy.max_backoff)
        raise AssertionError("unreachable")  # pragma: no cover

    def _call_once(self, method: str, args: Tuple[Any, ...]) -> Any:
        with self._lock:
            if not self._state.allows(ClientEvent.CALL):
                raise self._phase_error(f"call {method}")
            self._check_idle(method)
            try:
                return self._receive(self._send(method, args, "call", self.options.timeouts.call))
            except ReconnectAsked as asked:  # not run: any method may be sent again, once
                if not self.options.reconnect_when_asked:
                    raise
                self._reconnect_asked(asked)
            return self._invoke(method, args, "call", self.options.timeouts.call)

    def _reconnect_asked(self, asked: ReconnectAsked) -> None:
        """Connects again (through the Endpoints, if any) and says hello, as the server asked; the
        timeline gets a "reconnect" record naming where the new connection went."""
        start, old_peer = time.perf_counter(), self._peer
        logger.info("%s; reconnecting", asked)

        def record(error: Optional[BaseException] = None) -> None:
            self.timeline.add(Record("reconnect", f"{old_peer} -> {self._peer}", start - self._epoch,
                                     time.perf_counter() - start, error=None if error is None else repr(error)))

        try:
            self.close()
            self.connect()
        except BaseException as error:  # the call did not run; the caller learns why it cannot be sent
            record(error)
            raise
        record()

    def _write_goodbye(self) -> None:
        """Goodbye without waiting: written (the server ends the session by it), its Farewell never read."""
        self._require(ClientEvent.GOODBYE, "say goodbye")
        self._check_idle("goodbye")
        if self._pending_hello is not None:  # else hello's answer would reach a closed socket, then the Farewell a reset one
            self._answer_pending_hello()
        self._state.apply(ClientEvent.GOODBYE)
        self._record_sent(self._send("goodbye", (), "disconnect", self.options.timeouts.call))

    def ended_by_server(self) -> bool:
        """Whether the server has spoken on this idle READY connection, or closed it: a session it
        ended while nobody called (drained, evicted, idle too long: it says why, then closes); True
        means the connection is to be given up. Never waits for the server, and takes no byte from a
        live session; False when there is nothing to tell (not READY)."""
        with self._lock:
            if self.phase is not ClientPhase.READY or self._sock is None:
                return False
            if unread_bytes(self._transport):
                return True
            return spoke_or_closed(self._sock.handle)

    # -- internals ----------------------------------------------------------------------------

    def _log_change(self, old: ClientPhase, event: ClientEvent, new: ClientPhase) -> None:
        logger.debug("%s:%s %s --%s--> %s", self.host, self.port, old.value, event.value, new.value)

    def _open_transport(self) -> None:
        start = time.perf_counter()
        failure: Optional[Exception] = None
        try:
            options = self.options
            parts = _PARTS.get(options)
            if parts is None:  # TLS files read and factories made once per ClientOptions, not per connection
                parts = client_parts(options.wire, options.max_reply_bytes, options.max_reply_items, options.tls)
                _PARTS.keep(options, parts)
            self._sock, self._transport, protocol = client_stack(
                self.host, self.port, options.wire, options.max_reply_bytes, options.max_reply_items,
                options.tls, options.unix_socket, parts)
            connect_timeout = options.timeouts.connect
            self._sock.setTimeout(None if connect_timeout is None else connect_timeout * 1000.0)
            self._transport.open()
            self._sock.setTimeout(None)  # from now on each exchange carries its own deadline
        except (TTransportException, OSError, ValueError) as error:  # refused, unreachable, TLS files
            failure = error
        except BaseException:  # e.g. KeyboardInterrupt while connecting: leave a clean CLOSED behind
            self._drop_socket()
            self._state.apply(ClientEvent.CONNECT_FAILED)
            raise
        self.timeline.add(Record("connect", self._peer, start - self._epoch,
                                 time.perf_counter() - start, error=failure and with_inner_cause(failure)))
        self._refused = failure is not None
        if failure is not None:
            self._sock = self._transport = self._stub = None
            self._state.apply(ClientEvent.CONNECT_FAILED)
            hint = explain_tls_error(failure)
            raise ConnectError(f"cannot connect to {self._peer}: {with_inner_cause(failure)}"
                               + (f": {hint}" if hint else "")) from failure
        self._stub = self.service.Client(protocol)
        self._replies = ReplyGuard(protocol)
        if self.options.multiplexed is not None:
            name_requests(protocol, self.options.multiplexed)
        self._methods = {}
        self._broken_by = None
        self._server_hello = self._pending_hello = self._idle_limit = None

    def _hello(self) -> Optional[ServerHello]:
        options = self.options
        hello = _HELLOS.get(options)
        checked = hello is not None
        if hello is None:
            hello = client_hello(options)
        if options.pipeline_hello:
            self._sock.send_with_next()
        try:
            sent = self._send("hello", (hello,), "handshake", options.timeouts.handshake, checked)
        except ThriftHandshakeError as error:
            raise self._hello_failed(error) from None
        except BaseException as error:
            self._hello_interrupted(error)
            raise
        self._pending_hello = sent
        if not checked and not self._observed:  # no hook can change it (a trace context): keep it for the next time
            _HELLOS.keep(options, hello)
        if options.pipeline_hello:
            self._state.apply(ClientEvent.HELLO_PIPELINED)
            return None
        return self._answer_hello()

    def _answer_hello(self) -> ServerHello:
        """Reads the answer to the hello on the wire: READY, or the typed refusal with the socket closed."""
        sent, self._pending_hello = self._pending_hello, None
        try:
            self._server_hello = self._receive(sent)
        except ThriftHandshakeError as error:
            failure = self._hello_failed(error)
            if failure is error:
                raise
            raise failure from None
        except BaseException as error:
            self._hello_interrupted(error)
            raise
        broken = negotiation_broken(self.options, self._server_hello)
        if broken:
            error = ConnectionBroken(f"hello: the server broke the negotiation: {broken}")
            self._break(error)
            raise error
        if self.phase is ClientPhase.CLOSED:  # a hook of hello's end closed the client
            raise self._phase_error("finish hello")
        self._idle_limit = idle_limit(self._server_hello)
        self._state.apply(ClientEvent.HELLO_ACCEPTED)
        return self._server_hello

    def _answer_pending_hello(self) -> None:
        """Reads a pipelined hello's answer outside any call, within a handshake timeout from now: the
        answer may have waited in the socket since connect(), past hello's own deadline."""
        self._sock.begin_exchange(self.options.timeouts.handshake)
        self._answer_hello()

    def _hello_interrupted(self, error: BaseException) -> None:
        """Hello stopped half-way by something other than its answer (e.g. Ctrl-C in an interceptor):
        whether the server opened a session is unknown, so the connection is given up (BROKEN)."""
        if self._state.allows(ClientEvent.FAILURE) and self._transport is not None:
            self._break(error)

    def _hello_failed(self, error: ThriftHandshakeError) -> BaseException:
        """Closes the transport after a failed hello; returns the error to raise for ``error``. An
        endpoint that refused (full, draining) is tried last for a while, also when the refusal of a
        pipelined hello comes with a call, after connect() returned: a retry goes elsewhere."""
        if self._transport is not None:  # refused, not broken: close and say why
            broken = self.phase is ClientPhase.BROKEN  # the answer could not be read: no refusal
            self._close_transport(ClientEvent.CLOSED if broken else ClientEvent.HELLO_REJECTED)
        if isinstance(error, RemoteApplicationError) and self.phase is ClientPhase.BROKEN:
            self._close_transport()
        failure, self._refused = hello_refusal(self._peer, error)
        if self._refused and self.endpoints is not None:
            self.endpoints.failed((self.host, self.port))
        return failure

    def _declared(self, name: str) -> "tuple[type, ...]":
        """The exception classes ``name`` declares in the IDL (its answers, not failures)."""
        info = self._service_methods.get(name)
        return info.declared_exceptions if info is not None else ()

    def _method(self, name: str) -> _Method:
        method = self._methods.get(name)
        if method is None:
            send = getattr(self._stub, "send_" + name, None)
            if send is None:
                raise ArgumentError(f"unknown method {name!r} for service {self.service.__name__}")
            method = self._methods[name] = (send, getattr(self._stub, "recv_" + name, None),
                                            checker_of(self.service, name))
        return method

    def _invoke(self, name: str, args: Tuple[Any, ...], phase: str, timeout: Optional[float]) -> Any:
        """Sends one request and reads its reply within ``timeout``, recording it; the heart of every phase."""
        return self._receive(self._send(name, args, phase, timeout))

    def _send(self, name: str, args: Tuple[Any, ...], phase: str, timeout: Optional[float],
              checked: bool = False) -> _Sent:
        """Checks the arguments (unless ``checked`` already) and writes the request (within ``timeout``,
        which then bounds its reply)."""
        send, receive, check = self._methods.get(name) or self._method(name)
        if not checked:
            check(args)  # a wrong value is refused before anything is written
        self._seqid = seqid = self._seqid % 0x7FFFFFFF + 1
        hello = self._server_hello
        call = ClientCall(name, seqid, receive is None, self._peer, time.perf_counter(), phase,
                          hello and hello.session_id)
        if self._observed:
            if name != "hello":  # hello's argument carries the auth token
                call.args = args
            self._chain.started(call)  # a hook may make calls of its own on this client: set up for ours after it
            if self._sock is None:  # a hook closed the connection, or its own call broke it
                refused = self._phase_error(f"call {name}")
                self._record_failure(call, refused)
                raise refused
            if call.traceparent is not None:  # an interceptor's (tracing.ClientTracing)
                carry_trace(self._transport, name, args, call.traceparent)
        sock = self._sock
        self._stub._seqid = seqid  # the generated send_<name> writes it; the reply must echo it
        out_before = sock.bytes_out
        deadline = sock.begin_exchange(timeout)  # the timeout bounds the exchange, not the hooks before it
        start = time.perf_counter()
        try:
            send(*args)
        except TTransportException as error:
            self._fail(error, call)
        except Exception as error:
            if sock.bytes_out != out_before:
                self._fail(error, call)
            self._transport.discard_unflushed()
            self._record_failure(call, error)
            raise RequestEncodingError(f"{name}: cannot encode the arguments: {error}") from error
        except BaseException as error:  # e.g. KeyboardInterrupt: part of the request may be out
            self._record_failure(call, error)
            self._break(error)
            raise
        return _Sent(name, phase, receive, seqid, start, time.perf_counter(), sock.bytes_out - out_before,
                     sock.bytes_in, deadline, call)

    def _record_sent(self, sent: _Sent) -> None:
        """The record of a request whose reply is not read (oneway, or goodbye without waiting)."""
        duration = sent.sent - sent.start
        self._end_call(sent.call, Record(sent.phase, sent.name, sent.start - self._epoch, duration, sent.bytes_out,
                                         0, duration), Outcome.OK)
        self._last_activity = sent.sent

    def _receive(self, sent: _Sent) -> Any:
        """Reads the reply to ``sent`` (after a pipelined hello's, if one is unanswered) and records the call."""
        receive = sent.receive
        if receive is None:
            self._record_sent(sent)
            return None
        sock = self._sock
        if self._pending_hello is not None:
            try:
                self._answer_hello()
            except BaseException as error:  # the request went out but is never answered on this connection
                self._record_failure(sent.call, error)
                raise
            if self._observed:  # written before hello's answer, run in its session
                sent.call.session_id = self._server_hello.session_id
            sock = self._sock
            sock.expect_reply(sent.deadline)
            unread = unread_bytes(self._transport)  # read with hello's answer: this reply's own bytes
            sent = sent._replace(in_before=sock.bytes_in - unread)
            if unread:
                sock.first_read_at = time.perf_counter()
        name, phase, start = sent.name, sent.phase, sent.start
        self._replies.expected = (name, sent.seqid)
        result = error_out = None
        try:
            result = receive()
        except TApplicationException as error:
            error_out = RemoteApplicationError(name, error)
            if error.type == TApplicationException.PROTOCOL_ERROR:  # the server closes after this answer
                self._break(error)
            elif not self.options.handshake and sent.in_before == 0:  # without hello, a refusal answers the first call
                error_out = refusal_error(self._peer, error) or error_out
        except TException as error:
            if not isinstance(error, self._declared(name)):  # e.g. TProtocolException: a corrupt reply
                self._fail(error, sent.call)
            error_out = reconnect_asked(name, error) or ServiceError.wrap(error)
        except Exception as error:  # a reply that cannot be decoded: the stream is no longer trusted
            self._fail(error, sent.call)
        except BaseException as error:  # e.g. KeyboardInterrupt: the reply may still arrive; never read it
            self._record_failure(sent.call, error)
            self._break(error)
            raise
        end = time.perf_counter()
        arrived = sock.first_read_at or end
        bytes_in = sock.bytes_in - sent.in_before
        pipelined = phase == "handshake" and self.options.pipeline_hello
        if pipelined and self._transport is not None:
            bytes_in -= unread_bytes(self._transport)  # the next reply may have come in with hello's
        sent_at = sent.sent
        server_us = getattr(result, "processing_us", None) if name in self.options.server_timed_methods else None
        outcome = outcome_of(error_out) if self._observed else _OK  # only interceptors read it
        self._end_call(sent.call, Record(
            phase, name, start - self._epoch, end - start, sent.bytes_out, bytes_in,
            sent_at - start, max(arrived - sent_at, 0.0), end - arrived, server_us,
            None if error_out is None else repr(error_out), pipelined), outcome, result, error_out)
        self._last_activity = end
        if isinstance(error_out, ConnectError):  # refused: the server closes the connection
            self._close_transport()
            self._refused = True
        elif isinstance(error_out, ReconnectAsked):  # the server closes the connection after this answer
            self._break(error_out)
        if error_out is not None:
            raise error_out
        return result

    def _end_call(self, call: ClientCall, record: Record, outcome: Outcome, result: Any = None,
                  error: Optional[BaseException] = None) -> None:
        """The call is over: its record and outcome go to the interceptors (the timeline first)."""
        if not self._observed:  # the timeline is the only one to tell
            self.timeline.add(record)
            return
        call.ended = time.perf_counter()
        call.record, call.outcome, call.result, call.error = record, outcome, result, error
        self._chain.ended(call)

    def _record_failure(self, call: ClientCall, error: BaseException) -> None:
        start = call.started
        record = Record(call.phase, call.method, start - self._epoch, time.perf_counter() - start, error=repr(error))
        self._end_call(call, record, Outcome.FAILED, error=error)

    def _fail(self, error: BaseException, call: ClientCall) -> None:
        """Records the failure, moves to BROKEN (socket closed) and raises the matching error."""
        name = call.method
        self._record_failure(call, error)
        reply = self._sock.first_reply if self._sock is not None else b""
        answered_before = self._sock is not None and self._sock.bytes_in > 0  # so TLS and wire were right
        self._break(error)
        failure = broken_error(name, error, self.options, reply, answered_before)
        if isinstance(failure, CallTimeout) and self.endpoints is not None:  # silent: retries go elsewhere first
            self.endpoints.failed((self.host, self.port))
        raise failure from error

    def _break(self, error: BaseException) -> None:
        """Moves to BROKEN and closes the socket so nothing more is ever read from it."""
        self._broken_by = error
        self._state.apply(ClientEvent.FAILURE)
        self._drop_socket()

    def _drop_socket(self) -> None:
        if self._transport is not None:
            try:
                self._transport.close()
            except OSError:
                pass
        self._sock = self._transport = self._stub = None
        self._methods = {}

    def _close_transport(self, event: ClientEvent = ClientEvent.CLOSED) -> None:
        had_socket = self._transport is not None
        start = time.perf_counter()
        self._drop_socket()
        if had_socket:
            self.timeline.add(Record("disconnect", "close", start - self._epoch, time.perf_counter() - start))
        self._state.apply(event)
