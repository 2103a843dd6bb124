"""Answers to a peer this end will not serve, in the peer's own dialect, and the input after them.

``answer_refusal`` is the one place that words a refusal on the wire: an HTTP 400 to an HTTP client, a
TLS alert to a TLS client, a ``TApplicationException`` in the peer's framing to a Thrift client (THeader
included); then the rest of the peer's input is read and dropped (bounded), so that closing does not
reset a peer still writing before it reads the answer.
"""

from __future__ import annotations

import socket
import time
from typing import Optional

from thrift.protocol.TProtocol import TProtocolBase
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TTransportBase

from .connection_socket import ConnectionSocket
from .errors import AnswerableReadError
from .sniff import Dialect, DialectKind
from .stack import header_protocol, server_stack
from .tls import TLS_ALERT_PROTOCOL_VERSION

__all__ = ["answer_refusal", "write_refusal", "write_application_exception", "discard_input", "http_refusal"]

#: After refusing a message, how long (and how many bytes of) the rest of it is read and dropped, so
#: the peer is not reset mid-write and gets to read the refusal.
_DISCARD_SECONDS = 1.0
_DISCARD_BYTES = 64 * 1024 * 1024


def write_application_exception(protocol: TProtocolBase, name: str, seqid: int, kind: int, message: str) -> None:
    """Answers message ``name``/``seqid`` with ``TApplicationException(kind, message)`` and flushes it."""
    protocol.writeMessageBegin(name, TMessageType.EXCEPTION, seqid)
    TApplicationException(kind, message).write(protocol)
    protocol.writeMessageEnd()
    protocol.trans.flush()


def http_refusal(message: str) -> bytes:
    """The HTTP 400 an HTTP client gets from this Thrift server, saying ``message``."""
    body = (f"This is a Thrift server (thrift-handshake), not an HTTP server: {message}.\n"
            "Connect with a Thrift client.\n").encode()
    return (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def answer_refusal(sock: ConnectionSocket, dialect: Optional[Dialect], kind: int, message: str,
                   max_message_bytes: int, max_container_items: Optional[int]) -> None:
    """Tells the peer on ``sock`` (speaking ``dialect``, None if it said too little to tell) why it is
    refused, where it can read the answer (``write_refusal``), then drops the rest of its input
    (bounded). Errors (the peer gone, its message not even a header) propagate."""
    write_refusal(sock, dialect, kind, message, max_message_bytes, max_container_items)
    discard_input(sock.handle)


def write_refusal(trans: TTransportBase, dialect: Optional[Dialect], kind: int, message: str,
                  max_message_bytes: int, max_container_items: Optional[int]) -> None:
    """Writes to ``trans`` (a socket, or memory for an asyncio server) why a peer speaking ``dialect`` is
    refused: an HTTP 400, a TLS alert, or ``TApplicationException(kind, message)`` to a Thrift peer's
    first message, read from ``trans`` with these limits (a bad binary version: to seqid 0); nothing
    to a peer that said too little to tell. Errors (its message not even a header) propagate."""
    family = None if dialect is None else dialect.kind
    if family is DialectKind.HTTP:
        trans.write(http_refusal(message))
        trans.flush()
    elif family is DialectKind.TLS:
        trans.write(TLS_ALERT_PROTOCOL_VERSION)  # all a TLS client can read from a plain server
        trans.flush()
    elif dialect is not None and dialect.answer_wire is not None:
        if family is DialectKind.FRAMED_HEADER:
            protocol = header_protocol(trans, max_message_bytes, max_container_items, framed=True)
        else:
            _, protocol = server_stack(dialect.answer_wire, trans, max_message_bytes, max_container_items)
        name, seqid = "", 0
        if family is not DialectKind.BAD_VERSION:  # answer the very call it made, in its own framing
            try:
                name, _, seqid = protocol.readMessageBegin()
            except AnswerableReadError as error:  # e.g. a frame over the limit: answered from its header
                name, seqid = error.name, error.seqid
        write_application_exception(protocol, name, seqid, kind, message)


def discard_input(handle: socket.socket) -> None:
    """Reads and drops what the peer still sends (bounded), so closing does not reset it mid-write."""
    handle.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + _DISCARD_SECONDS
    dropped = 0
    while dropped < _DISCARD_BYTES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        handle.settimeout(remaining)
        chunk = handle.recv(65536)
        if not chunk:
            return
        dropped += len(chunk)
