"""The wire: everything between a socket and a Thrift message, one concern per module.

- ``stack``: transports and factories, the one place a connection's stack is chosen (both ends).
- ``protocols``: binary and compact with strict message headers and read limits; JSON with read limits.
- ``strict``: strict decoding (UTF-8, typed container elements) with or without the C extension.
- ``sniff``: the dialect from a connection's first bytes (bytes only, no socket).
- ``framer``: whether bytes hold a whole message, and its length, under the server's limits (no socket);
  ``json_framing``: where an unframed JSON message ends.
- ``sockets`` / ``connection_socket``: deadline sockets of both ends; the server's end with its budgets.
- ``tls``: TLS contexts and what a TLS failure means.
- ``http``: HTTP/1.1 requests and responses from bytes (no socket); ``http_server`` / ``http_client``: Thrift over
  HTTP, one message per POST, on the server's one port and in the client.
- ``answers``: a refusal in the peer's own dialect.
- ``errors``: the wire's exceptions.
"""

from .answers import answer_refusal, discard_input, write_application_exception, write_refusal
from .connection_socket import ConnectionSocket, peek_first_bytes
from .errors import (
    AnswerableReadError,
    BudgetExceeded,
    DecodedSizeRefused,
    FrameRefused,
    FrameTooLarge,
    NoMessageYet,
    UndecodableMethodName,
    UndecodableValue,
)
from .framer import FramerLimits, MessageFramer, frame_limit
from .protocols import accelerated_available, protocol_factory
from .sniff import SNIFF_BYTES, Dialect, DialectKind, explain_reply, sniff
from .sockets import CountingSocket, DeadlineSocket, is_reset, is_timeout, no_delay, spoke_or_closed
from .stack import ClientParts, client_parts, client_stack, header_protocol, server_stack, transport_factory, unread_bytes
from .strict import skip_value
from .tls import explain_tls_error, server_tls_context

__all__ = [
    "Dialect",
    "DialectKind",
    "SNIFF_BYTES",
    "sniff",
    "explain_reply",
    "explain_tls_error",
    "accelerated_available",
    "protocol_factory",
    "UndecodableValue",
    "UndecodableMethodName",
    "AnswerableReadError",
    "BudgetExceeded",
    "DecodedSizeRefused",
    "FrameTooLarge",
    "FrameRefused",
    "NoMessageYet",
    "skip_value",
    "transport_factory",
    "frame_limit",
    "header_protocol",
    "server_stack",
    "is_timeout",
    "is_reset",
    "DeadlineSocket",
    "ConnectionSocket",
    "CountingSocket",
    "peek_first_bytes",
    "client_stack",
    "client_parts",
    "ClientParts",
    "unread_bytes",
    "server_tls_context",
    "no_delay",
    "spoke_or_closed",
    "answer_refusal",
    "write_refusal",
    "write_application_exception",
    "discard_input",
    "MessageFramer",
    "FramerLimits",
]
