"""The Thrift stack (transport and protocol) that serves a connection, for the wire it speaks."""

from __future__ import annotations

from typing import Any, Optional, Tuple

from ..config import ServerConfig, Wire
from ..transport import ConnectionSocket, Dialect, frame_limit, protocol_factory, transport_factory

__all__ = ["stack_for", "wire_of"]


def stack_for(config: ServerConfig, wire: Wire, sock: ConnectionSocket,
              max_bytes: Optional[int] = None) -> Tuple[Any, Any]:
    """The stack for ``wire`` on ``sock``, reading messages of at most ``max_bytes`` (max_message_bytes)."""
    limits = config.limits
    max_bytes = max_bytes or limits.max_message_bytes
    transport = transport_factory(wire, frame_limit(max_bytes)).getTransport(sock)
    return transport, protocol_factory(wire, max_bytes, limits.max_container_items).getProtocol(transport)


def wire_of(dialect: Dialect) -> Wire:
    """The wire a Thrift dialect (plain or THeader) is answered in; a bad version gets strict binary."""
    if dialect.kind == "header":
        return Wire(transport="header")
    return dialect.wire or Wire()
