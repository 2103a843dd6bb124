"""The phased client on asyncio: many calls in flight on one connection, replies matched by seqid.

    async with AsyncClient("127.0.0.1", 9090, service=HandshakeService) as client:  # CONNECTING -> READY
        reply = await client.process(request)
        replies = await asyncio.gather(*(client.echo(str(i)) for i in range(100)))  # about one round trip
        service = client.typed(HandshakeService.Iface)                             # await service.echo("x")

The same phases (``states.CLIENT_TRANSITIONS``), timeline, interceptors, options and errors as the
threaded ``Client``, and the same rules (``client_core``). Requests are written as they are made, without
waiting for earlier replies; each reply goes to the call with its seqid, in whatever order the server
answers. Cancelling a call ends only that call: its reply is read and dropped when it comes. A timeout
(``Timeouts.call``, from the call's start) or a transport error fails every call in flight with the same
error type and leaves the client BROKEN, the socket closed; only ``reconnect()`` (or a retry of an
idempotent method, ``RetryPolicy``) leaves BROKEN. With ``pipeline_hello`` the calls written behind hello
await its answer first. ``aio.stubs`` writes a service's interface with the IDL's types for ``typed``.
One client belongs to one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import ModuleType
from typing import Any, Callable, List, Optional, Tuple, Type, TypeVar, Union, cast

from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TApplicationException, TException, TMessageType
from thrift.transport.TTransport import TTransportException

from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import Draining, Farewell, HandshakeRejected, ServerHello

from ..client_core import (ClientBase, broken_error, client_hello, idle_limit, negotiation_broken, peer_name,
                           reconnect_asked, refusal_error, with_inner_cause)
from ..client_methods import THRIFT_SERVICE, ServiceMethods, TypedView
from ..config import DEFAULT_HOST, DEFAULT_PORT, ClientOptions
from ..endpoints import Endpoints, connect_any_async
from ..errors import (ConnectError, ConnectionBroken, HandshakeFailed, PhaseError, ReconnectAsked,
                      RemoteApplicationError, RequestEncodingError, ServerDraining, ServiceError, ThriftHandshakeError)
from ..interceptors import ClientCall
from ..states import CLIENT_TRANSITIONS, ClientEvent, ClientPhase, StateMachine
from ..timing import Record
from ..wire import explain_tls_error
from .behind import WrittenBehind
from .codec import MessageCodec
from .fastpath import Reply
from .reply_stream import ReplyStream
from .inflight import InFlight

__all__ = ["AsyncClient"]

logger = logging.getLogger(__name__)

_Iface = TypeVar("_Iface")
_ANSWERS = (TMessageType.REPLY, TMessageType.EXCEPTION)  # the message types a reply may have


class AsyncClient(ClientBase, ServiceMethods):
    """A connection to a Thrift service on asyncio, phase by phase, with calls pipelined.

    ``service``, ``options`` and the ways to call are those of ``Client``: ``await client.call("echo",
    "hi")``, ``await client.echo("hi")``, or typed through ``client.typed(Service.Iface)``. As there,
    ``host`` may be ``Endpoints`` (failover between addresses), ``options.multiplexed`` names the service
    on a port hosting several and ``options.unix_socket`` connects to a path.
    """

    def __init__(self, host: Union[str, Endpoints] = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 options: Optional[ClientOptions] = None, service: ModuleType = SessionService) -> None:
        super().__init__(host, port, options, service)
        self._state = StateMachine(CLIENT_TRANSITIONS, ClientPhase.NEW, self._log_change)
        self._steps_lock: Optional[asyncio.Lock] = None  # made in the running loop (Python 3.9 binds it at creation)
        self._epoch = self._last_activity = time.perf_counter()
        self._broken_by: Optional[BaseException] = None
        self._broken_as: Callable[[str], ConnectionBroken] = ConnectionBroken  # the error a call gets once BROKEN
        self._refused = False  # CLOSED because connecting failed or the server refused us (retries reopen it)
        self._notice_unheard = False  # the server's notice (draining, evicted) came while no call was in flight
        self._server_hello: Optional[ServerHello] = None
        self._hello_answer: Optional["asyncio.Task[Optional[ServerHello]]"] = None  # a pipelined hello's
        self._pipelined_session: Optional[str] = None  # its session, as its reply says (for the calls behind it)
        self._idle_limit: Optional[float] = None
        self.farewell: Optional[Farewell] = None
        self._stream: Optional[ReplyStream] = None
        self._codec = MessageCodec(service, self.options.wire, self.options.max_reply_bytes,
                                   self.options.max_reply_items, self.options.multiplexed, f"{self.host}:{self.port}")
        self._inflight = InFlight(self._epoch, self._chain, self._timed_out)
        self._replies = 0  # replies read on this connection (a refusal answers the first)
        self._behind = WrittenBehind()  # one-way calls the server may not have read (see ``behind``)
        self._resend: List[Tuple[str, Tuple[Any, ...]]] = []  # one-way calls the server never read: sent again

    # -- phases -------------------------------------------------------------------------------

    @property
    def server_hello(self) -> Optional[ServerHello]:
        return self._server_hello

    @property
    def _steps(self) -> asyncio.Lock:
        """Connect, goodbye and close one at a time; calls run alongside."""
        if self._steps_lock is None:
            self._steps_lock = asyncio.Lock()
        return self._steps_lock

    @property
    def in_flight(self) -> int:
        """Calls written whose reply has not been handed out yet (cancelled ones included until it comes)."""
        return len(self._inflight)

    async def connect(self) -> Optional[ServerHello]:
        """Opens the connection and says hello, as ``Client.connect`` (same errors, same phases; with
        ``Endpoints``, the same failover to the next address)."""
        async with self._steps:
            return await self._connect()

    async def _connect(self) -> Optional[ServerHello]:
        if self.endpoints is None:
            return await self._connect_to(self.host, self.port)
        return await connect_any_async(self.endpoints, self._connect_to_endpoint)

    async def _connect_to_endpoint(self, host: str, port: int) -> Optional[ServerHello]:
        """``_connect_to`` one of several addresses: a hello that broke leaves the client CLOSED, so the
        next address can be tried."""
        try:
            return await self._connect_to(host, port)
        except ConnectionBroken:
            if self.phase is ClientPhase.BROKEN:
                self._close_stream()
            raise

    async def _connect_to(self, host: str, port: int) -> Optional[ServerHello]:
        self.host, self.port, self._peer = host, port, peer_name(self.options, host, port)
        self._require(ClientEvent.CONNECT, "connect")
        self._state.apply(ClientEvent.CONNECT)
        await self._open()
        if not self.options.handshake:
            self._state.apply(ClientEvent.OPENED_WITHOUT_HELLO)
            return None
        self._state.apply(ClientEvent.TRANSPORT_OPEN)
        try:
            call, future = self._send("hello", (client_hello(self.options),), "handshake",
                                      self.options.timeouts.handshake)
        except RequestEncodingError:  # nothing was sent: no session to wait for
            self._close_stream(ClientEvent.HELLO_REJECTED)
            raise
        if not self.options.pipeline_hello:
            return await self._answer_hello(call, future)
        self._state.apply(ClientEvent.HELLO_PIPELINED)
        self._hello_answer = asyncio.ensure_future(self._answer_hello(call, future))
        return None

    async def reconnect(self) -> Optional[ServerHello]:
        """Closes whatever is left of the connection, then connects again with a new session."""
        await self.close()
        return await self.connect()

    async def goodbye(self) -> Farewell:
        """Ends the session (READY -> CLOSING -> CLOSED) and returns the server's Farewell. Calls still
        in flight are answered first (the server answers in order)."""
        async with self._steps:
            return await self._goodbye()

    async def close(self) -> Optional[Farewell]:
        """Says goodbye if a session is open, then closes; idempotent and never raises for I/O. Calls
        still in flight when the connection closes fail with ConnectionBroken."""
        async with self._steps:
            try:
                if self.phase in (ClientPhase.READY, ClientPhase.HELLO_PENDING) and self.options.handshake:
                    try:
                        if self.options.await_farewell:
                            return await self._goodbye()
                        await self._write_goodbye()
                    except (ConnectionBroken, RemoteApplicationError, ServiceError, HandshakeFailed,
                            ConnectError) as error:
                        logger.info("goodbye failed while closing: %s", error)
            finally:
                self._close_stream()
                self._refused = False
            return None

    async def __aenter__(self) -> "AsyncClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    # -- calls --------------------------------------------------------------------------------

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Calls ``method`` and returns its result (None for oneway/void), as ``Client.call``; any number
        of calls may be awaited at once (``asyncio.gather``). With ``options.retry``, a method it marks
        idempotent is retried as by ``Client``: a broken connection (or a server down or full) is reopened
        once for every call that found it so, with a new session."""
        args = self._arguments(method, args, kwargs)
        policy = None if self.options.retry is None else self._retry_policy(method)
        if policy is None:
            return await self._call_once(method, args)
        delay = policy.backoff
        for attempt in range(1, policy.attempts + 1):
            try:
                await self._reopen_if_broken()
                return await self._call_once(method, args)
            except (ConnectionBroken, ConnectError) as error:
                if attempt == policy.attempts:
                    raise
                logger.info("%s failed (%s); retry %d of %d in %.2fs", method, error, attempt, policy.attempts - 1,
                            delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, policy.max_backoff)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _reopen_if_broken(self) -> None:
        """A new connection and session if the client broke or was refused (never if its user closed it)."""
        if self.phase is ClientPhase.BROKEN or self._refused or self._steps.locked():  # locked: another call reopens
            async with self._steps:
                if self.phase is ClientPhase.BROKEN or self._refused:  # not already reopened by another call
                    self._close_stream()
                    self._refused = False
                    await self._connect()

    async def _call_once(self, method: str, args: Tuple[Any, ...]) -> Any:
        if self.options.reconnect_when_asked and (isinstance(self._broken_by, ReconnectAsked) or self._resend):
            await self._follow_reconnect()  # another call was answered "reconnect": one new connection for all
        try:
            call, future = self._call_on_this_connection(method, args)
            stream = self._stream
            if future is None or self._hello_answer is not None or stream is None or stream.paused:
                return await self._reply(call, future)
            try:  # what ``_reply`` does when there is nothing else to wait for (a coroutine less per call)
                return await future
            except asyncio.CancelledError:
                self._inflight.abandon(call.seqid)
                raise
        except ReconnectAsked:  # not run (nor was anything written behind it): any method may be sent again
            if not self.options.reconnect_when_asked:
                raise
            await self._follow_reconnect()
        return await self._reply(*self._call_on_this_connection(method, args))

    async def _follow_reconnect(self) -> None:
        """Connects again and says hello, once for every call that found the connection asked to
        reconnect, then sends again the one-way calls the server never read."""
        async with self._steps:
            if isinstance(self._broken_by, ReconnectAsked) and self.phase is ClientPhase.BROKEN:
                start, asked = time.perf_counter(), self._broken_by
                logger.info("%s; reconnecting", asked)
                self._close_stream()
                failure: Optional[BaseException] = None
                try:
                    await self._connect()
                except BaseException as error:  # the calls did not run; each learns why they cannot be sent
                    failure = error
                    raise
                finally:
                    self.timeline.add(Record("reconnect", self._peer, start - self._epoch, time.perf_counter() - start,
                                             error=None if failure is None else repr(failure)))
            resend, self._resend = self._resend, []
            for name, args in resend:
                self._write(self._start_call(name, args, "call"), args, oneway=True)

    def _call_on_this_connection(self, method: str, args: Tuple[Any, ...]
                                 ) -> Tuple[ClientCall, "Optional[asyncio.Future[Any]]"]:
        """Writes the call if the phase allows it (a coroutine less per call than awaiting here)."""
        if self._notice_unheard and self.phase is ClientPhase.BROKEN:  # as the threaded client reads it
            self._notice_unheard = False
            raise self._broken_as(method)
        try:
            self._state.apply(ClientEvent.CALL)  # in the phases that allow it, the phase stays
        except PhaseError:
            raise self._phase_error(f"call {method}") from None
        if self._idle_limit is not None and time.perf_counter() - self._last_activity >= self._idle_limit:
            self._check_idle(method)  # breaks the client
        call = self._start_call(method, args, "call")
        return call, self._write(call, args, call.oneway, self.options.timeouts.call)

    def typed(self, iface: Type[_Iface]) -> _Iface:
        """As ``Client.typed``, each method awaited; ``iface`` may also be the service's async interface
        written by ``python -m thrift_handshake.aio.stubs`` (the IDL's types, coroutines for mypy)."""
        if getattr(iface, THRIFT_SERVICE, None) in {cls.__module__ for cls in self.service.Client.__mro__}:
            return cast(_Iface, TypedView(self))
        return super().typed(iface)

    # -- internals ----------------------------------------------------------------------------

    def _log_change(self, old: ClientPhase, event: ClientEvent, new: ClientPhase) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s --%s--> %s", self._peer, old.value, event.value, new.value)

    async def _open(self) -> None:
        start = time.perf_counter()
        failure: Optional[BaseException] = None
        stream = ReplyStream(self.options, self._on_reply, self._on_end, self._codec.cut)
        try:
            await stream.open(self.host, self.port)
        except (OSError, ValueError, asyncio.TimeoutError) as error:  # refused, unreachable, TLS, no time
            failure = error
        except BaseException:  # cancelled while connecting: a clean CLOSED behind
            stream.end(None)
            self._state.apply(ClientEvent.CONNECT_FAILED)
            raise
        self.timeline.add(Record("connect", self._peer, start - self._epoch, time.perf_counter() - start,
                                 error=None if failure is None else (with_inner_cause(failure) or repr(failure))))
        self._refused = failure is not None
        if failure is not None:
            self._state.apply(ClientEvent.CONNECT_FAILED)
            hint = explain_tls_error(failure)
            reason = with_inner_cause(failure) or "no connection within the connect timeout"
            raise ConnectError(f"cannot connect to {self._peer}: {reason}" + (f": {hint}" if hint else "")) \
                from failure
        self._stream = stream
        self._broken_by = None
        self._server_hello = self._idle_limit = self._hello_answer = self._pipelined_session = None
        self._replies = 0
        self._notice_unheard = False
        self._behind.reset()

    async def _answer_hello(self, call: ClientCall, future: "Optional[asyncio.Future[Any]]") -> ServerHello:
        """Awaits hello's answer: READY (CLOSING for a pipelined goodbye), or the typed refusal, closed."""
        try:
            answer = await self._reply(call, future)
        except ServiceError as error:
            self._close_stream(self._refused_event())
            if isinstance(error, HandshakeRejected):
                raise HandshakeFailed(error) from None
            if isinstance(error, Draining):  # a retry (or a balancer) finds another server
                self._refused = True
                self._endpoint_refused()
                raise ServerDraining(self._peer, error) from None
            raise
        except RemoteApplicationError as error:
            self._close_stream(self._refused_event())
            refused = refusal_error(self._peer, error.error)
            self._refused = refused is not None
            self._endpoint_refused()
            raise refused or error from None
        except BaseException as error:  # cancelled: whether the server opened a session is unknown
            if not isinstance(error, ThriftHandshakeError) and self._state.allows(ClientEvent.FAILURE):
                self._break(error)
            raise
        if self.phase is ClientPhase.BROKEN:  # by what came after the answer
            raise self._broken_as("hello") from self._broken_by
        broken = negotiation_broken(self.options, answer)
        if broken:
            failure = ConnectionBroken(f"hello: the server broke the negotiation: {broken}")
            self._break(failure)
            raise failure
        self._server_hello = answer
        self._hello_answer = None
        self._idle_limit = idle_limit(answer)
        self._state.apply(ClientEvent.HELLO_ACCEPTED)
        return answer

    def _endpoint_refused(self) -> None:
        """An endpoint that refused (full, draining) is tried last for a while, also when the refusal of
        a pipelined hello comes with a call, after connect() returned: a retry goes elsewhere."""
        if self._refused and self.endpoints is not None:
            self.endpoints.failed((self.host, self.port))

    def _refused_event(self) -> ClientEvent:
        """How a refused hello ends: HELLO_REJECTED, or CLOSED if the connection broke meanwhile."""
        return ClientEvent.HELLO_REJECTED if self._state.allows(ClientEvent.HELLO_REJECTED) else ClientEvent.CLOSED

    async def _goodbye(self) -> Farewell:
        self._require(ClientEvent.GOODBYE, "say goodbye")
        self._check_idle("goodbye")
        self._state.apply(ClientEvent.GOODBYE)
        try:
            self.farewell = await self._exchange("goodbye", (), "disconnect", self.options.timeouts.call)
        finally:
            self._close_stream()
        return self.farewell

    async def _write_goodbye(self) -> None:
        """Goodbye without waiting for the Farewell: written (the server ends the session by it), not read.
        A pipelined hello's answer is read first (else it would meet a closed socket)."""
        self._require(ClientEvent.GOODBYE, "say goodbye")
        self._check_idle("goodbye")
        if self._hello_answer is not None:
            await self._hello_answer
        self._state.apply(ClientEvent.GOODBYE)
        call = self._start_call("goodbye", (), "disconnect")
        self._write(call, (), oneway=True)

    def _start_call(self, name: str, args: Tuple[Any, ...], phase: str) -> ClientCall:
        """Checks the arguments (nothing is written for a wrong one) and starts the call for the interceptors."""
        oneway = self._codec.checked(name, args)
        seqid = self._inflight.next_seqid()
        hello = self._server_hello
        call = ClientCall(name, seqid, oneway, self._peer, time.perf_counter(), phase, hello and hello.session_id)
        if name != "hello":  # hello's argument carries the auth token
            call.args = args
        self._chain.started(call)
        return call

    def _write(self, call: ClientCall, args: Tuple[Any, ...], oneway: bool,
               timeout: Optional[float] = None) -> Optional["asyncio.Future[Any]"]:
        """Encodes and writes the request; for a two-way call returns the future of its reply."""
        stream = self._stream
        if stream is None or stream.ended:  # a hook closed the connection, or a failure broke it
            refused = self._phase_error(f"call {call.method}")
            self._inflight.failed(call, refused)
            raise refused
        try:
            data = self._codec.encode(call.method, args, call.seqid, call.traceparent)  # (tracing.ClientTracing's)
        except Exception as error:  # nothing was written: the connection stays usable
            self._inflight.failed(call, error)
            raise RequestEncodingError(f"{call.method}: cannot encode the arguments: {error}") from error
        stream.write(data, not self._inflight.waiting)  # alone: no other call's reply to wait with
        if oneway:
            self._behind.written(call.seqid, call.method, args, False)
            self._inflight.written(call, len(data))
            future = None
        else:  # waits from now
            future = self._inflight.add(call, len(data), timeout)
            self._behind.written(call.seqid, call.method, args, True)
        self._last_activity = time.perf_counter()
        return future

    async def _exchange(self, name: str, args: Tuple[Any, ...], phase: str, timeout: Optional[float]) -> Any:
        """Writes one request and awaits its reply (the heart of every phase)."""
        return await self._reply(*self._send(name, args, phase, timeout))

    def _send(self, name: str, args: Tuple[Any, ...], phase: str,
              timeout: Optional[float]) -> Tuple[ClientCall, "Optional[asyncio.Future[Any]]"]:
        call = self._start_call(name, args, phase)
        return call, self._write(call, args, call.oneway, timeout)

    async def _reply(self, call: ClientCall, future: "Optional[asyncio.Future[Any]]") -> Any:
        """The reply to a written request (None for oneway), after a pipelined hello's answer (whose
        refusal it raises); cancelling it drops the reply."""
        stream, hello = self._stream, self._hello_answer
        try:
            if stream is not None and stream.paused:
                await stream.drain()
            if hello is not None and call.method != "hello":
                try:
                    await asyncio.shield(hello)
                except Exception:
                    if future is not None and future.done() and not future.cancelled():
                        future.exception()  # failed with the connection: hello's refusal is what is raised
                    raise
            return None if future is None else await future
        except asyncio.CancelledError:
            self._inflight.abandon(call.seqid)
            raise

    def _on_reply(self, message: Union[bytes, Reply], arrived: float) -> None:
        """A whole reply arrived (or was cut and decoded, ``Reply``): handed to its call, or dropped if
        that call was cancelled."""
        decode: Callable[[str], Any]
        if isinstance(message, Reply):
            name, message_type, seqid, size, decode = message.name, message.type, message.seqid, message.size, \
                message.outcome
        else:
            try:
                name, message_type, seqid = self._codec.header(message)
            except Exception as error:
                self._break(error)
                return
            if (name, seqid) == ("", 0) and message_type == TMessageType.EXCEPTION:  # the server ends the session
                self._notice_unheard = not self._inflight  # no call hears it: the next one does
                self._break(self._codec.notice())
                return
            size, decode = len(message), self._codec.decode
        waiting = self._inflight.waiting.get(seqid)
        if waiting is None or name != waiting.call.method or message_type not in _ANSWERS:
            expected = "no call" if waiting is None else f"the call {waiting.call.method}"
            self._break(TProtocolException(TProtocolException.INVALID_DATA,
                                           f"a reply for {name or '?'} (seqid {seqid}, message type {message_type}) "
                                           f"came for {expected} in flight: a stale or foreign reply"))
            return
        self._replies += 1
        self._last_activity = time.perf_counter()
        if waiting.abandoned or waiting.future.cancelled():
            self._inflight.take(seqid)
            asked = self._asked_to_reconnect(name, decode)  # still says what becomes of the calls behind it
            if asked is not None:
                self._reconnect_asked(seqid, asked)
                return
            self._behind.answered(seqid)
            logger.debug("%s: the reply to cancelled %s (seqid %d) dropped", self._peer, name, seqid)
            return
        result: Any = None
        error_out: Optional[ThriftHandshakeError] = None
        try:
            result = decode(name)
        except TApplicationException as error:
            error_out = RemoteApplicationError(name, error)
            if not self.options.handshake and self._replies == 1:  # a refusal answers the first call
                error_out = refusal_error(self._peer, error) or error_out
        except TException as error:
            if not isinstance(error, self._service_methods[name].declared_exceptions):
                self._break(error, waiting.call)  # e.g. a corrupt reply: the stream is no longer trusted
                return
            error_out = reconnect_asked(name, error) or ServiceError.wrap(error)
        except Exception as error:  # a reply that cannot be decoded
            self._break(error, waiting.call)
            return
        server_us = getattr(result, "processing_us", None) if name in self.options.server_timed_methods else None
        pipelined = name == "hello" and self.options.pipeline_hello
        if pipelined and result is not None:  # the calls written behind it run in its session
            self._pipelined_session = result.session_id
        elif waiting.call.session_id is None and name != "hello":
            waiting.call.session_id = self._pipelined_session
        self._inflight.answered(seqid, arrived, size, result, error_out, server_us, pipelined)
        if error_out is None:
            pass
        elif isinstance(error_out, RemoteApplicationError) and error_out.type == TApplicationException.PROTOCOL_ERROR:
            self._break(error_out.error)  # the server closes after this answer
        elif isinstance(error_out, ConnectError):  # refused: the server closes the connection
            self._close_stream()
            self._refused = True
        elif isinstance(error_out, ReconnectAsked):
            self._reconnect_asked(seqid, error_out)
            return
        self._behind.answered(seqid)

    def _asked_to_reconnect(self, name: str, decode: Callable[[str], Any]) -> Optional[ReconnectAsked]:
        """Whether the reply to a cancelled call, whose header was just read, is "reconnect"."""
        try:
            decode(name)
        except TException as error:
            return reconnect_asked(name, error)
        except Exception:  # undecodable: dropped with the call, as any reply to a cancelled one
            pass
        return None

    def _reconnect_asked(self, seqid: int, asked: ReconnectAsked) -> None:
        """The server closes after this answer: the calls and one-way calls written behind ``seqid`` never
        ran; the calls learn it from the broken connection, the one-way calls are kept to send again."""
        self._resend = self._behind.unread(seqid) if self.options.reconnect_when_asked else []
        self._break(asked)

    def _on_end(self, error: Optional[BaseException]) -> None:
        """The stream ended. Closed by the client (its stream already dropped), or by the server after
        the answer that ends a session (hello refused, goodbye: the step awaiting it closes), nothing
        is to be done; else the connection broke."""
        if self._stream is None:
            return
        if error is None and not self._inflight and self.phase in (ClientPhase.HANDSHAKING, ClientPhase.CLOSING):
            return
        self._break(error or TTransportException(TTransportException.END_OF_FILE, "the server closed the connection"))

    def _timed_out(self, seqid: int) -> None:
        waiting = self._inflight.get(seqid)
        timeout = TTransportException(TTransportException.TIMED_OUT, "no reply within the timeout")
        if self.endpoints is not None:  # silent: retries and reconnects go elsewhere first
            self.endpoints.failed((self.host, self.port))
        self._break(timeout, waiting.call if waiting is not None else None)

    def _break(self, error: BaseException, culprit: Optional[ClientCall] = None) -> None:
        """Moves to BROKEN, closes the socket and fails every call in flight with the same error type."""
        stream, self._stream = self._stream, None
        first_reply = stream.first_reply if stream is not None else b""
        answered_before = self._replies > 0
        self._broken_by = error
        if self._state.allows(ClientEvent.FAILURE):
            self._state.apply(ClientEvent.FAILURE)
        if stream is not None:
            stream.end(None)

        def broken_as(name: str) -> ConnectionBroken:
            failure = broken_error(name, error, self.options, first_reply, answered_before)
            failure.__cause__ = error
            return failure

        self._broken_as = broken_as
        self._inflight.fail_all(broken_as, culprit)

    def _close_stream(self, event: ClientEvent = ClientEvent.CLOSED) -> None:
        """Closes the connection (calls still in flight fail) and applies ``event``."""
        stream, self._stream = self._stream, None
        if stream is not None:
            start = time.perf_counter()
            stream.end(None, graceful=True)
            self.timeline.add(Record("disconnect", "close", start - self._epoch, time.perf_counter() - start))
        self._inflight.fail_all(lambda name: ConnectionBroken(f"{name}: the client closed the connection while "
                                                              "the call was in flight"))
        self._state.apply(event)
