"""thrift-handshake: a Thrift RPC service whose client/server handshake is explicit and observable.

Public API: the phased ``Client``, the stoppable ``HandshakeServer`` (and blocking ``serve``), the
settings in ``config``, the handler's view of its caller (``current_session``), the timeline records,
and the error hierarchy rooted in ``ThriftHandshakeError``.
"""

from .client import Client
from .config import ClientOptions, ClientTLS, ServerConfig, ServerLimits, ServerTLS, Timeouts
from .errors import (
    ArgumentError,
    CallTimeout,
    ConnectError,
    ConnectionBroken,
    HandshakeFailed,
    PhaseError,
    RemoteApplicationError,
    RequestEncodingError,
    ServiceError,
    ThriftHandshakeError,
)
from .handler import HandshakeHandler
from .server import HandshakeServer, serve
from .session import SessionContext, current_session
from .states import ClientPhase, SessionPhase
from .timing import Record, Timeline

__all__ = [
    "Client",
    "ClientOptions",
    "Timeouts",
    "ClientTLS",
    "ServerTLS",
    "ServerConfig",
    "ServerLimits",
    "HandshakeServer",
    "HandshakeHandler",
    "serve",
    "SessionContext",
    "current_session",
    "ClientPhase",
    "SessionPhase",
    "Record",
    "Timeline",
    "ThriftHandshakeError",
    "PhaseError",
    "ConnectError",
    "HandshakeFailed",
    "ConnectionBroken",
    "CallTimeout",
    "RequestEncodingError",
    "ArgumentError",
    "RemoteApplicationError",
    "ServiceError",
]
