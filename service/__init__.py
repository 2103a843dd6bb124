"""thrift-handshake: a runtime for Thrift services whose client/server handshake is explicit and observable.

Public API: connecting is ``Client`` (phased: connect, hello, calls, goodbye, close) or, on asyncio,
``AsyncClient`` (the same phases, many calls in flight on one connection), shared by threads through a
``ClientPool``; serving is
``HandshakeServer`` (a TThreadedServer with sessions, limits and a graceful stop), around the
``SessionProcessor`` that any Thrift server can host; the settings in ``config``; the handler's view
of its caller (``current_session``; ``drop_oneway`` for a one-way call it cannot use); the timeline
records; the error hierarchy rooted in ``ThriftHandshakeError``. The demo service lives in
``thrift_handshake.demo``.
"""

from .aio import AsyncClient
from .client import Client
from .client_pool import ClientPool, PoolOptions, PoolStats
from .endpoints import Endpoints
from .config import ClientOptions, ClientTLS, RetryPolicy, ServerConfig, ServerLimits, ServerTLS, Timeouts, Wire
from .errors import (
    ArgumentError,
    CallTimeout,
    ConnectError,
    ConnectionBroken,
    HandshakeFailed,
    PhaseError,
    PoolTimeout,
    ReconnectAsked,
    RemoteApplicationError,
    RequestEncodingError,
    ServerFull,
    ServerDraining,
    ServiceError,
    ThriftHandshakeError,
    WireMismatch,
    WorkAborted,
)
from .gate import SessionProcessor
from .interceptors import Call, ClientCall, Interceptor, Outcome, ServerCall
from .server import HandshakeServer
from .session import Session, SessionContext, SessionSettings, current_session, drop_oneway
from .states import ClientPhase, SessionPhase
from .timing import Record, Timeline

__all__ = [
    "Client",
    "AsyncClient",
    "ClientPool",
    "PoolOptions",
    "PoolStats",
    "Endpoints",
    "ClientOptions",
    "Timeouts",
    "RetryPolicy",
    "Wire",
    "ClientTLS",
    "ServerTLS",
    "ServerConfig",
    "ServerLimits",
    "HandshakeServer",
    "SessionProcessor",
    "Interceptor",
    "Call",
    "ServerCall",
    "ClientCall",
    "Outcome",
    "Session",
    "SessionSettings",
    "SessionContext",
    "current_session",
    "drop_oneway",
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
    "ReconnectAsked",
    "RequestEncodingError",
    "ServerFull",
    "ServerDraining",
    "WireMismatch",
    "WorkAborted",
    "ArgumentError",
    "PoolTimeout",
    "RemoteApplicationError",
    "ServiceError",
]
