"""Who may hold a connection: the open connections in accept order, the limit on them, and at the
limit, which connection makes room for a newcomer (eviction) or that the newcomer is told the server
is full, in its own dialect."""

from __future__ import annotations

import math
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from thrift.Thrift import TApplicationException
from thrift.transport.TTransport import TTransportException

from ..config import ServerConfig
from ..metrics import ServerMetrics
from ..peerlog import WarningBudget
from ..wire import ConnectionSocket, DialectKind, answer_refusal, discard_input, write_application_exception
from ..wire.http import response_bytes
from .connection import Connection
from .outcome import evicted_as

__all__ = ["Admission", "eviction_candidates", "evict_for_another_host", "host_over_its_share", "tell_evicted"]

#: A connection that has sent nothing this long after it was accepted has no hello under way: it may
#: make room for a newcomer to a full server before ``evict_after`` (a client's hello follows its connect
#: within a round trip).
SILENT_GRACE = 0.1
#: At most this many "server full" answers are written at once (each on its own short-lived thread),
#: each waiting at most this long for the newcomer's first message.
_MAX_REFUSERS = 16
_REFUSAL_SECONDS = 1.0
#: How long an evicted session's thread may take to write why it was evicted (_TELL_SECONDS below 1 s
#: would need the kernel timeout below re-computed).
_TELL_SECONDS = 1.0


def eviction_candidates(connections: Iterable[Connection], now: float, config: ServerConfig) -> List[Connection]:
    """Whom to evict for a newcomer, first choice first: connections that have had no session for
    ``evict_after`` seconds, or that have sent nothing at all for a moment (``SILENT_GRACE``), so
    connections that never finish a hello cannot lock everyone out while a client whose hello is under
    way keeps its place; without hello, then the plain connections idle longest (for ``evict_after`` at
    least), never one in a call. Those of the host holding the most go first (else in accept order):
    a flood from one host makes room before another host's client that pauses before its hello."""
    limits = config.limits
    old_enough = now - limits.evict_after
    connections = list(connections)
    held = Counter(c.host for c in connections)
    chosen = [c for c in connections if c.awaiting_hello and (
        c.accepted_at <= old_enough or (c.accepted_at <= now - SILENT_GRACE and c.silent()))]
    chosen.sort(key=lambda c: -held[c.host])
    if not config.handshake:
        waiting_since = old_enough + limits.idle_timeout  # the expiry of one that went to wait then
        chosen += sorted((c for c in connections
                          if c.in_the_watch and not c.awaiting_hello and c.expires_at <= waiting_since),
                         key=lambda c: (-held[c.host], c.expires_at))
    return chosen


def host_over_its_share(connections: Iterable[Connection], config: ServerConfig, newcomer_host: str,
                        part: float = 1.0) -> Optional[Tuple[str, int, List[Connection]]]:
    """The host holding the most connections, how many, and what it gives up for a newcomer from
    another host when it holds more than its share (``host_share`` of max_connections), or more than
    the newcomer's host would hold with the newcomer (max-min: two hosts at their share of 0.5 each
    used to lock every third host out): its connections still without a session (accept order), then
    its idle sessions (idle longest first), then its sessions stalled mid-message for ``evict_after``
    (a byte of a request, then silence, would otherwise hold a slot for ever: neither idle nor awaiting
    hello, renewed each request_timeout). None otherwise: one host alone may fill the server, and hosts
    end up holding about as many as each other. With workers a worker sees only its own connections
    (``part`` of the service's open ones), so the share is that part of it (rounded up: the host keeps
    at least its share in all), and the counts compared are this worker's."""
    connections = [c for c in connections if not c.closing]  # one evicted a moment ago is no longer held
    held = Counter(c.host for c in connections)
    if not held:
        return None
    host, count = held.most_common(1)[0]
    share = config.limits.max_connections * config.limits.host_share
    if part < 1.0:
        share = math.ceil(share * part)
    share = max(1, int(share))
    if host == newcomer_host or (count <= share and count <= held[newcomer_host] + 1):
        return None
    theirs = [c for c in connections if c.host == host]
    idle = sorted((c for c in theirs if c.in_the_watch and c.established), key=lambda c: c.expires_at)
    now = time.monotonic()
    stalled = [c for c in theirs if not c.in_the_watch and c.stalled(now, config.limits.evict_after)]
    return host, count, [c for c in theirs if c.awaiting_hello] + idle + stalled


def evict_for_another_host(connections: Iterable[Connection], config: ServerConfig, newcomer_host: str,
                           warnings: WarningBudget, part: float = 1.0) -> bool:
    """Evicts the first connection that can go of those a host over its share gives up for a newcomer
    from another host (``host_over_its_share``), and says so; whether one was."""
    hog = host_over_its_share(connections, config, newcomer_host, part)
    if hog is None:
        return False
    host, count, theirs = hog
    limits = config.limits
    reason = (f"host {host} holds {count} of max_connections {limits.max_connections} (its share: "
              f"{limits.host_share:g}) and another host, holding fewer, needed room")
    for connection in theirs:
        if connection.evict(force=True, session=True, reason=reason, stalled=limits.evict_after):
            warnings.warning("evicted peer=%s: %s", connection.peer, reason)
            return True
    return False


