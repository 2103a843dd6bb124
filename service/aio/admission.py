"""Who gets in when the asyncio server is full: the threaded server's choice of a connection to evict
for a newcomer (``server.admission.eviction_candidates``, ``evict_for_another_host``), else a sibling
worker's (with workers), else the newcomer is told the server is full in its own dialect (bounded)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
from typing import Callable, Dict, Optional, Set

from ..config import ServerConfig
from ..metrics import ServerMetrics
from ..peerlog import WarningBudget
from ..server.admission import evict_for_another_host, eviction_candidates
from ..server.outcome import evicted_as
from .connection import AsyncConnection
from .opening import answer_full

__all__ = ["AsyncAdmission"]

#: At most this many "server full" answers are written at once; beyond, newcomers are just closed.
_MAX_REFUSALS = 64
#: How long a sibling worker's request for room waits for this loop (the sibling waits 0.1 s in all).
_SIBLING_WAIT = 0.08


class AsyncAdmission:
    """Makes room among ``connections`` (the server's open ones, by their tasks; None: parked) for
    newcomers to a full server, or refuses them; ``refusals`` are the answers being written."""

    def __init__(self, config: ServerConfig, metrics: ServerMetrics, warnings: WarningBudget,
                 connections: Dict[AsyncConnection, Optional[asyncio.Task]], tls: bool) -> None:
        self.config = config
        self._metrics = metrics
        self._warnings = warnings
        self._connections = connections
        self._tls = tls  # a TLS port closes a refused newcomer without an answer
        self.refusals: Set[asyncio.Task] = set()
        #: The loop the server runs on (set when it starts): a sibling's request for room waits for it.
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        #: With workers (``workers.Supervisor`` sets it): asks the sibling workers to close a connection of
        #: theirs for a newcomer from a host, when this one has nothing to evict; blocks (run off the loop).
        self.ask_siblings: Optional[Callable[[str], bool]] = None

    async def room_for(self, newcomer_host: str) -> bool:
        """Whether room was made for a newcomer to the full service: here, else by a sibling worker."""
        if self._make_room_here(newcomer_host):
            return True
        ask = self.ask_siblings
        return ask is not None and await asyncio.get_running_loop().run_in_executor(None, ask, newcomer_host)

    def make_room_for_sibling(self, newcomer_host: str) -> bool:
        """A sibling worker's newcomer from ``newcomer_host`` found the service full: makes room here as
        for a newcomer of this worker's own (called from another thread; waits for the loop briefly)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return False

        async def make_room() -> bool:
            return self._make_room_here(newcomer_host)

        try:
            asked = asyncio.run_coroutine_threadsafe(make_room(), loop)
        except RuntimeError:  # the loop stopped
            return False
        try:
            return asked.result(_SIBLING_WAIT)
        except concurrent.futures.TimeoutError:  # a busy loop: not later either (the sibling stopped waiting)
            asked.cancel()
            return False

    def _make_room_here(self, newcomer_host: str) -> bool:
        here = len(self._connections)
        open_now = self._metrics.open_everywhere(here)
        return self._make_room(asyncio.get_running_loop().time(), newcomer_host,
                               here / open_now if open_now > here else 1.0)

    def _make_room(self, now: float, newcomer_host: str, part: float) -> bool:
        """Evicts a connection for a newcomer to a full server, as the threaded server chooses (the
        oldest without a session, or silent; without hello, the idle longest; else what a host over its
        share gives up for a newcomer from another host); whether one made room."""
        limits = self.config.limits
        for connection in eviction_candidates(self._connections, now, self.config):
            if connection.evict():
                self._warnings.warning("evicted peer=%s: %s and the server is full (max_connections %d)",
                                       connection.peer, evicted_as(self.config.handshake), limits.max_connections)
                return True
        return evict_for_another_host(self._connections, self.config, newcomer_host, self._warnings, part)

    def refuse_full(self, sock: socket.socket, peer: str, open_now: int) -> None:
        """Tells a newcomer the server is full, in its own framing (bounded: beyond, just closed)."""
        message = f"server full: {open_now} connections (max_connections); try again later"
        self._warnings.warning("refused peer=%s: %s", peer, message)
        if len(self.refusals) >= _MAX_REFUSALS or self._tls:
            sock.close()
            return
        task = asyncio.get_running_loop().create_task(answer_full(sock, message, self.config.limits))
        self.refusals.add(task)
        task.add_done_callback(self.refusals.discard)
