"""Server counters behind stats(): connections, sessions, handshakes, calls by method, notifications.

Per-call counts live on each connection's ``ConnectionCounters`` (only its own thread writes them), so
the call path takes no lock; ``CallCounter``, an interceptor in every gate's chain, keeps them; ``snapshot()`` adds the live connections' counts to those of connections
already closed. ``ServerMetrics`` is also a ``session.SessionListener``: sessions report to it.

Bytes in and out are the kernel's counts of each TCP connection (``TCP_INFO``), read when it closes
(``socket_closing``) and, for the open ones, when asked (``bytes_now``): nothing is counted per read
or write. The hosted service may add figures of its own, read when asked (``add_gauge``).

With pre-forked workers, ``SharedStats`` (made by the supervisor before it forks) holds every worker's
counts in shared memory; a worker's metrics joined to it (``ServerMetrics.share``) answer ``stats()``
with the sum of all workers. The call path still only touches its own connection's counters.
"""

from __future__ import annotations

import logging
import mmap
import os
import socket
import struct
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from thrift.protocol.TBinaryProtocol import TBinaryProtocolAcceleratedFactory
from thrift.TSerialization import deserialize, serialize

from thrift_handshake_gen.session.ttypes import ServerStats

from .interceptors import Interceptor, Outcome
from .wire.sockets import wait_readable

__all__ = ["CallCounter", "ConnectionCounters", "ServerMetrics", "SharedStats", "UNKNOWN_METHOD", "socket_bytes"]

logger = logging.getLogger(__name__)

#: Bytes of one worker's slot: a header and its serialized ServerStats (method names are bounded by the IDL).
SLOT_BYTES = 64 * 1024
#: Every worker republishes this often even unasked, so a worker that dies loses at most this much counting.
PUBLISH_EVERY = 1.0
#: How long stats() waits for the other workers to publish fresh counts (then it uses their last ones).
ANSWER_WAIT = 0.1
_SLOT = struct.Struct("<QqI")  # sequence (odd while being written), worker pid (0: none), payload length
_AREA = struct.Struct("<d")    # when the service started (time.time())
_OPEN = struct.Struct("<q")    # one worker's open connections, in its own 8-byte cell
_PROTOCOL = TBinaryProtocolAcceleratedFactory()
#: Linux's struct tcp_info: tcpi_bytes_acked and tcpi_bytes_received (since 4.2), tcpi_bytes_sent and
#: tcpi_bytes_retrans (since 4.19).
_TCP_INFO_BYTES = 216
_ACKED_RECEIVED = struct.Struct("<QQ")
_SENT_RETRANS = struct.Struct("<QQ")
#: tcpi_state values after the peer's FIN arrived (CLOSE_WAIT, LAST_ACK, CLOSING): the FIN advanced the
#: received sequence number, which tcpi_bytes_received follows, by one byte that carried no data.
_PEER_FIN_SEEN = frozenset({8, 9, 11})


def socket_bytes(handle: Optional[socket.socket]) -> Tuple[int, int]:
    """(received, sent) on a TCP connection so far, as the kernel counts them (TLS records and
    compressed bytes as they travelled; retransmissions once); (0, 0) where the kernel does not say
    (a Unix socket, a closed one, another system)."""
    if handle is None or not hasattr(socket, "TCP_INFO"):
        return 0, 0
    try:
        info = handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    except OSError:
        return 0, 0
    if len(info) < 136:
        return 0, 0
    acked, received = _ACKED_RECEIVED.unpack_from(info, 120)
    if info[0] in _PEER_FIN_SEEN and received:
        received -= 1
    if len(info) >= _TCP_INFO_BYTES:
        sent, retransmitted = _SENT_RETRANS.unpack_from(info, 200)
        return received, sent - retransmitted
    return received, acked


def _add(total: Dict[str, int], counts: Dict[str, int]) -> None:
    for name, count in counts.items():
        total[name] = total.get(name, 0) + count


