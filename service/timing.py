"""The client's timeline: one record per phase or call, with its cost in time and bytes.

For a call the record splits the round trip the way the handshake model does:

    total = send + wait + receive
          = T_s (server's own time, when the reply reports it) + network-and-queue + T_e (decode)

where *send* is encoding plus writing the request, *wait* runs until the first reply bytes arrive
and *receive* reads the rest and decodes it (T_e). Request throughput R = bytes out / send time;
response throughput S = bytes in / receive time.
"""

from __future__ import annotations

import collections
from typing import Any, Deque, Iterable, Iterator, List, NamedTuple, Optional

from .interceptors import Interceptor

__all__ = ["Record", "Timeline", "format_table", "format_summary"]


class Record(NamedTuple):
    """One phase (connect, handshake, goodbye, close) or one call, relative to the timeline's start.

    Phase "pool" (name "wait") is the time a ``ClientPool`` borrower waited for this connection; for a
    connection the pool opened for that borrower it starts before the client existed (a negative start).

    A NamedTuple because one is made per call: cheap to build, immutable. Times are seconds. ``send``/``wait``/``receive`` are set for calls; ``server_us`` only when the
    reply carries the server's processing time (``processing_us``, as process() does).
    """

    phase: str
    name: str
    start: float
    duration: float
    bytes_out: int = 0
    bytes_in: int = 0
    send: Optional[float] = None
    wait: Optional[float] = None
    receive: Optional[float] = None
    server_us: Optional[int] = None
    error: Optional[str] = None
    pipelined: bool = False  # a hello whose answer was read with the next exchange (its times span both)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def request_throughput(self) -> Optional[float]:
        """R: bytes sent per second of send time."""
        return _rate(self.bytes_out, self.send)

    @property
    def response_throughput(self) -> Optional[float]:
        """S: bytes received per second of receive time."""
        return _rate(self.bytes_in, self.receive)

    @property
    def round_trip(self) -> Optional[float]:
        """From the first request byte written to the first reply byte read."""
        if self.send is None or self.wait is None:
            return None
        return self.send + self.wait

    @property
    def network(self) -> Optional[float]:
        """Network and queueing time: the round trip minus the server's own time T_s."""
        if self.round_trip is None or self.server_us is None:
            return None
        return max(self.round_trip - self.server_us / 1e6, 0.0)


def _rate(count: int, seconds: Optional[float]) -> Optional[float]:
    if not seconds or count == 0:
        return None
    return count / seconds


class Timeline(Interceptor):
    """A bounded, ordered list of records (the oldest are dropped past ``maxlen``).

    It is the first interceptor of every client's chain: each call's record arrives with the call's end.
    """

    def __init__(self, maxlen: int = 1000) -> None:
        self._records: Deque[Record] = collections.deque(maxlen=maxlen)
        if type(self).add is Timeline.add:  # one per phase and call: the deque's own, no Python frame
            self.add = self._records.append  # type: ignore[method-assign]

    def add(self, record: Record) -> None:
        """Appends ``record`` (the oldest is dropped past ``maxlen``)."""
        self._records.append(record)

    def call_ended(self, call: Any) -> None:
        self._records.append(call.record)

    def __iter__(self) -> Iterator[Record]:
        return iter(list(self._records))

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> Record:
        return self._records[index]

    def calls(self, name: Optional[str] = None) -> List[Record]:
        """The call records, optionally only those of method ``name``."""
        return [r for r in list(self._records) if r.phase == "call" and (name is None or r.name == name)]


def _ms(seconds: Optional[float]) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.3f}"


def _rate_text(rate: Optional[float]) -> str:
    return "" if rate is None else f"{rate / 1e6:.2f} MB/s"


def format_table(records: Iterable[Record]) -> str:
    """The records as a fixed-width table: one row per phase, two (request, response) per call."""
    header = ("phase", "name", "start ms", "ms", "bytes out", "bytes in", "detail")
    rows = [header]
    for r in records:
        if r.phase != "call":
            rows.append((r.phase, r.name, _ms(r.start), _ms(r.duration), str(r.bytes_out),
                         str(r.bytes_in), " ".join(filter(None, ["pipelined" if r.pipelined else "", r.error]))))
            continue
        rows.append(("request", r.name, _ms(r.start), _ms(r.send), str(r.bytes_out), "",
                     f"R={_rate_text(r.request_throughput)}" if r.request_throughput else ""))
        detail = [f"wait={_ms(r.wait)}", f"T_e={_ms(r.receive)}"] if r.wait is not None else []
        if r.server_us is not None:
            detail += [f"T_s={r.server_us / 1e3:.3f}", f"network={_ms(r.network)}"]
        if r.response_throughput:
            detail.append(f"S={_rate_text(r.response_throughput)}")
        if r.error:
            detail.append(r.error)
        start = r.start + (r.send or 0.0)
        rows.append(("response", r.name, _ms(start), _ms((r.wait or 0.0) + (r.receive or 0.0)),
                     "", str(r.bytes_in), " ".join(detail)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_summary(records: Iterable[Record]) -> str:
    """Totals over the calls: R, S and the split of call time into T_s + network + T_e."""
    calls = [r for r in records if r.phase == "call" and r.send is not None and r.ok]
    if not calls:
        return "no calls recorded"
    sent = sum(r.bytes_out for r in calls)
    received = sum(r.bytes_in for r in calls)
    send_time = sum(r.send or 0.0 for r in calls)
    receive_time = sum(r.receive or 0.0 for r in calls)
    lines = [
        f"calls: {len(calls)}, {sent} bytes out, {received} bytes in",
        f"request throughput  R = bytes sent / send time        = {sent} B / {_ms(send_time)} ms"
        f" = {_rate_text(_rate(sent, send_time))}",
        f"response throughput S = bytes received / receive time = {received} B / {_ms(receive_time)} ms"
        f" = {_rate_text(_rate(received, receive_time))}",
    ]
    for r in calls:
        if r.server_us is None:
            continue
        lines.append(
            f"{r.name}: call time {_ms(r.duration)} ms = T_s {r.server_us / 1e3:.3f} ms"
            f" + network {_ms(r.network)} ms + T_e {_ms(r.receive)} ms"
        )
    return "\n".join(lines)
