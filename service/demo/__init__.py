"""The demo service, ``HandshakeService`` (idl/handshake.thrift): one guest of the runtime.

It shows both kinds of acknowledgement (``process`` answers after the work, ``submit`` on receipt
with a ticket), one-way ``notify`` and every Thrift type (``echo_types``). The runtime imports nothing
from here; this package uses the runtime as any service would.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

from ..config import ServerConfig
from ..server import HandshakeServer
from .handler import MAX_WORK_MS, CoroutineHandshakeHandler, HandshakeHandler
from .limits import DemoLimits

__all__ = ["HandshakeHandler", "CoroutineHandshakeHandler", "DemoLimits", "MAX_WORK_MS", "IDEMPOTENT", "FEATURES", "SERVER_TIMED", "demo_server"]

#: The demo's methods that are safe to send twice (for ``RetryPolicy(idempotent=IDEMPOTENT)``); never
#: process or submit, whose work would run again.
IDEMPOTENT = frozenset({"ping", "echo", "stats", "get_result", "echo_types"})
#: What the demo's hello grants (of what a client offers).
FEATURES = frozenset({"submit", "notify", "echo_types", "stats", "timing"})
#: The demo's methods whose reply reports the server's time on that very call (``processing_us``), for
#: ``ClientOptions(server_timed_methods=SERVER_TIMED)``; get_result's is the earlier work's time.
SERVER_TIMED = frozenset({"process"})


def demo_server(config: Optional[ServerConfig] = None, limits: Optional[DemoLimits] = None,
                ticket_store: Optional[str] = None, server_class: Callable[..., Any] = HandshakeServer) -> Any:
    """A HandshakeServer (or ``server_class``: ``aio.AsyncHandshakeServer``) hosting the demo service;
    its submitted work drains when the server stops.

    ``ticket_store``: where every ticket's fate is recorded, so that a restarted server (or another
    server sharing it) answers for tickets acknowledged before: an SQLite file path, or a
    ``redis://`` URL for servers on several hosts (``store.open_store``; None: in memory only). Its hello grants the
    demo's ``FEATURES`` unless ``config`` names features of its own."""
    config = config or ServerConfig()
    if not config.features:
        config = dataclasses.replace(config, features=FEATURES)
    handler_class = CoroutineHandshakeHandler if _awaits_coroutines(server_class) else HandshakeHandler
    handler = handler_class(limits, ticket_store=ticket_store)
    server = server_class(handler, config)
    server.on_stop(handler.close)
    tickets = handler.tickets
    server.metrics.add_gauge("submit_queue_tickets", "Submitted tickets not finished (waiting or running)",
                             tickets.unfinished)
    server.metrics.add_gauge("submit_queue_bytes", "Memory the unfinished tickets hold (submit_queue_bytes "
                             "bounds it)", tickets.unfinished_bytes)
    return server


def _awaits_coroutines(server_class: Callable[..., Any]) -> bool:
    """Whether ``server_class`` serves coroutine handler methods (the asyncio server)."""
    if server_class is HandshakeServer:
        return False
    from ..aio import AsyncHandshakeServer

    return isinstance(server_class, type) and issubclass(server_class, AsyncHandshakeServer)

