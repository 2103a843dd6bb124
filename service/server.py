"""The threaded server: Apache Thrift's TThreadedServer, made stoppable and session-aware.

The wiring stays the tutorial's: a generated Processor, a TServerSocket, TBufferedTransport and
TBinaryProtocol(Accelerated). What this adds: a session per connection (``session.SessionHandler``),
limits, one log line per connection event, and a graceful stop (stop accepting, let in-flight calls
finish within the grace period, close idle connections) from Python, SIGINT or SIGTERM.

    server = HandshakeServer(config=ServerConfig(port=0)).start()   # serves on a background thread
    ... server.port ...
    server.stop()

or, blocking until SIGINT/SIGTERM: ``serve(ServerConfig())``.
"""

from __future__ import annotations

import logging
import selectors
import signal
import socket
import threading
import time
from types import ModuleType
from typing import Any, Dict, Optional, Tuple

from thrift.server.TServer import TThreadedServer
from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport import TSocket, TTransport
from thrift.transport.TTransport import TTransportException

from thrift_handshake_gen import HandshakeService

from .config import ServerConfig
from .contract import describe_service
from .handler import HandshakeHandler
from .metrics import ServerMetrics
from .session import SessionContext, SessionHandler, bind_session
from .transport import (
    DeadlineSocket,
    ResettableBufferedTransport,
    WireProtocolFactory,
    is_timeout,
    server_tls_context,
)

__all__ = ["HandshakeServer", "serve"]

logger = logging.getLogger(__name__)

#: How long the accept loop pauses after accept() fails for lack of resources (e.g. EMFILE).
_ACCEPT_BACKOFF = 0.1
#: How long a connection's thread gets to unwind once the grace period is over and its socket closed.
_UNWIND_WAIT = 2.0
#: After refusing a message, how long (and how many bytes of) the rest of it is read and dropped, so
#: the peer is not reset mid-write and gets to read the refusal.
_DISCARD_SECONDS = 1.0
_DISCARD_BYTES = 64 * 1024 * 1024


def _format_peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)


def _discard_input(handle: socket.socket) -> None:
    """Reads and drops what the peer still sends (bounded), so closing does not reset it mid-write."""
    handle.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + _DISCARD_SECONDS
    dropped = 0
    while dropped < _DISCARD_BYTES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        handle.settimeout(remaining)
        chunk = handle.recv(65536)
        if not chunk:
            return
        dropped += len(chunk)


class Connection:
    """One accepted connection: its socket, its session context and the call it is serving."""

    def __init__(self, client: DeadlineSocket, peer: str, server: "HandshakeServer") -> None:
        self.socket = client
        self.peer = peer
        self.context = SessionContext(peer=peer)
        self.calls: Dict[str, int] = {}
        self.notifications = 0
        self._server = server
        self._lock = threading.Lock()
        self._in_flight: Optional[Tuple[str, int]] = None
        self._closing = False
        self.stopping = False
        self.said_goodbye = False
        self.replying = False  # the handler has answered the message in flight; its reply is being written

    def message_begin(self, name: str, message_type: int, seqid: int) -> None:
        """Called by the Processor when a message starts: counts it and marks it in flight."""
        self.replying = False
        with self._lock:
            self._in_flight = (name, seqid)
        key = name if name in self._server.methods else "<unknown>"
        self.calls[key] = self.calls.get(key, 0) + 1
        if message_type not in (TMessageType.CALL, TMessageType.ONEWAY):
            raise TProtocolException(TProtocolException.INVALID_DATA,
                                     f"message type {message_type} is not a call (1) or one-way call (4)")

    def message_done(self) -> bool:
        """The message was answered; returns whether the connection should close now."""
        with self._lock:
            self._in_flight = None
            return self._closing

    @property
    def in_flight(self) -> Optional[Tuple[str, int]]:
        """(method, seqid) of the message being served, if any."""
        return self._in_flight

    def session_started(self) -> None:
        """hello() succeeded: no more handshake deadline; from now on silence is bounded by the idle timeout."""
        self.socket.deadline = None
        self.socket.setTimeout(self._server.config.limits.idle_timeout * 1000)

    def close_after_reply(self) -> None:
        """goodbye(): the connection closes once this reply is flushed."""
        with self._lock:
            self._closing = self.said_goodbye = True

    def shutdown(self, force: bool = False) -> None:
        """Closes the connection now if it is idle (or if forced), else after the current reply."""
        with self._lock:
            self._closing = self.stopping = True
            if self._in_flight is not None and not force:
                return
        handle = self.socket.handle
        if handle is not None:
            try:
                handle.shutdown(socket.SHUT_RDWR)  # wakes the connection's thread from recv()
            except OSError:
                pass


