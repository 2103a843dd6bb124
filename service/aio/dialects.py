"""What an asyncio connection serves its peer with, once its first bytes tell the dialect: the stack over
memory (transport, protocol, pipe) the threaded server would build for it, and what cuts its bytes into
messages (``wire.MessageFramer``, or ``HttpRequestFramer`` for Thrift over HTTP); or nothing, for a
dialect this server does not serve (as ``server.Opening`` decides)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Collection, Optional, Tuple

from ..config import ServerConfig, ServerLimits, Wire
from ..wire import Dialect, DialectKind, FramerLimits, MessageFramer, header_protocol, server_stack
from ..wire.http import HttpLimits
from .http import HttpRequestFramer, http_memory_stack
from .pipe import MemoryPipe

__all__ = ["Stack", "framer_for", "speaks", "stack_for"]

#: A connection's Thrift stack over memory: transport, protocol, pipe.
Stack = Tuple[Any, Any, Any]


def stack_for(config: ServerConfig, dialect: Optional[Dialect], zlib: bool,
              origins: Collection[str]) -> Tuple[Optional[Stack], Optional[Wire]]:
    """The stack for what the peer speaks (``zlib``: inside TZlibTransport) and the wire its messages are
    cut by; (None, None) for what this server does not serve."""
    limits = config.limits
    served = config.wire
    pipe = MemoryPipe()
    if dialect is not None and dialect.kind is DialectKind.THRIFT:
        wire = _wire(served, dialect.wire.protocol, dialect.wire.transport)
        if wire == served or config.detect_wire:
            transport, protocol = server_stack(wire, pipe, limits.max_message_bytes, limits.max_container_items)
            pipe.above = transport if hasattr(transport, "read_whole") else None
            return (transport, protocol, pipe), wire
    if dialect is not None and dialect.kind is DialectKind.HTTP and config.detect_wire and not zlib:
        return http_memory_stack(config, origins), Wire(transport="http")
    if dialect is not None and dialect.kind in (DialectKind.HEADER, DialectKind.FRAMED_HEADER) and (
            config.detect_wire or served.transport == "header"):
        protocol = header_protocol(pipe, limits.max_message_bytes, limits.max_container_items,
                                   framed=dialect.kind is DialectKind.FRAMED_HEADER)
        return (protocol.trans, protocol, pipe), Wire(transport="header")  # either way: cut by the outer length
    return None, None


@functools.lru_cache(maxsize=64)
def _wire(served: Wire, protocol: str, transport: str) -> Wire:
    """``served`` speaking ``protocol`` over ``transport``: one object for every connection that does."""
    return dataclasses.replace(served, protocol=protocol, transport=transport)


def framer_for(wire: Wire, limits: ServerLimits) -> Any:
    """What cuts a connection's bytes of ``wire`` into whole messages (or HTTP requests) under ``limits``."""
    if wire.transport == "http":
        return HttpRequestFramer(HttpLimits(max_body_bytes=limits.max_message_bytes))
    return MessageFramer(wire, FramerLimits.of(limits))


def speaks(config: ServerConfig) -> str:
    """What a server with ``config`` serves, in the words of a refusal."""
    if config.detect_wire:
        return ("Thrift binary, compact or JSON, buffered or framed, or THeader (framed or not), each also "
                "inside TZlibTransport, or Thrift over HTTP (POST, JSON, binary or compact)")
    return f"Thrift {config.wire.transport} {config.wire.protocol}"
