"""The Thrift stack (transport and protocol) that serves a connection, for the wire it speaks."""

from __future__ import annotations

from typing import Any, Optional, Tuple

from ..config import ServerConfig, Wire
from ..wire import ConnectionSocket, server_stack

__all__ = ["stack_for"]


def stack_for(config: ServerConfig, wire: Wire, sock: ConnectionSocket,
              max_bytes: Optional[int] = None) -> Tuple[Any, Any]:
    """The stack for ``wire`` on ``sock``, reading messages of at most ``max_bytes`` (max_message_bytes)."""
    limits = config.limits
    return server_stack(wire, sock, max_bytes or limits.max_message_bytes, limits.max_container_items)
