"""Heap memory that large messages freed, given back to the system.

CPython and glibc keep what they free: after 20 replies of 15 MiB were dropped, their memory stayed
in the process (729 MB of RSS) although nothing used it. glibc's ``malloc_trim`` returns the free
pages of every arena; elsewhere (macOS, musl, Windows) this module does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
import time
from typing import Callable, Optional

__all__ = ["MemoryReturn", "give_back", "map_large_blocks"]

logger = logging.getLogger(__name__)

#: Messages and replies moved since the last give-back before the next (each one costs a walk of the heap).
DEFAULT_THRESHOLD = 8 * 1024 * 1024


def _find_malloc_trim() -> Optional[Callable[[int], int]]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_MALLOC_TRIM = _find_malloc_trim()

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
#: Blocks this large or larger are mapped on their own and unmapped when freed.
LARGE_BLOCK = 1024 * 1024


def map_large_blocks() -> bool:
    """Makes glibc map every block of ``LARGE_BLOCK`` or more on its own (process-wide). By default the
    threshold rises with the largest block freed (up to 32 MiB), after which such blocks come from the
    threads' arenas, whose free tops ``malloc_trim`` does not return: 20 dropped 15 MiB replies left
    about 200 MB there. False where glibc is not in use."""
    if _MALLOC_TRIM is None:
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK))


def give_back() -> bool:
    """Returns the heap's free pages to the system now; False where that is not possible."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class MemoryReturn:
    """Counts the bytes of large messages once they are freed (``released``) and gives the heap's free
    pages back: at once when more than ``threshold`` were freed since the last time, and on ``settle``
    (called periodically) once releases have stopped for ``quiet`` seconds, so that the last of many
    connections dropped together is given back too. Safe from any thread."""

    def __init__(self, threshold: int = DEFAULT_THRESHOLD, quiet: float = 0.1) -> None:
        self.threshold = threshold
        self.quiet = quiet
        self._pending = 0  # bytes freed since the last give-back
        self._last_release = 0.0
        self._lock = threading.Lock()
        self.given_back = 0  # how many times (for tests)
        map_large_blocks()

    def released(self, nbytes: int) -> None:
        """``nbytes`` of messages were freed (their request, result and reply are no longer referenced)."""
        with self._lock:
            self._pending += nbytes
            self._last_release = time.monotonic()
            if self._pending < self.threshold:
                return
            self._pending = 1  # a give-back follows the releases still to come (see settle)
        self._give_back()

    def settle(self) -> None:
        """Gives back what was freed since the last time, once no release came for ``quiet`` seconds."""
        if not self._pending:  # the usual case: one read, no lock
            return
        with self._lock:
            if not self._pending or time.monotonic() - self._last_release < self.quiet:
                return
            self._pending = 0
        self._give_back()

    def _give_back(self) -> None:
        if give_back():
            self.given_back += 1
            logger.debug("gave freed memory back to the system")
