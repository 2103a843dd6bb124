"""asyncio on both ends, on the same core as the threaded runtime.

``AsyncClient``: the phased client with many calls in flight on one connection (the same phase table,
client rules, timeline and interceptors as ``Client``). ``AsyncHandshakeServer``: the same gate,
session, limits and answers as ``HandshakeServer`` on an event loop; coroutine handlers are awaited
without a thread. Both reuse the sans-IO pieces unchanged (``states``, ``wire.MessageFramer``, the wire's
factories, ``interceptors``, and over HTTP ``wire.http``'s parsers with ``wire.http_server``'s transport).
"""

import asyncio
from typing import Callable

from .client import AsyncClient
from .server import AsyncHandshakeServer

__all__ = ["AsyncClient", "AsyncHandshakeServer", "event_loop_factory"]


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop when it is installed (optional), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop
