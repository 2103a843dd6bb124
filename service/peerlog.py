"""What the server logs about its peers stays bounded: in rate (``WarningBudget``) and in size
(``clip_for_log``), so a peer cannot flood the log by misbehaving or by sending long text."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Optional

__all__ = ["WarningBudget", "clip_for_log", "PEER_TEXT_LIMIT"]

#: The most characters of a peer's text (a message, a name, an error quoting either) a log line quotes.
PEER_TEXT_LIMIT = 200


def clip_for_log(text: object, limit: int = PEER_TEXT_LIMIT) -> str:
    """``text`` as a log line may quote it: whole if it has at most ``limit`` characters, else its start,
    an ellipsis and how long it was."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


class WarningBudget:
    """At most ``per_second`` warnings about peers a second; the rest are counted and summarised in one
    line, so a flood of bad connections cannot flood the log."""

    def __init__(self, log: logging.Logger, per_second: int = 20) -> None:
        self._log = log
        self._per_second = per_second
        self._lock = threading.Lock()
        self._window = time.monotonic()
        self._emitted = self._suppressed = 0

    def warning(self, message: str, *args: Any, log: Optional[logging.Logger] = None) -> None:
        """Logs the warning on ``log`` (default: the budget's own logger) if the budget allows it."""
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
            self._log.warning("%d more warnings about peers were suppressed (at most %d a second)",
                              suppressed, self._per_second)
        if emit:
            (log or self._log).warning(message, *args)

    def flush(self) -> None:
        """Reports what is still suppressed (at stop)."""
        with self._lock:
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            self._log.warning("%d more warnings about peers were suppressed (at most %d a second)",
                              suppressed, self._per_second)
