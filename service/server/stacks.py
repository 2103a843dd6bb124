"""The Thrift stack (transport and protocol) that serves a connection, for the wire it speaks."""

from __future__ import annotations

import functools
from typing import Any, Collection, Optional, Tuple

from ..config import ServerConfig, Wire
from ..wire import ConnectionSocket, protocol_factory, server_stack
from ..wire.http import HttpLimits
from ..wire.http_server import HttpProtocol, HttpServerTransport

__all__ = ["stack_for", "http_stack"]


def stack_for(config: ServerConfig, wire: Wire, sock: ConnectionSocket,
              max_bytes: Optional[int] = None) -> Tuple[Any, Any]:
    """The stack for ``wire`` on ``sock``, reading messages of at most ``max_bytes`` (max_message_bytes)."""
    limits = config.limits
    return server_stack(wire, sock, max_bytes or limits.max_message_bytes, limits.max_container_items)


def http_stack(config: ServerConfig, sock: ConnectionSocket, origins: Collection[str]) -> Tuple[Any, Any]:
    """The stack for Thrift over HTTP on ``sock``: each request's body a message in the protocol it names
    (JSON, binary or compact), under the same read limits, bodies up to max_message_bytes; ``origins``: the
    browser origins allowed to call (read at each request)."""
    limits = config.limits
    transport = HttpServerTransport(sock, HttpLimits(max_body_bytes=limits.max_message_bytes), origins)
    factories = {name: functools.partial(_protocol, Wire(protocol=name, transport="http"), config)
                 for name in ("json", "binary", "compact")}
    return transport, HttpProtocol(transport, factories)


def _protocol(wire: Wire, config: ServerConfig, transport: Any) -> Any:
    limits = config.limits
    return protocol_factory(wire, limits.max_message_bytes, limits.max_container_items).getProtocol(transport)
