"""The asyncio server: ``AsyncHandshakeServer``, the same gate, session, limits and answers as
``HandshakeServer`` on an event loop; coroutine handlers are awaited without a thread."""

import asyncio
from typing import Callable

from .server import AsyncHandshakeServer

__all__ = ["AsyncHandshakeServer", "event_loop_factory"]


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop when it is installed (optional), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop
