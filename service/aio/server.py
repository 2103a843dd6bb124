"""The asyncio host of a ``SessionProcessor``: the same gate, session, limits and answers as
``HandshakeServer``, with a task per connection instead of a pool thread per busy one.

    server = AsyncHandshakeServer(Handler(), ServerConfig(port=0))
    await server.start()
    ... server.port ...
    await server.stop()

Handlers may be coroutines (``async def process``): they are awaited on the loop, holding no thread.
Plain handlers run on a bounded pool of threads (``ServerLimits.max_threads``), so they never block the
loop. Messages of one connection are served in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import socket
import ssl
import time
from types import ModuleType
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Set, Tuple


from ..config import ServerConfig
from ..decoded_budget import DecodedBudget
from ..gate import SessionProcessor
from ..gate_state import format_peer
from ..metrics import ServerMetrics
from ..peerlog import WarningBudget, clip_for_log
from ..pool import WorkerPool
from ..server.handler_errors import install_handler_error_filter
from ..server.outcome import session_summary
from ..server.connection import ConnectionInfo
from ..server.unix import listen_unix, remove_unix
from ..server.server import ServerFacts, session_settings
from ..states import SESSION_METHODS, ConnectionPhase
from ..wire import no_delay, server_tls_context
from .connection import PARKED, AsyncConnection
from .handlers import awaiting_processor, pool_offload
from .admission import AsyncAdmission
from .opening import open_stream

__all__ = ["AsyncHandshakeServer"]

logger = logging.getLogger(__package__)

#: How long the accept loop pauses after accept() fails for lack of resources (e.g. EMFILE).
_ACCEPT_BACKOFF = 0.1
#: After the grace period: how long aborted work and the last answers get before connections are cut.
_ABORT_WAIT = 2.0
#: After the service's work is aborted: how long the connections get to send the answers that say so.
_ABORT_REPLY_WAIT = 0.5
#: How often the deadlines of reads and drains are checked (they end at most this late).
_SWEEP_EVERY = 0.1
#: Where a connection task's done callback runs (it reads no context variable).
_NO_CONTEXT = contextvars.Context()


class AsyncHandshakeServer(ServerFacts):
    """Hosts ``handler``'s service behind a SessionProcessor on an asyncio event loop.

    ``service`` is the generated service module (found from the handler's Iface when omitted).
    ``services={name: handler, ...}`` instead hosts several services on one port, each called as
    ``name:method`` (Apache's TMultiplexedProtocol), one session per connection shared by them all;
    ``default_service`` names the one that bare method names reach (see ``multiplex``).
    ``on_stop(callback)`` registers work to drain at stop: ``callback(timeout)`` is called (on a
    thread) with the grace period when the server stops, and with 0 when the grace period is over.
    """

    def __init__(self, handler: Any = None, config: Optional[ServerConfig] = None,
                 service: Optional[ModuleType] = None, *, services: Optional[Mapping[str, Any]] = None,
                 default_service: Optional[str] = None) -> None:
        self.config = config or ServerConfig()
        self.handler = handler = self._host(handler, services, service, default_service)
        limits = self.config.limits
        self.metrics = ServerMetrics()
        settings = session_settings(self.config)
        self._warnings = WarningBudget(logger)
        skip = SESSION_METHODS if self.config.handshake else ()
        offload = pool_offload(lambda: self._pool)

        def awaiting(each: Any, module: ModuleType) -> Any:
            generated = module.Processor(each)
            return awaiting_processor(generated, module, skip, offload)

        processor: Any = ({name: awaiting(each, module) for name, (each, module) in self.services.items()}
                          if self.services else awaiting(handler, self.service))
        self.processor = SessionProcessor(
            processor, settings, self.metrics, self.config.handshake, self._warnings, self.config.interceptors,
            DecodedBudget(limits.max_decoded_bytes, limits.decoded_host_share),
            logging.getLevelName(self.config.call_log_level), binds_session=False, default_service=default_service)
        install_handler_error_filter()
        self._tls: Optional[ssl.SSLContext] = None if self.config.tls is None else server_tls_context(self.config.tls)
        self._socket: Optional[socket.socket] = None
        self._unix_file: Optional[Tuple[int, int]] = None  # (device, inode) of our socket file, once listening
        self._bound_port = 0
        self._pool: Optional[WorkerPool] = None
        self._accepting: Optional[asyncio.Task] = None
        self._sweeping: Optional[asyncio.Task] = None
        self._connections: Dict[AsyncConnection, Optional[asyncio.Task]] = {}  # (None: parked)
        self._resume_task = self._resume  # (one bound method for every connection)
        self._callbacks: List[Callable[[float], None]] = []
        self._grace: Optional[float] = None
        self._stop_requested = False
        self._stopped: Optional[asyncio.Event] = None
        self._stopping: Optional[asyncio.Task] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._http_origins: Set[str] = set(self.config.http_origins)
        #: Who gets in when the service is full (with workers, ``workers.Supervisor`` joins it to the siblings').
        self.admission = AsyncAdmission(self.config, self.metrics, self._warnings, self._connections,
                                        self._tls is not None)

    # -- what it is -------------------------------------------------------------------------------

    @property
    def address(self) -> Tuple[str, int]:
        """(host, port) the server listens on (port 0 resolved once listening, kept after the stop);
        (path, 0) on a Unix domain socket."""
        if self.config.unix_socket is not None:
            return self.config.unix_socket, 0
        return self.config.host, self._bound_port or self.config.port

    @property
    def connection_count(self) -> int:
        """Connections accepted and not yet closed (with a session or not)."""
        return len(self._connections)

    def connection_phases(self) -> Dict[str, int]:
        """How many open connections are in each phase (``states.ConnectionPhase``; every phase named)."""
        counts = {phase.value: 0 for phase in ConnectionPhase}
        for connection in list(self._connections):  # (asked from the admin endpoint's threads)
            counts[connection.phase.value] += 1
        return counts

    def connections_now(self) -> List[ConnectionInfo]:
        """The open connections as an observer sees them now, oldest first."""
        loop = self._loop
        now = loop.time() if loop is not None else 0.0
        return [connection.info(now) for connection in list(self._connections)]

    def bytes_now(self) -> Tuple[int, int]:
        """Bytes received and sent on every connection so far, open or closed (TCP: the kernel's count)."""
        return self.metrics.bytes_now(connection.sock for connection in list(self._connections))

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stop_requested

    def stats(self) -> Any:
        """The counts hello's ``stats()`` answers with (a ``ServerStats``)."""
        return self.metrics.snapshot()

    def on_stop(self, callback: Callable[[float], None]) -> None:
        """Registers ``callback(timeout)`` to drain the service's own work when the server stops."""
        self._callbacks.append(callback)

    def allow_http_origin(self, origin: str) -> None:
        """Lets pages from ``origin`` (``scheme://host:port``) call this server with Thrift over HTTP (CORS),
        beside ``ServerConfig.http_origins`` (as ``HandshakeServer.allow_http_origin``)."""
        self._http_origins.add(origin)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, sock: Optional[socket.socket] = None) -> "AsyncHandshakeServer":
        """Listens (on ``sock`` when given, already listening) and starts accepting; returns self."""
        if self._socket is not None or self._stopped is not None:
            raise RuntimeError("this server was already started; a stopped server cannot be restarted")
        if sock is None and self.config.unix_socket is not None:
            sock, self._unix_file = listen_unix(self.config.unix_socket, backlog=1024)
        if sock is None:
            family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
            sock = socket.create_server((self.config.host.strip("[]"), self.config.port), family=family,
                                        backlog=1024)
        sock.setblocking(False)
        self._socket = sock
        self._bound_port = 0 if self.config.unix_socket is not None else sock.getsockname()[1]
        self._stopped = asyncio.Event()
        self._grace_over = asyncio.Event()
        self._loop = self.admission.loop = asyncio.get_running_loop()
        self._pool = WorkerPool(f"thrift-handshake-aio:{self._bound_port}", self.config.limits.max_threads)
        self._accepting = asyncio.get_running_loop().create_task(self._accept_loop())
        self._sweeping = asyncio.get_running_loop().create_task(self._sweep())
        logger.info("listening on %s service=%s wire=%s handshake=%s tls=%s asyncio=%s", self.endpoint,
                    self.service_name, self.config.wire,
                    ("optional" if self.config.optional_hello else "on") if self.config.handshake else "off",
                    "mutual" if self.config.tls and self.config.tls.client_ca_file else bool(self._tls),
                    type(asyncio.get_running_loop()).__module__.split(".")[0])
        return self

    async def serve(self) -> None:
        """Starts (unless started) and serves until a stop is requested and done."""
        if self._socket is None:
            await self.start()
        await self._stopped.wait()

    def request_stop(self, grace: Optional[float] = None) -> None:
        """Asks the server to stop (on the loop's thread, e.g. from ``loop.add_signal_handler``) and
        returns at once; ``grace`` replaces the configured grace period, 0 while stopping ends it now."""
        if grace is not None:
            self._grace = grace
            if self._stopping is not None and grace == 0:
                self._grace_over.set()
        if self._stop_requested or self._stopped is None:
            self._stop_requested = True
            return
        self._stop_requested = True
        until = time.monotonic() + (self.config.grace if self._grace is None else self._grace)
        if self.config.handshake:
            self.processor.drain(until)  # ping and hello answer Draining from now on
        self._stopping = asyncio.get_running_loop().create_task(self._drain(until))

    async def stop(self, grace: Optional[float] = None) -> None:
        """Stops gracefully: no new connection or message; in-flight calls get ``grace`` seconds (default:
        the config's) to finish, then their connections close; returns once every connection is closed."""
        self.request_stop(grace)
        if self._stopping is not None:
            await asyncio.shield(self._stopping)

    async def __aenter__(self) -> "AsyncHandshakeServer":
        return await self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()

    async def _drain(self, until: float) -> None:
        """The graceful stop, done by ``until`` (``time.monotonic()``): first the notice (``drain_notice``,
        with hello; ended by a second request): the port stays open, every session closes (idle ones now,
        busy ones after their reply, each told why), ping and hello answer Draining; then the port
        closes and what is left gets the rest of the grace period."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        notice = min(self.config.drain_notice if self.config.handshake else 0.0, until - time.monotonic())
        if notice > 0:
            logger.info("draining: %d connections open, notice %.1fs, grace %.1fs", len(self._connections), notice,
                        until - time.monotonic())
            for connection in list(self._connections):
                if not connection.awaiting_hello:
                    connection.stop()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(notice):
                    await self._grace_over.wait()
        grace = max(until - time.monotonic(), 0.0)
        logger.info("stopping: %d connections open, grace %.1fs", len(self._connections), grace)
        self._accepting.cancel()
        self._socket.close()  # the sweep goes on: connections still keep their deadlines while draining
        if self._unix_file is not None:
            remove_unix(self.config.unix_socket, self._unix_file)
        # daemon threads (none keeps the process up): one per callback, and one for its abort
        closers = WorkerPool("on_stop", max(2 * len(self._callbacks), 1))
        on_stop = pool_offload(lambda: closers)
        try:
            for connection in list(self._connections):
                connection.stop()
            callbacks = [loop.create_task(on_stop(callback, grace)) for callback in self._callbacks]
            if await _all_done(self._tasks() + list(self.admission.refusals) + callbacks, grace,
                               self._grace_over):
                return
            logger.warning("grace period over: closing %d connections", len(self._connections))
            aborts = [loop.create_task(on_stop(callback, 0.0)) for callback in self._callbacks]
            await _all_done(aborts, _ABORT_WAIT)  # busy handlers return, and answer why
            await _all_done(self._tasks(), _ABORT_REPLY_WAIT)  # those answers go out
            for connection in list(self._connections):
                connection.stop(force=True)
            for task in self.admission.refusals:
                task.cancel()
            if not await _all_done(self._tasks(), _ABORT_REPLY_WAIT):
                for connection in list(self._connections):  # a cancel that ended a reply's drain left the
                    connection.stop(force=True)  # notice that the server stops to its own: this one resets it
            await _all_done(self._tasks() + list(self.admission.refusals), _ABORT_WAIT)
        finally:
            closers.close()
            self._pool.close()
            self._sweeping.cancel()
            stats = self.metrics.snapshot()
            logger.info("stopped after %.1fs: %d connections served, calls %s", loop.time() - started,
                        stats.connections_total, stats.calls)
            self._stopped.set()

    # -- connections --------------------------------------------------------------------------

    async def _sweep(self) -> None:
        """Ends the reads and drains whose deadline has passed, every ``_SWEEP_EVERY`` seconds: one
        pass over the connections instead of a timer armed and cancelled per message."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_SWEEP_EVERY)
            now = loop.time()
            for connection in [c for c in self._connections if c.expires_at <= now]:
                connection.expire(now)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, address = await loop.sock_accept(self._socket)
            except OSError as error:  # e.g. too many open files: back off instead of spinning
                logger.warning("accept failed: %s; pausing accepts for %.1fs", error, _ACCEPT_BACKOFF)
                await asyncio.sleep(_ACCEPT_BACKOFF)
                continue
            no_delay(sock)
            sock.setblocking(False)
            peer = self.endpoint if self._unix_file is not None else format_peer(address)
            here = len(self._connections)
            open_now = self.metrics.open_everywhere(here)  # here, unless workers share the limit
            if open_now >= self.config.limits.max_connections and not await self.admission.room_for(
                    peer.rsplit(":", 1)[0]):
                self.admission.refuse_full(sock, peer, open_now)
                continue
            connection = AsyncConnection(self.config, self.processor, self._warnings, peer, loop.time())
            connection.sock = sock
            connection.http_origins = self._http_origins
            connection.resume_task = self._resume_task
            connection.task = self._connections[connection] = loop.create_task(self._serve(connection, sock))
            self.metrics.opened_or_closed(len(self._connections))
            connection.task.add_done_callback(functools.partial(self._never_served, connection, sock),
                                              context=_NO_CONTEXT)  # (else a copy of this one per connection)
            logger.debug("accepted peer=%s", peer)

    def _never_served(self, connection: AsyncConnection, sock: socket.socket, _: Any) -> None:
        """A task cancelled (by the stop) before it began: its socket is closed here."""
        if connection in self._connections and not connection.begun:
            moved = self.metrics.socket_closing(sock)
            del self._connections[connection]
            self.metrics.opened_or_closed(len(self._connections))
            self.metrics.bytes_closed(moved)
            sock.close()

    async def _serve(self, connection: AsyncConnection, sock: socket.socket,
                     resumed: Optional[Awaitable[Any]] = None) -> None:
        """Serves ``connection`` from its accept (or, ``resumed``, from where it parked) until it ends
        (released, then logged) or parks."""
        connection.begun = True
        writer = None
        outcome = None
        serving: Awaitable[Any]
        try:
            if resumed is None:
                try:
                    stream, identity, mismatch = await open_stream(
                        sock, self._tls, connection.accepted_at + self.config.limits.handshake_timeout)
                except ConnectionError as error:
                    self._warnings.warning("dropped peer=%s: %s", connection.peer, error)
                    return
                writer = stream[1]
                serving = connection.run(stream, identity, mismatch)
            else:
                writer, serving = connection.stream, resumed
            try:
                outcome = await serving
            except Exception as error:  # a defect here, not the peer's: said with its traceback, then closed
                logger.exception("dropped peer=%s: the server failed serving it: %s", connection.peer,
                                 clip_for_log(error))
                return
        finally:
            if outcome is PARKED:
                self._connections[connection] = None
            else:
                moved = self.metrics.socket_closing(sock)
                if writer is not None:
                    writer.close()
                else:
                    sock.close()
                if connection.state is not None:
                    connection.state.close()
                del self._connections[connection]
                self.metrics.opened_or_closed(len(self._connections))
                self.metrics.bytes_closed(moved)  # once it no longer counts among the open ones
        if outcome is not None and outcome is not PARKED:  # logged once released: a reader of "closed" finds its slot free
            self._log_end(connection, *outcome)

    def _tasks(self) -> List[asyncio.Task]:
        """The tasks serving connections now (a parked connection has none)."""
        return [task for task in self._connections.values() if task is not None]

    def _resume(self, connection: AsyncConnection) -> None:
        """A parked connection's task, started again (on the loop: its stream's callback, or its stop,
        eviction or deadline)."""
        connection.task = self._connections[connection] = asyncio.get_running_loop().create_task(
            self._serve(connection, connection.sock, connection.resume()))

    def _log_end(self, connection: AsyncConnection, event: str, reason: str) -> None:
        state = connection.state
        summary = "" if state is None else session_summary(state)
        guess = reason.startswith("hello refused")  # a wrong token: inside the budget too
        log = self._warnings.warning if event != "closed" else self._warnings.info if guess else logger.info
        log("%s peer=%s session=%s%s: %s", event, connection.peer, state and state.context.session_id, summary, reason)



async def _all_done(tasks: List[Any], timeout: float, cut_short: Optional[asyncio.Event] = None) -> bool:
    """Whether every one of ``tasks`` is done within ``timeout`` (and before ``cut_short`` is set)."""
    if not tasks:
        return True
    everything = asyncio.ensure_future(asyncio.wait(tasks))
    waiting = [everything]
    if cut_short is not None:
        waiting.append(asyncio.ensure_future(cut_short.wait()))
    await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for task in waiting:
        task.cancel()
    return all(task.done() for task in tasks)