def _sum(parts: Iterable[ServerStats]) -> ServerStats:
    """Field by field sum of ``parts`` (uptime: the longest)."""
    total = ServerStats(connections_open=0, connections_total=0, sessions_active=0, handshakes_ok=0,
                        handshakes_rejected=0, calls={}, notifications=0, uptime_ms=0)
    for part in parts:
        for name in ("connections_open", "connections_total", "sessions_active", "handshakes_ok",
                     "handshakes_rejected", "notifications"):
            setattr(total, name, getattr(total, name) + (getattr(part, name) or 0))
        _add(total.calls, part.calls or {})
        total.uptime_ms = max(total.uptime_ms, part.uptime_ms or 0)
    return total


#: Method names counted under their own name; any other name (junk, typos) is counted as this.
UNKNOWN_METHOD = "<unknown>"
#: Read for every call: a module name is found faster than an enum member (Python 3.11).
_UNKNOWN_OUTCOME = Outcome.UNKNOWN_METHOD


class CallCounter(Interceptor):
    """The runtime's counting of calls (``stats()``): every message by method name when it starts,
    one-way calls delivered to their handler when they end. Per connection, so it takes no lock."""

    observes_handler = False

    def call_started(self, call: Any) -> None:
        method = (UNKNOWN_METHOD if call.outcome is _UNKNOWN_OUTCOME
                  else call.method if call.service is None else call.name)  # Service:method when multiplexed
        calls = call.connection.counters.calls
        calls[method] = calls.get(method, 0) + 1

    def call_ended(self, call: Any) -> None:
        if call.oneway and call.outcome is Outcome.OK:
            call.connection.counters.notifications += 1


class ConnectionCounters:
    """What one connection has received: messages by method, one-way calls delivered."""

    __slots__ = ("calls", "notifications", "said_goodbye", "__weakref__")

    def __init__(self) -> None:
        self.calls: Dict[str, int] = {}
        self.notifications = 0
        self.said_goodbye = False  # its client already considers it closed


