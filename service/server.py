"""The production host of a ``SessionProcessor``: Apache Thrift's TThreadedServer with limits and a stop.

The wiring stays the tutorial's (a processor, a TServerSocket, a transport factory and a protocol
factory, all held by TThreadedServer); the parts come from ``gate`` (the processor) and ``transport``
(the stack). What this adds: per-connection limits and deadlines, TLS, one log line per connection
event, and a graceful stop (stop accepting, let in-flight calls finish within the grace period, close
idle connections) from any thread or a signal handler.

    server = HandshakeServer(CalculatorHandler(), ServerConfig(port=0)).start()  # a background thread
    ... server.port ...
    server.stop()

The service is found from the generated ``Iface`` the handler implements (or pass ``service=``).
"""

from __future__ import annotations

import dataclasses
import logging
import select
import socket
import threading
import time
import traceback
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Tuple

from thrift.server.TServer import TThreadedServer
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport import TSocket
from thrift.transport.TTransport import TTransportException

from .config import ServerConfig, Wire
from .contract import service_of
from .errors import WorkAborted
from .gate import ConnectionState, SessionProcessor, format_peer
from .metrics import ServerMetrics
from .peerlog import WarningBudget, clip_for_log
from .pool import ReadinessWatch, WorkerPool
from .session import Session, SessionSettings
from .transport import (
    SNIFF_BYTES,
    AnswerableReadError,
    ConnectionSocket,
    Dialect,
    BudgetExceeded,
    FrameRefused,
    frame_limit,
    FrameTooLarge,
    NoMessageYet,
    header_protocol,
    no_delay,
    is_reset,
    is_timeout,
    protocol_factory,
    server_tls_context,
    sniff,
    transport_factory,
)

__all__ = ["HandshakeServer"]

logger = logging.getLogger(__name__)

#: After a reply, how long a pool thread waits for the same peer's next message before the connection
#: goes back to wait in the watch (a thread hand-off costs more than a short wait for a busy peer).
_LINGER = 0.005
#: A connection that has sent nothing this long after it was accepted has no hello under way: it may
#: make room for a newcomer to a full server before ``evict_after`` (a client's hello follows its connect
#: within a round trip).
_SILENT_GRACE = 0.1
#: The watch's loop wakes at least this often to close waiting connections whose time is up.
_WATCH_TICK = 0.1
#: How long the accept loop pauses after accept() fails for lack of resources (e.g. EMFILE).
_ACCEPT_BACKOFF = 0.1
#: Once the grace period is over and the service's work aborted, how long busy connections get to send
#: the aborted calls' answers before their sockets are closed.
_ABORT_REPLY_WAIT = 0.5
#: How long a connection's thread gets to unwind once the grace period is over and its socket closed.
_UNWIND_WAIT = 2.0
#: After refusing a message, how long (and how many bytes of) the rest of it is read and dropped, so
#: the peer is not reset mid-write and gets to read the refusal.
_DISCARD_SECONDS = 1.0
_DISCARD_BYTES = 64 * 1024 * 1024
#: At most this many "server full" answers are written at once (each on its own short-lived thread),
#: each waiting at most this long for the newcomer's first message.
_MAX_REFUSERS = 16
_REFUSAL_SECONDS = 1.0
#: A fatal TLS alert (protocol_version): what a TLS client can read from a server without TLS.
_TLS_ALERT_PROTOCOL_VERSION = b"\x15\x03\x01\x00\x02\x02\x46"
#: How a traceback's frame lines begin (the rest, each exception's own text, may quote the peer).
_TRACEBACK_FRAME = '  File "'
#: Transport errors that mean "this message is too big or malformed" rather than "the peer is gone".
_BAD_INPUT = (TTransportException.SIZE_LIMIT, TTransportException.NEGATIVE_SIZE)
#: How the C extension words the lengths pure Python refuses with one of _BAD_INPUT.
_C_TOO_BIG = ("exceeded specified limit", "negative length", "varint exceeded")


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


