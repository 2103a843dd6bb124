"""Every exception thrift-handshake raises, rooted in one base class.

    ThriftHandshakeError
    ├── PhaseError            a call or step that the client's current phase does not allow
    ├── ConnectError          the transport could not be opened (refused, unreachable, connect timeout)
    │   ├── ServerFull        the server answered that every connection slot is taken
    │   ├── ServerDraining    the server is stopping and opens no new session (hello answered Draining)
    │   └── WireMismatch      client and server speak different wires (TLS or not, protocol, transport)
    ├── HandshakeFailed       hello() was refused by the server (carries the HandshakeRejected answer)
    ├── ConnectionBroken      the connection can no longer be trusted; the client is BROKEN until reconnect()
    │   ├── CallTimeout       no complete reply within the call timeout
    │   └── ReconnectAsked    the server ended the session before running the call (its max connection age)
    ├── RequestEncodingError  the arguments could not be serialized; nothing was sent
    ├── ArgumentError         JSON arguments that do not fit the method's parameters (CLI, call())
    ├── PoolTimeout           every connection of a ClientPool stayed borrowed past the borrow timeout
    ├── RemoteApplicationError the server answered with a TApplicationException (handler crash, unknown method)
    └── ServiceError          a declared exception of the IDL (InvalidRequest, NotReady, ...)

A ``ServiceError`` raised by the client is also an instance of the generated exception class, so both
``except ServiceError`` and ``except InvalidRequest`` catch it.
"""

from __future__ import annotations

from typing import Dict, Type

from thrift.Thrift import TApplicationException, TException

__all__ = [
    "ThriftHandshakeError",
    "PhaseError",
    "ConnectError",
    "ServerFull",
    "ServerDraining",
    "WireMismatch",
    "HandshakeFailed",
    "ConnectionBroken",
    "CallTimeout",
    "ReconnectAsked",
    "RequestEncodingError",
    "ArgumentError",
    "PoolTimeout",
    "RemoteApplicationError",
    "ServiceError",
    "WorkAborted",
]


class ThriftHandshakeError(Exception):
    """Base class of every error raised by thrift-handshake."""


class PhaseError(ThriftHandshakeError):
    """The client's current phase does not allow what was asked (e.g. a call while CLOSED)."""

    def __init__(self, action: str, phase: str, hint: str = "") -> None:
        self.action = action
        self.phase = phase
        message = f"cannot {action} in phase {phase}"
        super().__init__(f"{message}: {hint}" if hint else message)


class ConnectError(ThriftHandshakeError):
    """The transport could not be opened."""


class ServerFull(ConnectError):
    """The server is at max_connections with every slot in a session (without hello: in a call); try
    again later. Raised by connect(), or without hello by the first call of a connection."""


class ServerDraining(ConnectError):
    """The server is draining (stopping): hello() was answered ``Draining`` and the connection closed;
    connect to another server (a retry through a load balancer does). ``draining`` holds the answer."""

    def __init__(self, peer: str, draining: TException) -> None:
        self.draining = draining
        super().__init__(f"{peer}: {getattr(draining, 'message', draining)}")


class WireMismatch(ConnectError):
    """Client and server speak different wires; the message says what each speaks."""


class HandshakeFailed(ThriftHandshakeError):
    """The server refused hello(); ``rejected`` holds its HandshakeRejected answer."""

    def __init__(self, rejected: TException) -> None:
        self.rejected = rejected
        reason = getattr(rejected, "reason", str(rejected))
        super().__init__(
            f"handshake rejected: {reason} (server supports versions "
            f"{getattr(rejected, 'min_version', '?')}..{getattr(rejected, 'max_version', '?')})"
        )


class ConnectionBroken(ThriftHandshakeError):
    """The connection failed mid-call; the client refuses calls until reconnect().

    ``may_have_run`` is False when the server said, before it closed the session, that it would serve
    nothing more on it (it drains, or evicted the idle session): the call was not run, and even a method
    that is not idempotent may be sent again on a new connection. Otherwise it may have run."""

    may_have_run = True


class CallTimeout(ConnectionBroken):
    """No complete reply arrived within the call timeout; the late reply will never be read."""


class ReconnectAsked(ConnectionBroken):
    """The server answered the call, before running it, that this connection reached its max age and
    closes (``HandshakeRequired`` with ``reconnect`` set): the call did not run, and may be sent again on a
    new connection whatever the method. ``Client`` does that once by itself unless
    ``ClientOptions.reconnect_when_asked`` is False; then this is raised and the client is BROKEN."""

    may_have_run = False


class RequestEncodingError(ThriftHandshakeError, ValueError):
    """The arguments could not be serialized; nothing was sent and the connection stays usable."""


class ArgumentError(ThriftHandshakeError, ValueError):
    """Arguments (usually JSON from the command line) do not fit the method's parameters."""


class PoolTimeout(ThriftHandshakeError):
    """No pooled connection came free within the borrow timeout (every one of ``max_size`` was in
    use); nothing was sent. ``waited`` is the seconds the borrower waited."""

    def __init__(self, message: str, waited: float) -> None:
        self.waited = waited
        super().__init__(message)


class RemoteApplicationError(ThriftHandshakeError):
    """The server answered with a TApplicationException; ``error`` holds it, ``type`` its code."""

    def __init__(self, method: str, error: TApplicationException) -> None:
        self.method = method
        self.error = error
        self.type = error.type
        super().__init__(f"{method}: server error {error.type}: {error.message}")


class ServiceError(ThriftHandshakeError):
    """A declared IDL exception; instances also belong to the generated exception class."""

    _subclasses: Dict[type, Type["ServiceError"]] = {}

    @classmethod
    def wrap(cls, error: TException) -> "ServiceError":
        """Returns ``error`` as an instance of both ServiceError and its own generated class."""
        generated = type(error)
        subclass = cls._subclasses.get(generated)
        if subclass is None:
            subclass = type(generated.__name__, (cls, generated), {"__module__": generated.__module__})
            cls._subclasses[generated] = subclass
        wrapped = Exception.__new__(subclass)
        for name, value in vars(error).items():
            object.__setattr__(wrapped, name, value)
        Exception.__init__(wrapped, *error.args)
        return wrapped

    def __str__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class WorkAborted(TApplicationException):
    """Raised by a handler whose work the server aborted at the end of its grace period (a planned
    stop, not a failure): the caller gets INTERNAL_ERROR with this message, the log one warning."""

    def __init__(self, message: str) -> None:
        super().__init__(TApplicationException.INTERNAL_ERROR, message)
