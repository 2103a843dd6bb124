"""A connection's start, on its first pool thread: the TLS handshake (on the TLS port), then the stack
for the dialect its first bytes speak, or an explained refusal when none is served here."""

from __future__ import annotations

import dataclasses
import ssl
from typing import Any, Optional, Tuple

from ..config import ServerConfig
from ..gate import SessionProcessor
from ..peerlog import WarningBudget
from ..wire import Dialect, DialectKind, header_protocol, peek_first_bytes
from .answers import Answers
from .connection import Connection
from .stacks import http_stack, stack_for

__all__ = ["Opening"]


class Opening:
    """Starts connections for a server: ``factories`` are its default (transport, protocol) factories,
    used as they are when the peer speaks the configured wire."""

    def __init__(self, config: ServerConfig, processor: SessionProcessor, factories: Tuple[Any, Any],
                 tls: Optional[ssl.SSLContext], answers: Answers, warnings: WarningBudget) -> None:
        self._config = config
        self._processor = processor
        self._factories = factories
        self._tls = tls
        self._answers = answers
        self._warnings = warnings
        #: Browser origins allowed to call over HTTP (CORS): the config's, and any added while serving.
        self.http_origins = set(config.http_origins)

    def begin(self, connection: Connection) -> bool:
        """TLS, then the stack for the dialect the peer speaks; False when neither works (the peer was
        told, the log says why, and the caller closes the connection)."""
        identity = None
        if self._tls is not None:
            identity = self._start_tls(connection)
            if identity is False:
                return False
        stack = self._open_stack(connection)
        if stack is None:  # not a dialect served here: explained to the peer and in the log
            return False
        if not self._config.handshake:  # no hello to wait for: the session's limits apply from the start
            connection.session_started()
        transport, protocol = stack
        state = self._processor.connection(protocol, connection.peer, identity or None, listener=connection,
                                           opened_at=connection.accepted_at)
        connection.started(transport, protocol, state)
        return True

    def _start_tls(self, connection: Connection) -> Any:
        """The TLS handshake, on the connection's own thread within the handshake timeout; returns the
        client certificate's common name ("" without one), or False when the handshake failed."""
        first, dialect = peek_first_bytes(connection.socket.handle)
        if first and (dialect is None or dialect.kind is not DialectKind.TLS):  # a plain client on the TLS port
            self._answers.explain_mismatch(connection, first, dialect, "this server requires TLS")
            return False
        try:
            handle = self._tls.wrap_socket(connection.socket.handle, server_side=True, do_handshake_on_connect=False)
            if not connection.replace_handle(handle):  # from now on shutdown() and evict() reach this socket
                raise OSError("the connection was closed before its TLS handshake")
            handle.do_handshake()
        except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
            self._warnings.warning("dropped peer=%s: TLS handshake failed: %s", connection.peer, error)
            return False
        certificate = handle.getpeercert()
        subject = dict(item for rdn in (certificate or {}).get("subject", ()) for item in rdn)
        return subject.get("commonName", "")

    def _open_stack(self, connection: Connection) -> Optional[Tuple[Any, Any]]:
        """The transport and protocol for what the peer speaks, told from its first bytes; None (after
        explaining, in the peer's own framing where it can read it) for what this server does not serve.
        A zlib stream (TZlibTransport) is inflated, and the dialect inside it told from its first bytes."""
        first, dialect = connection.socket.first_bytes()
        config = self._config
        served = config.wire
        inflated = False
        if dialect is not None and dialect.kind is DialectKind.ZLIB:  # its answers are compressed too
            connection.socket.inflate()
            inflated = True
            first, dialect = connection.socket.first_bytes()  # zlib in zlib is refused below
            if not config.detect_wire:
                self._answers.explain_mismatch(connection, first, dialect, f"this server speaks {self._speaks()}",
                                               inside=str(Dialect(DialectKind.ZLIB)))
                return None
        if dialect is not None and dialect.kind is DialectKind.THRIFT:
            spoken = dialect.wire
            if spoken.protocol == served.protocol and spoken.transport == served.transport:  # the usual case
                transport_factory, protocol_factory = self._factories
                transport = transport_factory.getTransport(connection.socket)
                return transport, protocol_factory.getProtocol(transport)
            if config.detect_wire:
                wire = dataclasses.replace(served, protocol=spoken.protocol, transport=spoken.transport)
                return stack_for(config, wire, connection.socket)
        if dialect is not None and dialect.kind in (DialectKind.HEADER, DialectKind.FRAMED_HEADER) and (
                config.detect_wire or served.transport == "header"):
            limits = config.limits
            protocol = header_protocol(connection.socket, limits.max_message_bytes, limits.max_container_items,
                                       framed=dialect.kind is DialectKind.FRAMED_HEADER)
            return protocol.trans, protocol
        if dialect is not None and dialect.kind is DialectKind.HTTP and config.detect_wire and not inflated:
            return http_stack(config, connection.socket, self.http_origins)
        if not first:  # closed (or silent until the deadline) before saying anything
            return stack_for(config, served, connection.socket)
        self._answers.explain_mismatch(connection, first, dialect, f"this server speaks {self._speaks()}")
        return None

    def _speaks(self) -> str:
        if self._config.detect_wire:
            return ("Thrift binary, compact or JSON, buffered or framed, or THeader (framed or not), each also "
                    "inside TZlibTransport, or Thrift over HTTP (POST, JSON, binary or compact)")
        return f"Thrift {self._config.wire.transport} {self._config.wire.protocol}"
