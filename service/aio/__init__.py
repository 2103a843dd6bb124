"""The asyncio server: ``AsyncHandshakeServer``, the same gate, session, limits and answers as
``HandshakeServer`` on an event loop; coroutine handlers are awaited without a thread."""

from .server import AsyncHandshakeServer

__all__ = ["AsyncHandshakeServer"]
