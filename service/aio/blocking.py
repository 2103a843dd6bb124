"""The asyncio server behind the threaded server's blocking face, for hosts that run a server from a
thread that waits on it: ``serve --workers N --asyncio`` (``workers.Supervisor`` builds one per worker
process, hands it the inherited socket with ``listen(sock)``, runs ``serve()`` and stops it with
``request_stop()`` from its signal handlers and its lifeline thread).

    server = BlockingAsyncServer(AsyncHandshakeServer(handler, config))
    server.listen(sock)       # or none: the server listens itself
    server.serve()            # its own event loop (uvloop's when installed), until stopped
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable, List, Optional

from .admission import AsyncAdmission
from .server import AsyncHandshakeServer

__all__ = ["BlockingAsyncServer"]


class BlockingAsyncServer:
    """Runs ``server`` on an event loop of its own (made by ``loop_factory``) in the thread that calls
    ``serve()``; ``config``, ``metrics`` and ``processor`` are the server's."""

    def __init__(self, server: AsyncHandshakeServer,
                 loop_factory: Optional[Callable[[], asyncio.AbstractEventLoop]] = None) -> None:
        self.server = server
        self._loop_factory = loop_factory
        self._socket: Optional[socket.socket] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._early: List[Optional[float]] = []  # stops requested before the loop ran

    @property
    def config(self) -> Any:
        return self.server.config

    @property
    def metrics(self) -> Any:
        return self.server.metrics

    @property
    def processor(self) -> Any:
        return self.server.processor

    @property
    def admission(self) -> AsyncAdmission:
        """What ``workers.Supervisor`` joins to the siblings' exchange of room (``ask_siblings``,
        ``make_room_for_sibling``): the server's admission."""
        return self.server.admission

    @property
    def stopping(self) -> bool:
        return self.server.stopping or bool(self._early)

    def listen(self, sock: Optional[socket.socket] = None) -> None:
        """Serves ``sock`` (already listening) once ``serve()`` runs; without it the server listens itself."""
        self._socket = sock

    def serve(self) -> None:
        """Serves until a stop is requested and done (the graceful stop of ``AsyncHandshakeServer``)."""
        with asyncio.Runner(loop_factory=self._loop_factory) as runner:
            runner.run(self._main())

    def request_stop(self, grace: Optional[float] = None) -> None:
        """Asks the server to stop, from any thread or a signal handler; returns at once (as
        ``HandshakeServer.request_stop``: a second request with grace 0 ends the grace period)."""
        loop = self._loop
        if loop is None:
            self._early.append(grace)
            return
        try:
            loop.call_soon_threadsafe(self.server.request_stop, grace)
        except RuntimeError:  # the loop is closed: the server has stopped already
            pass

    async def _main(self) -> None:
        await self.server.start(self._socket)
        self._loop = asyncio.get_running_loop()
        for grace in self._early:  # signals that came while it started
            self.server.request_stop(grace)
        await self.server.serve()