class _HandlerErrorFilter(logging.Filter):
    """Thrift's generated processors log every handler exception at ERROR with a traceback on the root
    logger. A ``WorkAborted`` is a planned stop: one WARNING line, no traceback. Any other exception's
    text may quote the peer (``fail(message)`` raises with the caller's whole message): it is clipped."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, WorkAborted):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args, record.exc_info, record.exc_text = f"handler work aborted: {error}", (), None, None
        elif error is not None:
            lines = traceback.format_exception(*record.exc_info)
            clipped = [line if line.startswith(_TRACEBACK_FRAME) else clip_for_log(line) for line in lines]
            if clipped != lines:  # only then: handlers that read exc_info themselves would show it whole
                record.exc_info, record.exc_text = None, "".join(clipped).rstrip("\n")
        return True


def _install_handler_error_filter() -> None:
    root = logging.getLogger()
    if not any(isinstance(f, _HandlerErrorFilter) for f in root.filters):
        root.addFilter(_HandlerErrorFilter())


class Connection:
    """One accepted connection: its socket, its stack once started, and the processor's state for it.

    Between messages it either waits in the server's watch (``parked``, no thread) or is served by
    one pool thread. It is the session's listener too: when hello succeeds, the handshake deadline
    gives way to the idle and request timeouts.
    """

    def __init__(self, client: ConnectionSocket, peer: str, config: ServerConfig) -> None:
        self.socket = client
        self.fd = client.handle.fileno()
        self.peer = peer
        self.state: Optional[ConnectionState] = None
        self.transport: Any = None
        self.protocol: Any = None
        self._limits = config.limits
        self._lock = threading.Lock()  # orders shutdown(), parking and dispatch
        self.stopping = False
        self.evicted = False  # closed to make room for a newcomer
        self.parked = False  # waiting in the server's watch for its next bytes
        self.parked_until = 0.0  # when waiting, closed at this time.monotonic()
        self.expiry_reason = ""  # and why
        self.accepted_at = time.monotonic()
        # Without hello there is no session to protect: a connection between calls may be evicted.
        self.evictable_as = "no hello yet" if config.handshake else "idle"

    # -- session.SessionListener ----------------------------------------------------------------

    def session_started(self, session: Session) -> None:
        self.socket.start_session(self._limits, _LINGER)

    def session_rejected(self, session: Session, reason: str) -> None:
        pass

    def session_ended(self, session: Session, goodbye: bool) -> None:
        pass

    # -------------------------------------------------------------------------------------------

    @property
    def in_flight(self) -> Optional[Tuple[str, int]]:
        """(method, seqid) of the message being served, if any."""
        return None if self.state is None else self.state.in_flight

    def silent(self) -> bool:
        """Not started and waiting, with nothing received: no hello under way."""
        if self.state is not None or not self.parked:
            return False
        handle = self.socket.handle
        waiter = select.poll()  # not recv(MSG_DONTWAIT): in Python's timeout mode it waits for input first
        waiter.register(handle, select.POLLIN)
        if not waiter.poll(0):
            return True
        try:
            return not handle.recv(1, socket.MSG_PEEK)  # input waits: b"" if the peer left
        except OSError:  # reset: gone anyway
            return True

    @property
    def awaiting_hello(self) -> bool:
        """No session yet (TLS or hello still to come)."""
        state = self.state
        return state is None or (state.session is not None and not state.session.established)

    def park(self, until: float, reason: str, watch: Callable[["Connection"], None]) -> bool:
        """Hands the connection to the watch until its next bytes (closed at ``until`` for
        ``reason``); False when it must close instead (the server is stopping)."""
        with self._lock:
            if self.stopping or self.evicted:
                return False
            self.parked_until, self.expiry_reason = until, reason
            self.parked = True
            watch(self)
        return True

    def unpark(self) -> bool:
        """Takes the connection out of the watch to be served or closed; False if it was not there."""
        with self._lock:
            if not self.parked:
                return False
            self.parked = False
            return True

    def evict(self, force: bool = False) -> bool:
        """Closes this connection now unless a message is in flight (or ``force``); returns whether it did."""
        state = self.state
        if state is None:
            with self._lock:
                self.evicted = True
                self._shut_socket()
            return True
        with state.lock:
            if state.in_flight is not None and not force:
                return False
            if state.session is not None and state.session.established:  # its hello succeeded meanwhile
                return False
            state.closing = self.evicted = True
            self._shut_socket()
        return True

    def shutdown(self, force: bool = False) -> None:
        """Closes the connection now if it is idle (or if forced), else after the current reply."""
        with self._lock:
            self.stopping = True
            state = self.state
            if state is None:
                self._shut_socket()
                return
        with state.lock:  # a message cannot start between the check and the shutdown
            state.closing = True
            if state.in_flight is None or force:
                self._shut_socket()

    def _shut_socket(self) -> None:
        handle = self.socket.handle
        if handle is not None:
            try:
                handle.shutdown(socket.SHUT_RDWR)  # wakes a thread in recv(), or the watch
            except OSError:
                pass


class HandshakeServer(TThreadedServer):
    """A TThreadedServer hosting ``handler``'s service behind a SessionProcessor, with limits and a stop.

    ``service`` is the generated service module (found from the handler's Iface when omitted).
    ``on_stop(callback)`` registers work to drain at stop: ``callback(timeout)`` is called with the
    grace period when the server stops, and with 0 when the grace period is over.
    """

    def __init__(self, handler: Any, config: Optional[ServerConfig] = None,
                 service: Optional[ModuleType] = None) -> None:
        self.config = config or ServerConfig()
        self.handler = handler
        self.service = service or service_of(handler)
        limits = self.config.limits
        self.metrics = ServerMetrics()
        settings = SessionSettings(
            server_name=self.config.server_name, versions=self.config.versions, features=self.config.features,
            auth_token=self.config.auth_token, idle_timeout_ms=int(limits.idle_timeout * 1000),
            max_message_bytes=limits.max_message_bytes)
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        self._warnings = WarningBudget(logger)  # the processor's warnings about peers count against it too
        super().__init__(
            SessionProcessor(self.service.Processor(handler), settings, self.metrics, self.config.handshake,
                             self._warnings),
            TSocket.TServerSocket(host=self.config.host, port=self.config.port, socket_family=family),
            transport_factory(self.config.wire, frame_limit(limits.max_message_bytes)),
            protocol_factory(self.config.wire, limits.max_message_bytes, limits.max_container_items),
            daemon=True,  # a handler stuck past the grace period must not keep the process alive
        )
        self._lock = threading.Lock()
        self._connections: Dict[Connection, None] = {}  # in accept order: the oldest is evicted first
        self._all_closed = threading.Condition(self._lock)  # notified when the last connection closes
        self._stop_callbacks: List[Callable[[float], None]] = []
        self._refusers = threading.BoundedSemaphore(_MAX_REFUSERS)
        _install_handler_error_filter()
        self._stop_requested = False  # a plain flag: request_stop() runs in signal handlers
        self._stopped = threading.Event()
        self._grace = self.config.grace
        self._deadline: Optional[float] = None  # when stopping: the end of the grace period
        self._tls = None if self.config.tls is None else server_tls_context(self.config.tls)
        self._watch: Optional[ReadinessWatch] = None  # per serve(): idle connections wait here
        self._pool: Optional[WorkerPool] = None  # per serve(): threads for connections with input
        self._next_expiry = float("inf")  # no waiting connection's time is up before this
        self._expiry_lock = threading.Lock()
        self._serving = False
        self._drained = False
        self._thread: Optional[threading.Thread] = None

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

    @property
    def connection_count(self) -> int:
        """Connections accepted and not yet closed (with a session or not)."""
        return len(self._connections)

    def on_stop(self, callback: Callable[[float], None]) -> None:
        """Registers ``callback(timeout)`` to drain the service's own work when the server stops."""
        self._stop_callbacks.append(callback)

    def listen(self, sock: Optional[socket.socket] = None) -> None:
        """Binds and listens (idempotent); errors such as 'address in use' surface here.

        ``sock``: serve this already-listening socket instead (e.g. one a pre-fork supervisor shares)."""
        if self.serverTransport.handle is None:
            if sock is None:
                self.serverTransport.listen()
            else:
                self.serverTransport.handle = sock
            self.serverTransport.handle.setblocking(False)
            logger.info("listening on %s service=%s wire=%s handshake=%s tls=%s", format_peer(self.address),
                        self.service.__name__.rsplit(".", 1)[-1], self.config.wire,
                        "on" if self.config.handshake else "off",
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
                self.serverTransport.close()
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
            while not self._stop_requested:
                now = time.monotonic()
                if now >= self._next_expiry:
                    self._expire_waiting(now)
                if now >= next_relief:  # threads stuck on slow peers must not starve the others
                    self._pool.relieve(self.config.limits.max_connections + self.config.limits.max_threads)
                    next_relief = now + _WATCH_TICK
                for ready in watch.wait(min(max(self._next_expiry - now, 0.0), _WATCH_TICK)):
                    if ready is not listener:
                        self._dispatch(ready)
                    elif not self._stop_requested:
                        self._accept()
        finally:
            if listener is not None:
                watch.remove(listener.fileno(), listener)
            try:
                self._drain()
            finally:
                with self._lock:
                    self._watch = None
                watch.close()

    def request_stop(self, grace: Optional[float] = None) -> None:
        """Asks the server to stop and returns at once; safe in a signal handler (takes no lock).

        ``grace`` replaces the configured grace period; 0 while stopping ends it now.
        """
        if grace is not None:
            self._grace = grace
            self._deadline = time.monotonic() + grace
        self._stop_requested = True
        watch = self._watch
        if watch is not None:
            watch.wake()

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
            self.serverTransport.close()
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
            peer = format_peer(client.handle.getpeername())
        except OSError:  # reset before we looked
            client.close()
            return
        open_now = self.metrics.open_everywhere(len(self._connections))
        if open_now >= self.config.limits.max_connections and not self._make_room():
            self._refuse_full(client, peer, open_now)
            return
        limits = self.config.limits
        client.setTimeout(limits.handshake_timeout * 1000)  # bounds the TLS handshake too
        now = time.monotonic()
        if self.config.handshake:
            client.deadline = now + limits.handshake_timeout  # hello must be done by then
            client.handshake_budget = limits.handshake_max_bytes
        connection = Connection(client, peer, self.config)
        with self._lock:
            self._connections[connection] = None
            self.metrics.opened_or_closed(len(self._connections))
        logger.debug("accepted peer=%s", peer)
        if self.config.handshake or self._tls is not None:
            connection.park(now + limits.handshake_timeout, "handshake timeout", self._watch_first)
        else:
            connection.park(now + limits.idle_timeout, "idle timeout", self._watch_first)
        self._expect_expiry(connection.parked_until)

    def _watch_first(self, connection: Connection) -> None:
        self._watch.add(connection.fd, connection)

    def _watch_again(self, connection: Connection) -> None:
        self._watch.rearm(connection.fd)

    def _dispatch(self, connection: Connection) -> None:
        """Input (or a close) arrived on a waiting connection: a pool thread serves it."""
        if connection.unpark():
            self._pool.submit(self._serve_connection, connection)

    def _expire_waiting(self, now: float) -> None:
        """Closes the waiting connections whose time is up (handshake or idle timeout)."""
        with self._expiry_lock:
            self._next_expiry = float("inf")  # from here on, connections that park lower it themselves
        earliest = float("inf")
        with self._lock:
            waiting = [c for c in self._connections if c.parked]
        for connection in waiting:
            if connection.parked_until > now:
                earliest = min(earliest, connection.parked_until)
            elif connection.unpark():
                self._finish(connection, "dropped", connection.expiry_reason)
        self._expect_expiry(earliest)

    def _expect_expiry(self, when: float) -> None:
        """A waiting connection's time is up at ``when``: the watch's loop sweeps by then."""
        with self._expiry_lock:
            if when < self._next_expiry:
                self._next_expiry = when

    def _park(self, connection: Connection) -> bool:
        """Lets a connection with no input wait in the watch; False when it must close instead."""
        if connection.awaiting_hello and connection.socket.deadline is not None:
            until, reason = connection.socket.deadline, "handshake timeout"
        else:
            until, reason = time.monotonic() + self.config.limits.idle_timeout, "idle timeout"
        if not connection.park(until, reason, self._watch_again):
            return False
        self._expect_expiry(until)  # read by the watch's loop within one tick
        return True

    def _make_room(self) -> bool:
        """Evicts the oldest connection that has had no session for ``evict_after`` seconds, or that has
        sent nothing at all for a moment (``_SILENT_GRACE``), so connections that never finish a hello
        cannot lock everyone out (one idle between messages first, else one stuck mid-message), while a
        client whose hello is under way keeps its place; without hello, then the plain connection idle
        longest (for ``evict_after`` at least). False when there is none."""
        now = time.monotonic()
        old_enough = now - self.config.limits.evict_after
        with self._lock:
            waiting = [c for c in self._connections if c.awaiting_hello and (
                c.accepted_at <= old_enough or (c.accepted_at <= now - _SILENT_GRACE and c.silent()))]
            if not self.config.handshake:  # then the plain connection idle longest, never one in a call
                parked_by = old_enough + self.config.limits.idle_timeout  # parked_until of one parked then
                waiting += sorted((c for c in self._connections
                                   if c.parked and not c.awaiting_hello and c.parked_until <= parked_by),
                                  key=lambda c: c.parked_until)
        for force in (False, True):
            for connection in waiting:
                if connection.unpark():  # waiting in the watch: closed here and now
                    connection.evicted = True
                    self._finish(connection, "dropped", f"evicted: {connection.evictable_as} and the server was full")
                    evicted = True
                else:
                    evicted = connection.awaiting_hello and connection.evict(force)
                if evicted:
                    self._warnings.warning("evicted peer=%s: %s and the server is full (max_connections %d)",
                                           connection.peer, connection.evictable_as, self.config.limits.max_connections)
                    return True
        return False

    def _refuse_full(self, client: ConnectionSocket, peer: str, open_now: int) -> None:
        """Tells a newcomer the server is full, in its own framing, on a short-lived thread (bounded)."""
        message = f"server full: {open_now} connections (max_connections); try again later"
        self._warnings.warning("refused peer=%s: %s", peer, message)
        if not self._refusers.acquire(blocking=False):  # too many refusals at once: just close
            client.close()
            return

        def answer() -> None:
            try:
                client.deadline = time.monotonic() + _REFUSAL_SECONDS  # in all, however the bytes trickle
                client.handshake_budget = budget = self.config.limits.handshake_max_bytes  # as before any hello
                client.setTimeout(_REFUSAL_SECONDS * 1000)
                _, dialect = client.first_bytes()
                if dialect is None or dialect.kind not in ("thrift", "header"):
                    return
                transport, protocol = self._stack_for(_wire_of(dialect), client, budget)  # its own dialect
                try:
                    name, _, seqid = protocol.readMessageBegin()
                except AnswerableReadError as error:  # a frame over the budget: answered from its header
                    name, seqid = error.name, error.seqid
                protocol.writeMessageBegin(name, TMessageType.EXCEPTION, seqid)
                TApplicationException(TApplicationException.INTERNAL_ERROR, message).write(protocol)
                protocol.writeMessageEnd()
                transport.flush()
                _discard_input(client.handle)
            except Exception:  # silent, gone or not Thrift: nothing more to say
                pass
            finally:
                client.close()
                self._refusers.release()

        threading.Thread(target=answer, name=f"refuse {peer}", daemon=True).start()

    def _serve_connection(self, connection: Connection) -> None:
        """On a pool thread: serves the messages the connection has, then lets it wait or closes it."""
        if connection.protocol is None and not self._begin(connection):
            return
        event, reason = self._serve_messages(connection)
        if event is None:
            if self._park(connection):
                return
            event, reason = "closed", "server stopping"
        self._finish(connection, event, reason)

    def _begin(self, connection: Connection) -> bool:
        """TLS, then the stack for the dialect the peer speaks; False (closed, logged) when neither works."""
        identity = None
        if self._tls is not None:
            identity = self._start_tls(connection)
            if identity is False:
                self._release(connection)
                return False
        stack = self._open_stack(connection)
        if stack is None:  # not a dialect served here: explained to the peer and in the log
            self._release(connection)
            return False
        if not self.config.handshake:  # no hello to wait for: the session's limits apply from the start
            connection.socket.start_session(self.config.limits, _LINGER)
        connection.transport, connection.protocol = stack
        state = self.processor.connection(connection.protocol, connection.peer, identity or None, listener=connection)
        with connection._lock:
            connection.state = state
        return True

    def _serve_messages(self, connection: Connection) -> Tuple[Optional[str], str]:
        """Serves messages while the peer has some; (None, "") when it has none for now, else how the
        connection ends: ("closed" or "dropped", why)."""
        state, transport, protocol, sock = connection.state, connection.transport, connection.protocol, connection.socket
        try:
            if connection.stopping:
                raise TTransportException(TTransportException.END_OF_FILE, "server stopping")
            while True:
                try:
                    keep_open = self.processor.process(protocol, protocol)
                except NoMessageYet:
                    return None, ""
                except TTransportException as error:
                    if error.type not in _BAD_INPUT:
                        raise
                    raise _BadMessage(error) from error
                except Exception as error:
                    if state.in_flight is None or not transport.has_unflushed():  # the request failed
                        raise _BadMessage(error) from error
                    self._answer_unencodable_reply(state, protocol, error)
                    state.end()
                    keep_open = True
                sock.message_done()
                if not keep_open:
                    return "closed", state.session.close_reason
                if state.closing:
                    return "closed", "server stopping"
                if transport.has_buffered_input() or sock.pending_input():
                    sock.message_started()  # part of the next message is here: its deadline runs
                elif sock.request_timeout is None or self._pool.saturated:
                    # before the session, or others wait for a thread: no linger, wait in the watch
                    return None, ""
        except TTransportException as error:
            event, reason = self._transport_outcome(connection, state, error)
            if error.type == TTransportException.END_OF_FILE and state.in_flight and not connection.stopping:
                # cut off mid-request (a peer that half-closed can still read why)
                self._answer_bad_message(connection, state, protocol, "the request ended before it was complete")
            return event, reason
        except _BadMessage as bad:  # undecodable input: answer if we can, then close
            problem = self._bad_input(bad.error)
            self._answer_bad_message(connection, state, protocol, problem)
            return "dropped", f"bad message: {problem}"

    def _finish(self, connection: Connection, event: str, reason: str) -> None:
        """Closes a started connection and logs how it ended."""
        state = connection.state
        self._release(connection)
        summary = ""
        if state is not None:
            state.close()
            summary = _session_summary(state)
        guess = reason.startswith("hello refused")  # a wrong token: inside the budget too
        log = self._warnings.warning if event != "closed" else self._warnings.info if guess else logger.info
        log("%s peer=%s session=%s%s: %s", event, connection.peer, state and state.context.session_id, summary, reason)

    def _release(self, connection: Connection) -> None:
        """Stops watching the connection, closes its socket and forgets it."""
        watch = self._watch
        if watch is not None:
            watch.remove(connection.fd, connection)  # before the close: the number may be reused at once
        (connection.transport or connection.socket).close()
        with self._lock:
            self._connections.pop(connection, None)
            self.metrics.opened_or_closed(len(self._connections))
            if not self._connections:
                self._all_closed.notify_all()

    def _open_stack(self, connection: Connection) -> Optional[Tuple[Any, Any]]:
        """The transport and protocol for what the peer speaks, told from its first bytes; None (after
        explaining, in the peer's own framing where it can read it) for what this server does not serve."""
        first, dialect = connection.socket.first_bytes()
        served = self.config.wire
        if dialect is not None and dialect.kind == "thrift":
            wire = dataclasses.replace(served, protocol=dialect.wire.protocol, transport=dialect.wire.transport)
            if wire == served:
                transport = self.inputTransportFactory.getTransport(connection.socket)
                return transport, self.inputProtocolFactory.getProtocol(transport)
            if self.config.detect_wire:
                transport, protocol = self._stack_for(wire, connection.socket)
                return transport, protocol
        if dialect is not None and dialect.kind == "header" and (self.config.detect_wire or served.transport == "header"):
            limits = self.config.limits
            protocol = header_protocol(connection.socket, limits.max_message_bytes, limits.max_container_items)
            return protocol.trans, protocol
        if not first:  # closed (or silent until the deadline) before saying anything
            return self._stack_for(served, connection.socket)
        self._explain_mismatch(connection, first, dialect, f"this server speaks {self._speaks()}")
        return None

    def _speaks(self) -> str:
        if self.config.detect_wire:
            return "Thrift binary or compact, buffered or framed, or THeader"
        return f"Thrift {self.config.wire.transport} {self.config.wire.protocol}"

    def _stack_for(self, wire: Wire, sock: ConnectionSocket, max_bytes: Optional[int] = None) -> Tuple[Any, Any]:
        """The stack for ``wire`` on ``sock``, reading messages of at most ``max_bytes`` (max_message_bytes)."""
        limits = self.config.limits
        max_bytes = max_bytes or limits.max_message_bytes
        transport = transport_factory(wire, frame_limit(max_bytes)).getTransport(sock)
        return transport, protocol_factory(wire, max_bytes, limits.max_container_items).getProtocol(transport)

    def _explain_mismatch(self, connection: Connection, first: bytes, dialect: Optional[Dialect], expected: str) -> None:
        """Answers a peer this server cannot serve, where it can read the answer, and logs why."""
        said = "nothing it recognises" if dialect is None else str(dialect)
        explanation = f"the client speaks {said}; {expected}"
        self._warnings.warning("refused peer=%s: %s (first bytes %s)", connection.peer, explanation, first.hex(" "))
        handle = connection.socket.handle
        try:
            if dialect is not None and dialect.kind == "http":
                body = (f"This is a Thrift server (thrift-handshake), not an HTTP server: {explanation}.\n"
                        "Connect with a Thrift client.\n").encode()
                handle.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                               b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            elif dialect is not None and dialect.kind == "tls":
                handle.sendall(_TLS_ALERT_PROTOCOL_VERSION)  # all a TLS client can read from a plain server
            elif dialect is not None and dialect.kind in ("thrift", "header", "bad-version"):
                transport, protocol = self._stack_for(_wire_of(dialect), connection.socket)
                name, seqid = "", 0
                if dialect.kind != "bad-version":  # answer the very call it made, in its own framing
                    name, _, seqid = protocol.readMessageBegin()
                protocol.writeMessageBegin(name, TMessageType.EXCEPTION, seqid)
                TApplicationException(TApplicationException.INVALID_PROTOCOL, explanation).write(protocol)
                protocol.writeMessageEnd()
                transport.flush()
            _discard_input(handle)
        except Exception:  # the peer is gone, or its message was not even a header
            pass

    def _start_tls(self, connection: Connection) -> Any:
        """The TLS handshake, on the connection's own thread within the handshake timeout; returns the
        client certificate's common name ("" without one), or False when the handshake failed."""
        first, dialect = _peek(connection.socket.handle)
        if first and (dialect is None or dialect.kind != "tls"):  # a plain client on the TLS port
            self._explain_mismatch(connection, first, dialect, "this server requires TLS")
            return False
        try:
            handle = self._tls.wrap_socket(connection.socket.handle, server_side=True, do_handshake_on_connect=False)
            with connection._lock:  # from now on shutdown() and evict() reach this socket
                connection.socket.setHandle(handle)
                interrupted = connection.stopping or connection.evicted
            if interrupted:
                raise OSError("the connection was closed before its TLS handshake")
            handle.do_handshake()
        except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
            self._warnings.warning("dropped peer=%s: TLS handshake failed: %s", connection.peer, error)
            return False
        certificate = handle.getpeercert()
        subject = dict(item for rdn in (certificate or {}).get("subject", ()) for item in rdn)
        return subject.get("commonName", "")

    def _bad_input(self, error: BaseException) -> str:
        """What was wrong with a message, worded the same whichever protocol implementation noticed."""
        if isinstance(error, FrameTooLarge):
            return (f"a frame of {error.size + 4} bytes (its length field included) exceeds this server's limits "
                    f"(max_message_bytes={self.config.limits.max_message_bytes})")
        if isinstance(error, (BudgetExceeded, FrameRefused)):
            return clip_for_log(error)
        too_big = (isinstance(error, TTransportException) and error.type in _BAD_INPUT) or (
            isinstance(error, OverflowError) and any(words in str(error) for words in _C_TOO_BIG))
        if too_big:
            limits = self.config.limits
            return (f"a string, binary or container exceeds this server's limits (max_message_bytes="
                    f"{limits.max_message_bytes}, max_container_items={limits.max_container_items})")
        return f"{type(error).__name__}: {clip_for_log(error)}"

    @staticmethod
    def _transport_outcome(connection: Connection, state: ConnectionState,
                           error: TTransportException) -> Tuple[str, str]:
        if connection.stopping:
            return "closed", "server stopping"
        if connection.evicted:
            return "dropped", f"evicted: {connection.evictable_as} and the server was full"
        if state.session is not None and state.session.closing:
            # goodbye (or a refused hello) was served: a peer that left without reading the answer is fine
            return "closed", state.session.close_reason
        established = state.session is None or state.session.established
        if is_timeout(error):
            if not established:
                return "dropped", "handshake timeout"
            if "did not read its reply" in str(error):
                return "dropped", "the peer did not read its reply within the idle timeout"
            if connection.socket.deadline is not None:
                return "dropped", "request timeout: the message did not arrive whole in time"
            return "dropped", "idle timeout"
        if error.type == TTransportException.END_OF_FILE and state.in_flight is None:
            if state.session is None or state.context.session_id is None:
                return "closed", "peer closed the connection"
            return "dropped", "peer closed the connection without goodbye"
        if is_reset(error):
            if state.session is None or state.context.session_id is None:
                return "dropped", "peer reset the connection"
            return "dropped", "peer reset the connection without goodbye"
        return "dropped", f"transport error: {error}"

    @staticmethod
    def _send_exception(state: ConnectionState, protocol: Any, kind: int, message: str) -> None:
        """Answers the message in flight with a TApplicationException, dropping any half-written reply."""
        name, seqid = state.in_flight
        protocol.trans.discard_unflushed()
        protocol.writeMessageBegin(name, TMessageType.EXCEPTION, seqid)
        TApplicationException(kind, message).write(protocol)
        protocol.writeMessageEnd()
        protocol.trans.flush()

    def _answer_unencodable_reply(self, state: ConnectionState, protocol: Any, error: Exception) -> None:
        """The handler returned something its IDL type cannot carry: INTERNAL_ERROR for this call only."""
        name = state.in_flight[0]
        logger.error("peer=%s: the %s reply cannot be encoded: %s: %s", state.context.peer, name,
                     type(error).__name__, clip_for_log(error))
        self._send_exception(state, protocol, TApplicationException.INTERNAL_ERROR,
                             f"the server could not encode the {name} reply")

    @classmethod
    def _answer_bad_message(cls, connection: Connection, state: ConnectionState, protocol: Any,
                            problem: str) -> None:
        """Tells the caller why its message was refused before the connection closes."""
        if state.in_flight is None:
            return
        try:
            name = state.in_flight[0]
            cls._send_exception(state, protocol, TApplicationException.PROTOCOL_ERROR,
                                f"cannot decode the {name + ' ' if name else ''}request: {problem}")
            _discard_input(connection.socket.handle)
        except Exception:  # the peer may be gone already
            pass

    def _remaining_grace(self) -> float:
        return max(self._deadline - time.monotonic(), 0.0)

    def _drain(self) -> None:
        """Stop: no new connections, idle ones closed now, busy ones after their reply or at the
        end of the grace period, when the service's remaining work is aborted too."""
        try:
            self._drain_connections()
        finally:
            self._drained = True
            self._stopped.set()

    def _drain_connections(self) -> None:
        self._deadline = time.monotonic() + self._grace
        self.serverTransport.close()
        with self._lock:
            connections = list(self._connections)
        logger.info("stopping: %d connections open, grace %.1fs", len(connections), self._grace)
        for connection in connections:
            connection.shutdown()
            if connection.unpark():  # waiting for input: no thread to wake, closed here
                self._finish(connection, "closed", "server stopping")
        closers = [threading.Thread(target=callback, args=(self._grace + _UNWIND_WAIT,), name="on_stop",
                                    daemon=True) for callback in self._stop_callbacks]
        for closer in closers:  # the service's own work drains alongside; the grace period decides
            closer.start()
        self._wait_for_connections(self._remaining_grace)  # re-read: a 2nd signal ends it
        for closer in closers:
            while closer.is_alive() and self._remaining_grace() > 0:
                closer.join(min(self._remaining_grace(), 0.05))
        for callback, closer in zip(self._stop_callbacks, closers):
            if closer.is_alive():
                try:
                    callback(0.0)  # abort what still runs, so busy handlers return (and answer why)
                except Exception:
                    logger.exception("an on_stop callback failed to abort its work")
        until = time.monotonic() + _ABORT_REPLY_WAIT  # a short while for those answers to go out
        self._wait_for_connections(lambda: until - time.monotonic())
        with self._lock:
            busy = list(self._connections)
        for connection in busy:
            logger.warning("grace period over: closing peer=%s in %s", connection.peer,
                           clip_for_log(connection.in_flight))
            connection.shutdown(force=True)
        for closer in closers:
            closer.join(_UNWIND_WAIT)
        until = time.monotonic() + _UNWIND_WAIT
        self._wait_for_connections(lambda: until - time.monotonic())
        with self._lock:
            left = list(self._connections)
        for connection in left:
            logger.error("peer=%s: handler still running after the grace period; left behind", connection.peer)
        if self._pool is not None:
            self._pool.close()
        self._warnings.flush()
        stats = self.metrics.local_snapshot()  # this process's own (with workers: not the sum)
        logger.info("stopped: %d connections served, calls %s", stats.connections_total, stats.calls)

    def _wait_for_connections(self, remaining: Callable[[], float]) -> None:
        """Waits until every connection is closed or ``remaining()`` seconds are up."""
        with self._all_closed:
            while self._connections:
                left = remaining()
                if left <= 0:
                    return
                self._all_closed.wait(min(left, 0.05))


def _wire_of(dialect: Dialect) -> Wire:
    """The wire a Thrift dialect (plain or THeader) is answered in; a bad version gets strict binary."""
    if dialect.kind == "header":
        return Wire(transport="header")
    return dialect.wire or Wire()


def _session_summary(state: ConnectionState) -> str:
    """What the one log line of a connection says of its session (who, how many calls, how long)."""
    session, context = state.session, state.context
    if session is None or context.established_at is None:
        return ""
    duration_ms = int((time.monotonic() - context.established_at) * 1000)
    return f" client={context.client_name!r} version={context.version} calls={session.calls} duration_ms={duration_ms}"


class _BadMessage(Exception):
    """A message that could not be decoded (or was too big); the connection closes after answering."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _peek(handle: socket.socket) -> Tuple[bytes, Optional[Dialect]]:
    """A plain socket's first bytes and their dialect, left unread (for the TLS port: before wrapping)."""
    deadline = time.monotonic() + (handle.gettimeout() or 10.0)
    data, dialect = b"", None
    while dialect is None and len(data) < SNIFF_BYTES and time.monotonic() < deadline:
        try:
            data = handle.recv(SNIFF_BYTES, socket.MSG_PEEK)
        except OSError:
            break
        if not data:
            break
        dialect = sniff(data)
        if dialect is None and not _wait_for_more(handle, len(data), deadline):
            break
    return data, dialect


_POLL_CLOSED = getattr(select, "POLLRDHUP", 0)  # the peer closed its end (Linux)


def _wait_for_more(handle: socket.socket, have: int, deadline: float) -> bool:
    """Waits until more than the ``have`` bytes already received (and peeked at) are readable; False
    when the peer closed or the deadline passed first. Poll alone would wake at once for the bytes
    already there; the low-water mark makes it wait for new ones (without spinning)."""
    handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, have + 1)
    try:
        waiter = select.poll()
        waiter.register(handle, select.POLLIN | _POLL_CLOSED)
        events = waiter.poll(max(deadline - time.monotonic(), 0.0) * 1000)
    finally:
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
    return bool(events) and not events[0][1] & (_POLL_CLOSED | select.POLLHUP | select.POLLERR)
