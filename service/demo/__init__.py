"""The demo service, ``HandshakeService`` (idl/handshake.thrift): one guest of the runtime.

It shows both kinds of acknowledgement (``process`` answers after the work, ``submit`` on receipt
with a ticket), one-way ``notify`` and every Thrift type (``echo_types``). The runtime imports nothing
from here; this package uses the runtime as any service would.
"""

from __future__ import annotations

from typing import Optional

from ..config import ServerConfig
from ..server import HandshakeServer
from .handler import MAX_WORK_MS, HandshakeHandler
from .limits import DemoLimits

__all__ = ["HandshakeHandler", "DemoLimits", "MAX_WORK_MS", "demo_server"]


def demo_server(config: Optional[ServerConfig] = None, limits: Optional[DemoLimits] = None) -> HandshakeServer:
    """A HandshakeServer hosting the demo service; its submitted work drains when the server stops."""
    handler = HandshakeHandler(limits)
    server = HandshakeServer(handler, config)
    server.on_stop(handler.close)
    return server
