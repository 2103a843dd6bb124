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
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar, Union, cast

from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import Farewell, ServerHello

from ..client_core import client_hello, hello_refusal, idle_limit, negotiation_broken, peer_name, with_inner_cause
from ..client_methods import THRIFT_SERVICE, ServiceMethods, TypedView
from ..config import DEFAULT_HOST, DEFAULT_PORT, ClientOptions
from ..endpoints import Endpoints, connect_any_async
from ..errors import (ConnectError, ConnectionBroken, HandshakeFailed, RemoteApplicationError, RequestEncodingError,
                      ServiceError, ThriftHandshakeError)
from ..interceptors import ClientCall
from ..states import CLIENT_TRANSITIONS, ClientEvent, ClientPhase, StateMachine
from ..timing import Record
from ..wire import explain_tls_error
from .behind import WrittenBehind
from .calls import CallPath
from .codec import MessageCodec
from .inflight import InFlight
from .reply_stream import ReplyStream

__all__ = ["AsyncClient"]

logger = logging.getLogger(__name__)

_Iface = TypeVar("_Iface")


class AsyncClient(CallPath, ServiceMethods):
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
        if self._observed:  # the user's interceptors: the chain; else the timeline alone, without it
            self._inflight = InFlight(self._epoch, self._chain.ended, self._timed_out, self._chain.started)
        else:
            self._inflight = InFlight(self._epoch, self.timeline.call_ended, self._timed_out)
        self._methods: Dict[str, Tuple[bool, Callable[[Tuple[Any, ...]], None]]] = {}  # (``calls._send``)
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
        self._inflight.loop = asyncio.get_running_loop()
        self._broken_by = None
        self._server_hello = self._idle_limit = self._hello_answer = self._pipelined_session = None
        self._replies = 0
        self._notice_unheard = False
        self._behind.reset()

    async def _answer_hello(self, call: ClientCall, future: "Optional[asyncio.Future[Any]]") -> ServerHello:
        """Awaits hello's answer: READY (CLOSING for a pipelined goodbye), or the typed refusal, closed."""
        try:
            answer = await self._reply(call, future)
        except (ServiceError, RemoteApplicationError) as error:
            self._close_stream(self._refused_event())
            failure, self._refused = hello_refusal(self._peer, error)
            self._endpoint_refused()
            if failure is error:
                raise
            raise failure from None
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
        self._send("goodbye", (), "disconnect", None, oneway=True)
