"""The production server: ``HandshakeServer`` and the parts it is composed of (one module each)."""

from .server import HandshakeServer

__all__ = ["HandshakeServer"]
