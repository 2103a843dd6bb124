"""What the server logs about its peers stays bounded: in rate (``WarningBudget``), in size
(``clip_for_log``) and in repetition (``RepeatedErrors``), so a peer cannot flood the log by
misbehaving, by sending long text, or by making the same server-side error happen on every call."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["WarningBudget", "RepeatedErrors", "clip_for_log", "PEER_TEXT_LIMIT"]

#: The most characters of a peer's text (a message, a name, an error quoting either) a log line quotes.
PEER_TEXT_LIMIT = 200


def clip_for_log(text: object, limit: int = PEER_TEXT_LIMIT, keep_newlines: bool = False) -> str:
    """``text`` as a log line may quote it: whole if it has at most ``limit`` characters, else its start,
    an ellipsis and how long it was; characters that are not printable (line breaks above all: a peer
    could forge log lines with them) are shown as escapes, ``\\n`` included unless ``keep_newlines``."""
    text = str(text)
    shown = _printable(text[:limit], keep_newlines)
    if len(text) <= limit:
        return shown
    return f"{shown}… ({len(text)} characters)"


def _printable(text: str, keep_newlines: bool) -> str:
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or (keep_newlines and char == "\n")
                   else char.encode("unicode_escape").decode("ascii") for char in text)


class WarningBudget:
    """At most ``per_second`` lines about peers a second; the rest are counted and summarised in one
    line, so a flood of bad connections cannot flood the log. ``what`` names them in the summary."""

    def __init__(self, log: logging.Logger, per_second: int = 20, what: str = "warnings about peers") -> None:
        self._log = log
        self._per_second = per_second
        self._what = what
        self._lock = threading.Lock()
        self._window = time.monotonic()
        self._emitted = self._suppressed = 0

    def warning(self, message: str, *args: Any, log: Optional[logging.Logger] = None,
                level: int = logging.WARNING, extra: Optional[Dict[str, Any]] = None) -> None:
        """Logs the line on ``log`` (default: the budget's own logger) at ``level`` if the budget allows it."""
        now = time.monotonic()
        with self._lock:
            suppressed = 0
            if now - self._window >= 1.0:
                suppressed, self._suppressed, self._emitted, self._window = self._suppressed, 0, 0, now
            emit = self._emitted < self._per_second
            if emit:
                self._emitted += 1
            else:
                self._suppressed += 1
        if suppressed:
            self._summarise(suppressed)
        if emit:
            (log or self._log).log(level, message, *args, extra=extra)

    def info(self, message: str, *args: Any, log: Optional[logging.Logger] = None) -> None:
        """An INFO line about a peer, within the same budget."""
        self.warning(message, *args, log=log, level=logging.INFO)

    def flush(self) -> None:
        """Reports what is still suppressed (at stop)."""
        with self._lock:
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            self._summarise(suppressed)

    def _summarise(self, suppressed: int) -> None:
        self._log.warning("%d more %s were suppressed (at most %d a second)", suppressed, self._what,
                          self._per_second)


class RepeatedErrors:
    """An error that may recur on every call (a read-only or vanished store) is logged once per kind;
    its repeats are counted and reported in one line at most every ``interval`` seconds, and at
    ``flush()``."""

    def __init__(self, log: logging.Logger, what: str, interval: float = 60.0) -> None:
        self._log = log
        self._what = what
        self._interval = interval
        self._lock = threading.Lock()
        self._kinds: Dict[str, Tuple[int, float]] = {}  # kind -> (repeats not yet reported, last report)

    def report(self, error: BaseException) -> None:
        """Logs ``error`` if its kind (type and text) is new, else counts it."""
        kind = f"{type(error).__name__}: {clip_for_log(error)}"
        now = time.monotonic()
        with self._lock:
            entry = self._kinds.get(kind)
            if entry is None:
                self._kinds[kind] = (0, now)
            else:
                repeats, reported = entry
                if now - reported < self._interval:
                    self._kinds[kind] = (repeats + 1, reported)
                    return
                self._kinds[kind] = (0, now)
        if entry is None:
            self._log.error("%s: %s (repeats are counted, reported at most every %.0f s)", self._what, kind,
                            self._interval)
        else:
            self._log.error("%s: %s: %d more times", self._what, kind, entry[0] + 1)

    def flush(self) -> None:
        """Reports the repeats not reported yet."""
        with self._lock:
            pending: List[Tuple[str, int]] = [(kind, count) for kind, (count, _) in self._kinds.items() if count]
            self._kinds = {kind: (0, reported) for kind, (_, reported) in self._kinds.items()}
        for kind, count in pending:
            self._log.error("%s: %s: %d more times", self._what, kind, count)
