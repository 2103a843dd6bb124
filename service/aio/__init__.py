"""asyncio front ends of the runtime: ``AsyncClient`` (many calls in flight on one connection).

They reuse the sans-IO pieces unchanged: the phase tables (``states``), the client's rules
(``client_core``), the interceptor chain, the timeline, the wire's factories and its message framer.
"""

from .client import AsyncClient

__all__ = ["AsyncClient"]