class HandshakeServer(TThreadedServer):
    """A TThreadedServer with sessions, limits and a graceful stop.

    ``handler`` implements the service's methods (default: ``HandshakeHandler``). Optional hooks:
    ``configure(limits)``, called with the server's ServerLimits before serving, and
    ``close(timeout)``, called when it stops (again with 0 when the grace period is over). ``service`` is the generated
    service module (any service that extends HandshakeService works).
    """

    def __init__(
        self,
        handler: Any = None,
        config: Optional[ServerConfig] = None,
        service: ModuleType = HandshakeService,
    ) -> None:
        self.config = config or ServerConfig()
        self.service = service
        self.handler = handler if handler is not None else HandshakeHandler()
        configure = getattr(self.handler, "configure", None)
        if callable(configure):  # the server's limits are the handler's too (one source)
            configure(self.config.limits)
        self.methods = describe_service(service)
        self.metrics = ServerMetrics()
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        listener = TSocket.TServerSocket(host=self.config.host, port=self.config.port, socket_family=family)
        super().__init__(
            None,  # each connection gets its own generated Processor around its SessionHandler
            listener,
            TTransport.TBufferedTransportFactory(),
            WireProtocolFactory(self.config.protocol, self.config.limits.max_message_bytes,
                                self.config.limits.max_container_items),
            daemon=False,
        )
        self._lock = threading.Lock()
        self._connections: Dict[Connection, threading.Thread] = {}
        self._stop_requested = threading.Event()
        self._stopped = threading.Event()
        self._grace = self.config.grace
        self._deadline: Optional[float] = None  # when stopping: the end of the grace period
        self._tls = None if self.config.tls is None else server_tls_context(self.config.tls)
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread: Optional[threading.Thread] = None
        self._serving_thread: Optional[threading.Thread] = None

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def address(self) -> Tuple[str, int]:
        """(host, port) the server listens on; the port is real once listening (port 0 resolved)."""
        handle = self.serverTransport.handle
        if handle is None:
            return self.config.host, self.config.port
        return self.config.host, handle.getsockname()[1]

    @property
    def port(self) -> int:
        return self.address[1]

    def listen(self) -> None:
        """Binds and listens (idempotent); errors such as 'address in use' surface here."""
        if self.serverTransport.handle is None:
            self.serverTransport.listen()
            self.serverTransport.handle.setblocking(False)
            logger.info("listening on %s protocol=%s tls=%s", _format_peer(self.address), self.config.protocol,
                        "mutual" if self.config.tls and self.config.tls.client_ca_file else bool(self._tls))

    def start(self) -> "HandshakeServer":
        """Listens, then serves on a background thread; returns self."""
        if self._serving_thread is not None:
            raise RuntimeError("this server was already started; a stopped server cannot be restarted")
        self.listen()
        self._thread = self._serving_thread = threading.Thread(
            target=self.serve, name=f"thrift-handshake:{self.port}")
        self._thread.start()
        return self

    def serve(self) -> None:
        """Serves until a stop is requested, then drains; returns once every connection is closed."""
        self.listen()
        self._serving_thread = self._serving_thread or threading.current_thread()
        selector = selectors.DefaultSelector()
        selector.register(self.serverTransport.handle, selectors.EVENT_READ)
        selector.register(self._wake_reader, selectors.EVENT_READ)
        try:
            while not self._stop_requested.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self.serverTransport.handle:
                        self._accept()
        finally:
            selector.close()
            self._drain()

    def request_stop(self, grace: Optional[float] = None) -> None:
        """Asks the server to stop and returns at once (safe from a signal handler).

        ``grace`` replaces the configured grace period; 0 while stopping ends it now.
        """
        if grace is not None:
            self._grace = grace
            self._deadline = time.monotonic() + grace
        self._stop_requested.set()
        try:
            self._wake_writer.send(b"\0")
        except OSError:
            pass

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested (the server drains, then ``serve()`` returns)."""
        return self._stop_requested.is_set()

    def stop(self, grace: Optional[float] = None) -> None:
        """Stops gracefully and waits until every connection is closed.

        ``grace`` (default: the config's) bounds how long in-flight calls may take to finish;
        connections still busy after it are closed.
        """
        self.request_stop(grace)
        if self._serving_thread is None:  # never served: only the sockets to close
            self.serverTransport.close()
            self._wake_reader.close()
            self._wake_writer.close()
        elif self._serving_thread is not threading.current_thread():
            self._stopped.wait()
            if self._thread is not None:
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
            self._stop_requested.wait(_ACCEPT_BACKOFF)
            return
        client = DeadlineSocket()
        client.setHandle(accepted.handle)
        try:
            peer = _format_peer(client.handle.getpeername())
        except OSError:  # reset before we looked
            client.close()
            return
        if len(self._connections) >= self.config.limits.max_connections:
            logger.warning("refused peer=%s: %d connections open (max_connections)", peer, len(self._connections))
            client.close()
            return
        client.setTimeout(self.config.limits.handshake_timeout * 1000)  # bounds the TLS handshake too
        client.deadline = time.monotonic() + self.config.limits.handshake_timeout  # hello must be done by then
        connection = Connection(client, peer, self)
        # daemon: a user handler stuck past the grace period must not keep the process alive
        thread = threading.Thread(target=self._serve_connection, args=(connection,),
                                  name=f"connection {peer}", daemon=True)
        with self._lock:
            self._connections[connection] = thread
        self.metrics.connection_opened(connection)
        logger.info("accepted peer=%s", peer)
        try:
            thread.start()
        except RuntimeError as error:  # the system refused another thread
            logger.warning("dropped peer=%s: cannot start a thread: %s", peer, error)
            with self._lock:
                self._connections.pop(connection, None)
            self.metrics.connection_closed(connection)
            client.close()

    def _serve_connection(self, connection: Connection) -> None:
        if self._tls is not None and not self._start_tls(connection):
            self.metrics.connection_closed(connection)
            with self._lock:
                self._connections.pop(connection, None)
            return
        bind_session(connection.context)
        transport = ResettableBufferedTransport(connection.socket)
        protocol = self.inputProtocolFactory.getProtocol(transport)
        session = SessionHandler(connection, self)
        processor = self.service.Processor(session)
        processor.on_message_begin(connection.message_begin)
        event, reason = "closed", "peer closed the connection"
        try:
            while True:
                try:
                    processor.process(protocol, protocol)
                except TTransportException:
                    raise
                except Exception as error:
                    if not connection.replying:
                        raise
                    self._answer_unencodable_reply(connection, protocol, error)
                if connection.message_done():
                    reason = "server stopping" if connection.stopping else "after goodbye"
                    break
        except TTransportException as error:
            event, reason = self._transport_outcome(connection, session, error)
        except Exception as error:  # undecodable input: answer if we can, then close
            event, reason = "dropped", f"bad message: {type(error).__name__}: {error}"
            self._answer_bad_message(connection, protocol, error)
        finally:
            session.disconnected()
            transport.close()
            self.metrics.connection_closed(connection)
            with self._lock:
                self._connections.pop(connection, None)
            bind_session(None)
            log = logger.info if event == "closed" else logger.warning
            log("%s peer=%s session=%s: %s", event, connection.peer, connection.context.session_id, reason)

    def _start_tls(self, connection: Connection) -> bool:
        """The TLS handshake, on the connection's own thread within the handshake timeout."""
        try:
            handle = self._tls.wrap_socket(connection.socket.handle, server_side=True)
        except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
            logger.warning("dropped peer=%s: TLS handshake failed: %s", connection.peer, error)
            connection.socket.close()
            return False
        connection.socket.setHandle(handle)
        certificate = handle.getpeercert()
        if certificate:
            subject = dict(item for rdn in certificate.get("subject", ()) for item in rdn)
            connection.context.peer_identity = subject.get("commonName")
        return True

    @staticmethod
    def _transport_outcome(connection: Connection, session: SessionHandler,
                           error: TTransportException) -> Tuple[str, str]:
        if connection.stopping:
            return "closed", "server stopping"
        if is_timeout(error):
            timeout = "idle" if connection.context.session_id else "handshake"
            return "dropped", f"{timeout} timeout"
        if error.type == TTransportException.END_OF_FILE and connection.in_flight is None:
            if connection.context.session_id is None:
                return "closed", "peer closed the connection"
            return "dropped", "peer closed the connection without goodbye"
        return "dropped", f"transport error: {error}"

    @staticmethod
    def _send_exception(connection: Connection, protocol: Any, kind: int, message: str) -> None:
        """Answers the message in flight with a TApplicationException, dropping any half-written reply."""
        name, seqid = connection.in_flight
        protocol.trans.discard_unflushed()
        protocol.writeMessageBegin(name, TMessageType.EXCEPTION, seqid)
        TApplicationException(kind, message).write(protocol)
        protocol.writeMessageEnd()
        protocol.trans.flush()

    def _answer_unencodable_reply(self, connection: Connection, protocol: Any, error: Exception) -> None:
        """The handler returned something its IDL type cannot carry: INTERNAL_ERROR for this call only."""
        name = connection.in_flight[0]
        logger.error("peer=%s: the %s reply cannot be encoded: %s: %s", connection.peer, name,
                     type(error).__name__, error)
        self._send_exception(connection, protocol, TApplicationException.INTERNAL_ERROR,
                             f"the server could not encode the {name} reply")

    @classmethod
    def _answer_bad_message(cls, connection: Connection, protocol: Any, error: Exception) -> None:
        """Tells the caller why its message was refused before the connection closes."""
        if connection.in_flight is None:
            return
        try:
            cls._send_exception(connection, protocol, TApplicationException.PROTOCOL_ERROR,
                                f"cannot decode the {connection.in_flight[0]} request: {error}")
            _discard_input(connection.socket.handle)
        except Exception:  # the peer may be gone already
            pass

    def _remaining_grace(self) -> float:
        return max(self._deadline - time.monotonic(), 0.0)

    def _drain(self) -> None:
        """Stop: no new connections, idle ones closed now, busy ones after their reply or at the
        end of the grace period, when the handler's remaining work is aborted too."""
        try:
            self._drain_connections()
        finally:
            self._wake_reader.close()
            self._wake_writer.close()
            self._stopped.set()

    def _drain_connections(self) -> None:
        self._deadline = time.monotonic() + self._grace
        self.serverTransport.close()
        with self._lock:
            connections = dict(self._connections)
        logger.info("stopping: %d connections open, grace %.1fs", len(connections), self._grace)
        for connection in connections:
            connection.shutdown()
        close = getattr(self.handler, "close", None)
        closer = None
        if callable(close):  # the handler's own work (e.g. submitted jobs) drains alongside;
            # the drain, not the handler, decides when the grace period is over
            closer = threading.Thread(target=close, args=(self._grace + _UNWIND_WAIT,), name="handler close",
                                      daemon=True)
            closer.start()
        for thread in [*connections.values(), *([closer] if closer else [])]:
            while thread.is_alive() and self._remaining_grace() > 0:  # re-read: a 2nd signal ends it
                thread.join(min(self._remaining_grace(), 0.05))
        busy = [(c, t) for c, t in connections.items() if t.is_alive()]
        for connection, _ in busy:
            logger.warning("grace period over: closing peer=%s in %s", connection.peer, connection.in_flight)
            connection.shutdown(force=True)
        if closer is not None and closer.is_alive():
            try:
                close(0.0)  # abort what still runs, so busy handlers return
            except Exception:
                logger.exception("the handler failed to abort its work")
            closer.join(_UNWIND_WAIT)
        for connection, thread in busy:
            thread.join(_UNWIND_WAIT)
            if thread.is_alive():
                logger.error("peer=%s: handler still running after the grace period; left behind", connection.peer)
        logger.info("stopped")


def serve(config: Optional[ServerConfig] = None, handler: Any = None,
          service: ModuleType = HandshakeService) -> None:
    """Runs a server in this thread until SIGINT or SIGTERM (or ``request_stop()``), then drains."""
    server = HandshakeServer(handler, config, service)
    server.listen()
    if threading.current_thread() is threading.main_thread():
        def on_signal(*_: Any) -> None:  # the first signal drains; a second one ends the grace period
            server.request_stop(0.0 if server.stopping else None)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, on_signal)
    server.serve()
