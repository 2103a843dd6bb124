"""The production host of a ``SessionProcessor``: Apache Thrift's TThreadedServer with limits and a stop.

The wiring stays the tutorial's (a processor, a TServerSocket, a transport factory and a protocol
factory, all held by TThreadedServer); the parts come from ``gate`` (the processor) and ``wire``
(the stack). This module composes the rest: it listens, accepts, and runs the watch where idle
connections wait; ``admission`` decides who may hold a connection, ``loop`` serves a connection's
messages on a pool thread, ``outcome`` words how each ended, ``drain`` stops gracefully (stop accepting,
let in-flight calls finish within the grace period, close idle connections) from any thread or a signal
handler.

    server = HandshakeServer(CalculatorHandler(), ServerConfig(port=0)).start()  # a background thread
    ... server.port ...
    server.stop()

The service is found from the generated ``Iface`` the handler implements (or pass ``service=``).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import ModuleType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from thrift.server.TServer import TThreadedServer
from thrift.transport import TSocket

from ..config import ServerConfig
from ..contract import coroutine_methods, describe_service, service_of
from ..decoded_budget import DecodedBudget
from ..gate import SessionProcessor
from ..gate_state import format_peer
from ..metrics import ServerMetrics
from ..peerlog import WarningBudget
from ..pool import ReadinessWatch, WorkerPool
from ..session import SessionSettings
from ..states import ConnectionEvent, ConnectionPhase, SocketMode
from ..wire import ConnectionSocket, frame_limit, no_delay, protocol_factory, server_tls_context, transport_factory
from .admission import Admission, tell_evicted
from .answers import Answers
from .connection import Connection, ConnectionInfo
from .drain import Drain
from .handler_errors import install_handler_error_filter
from .loop import MessageLoop
from .opening import Opening
from .outcome import closing_outcome, session_summary
from .unix import listen_unix, remove_unix

__all__ = ["HandshakeServer"]

logger = logging.getLogger(__package__)  # the server's one logger: operators filter on its name

#: The watch's loop wakes at least this often to close waiting connections whose time is up.
_WATCH_TICK = 0.1
#: What a session closed by the drain is told (its client raises it from its next call).
DRAINING_TOLD = "draining: the server is stopping and closed this session; connect again (to another server)"
#: How long the accept loop pauses after accept() fails for lack of resources (e.g. EMFILE).
_ACCEPT_BACKOFF = 0.1


def session_settings(config: ServerConfig) -> SessionSettings:
    """What a server with ``config`` tells each session (hello's negotiation, its limits)."""
    return SessionSettings(
        server_name=config.server_name, versions=config.versions, features=config.features,
        auth_token=config.auth_token, idle_timeout_ms=int(config.limits.idle_timeout * 1000),
        max_message_bytes=config.limits.max_message_bytes, optional_hello=config.optional_hello,
        max_connection_age=config.limits.max_connection_age)


class ServerFacts:
    """Where a server (threaded or asyncio) listens and what it hosts, told the same way by both, from
    their ``config``, ``address``, ``services`` and ``service``."""

    config: ServerConfig
    services: Mapping[str, Tuple[Any, ModuleType]]  # name -> (handler, generated module)
    service: ModuleType

    @property
    def address(self) -> Tuple[str, int]:
        """(host, port) the server listens on; (path, 0) on a Unix domain socket."""
        raise NotImplementedError

    @property
    def endpoint(self) -> str:
        """Where clients connect, as the log says it: host:port, or unix:PATH."""
        if self.config.unix_socket is not None:
            return f"unix:{self.config.unix_socket}"
        return format_peer(self.address)

    @property
    def service_name(self) -> str:
        """The IDL name of the service it hosts, or the names of several (comma-separated)."""
        return ",".join(self.services) or self.service.__name__.rsplit(".", 1)[-1]

    @property
    def port(self) -> int:
        return self.address[1]

    def _host(self, handler: Any, services: Optional[Mapping[str, Any]], service: Optional[ModuleType],
              default_service: Optional[str]) -> Any:
        """Sets ``services`` and ``service`` from a constructor's arguments (one handler, or several by
        name); returns the handler the log names (the default service's). Raises on a contradiction."""
        if (handler is None) == (services is None):
            raise TypeError(f"{type(self).__name__} takes a handler, or several by name (services=...): one of the two")
        if services is None:
            self.service = service or service_of(handler)
            self.services = {}
            return handler
        if not services:  # several services on one port, by TMultiplexedProtocol's names
            raise ValueError("services is empty: name at least one handler")
        self.services = {name: (each, service_of(each)) for name, each in services.items()}
        if default_service is not None and default_service not in self.services:
            raise ValueError(f"default_service {default_service!r} is not one of {sorted(self.services)}")
        handler, self.service = self.services[default_service or next(iter(self.services))]
        return handler


class HandshakeServer(TThreadedServer, ServerFacts):
    """A TThreadedServer hosting ``handler``'s service behind a SessionProcessor, with limits and a stop.

    ``service`` is the generated service module (found from the handler's Iface when omitted).
    ``services={name: handler, ...}`` instead hosts several services on one port, each called as
    ``name:method`` (Apache's TMultiplexedProtocol), one session per connection shared by them all;
    ``default_service`` names the one that bare method names reach (none by default; see ``multiplex``).
    ``on_stop(callback)`` registers work to drain at stop: ``callback(timeout)`` is called with the
    grace period when the server stops, and with 0 when the grace period is over.

    Connections are served by a pool of daemon threads: a handler stuck past the grace period does not
    keep the process alive. The thread ``start()`` serves on is not a daemon (``stop()`` ends it).
    """

    def __init__(self, handler: Any = None, config: Optional[ServerConfig] = None,
                 service: Optional[ModuleType] = None, *, services: Optional[Mapping[str, Any]] = None,
                 default_service: Optional[str] = None) -> None:
        self.config = config or ServerConfig()
        self.handler = handler = self._host(handler, services, service, default_service)
        processor: Any = ({name: module.Processor(each) for name, (each, module) in self.services.items()}
                          if self.services else self.service.Processor(handler))
        for each, module in self.services.values() if self.services else [(handler, self.service)]:
            awaited = sorted(coroutine_methods(each, describe_service(module)))
            if awaited:
                raise TypeError(f"{type(each).__name__}.{awaited[0]} is a coroutine function (async def): serve it "
                                f"with thrift_handshake.aio.AsyncHandshakeServer (serve --asyncio)")
        limits = self.config.limits
        self.metrics = ServerMetrics()
        settings = session_settings(self.config)
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        self._warnings = WarningBudget(logger)  # the processor's warnings about peers count against it too
        super().__init__(
            SessionProcessor(processor, settings, self.metrics, self.config.handshake,
                             self._warnings, self.config.interceptors,
                             DecodedBudget(limits.max_decoded_bytes, limits.decoded_host_share),
                             call_log_level=logging.getLevelName(self.config.call_log_level),
                             default_service=default_service),
            TSocket.TServerSocket(host=self.config.host, port=self.config.port, socket_family=family),
            transport_factory(self.config.wire, frame_limit(limits.max_message_bytes)),
            protocol_factory(self.config.wire, limits.max_message_bytes, limits.max_container_items),
        )
        install_handler_error_filter()
        self._lock = threading.Lock()  # orders start, serve and stop
        self._admission = Admission(self.config, self.metrics, self._warnings)
        self._drain = Drain(self.config.grace, self._admission, self.metrics, self._warnings)
        tls = None if self.config.tls is None else server_tls_context(self.config.tls)
        self._tls = tls
        answers = Answers(self.config, self._warnings)
        opening = Opening(self.config, self.processor, (self.inputTransportFactory, self.inputProtocolFactory),
                          tls, answers, self._warnings)
        self._opening = opening
        self._loop = MessageLoop(self.config, self.processor, opening, answers, lambda: self._pool,
                                 self._park, self._finish, self._release)
        self._stop_requested = False  # a plain flag: request_stop() runs in signal handlers
        self._stopped = threading.Event()
        self._watch: Optional[ReadinessWatch] = None  # per serve(): idle connections wait here
        self._pool: Optional[WorkerPool] = None  # per serve(): threads for connections with input
        self._next_expiry = float("inf")  # no waiting connection's time is up before this
        self._expiry_lock = threading.Lock()
        self._serving = False
        self._draining = False  # the drain began (serve()'s thread only)
        self._drained = False
        self._thread: Optional[threading.Thread] = None
        self._bound_port = 0  # the port it listened on, once it did (kept after the stop)
        self._unix_file: Optional[Tuple[int, int]] = None  # (device, inode) of our socket file, once listening

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def address(self) -> Tuple[str, int]:
        """(host, port) the server listens on; the port is real once listening (port 0 resolved), and
        stays the one it listened on after a stop."""
        handle = self.serverTransport.handle
        if self.config.unix_socket is not None:
            return self.config.unix_socket, 0
        if handle is None:  # not yet listening, or stopped
            return self.config.host, self._bound_port or self.config.port
        return self.config.host, handle.getsockname()[1]

    @property
    def connection_count(self) -> int:
        """Connections accepted and not yet closed (with a session or not)."""
        return len(self._admission)

    def connection_phases(self) -> Dict[str, int]:
        """How many open connections are in each phase (``states.ConnectionPhase``; every phase named)."""
        counts = {phase.value: 0 for phase in ConnectionPhase}
        for connection in self._admission.connections():
            counts[connection.phase.value] += 1
        return counts

    def connections_now(self) -> List[ConnectionInfo]:
        """The open connections as an observer sees them now, oldest first."""
        now = time.monotonic()
        return [connection.info(now) for connection in self._admission.connections()]

    def bytes_now(self) -> Tuple[int, int]:
        """Bytes received and sent on every connection so far, open or closed (TCP: the kernel's count)."""
        return self.metrics.bytes_now(connection.socket.handle for connection in self._admission.connections())

    @property
    def admission(self) -> Admission:
        """Who may hold a connection here (a supervisor links its workers' through it)."""
        return self._admission

    @property
    def _connections(self) -> List[Connection]:
        """The open connections, oldest first (for tests that look inside)."""
        return self._admission.connections()

    def allow_http_origin(self, origin: str) -> None:
        """Lets pages from ``origin`` (``scheme://host:port``) call this server with Thrift over HTTP (CORS),
        beside ``ServerConfig.http_origins``: ``serve --metrics-port`` allows its admin page's once it is known."""
        self._opening.http_origins.add(origin)

    def on_stop(self, callback: Callable[[float], None]) -> None:
        """Registers ``callback(timeout)`` to drain the service's own work when the server stops."""
        self._drain.callbacks.append(callback)

    def listen(self, sock: Optional[socket.socket] = None) -> None:
        """Binds and listens (idempotent); errors such as 'address in use' surface here.

        ``sock``: serve this already-listening socket instead (e.g. one a pre-fork supervisor shares)."""
        if self.serverTransport.handle is None:
            if sock is None and self.config.unix_socket is not None:
                sock, self._unix_file = listen_unix(self.config.unix_socket)
            if sock is None:
                self.serverTransport.listen()
            else:
                self.serverTransport.handle = sock
            self.serverTransport.handle.setblocking(False)
            self._bound_port = self.port  # kept after the stop, when the handle is gone
            logger.info("listening on %s service=%s wire=%s handshake=%s tls=%s", self.endpoint,
                        self.service_name, self.config.wire,
                        ("optional" if self.config.optional_hello else "on") if self.config.handshake else "off",
                        "mutual" if self.config.tls and self.config.tls.client_ca_file else bool(self._tls))

    def start(self) -> "HandshakeServer":
        """Listens, then serves on a background thread; returns self."""
        self.listen()
        with self._lock:
            if self._serving or self._thread is not None:
                raise RuntimeError("this server was already started; a stopped server cannot be restarted")
            self._thread = threading.Thread(target=self.serve, name=f"thrift-handshake:{self.port}")
        self._thread.start()
        return self

    def serve(self) -> None:
        """Serves until a stop is requested, then drains; returns once every connection is closed."""
        with self._lock:
            if self._serving or self._drained:
                raise RuntimeError("this server is serving or has served; a stopped server cannot be restarted")
            if self._stopped.is_set():  # stop() came first: nothing to serve
                self._drained = True
                self._close_listener()
                return
            self._serving = True
            watch = self._watch = ReadinessWatch()
        listener = None
        try:
            self.listen()
            self._pool = WorkerPool(f"thrift-handshake:{self.port}", self.config.limits.max_threads)
            listener = self.serverTransport.handle
            watch.add(listener.fileno(), listener, once=False)
            next_relief = 0.0
            while True:
                if self._stop_requested:  # listens on through the drain notice, answering Draining
                    if not self._draining:
                        self._draining = True
                        # without hello nothing can answer Draining: no notice, the port closes now
                        self._drain.begin(self.config.drain_notice if self.config.handshake else 0.0)
                    if self._drain.notice_over():
                        break
                now = time.monotonic()
                if now >= self._next_expiry:
                    self._expire_waiting(now)
                if now >= next_relief:  # threads stuck on slow peers must not starve the others
                    self._pool.relieve(self.config.limits.max_connections + self.config.limits.max_threads)
                    self._loop.memory.settle()  # large messages freed: their memory back to the system
                    next_relief = now + _WATCH_TICK
                for ready in watch.wait(min(max(self._next_expiry - now, 0.0), _WATCH_TICK)):
                    if ready is not listener:
                        self._dispatch(ready)
                    else:
                        self._accept()
        finally:
            if listener is not None:
                watch.remove(listener.fileno(), listener)
            try:
                self._drain.run(self._close_listener, self._close_pool)
            finally:
                self._drained = True
                self._stopped.set()
                with self._lock:
                    self._watch = None
                watch.close()

    def _close_listener(self) -> None:
        """Stops listening; a Unix socket's file goes too (if it is still ours)."""
        self.serverTransport.close()
        if self._unix_file is not None:
            remove_unix(self.config.unix_socket, self._unix_file)

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def request_stop(self, grace: Optional[float] = None) -> None:
        """Asks the server to stop and returns at once; safe in a signal handler (takes no lock).

        ``grace`` replaces the configured grace period; 0 while stopping ends it now.
        """
        if grace is not None:
            self._drain.shorten(grace)
        until = self._drain.announce()
        if self.config.handshake:
            self.processor.drain(until)  # ping and hello answer Draining from now on
        self._stop_requested = True
        watch = self._watch
        if watch is not None:
            watch.wake()

    @property
    def draining(self) -> bool:
        """Whether the drain began: ping and hello answer Draining, sessions are being closed (a
        ``request_stop()`` only asks: the serving thread begins the drain a moment later)."""
        return self._draining

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested (the server drains, then ``serve()`` returns)."""
        return self._stop_requested

    def stop(self, grace: Optional[float] = None) -> None:
        """Stops gracefully and waits until every connection is closed.

        ``grace`` (default: the config's) bounds how long in-flight calls may take to finish;
        connections still busy after it are closed.
        """
        self.request_stop(grace)
        with self._lock:
            serving = self._serving
            if not serving:
                self._stopped.set()  # a serve() that has not begun yet will refuse to begin
        if not serving:
            self._close_listener()
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join()  # started, but stopped before it began serving
            return
        if self._thread is not threading.current_thread():
            self._stopped.wait()
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join()

    def __enter__(self) -> "HandshakeServer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- connections --------------------------------------------------------------------------

    def _accept(self) -> None:
        try:
            accepted = self.serverTransport.accept()
        except BlockingIOError:  # the connection went away between select() and accept()
            return
        except OSError as error:  # e.g. too many open files: back off instead of spinning
            logger.warning("accept failed: %s; pausing accepts for %.1fs", error, _ACCEPT_BACKOFF)
            time.sleep(_ACCEPT_BACKOFF)
            return
        client = ConnectionSocket()
        client.setHandle(accepted.handle)
        no_delay(accepted.handle)
        try:
            peer = self.endpoint if self._unix_file else format_peer(client.handle.getpeername())
        except OSError:  # reset before we looked
            client.close()
            return
        if not self._admission.admit(client, peer):
            return
        limits = self.config.limits
        client.setTimeout(limits.handshake_timeout * 1000)  # bounds the TLS handshake too
        now = time.monotonic()
        if self.config.handshake:
            client.deadline = now + limits.handshake_timeout  # hello must be done by then
            client.handshake_budget = self.config.pre_session_bytes
        connection = Connection(client, peer, self.config, self._close_taken, accepted_at=now)
        self._admission.add(connection)
        logger.debug("accepted peer=%s", peer)
        if self.config.handshake or self._tls is not None:
            connection.expires_at, connection.expiry_reason = now + limits.handshake_timeout, "handshake timeout"
        else:
            connection.expires_at, connection.expiry_reason = now + limits.idle_timeout, "idle timeout"
        self._watch.add(connection.fd, connection)
        self._expect_expiry(connection.expires_at)

    def _dispatch(self, connection: Connection) -> None:
        """Input (or a close) arrived on a waiting connection: a pool thread serves it."""
        if connection.take_input():
            self._pool.submit(self._loop.serve, connection)

    def _expire_waiting(self, now: float) -> None:
        """Closes the waiting connections whose time is up (handshake or idle timeout)."""
        with self._expiry_lock:
            self._next_expiry = float("inf")  # from here on, connections that park lower it themselves
        earliest = float("inf")
        for connection in self._admission.connections():
            if connection.in_the_watch and connection.expires_at > now:
                earliest = min(earliest, connection.expires_at)
            else:
                connection.expire(now)
        self._expect_expiry(earliest)

    def _expect_expiry(self, when: float) -> None:
        """A waiting connection's time is up at ``when``: the watch's loop sweeps by then."""
        with self._expiry_lock:
            if when < self._next_expiry:
                self._next_expiry = when

    def _park(self, connection: Connection) -> bool:
        """Lets a connection with no input wait in the watch; False when it must close instead."""
        if connection.mode is SocketMode.HANDSHAKE and connection.socket.deadline is not None:
            until, reason = connection.socket.deadline, "handshake timeout"
        else:
            until, reason = time.monotonic() + self.config.limits.idle_timeout, "idle timeout"
        if not connection.park(until, reason, self._watch_again):
            return False
        self._expect_expiry(until)  # read by the watch's loop within one tick
        return True

    def _watch_again(self, connection: Connection) -> None:
        self._watch.rearm(connection.fd)

    def _close_taken(self, connection: Connection) -> None:
        """Closes a connection taken out of the watch to close it (expired, evicted, stopping); a
        session evicted for another host is told why first, on a pool thread."""
        if connection.established and self._pool is not None:
            if connection.closed_by is ConnectionEvent.EVICTED:
                self._pool.submit(self._tell_and_close, connection)
                return
            if connection.closed_by is ConnectionEvent.STOPPING:  # told in _finish, off the drain's thread
                self._pool.submit(self._close_drained, connection)
                return
        self._finish(connection, *self._closing_outcome(connection))

    def _close_drained(self, connection: Connection) -> None:
        self._finish(connection, *self._closing_outcome(connection))

    def _tell_and_close(self, connection: Connection) -> None:
        tell_evicted(connection, f"evicted: {connection.eviction_reason}; connect again later")
        self._finish(connection, *self._closing_outcome(connection))

    def _closing_outcome(self, connection: Connection) -> Tuple[str, str]:
        return closing_outcome(connection.closed_by, self.config.handshake, connection.expiry_reason,
                               connection.eviction_reason)

    def _finish(self, connection: Connection, event: str, reason: str) -> None:
        """Closes a started connection and logs how it ended; a session closed by the drain is told why."""
        state = connection.state
        if (connection.closed_by is ConnectionEvent.STOPPING and connection.established
                and not state.session.closing):  # a session that said goodbye knows
            tell_evicted(connection, DRAINING_TOLD)
        self._release(connection)
        summary = ""
        if state is not None:
            state.close()
            summary = session_summary(state)
        guess = reason.startswith("hello refused")  # a wrong token: inside the budget too
        log = self._warnings.warning if event != "closed" else self._warnings.info if guess else logger.info
        log("%s peer=%s session=%s%s: %s", event, connection.peer, state and state.context.session_id, summary, reason)

    def _release(self, connection: Connection) -> None:
        """Stops watching the connection, closes its socket and forgets it."""
        watch = self._watch
        if watch is not None:
            watch.remove(connection.fd, connection)  # before the close: the number may be reused at once
        moved = self.metrics.socket_closing(connection.socket.handle)
        (connection.transport or connection.socket).close()
        self._admission.forget(connection)
        self.metrics.bytes_closed(moved)  # once it no longer counts among the open ones
        connection.closed()  # last: a move the table refuses (closed twice) must not keep it counted