class ServerMetrics:
    """Thread-safe counters of one server (or of one processor hosted by a stock Thrift server)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._live: Set[ConnectionCounters] = set()
        self._closed_calls: Dict[str, int] = {}
        self._closed_notifications = 0
        self.connections_total = 0
        self.sessions_active = 0
        self.handshakes_ok = 0
        self.handshakes_rejected = 0
        self.rejected_by: Dict[str, int] = {}  # refused hellos by ``Session.refusal_kind``
        self.bytes_received = 0  # by connections already closed
        self.bytes_sent = 0
        self._gauges: Dict[str, Tuple[str, Callable[[], float]]] = {}
        self._shared: Optional[SharedStats] = None
        self._slot = 0
        self._earlier: List[ServerStats] = []  # what earlier workers in the same slot counted

    def share(self, shared: "SharedStats", slot: int) -> None:
        """Joins ``shared`` as worker ``slot``: publishes there from now on, and ``snapshot()`` sums every
        worker. Counts of the slot's earlier worker (one that died) carry over."""
        earlier = shared.read(slot)
        self._earlier = [] if earlier is None else [earlier]
        self._shared, self._slot = shared, slot
        shared.publish_from(slot, self.local_snapshot)

    def open_everywhere(self, here: int) -> int:
        """Connections open in the whole service: ``here`` (this process), or with workers all of theirs."""
        return here if self._shared is None else self._shared.open_total()

    def opened_or_closed(self, here: int) -> None:
        """This process now has ``here`` connections open (published at once to the other workers)."""
        if self._shared is not None:
            self._shared.set_open(self._slot, here)

    def connection_opened(self, counters: ConnectionCounters) -> None:
        with self._lock:
            self._live.add(counters)
            self.connections_total += 1

    def connection_closed(self, counters: ConnectionCounters) -> None:
        with self._lock:
            if counters not in self._live:
                return
            self._live.discard(counters)
            _add(self._closed_calls, counters.calls)
            self._closed_notifications += counters.notifications

    # -- session.SessionListener ----------------------------------------------------------------

    def session_started(self, session: object) -> None:
        with self._lock:
            if not getattr(session, "anonymous", False):  # an anonymous session said no hello
                self.handshakes_ok += 1
            self.sessions_active += 1

    def session_rejected(self, session: object, reason: str) -> None:
        kind = getattr(session, "refusal_kind", None) or "invalid"
        with self._lock:
            self.handshakes_rejected += 1
            self.rejected_by[kind] = self.rejected_by.get(kind, 0) + 1

    def session_ended(self, session: object, goodbye: bool) -> None:
        with self._lock:
            self.sessions_active -= 1

    # -------------------------------------------------------------------------------------------

    def socket_closing(self, handle: Optional[socket.socket]) -> Tuple[int, int]:
        """A connection's socket is about to close: returns its bytes (received, sent), to be added
        with ``bytes_closed`` once it no longer counts as open."""
        return socket_bytes(handle)

    def bytes_closed(self, moved: Tuple[int, int]) -> None:
        with self._lock:
            self.bytes_received += moved[0]
            self.bytes_sent += moved[1]

    def bytes_now(self, open_sockets: Iterable[Optional[socket.socket]]) -> Tuple[int, int]:
        """(received, sent) by the connections closed so far and by ``open_sockets``."""
        with self._lock:
            received, sent = self.bytes_received, self.bytes_sent
        for handle in open_sockets:
            more = socket_bytes(handle)
            received += more[0]
            sent += more[1]
        return received, sent

    def add_gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A figure of the hosted service (e.g. its queue's depth), read by ``read()`` whenever the
        metrics are asked for; ``name`` in Prometheus' form, without the namespace."""
        if not name.replace("_", "").isalnum() or not name[0].isalpha():
            raise ValueError(f"{name!r} is not a metric name (letters, digits and _)")
        with self._lock:
            self._gauges[name] = (documentation, read)

    def gauges(self) -> Dict[str, Tuple[str, Callable[[], float]]]:
        """The hosted service's figures: name -> (documentation, read)."""
        with self._lock:
            return dict(self._gauges)

    def snapshot(self) -> ServerStats:
        """The counters now, as the session contract's ServerStats (of every worker, when shared)."""
        if self._shared is None:
            return self.local_snapshot()
        return self._shared.total(self._slot, self.local_snapshot())

    def local_snapshot(self, earlier: bool = True) -> ServerStats:
        """This process's counters now (``earlier``: with those of the earlier workers in its slot)."""
        with self._lock:
            calls = dict(self._closed_calls)
            notifications = self._closed_notifications
            for counters in self._live:
                _add(calls, dict(counters.calls))  # dict() copies atomically under the GIL
                notifications += counters.notifications
            own = ServerStats(
                connections_open=sum(1 for counters in self._live if not counters.said_goodbye),
                connections_total=self.connections_total,
                sessions_active=self.sessions_active,
                handshakes_ok=self.handshakes_ok,
                handshakes_rejected=self.handshakes_rejected,
                calls=calls,
                notifications=notifications,
                uptime_ms=int((time.monotonic() - self._started) * 1000),
            )
        return _sum([own, *self._earlier]) if self._earlier and earlier else own


class SharedStats:
    """Every worker's ServerStats in one shared memory area, so that any worker can answer for all.

    The supervisor makes it before forking (anonymous shared memory, and a doorbell socket per slot, both
    inherited). Worker ``slot`` alone writes its slot, from one thread: when another worker rings its
    doorbell (that one answers ``stats()``) and every ``PUBLISH_EVERY`` seconds. Readers copy a slot
    without a lock: a sequence number, odd while a write is under way, tells a torn copy.
    """

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._area = mmap.mmap(-1, _AREA.size + slots * SLOT_BYTES)
        _AREA.pack_into(self._area, 0, time.time())
        self._open = mmap.mmap(-1, slots * _OPEN.size)  # written at once on every change, unlike the stats
        self._open_all = struct.Struct(f"<{slots}q")
        self._bells = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(slots)]
        for _, ring in self._bells:
            ring.setblocking(False)

    def _offset(self, slot: int) -> int:
        return _AREA.size + slot * SLOT_BYTES

    def _header(self, slot: int) -> Tuple[int, int, int]:
        return _SLOT.unpack_from(self._area, self._offset(slot))

    def _write(self, slot: int, pid: int, stats: ServerStats) -> None:
        blob = serialize(stats, _PROTOCOL)
        if len(blob) > SLOT_BYTES - _SLOT.size:
            logger.warning("stats of worker %d take %d bytes, more than its slot holds; not published", slot, len(blob))
            return
        offset = self._offset(slot)
        sequence = self._header(slot)[0] | 1  # odd: being written (also after a writer died mid-write)
        _SLOT.pack_into(self._area, offset, sequence, pid, len(blob))
        self._area[offset + _SLOT.size:offset + _SLOT.size + len(blob)] = blob
        _SLOT.pack_into(self._area, offset, sequence + 1, pid, len(blob))

    def read(self, slot: int) -> Optional[ServerStats]:
        """The latest counts published in ``slot`` (None: never written, or its writer died mid-write)."""
        offset = self._offset(slot) + _SLOT.size
        for _ in range(1000):
            sequence, _, length = self._header(slot)
            if sequence == 0:
                return None
            if sequence % 2 == 0:
                blob = self._area[offset:offset + length]
                if self._header(slot)[0] == sequence:
                    return deserialize(ServerStats(), blob, _PROTOCOL)
            time.sleep(0)
        return None

    def publish_from(self, slot: int, counts: Callable[[], ServerStats]) -> None:
        """In worker ``slot``: publishes ``counts()`` now, then on every ring and every PUBLISH_EVERY seconds."""
        pid = os.getpid()
        self._write(slot, pid, counts())
        bell = self._bells[slot][0]
        bell.setblocking(False)

        def publish() -> None:
            while True:
                wait_readable(bell, PUBLISH_EVERY)
                try:
                    while bell.recv(16):  # every ring pending: one answer for all
                        pass
                except BlockingIOError:
                    pass
                self._write(slot, pid, counts())

        threading.Thread(target=publish, name=f"stats-slot-{slot}", daemon=True).start()

    def set_open(self, slot: int, count: int) -> None:
        """In worker ``slot``: it has ``count`` connections open now."""
        _OPEN.pack_into(self._open, slot * _OPEN.size, count)

    def open_total(self) -> int:
        """Connections open in all workers together (for the service-wide max_connections)."""
        return sum(self._open_all.unpack_from(self._open, 0))

    def retire(self, slot: int) -> None:
        """Supervisor: the worker of ``slot`` is gone; keep its totals, drop its live connections and sessions."""
        self.set_open(slot, 0)
        last = self.read(slot)
        if last is None:
            if self._header(slot)[0]:
                logger.warning("worker %d died while publishing its stats; its counts are lost", slot)
            last = ServerStats()
        last.connections_open = last.sessions_active = 0
        self._write(slot, 0, last)

    def total(self, own_slot: int, own: ServerStats) -> ServerStats:
        """``own`` plus every other slot's counts, asked fresh (waiting at most ANSWER_WAIT for them)."""
        others = [slot for slot in range(self.slots) if slot != own_slot]
        asked = {}
        for slot in others:
            sequence, pid, _ = self._header(slot)
            if pid:
                try:
                    self._bells[slot][1].send(b"?")
                except OSError:  # full: a ring is pending anyway
                    pass
                asked[slot] = sequence
        deadline = time.monotonic() + ANSWER_WAIT
        while asked and time.monotonic() < deadline:
            asked = {slot: seq for slot, seq in asked.items() if self._header(slot)[0] < seq + 2}
            if asked:
                time.sleep(0.001)
        parts = [own] + [stats for stats in map(self.read, others) if stats is not None]
        total = _sum(parts)
        total.uptime_ms = int((time.time() - _AREA.unpack_from(self._area, 0)[0]) * 1000)
        return total