class Admission:
    """The open connections and the limit on them; an evicted connection is closed (and logged)
    through its own closer, or by its own thread."""

    def __init__(self, config: ServerConfig, metrics: ServerMetrics, warnings: WarningBudget) -> None:
        self._config = config
        self._metrics = metrics
        self._warnings = warnings
        self._lock = threading.Lock()
        self._connections: Dict[Connection, None] = {}  # in accept order: the oldest is evicted first
        self._all_closed = threading.Condition(self._lock)  # notified when the last connection closes
        self._refusers = threading.BoundedSemaphore(_MAX_REFUSERS)
        #: With workers: asks the sibling workers to close one of theirs for a newcomer from a host.
        self.ask_siblings: Optional[Callable[[str], bool]] = None

    def __len__(self) -> int:
        return len(self._connections)

    def connections(self) -> List[Connection]:
        """The open connections, oldest first (a copy)."""
        with self._lock:
            return list(self._connections)

    def admit(self, client: ConnectionSocket, peer: str) -> bool:
        """Whether a newcomer may be served: below the limit, or once another made room. When not, it
        is told the server is full (and the caller forgets it)."""
        here = len(self._connections)
        open_now = self._metrics.open_everywhere(here)  # here, unless workers share the limit
        if open_now < self._config.limits.max_connections:
            return True
        host = peer.rsplit(":", 1)[0]
        if self.make_room(host, self._part(here, open_now)):
            return True
        if self.ask_siblings is not None and self.ask_siblings(host):  # a sibling holds what can go
            return True
        self._refuse_full(client, peer, open_now)
        return False

    def make_room_for_sibling(self, newcomer_host: str) -> bool:
        """A sibling worker's newcomer from ``newcomer_host`` found the service full: ``make_room``
        here, judged as for a newcomer of this worker's own."""
        here = len(self._connections)
        return self.make_room(newcomer_host, self._part(here, self._metrics.open_everywhere(here)))

    @staticmethod
    def _part(here: int, open_now: int) -> float:
        """This worker's part of the service's open connections."""
        return here / open_now if open_now > here else 1.0

    def add(self, connection: Connection) -> None:
        with self._lock:
            self._connections[connection] = None
            self._metrics.opened_or_closed(len(self._connections))

    def forget(self, connection: Connection) -> None:
        with self._lock:
            self._connections.pop(connection, None)
            self._metrics.opened_or_closed(len(self._connections))
            if not self._connections:
                self._all_closed.notify_all()

    def wait_until_empty(self, remaining: Callable[[], float]) -> None:
        """Waits until every connection is closed or ``remaining()`` seconds are up."""
        with self._all_closed:
            while self._connections:
                left = remaining()
                if left <= 0:
                    return
                self._all_closed.wait(min(left, 0.05))

    def make_room(self, newcomer_host: str, part: float = 1.0) -> bool:
        """Evicts the first of ``eviction_candidates`` that can go (one waiting in the watch or between
        messages first, else one stuck mid-message), else, for a newcomer from another host, what a
        host over its share gives up (``host_over_its_share``); False when there is none."""
        connections = self.connections()
        limits = self._config.limits
        candidates = eviction_candidates(connections, time.monotonic(), self._config)
        for force in (False, True):
            for connection in candidates:
                if connection.evict(force):
                    self._warnings.warning("evicted peer=%s: %s and the server is full (max_connections %d)",
                                           connection.peer, evicted_as(self._config.handshake),
                                           limits.max_connections)
                    return True
        return evict_for_another_host(connections, self._config, newcomer_host, self._warnings, part)

    def _refuse_full(self, client: ConnectionSocket, peer: str, open_now: int) -> None:
        """Tells a newcomer the server is full, in its own framing, on a short-lived thread (bounded)."""
        message = f"server full: {open_now} connections (max_connections); try again later"
        self._warnings.warning("refused peer=%s: %s", peer, message)
        if not self._refusers.acquire(blocking=False):  # too many refusals at once: just close
            client.close()
            return
        config = self._config

        def answer() -> None:
            try:
                client.deadline = time.monotonic() + _REFUSAL_SECONDS  # in all, however the bytes trickle
                client.handshake_budget = budget = config.limits.handshake_max_bytes  # as before any hello
                _, dialect = client.first_bytes()
                if dialect is not None and dialect.kind is DialectKind.HTTP:  # Thrift over HTTP: a 503
                    client.write(response_bytes(503, f"{message}\n".encode(), "text/plain; charset=utf-8",
                                                keep_alive=False, headers=[("Retry-After", "1")]))
                    client.flush()
                    discard_input(client.handle)
                    return
                if dialect is None or dialect.kind not in _ANSWERED_WHEN_FULL:
                    return
                answer_refusal(client, dialect, TApplicationException.INTERNAL_ERROR, message, budget,
                               config.limits.max_container_items)  # in its own dialect
            except Exception:  # silent, gone or not Thrift: nothing more to say
                pass
            finally:
                client.close()
                self._refusers.release()

        threading.Thread(target=answer, name=f"refuse {peer}", daemon=True).start()


#: Dialects told "server full" in their own framing (the others are closed without a word).
_ANSWERED_WHEN_FULL = (DialectKind.THRIFT, DialectKind.HEADER, DialectKind.FRAMED_HEADER)


def tell_evicted(connection: Connection, message: str) -> None:
    """Tells an idle session why it is closed: an unsolicited exception (no method, seqid 0) in its own
    dialect, which a generated Thrift client raises from its next call. Bounded by ``_TELL_SECONDS``:
    a peer that does not read cannot hold the thread."""
    sock, protocol = connection.socket, connection.protocol
    try:
        sock.reply_timeout = _TELL_SECONDS  # bounds this write: the session is over anyway
        handle = sock.handle
        if not isinstance(handle, ssl.SSLSocket):  # kernel send timeouts (see wire.ConnectionSocket)
            handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 1, 0))
        write_application_exception(protocol, "", 0, TApplicationException.INTERNAL_ERROR, message)
    except (OSError, TTransportException):  # gone, or not reading: closed without the word
        pass
