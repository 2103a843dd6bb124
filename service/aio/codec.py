"""A service's requests to bytes and its replies from whole messages, on any wire, in memory (no socket).

The generated ``Client`` of the service does the encoding and decoding, over the same transports and
protocols as the threaded client (``wire.transport_factory`` and ``wire.protocol_factory``, with the
reply limits), so every wire cell and the C fast path are kept; only the bytes come from and go to
memory. The reply's header is read first (``header``), so that the caller can match it to its call by
seqid before the generated ``recv_<method>`` decodes the rest (``decode``). On the binary and compact
wires (buffered or framed) with the C extension, requests are encoded and whole replies cut and decoded
by ``aio.fastpath`` (``cut``), the same bytes and results without the Python protocol's calls; the rest
takes the path above.
"""

from __future__ import annotations

from io import BytesIO
from types import ModuleType
from typing import Any, Callable, Dict, Optional, Tuple

from thrift.transport.TTransport import TTransportBase

from ..client_core import ServerNotice, server_notice
from ..client_methods import checker_of
from ..config import Wire
from ..errors import ArgumentError
from ..multiplex import name_requests
from ..tracing import carry_trace
from ..wire import protocol_factory, transport_factory
from ..wire.http_client import HttpClientTransport
from .fastpath import Reply, fast_binary

__all__ = ["MessageCodec"]


class _Memory(TTransportBase):
    """The bytes under the wire's transport: one message to read, or the message being written."""

    def __init__(self) -> None:
        self._in = BytesIO()
        self._out = BytesIO()

    def load(self, message: bytes) -> None:
        self._in = BytesIO(message)

    def read(self, sz: int) -> bytes:
        return self._in.read(sz)

    def write(self, buf: bytes) -> None:
        self._out.write(buf)

    def take(self) -> bytes:
        """What was written since the last take."""
        data = self._out.getvalue()
        self._out = BytesIO()
        return data

    def isOpen(self) -> bool:
        return True

    def flush(self) -> None:
        pass


class MessageCodec:
    """Encodes ``service``'s requests and decodes its replies on ``wire``, replies held to
    ``max_reply_bytes`` per string, binary or frame and ``max_reply_items`` per container; requests
    named ``multiplexed:method`` when ``multiplexed`` names the service on a port hosting several."""

    def __init__(self, service: ModuleType, wire: Wire, max_reply_bytes: int, max_reply_items: int,
                 multiplexed: Optional[str] = None, http_host: str = "") -> None:
        self.service = service
        self._memory = _Memory()
        protocols = protocol_factory(wire, max_reply_bytes, max_reply_items)
        if wire.transport == "http":  # a POST out (to ``http_host``); a reply is a response's whole body
            self._out_transport: Any = HttpClientTransport(self._memory, http_host, wire.protocol, max_reply_bytes)
            transports = transport_factory(Wire(protocol=wire.protocol, transport="buffered"), max_reply_bytes)
        else:
            transports = transport_factory(wire, max_reply_bytes)
            self._out_transport = transports.getTransport(self._memory)
        writer = protocols.getProtocol(self._out_transport)
        if multiplexed is not None:  # requests go out as NAME:method (TMultiplexedProtocol's names)
            name_requests(writer, multiplexed)
        self._in_transport = transports.getTransport(self._memory)
        self._reader = reader = protocols.getProtocol(self._in_transport)
        self._read_header = reader.readMessageBegin
        self._header: Optional[Tuple[str, int, int]] = None
        reader.readMessageBegin = self._header_read  # recv_<method> gets the header read by header()
        self._stub = service.Client(reader, writer)
        self._oneway: Dict[str, bool] = {}
        self._fast = fast_binary(service.Client, wire, protocols, max_reply_bytes + 4, multiplexed)
        #: The reply starting at an offset of the bytes received, cut and decoded, or None (``fastpath``).
        self.cut: Optional[Callable[[bytes, int], Optional[Reply]]] = None if self._fast is None else self._fast.cut
        #: ``encode`` without a traceparent where ``fastpath`` encodes: the bytes, or None where it does not
        #: (then ``encode``); None on the other wires.
        self.fast_encode: Optional[Callable[[str, Tuple[Any, ...], int], Optional[bytes]]] = \
            None if self._fast is None else self._fast.encode

    def is_oneway(self, name: str) -> bool:
        """Whether ``name`` is a oneway method (no reply of any kind); ArgumentError if unknown."""
        oneway = self._oneway.get(name)
        if oneway is None:
            if getattr(self._stub, "send_" + name, None) is None:
                raise ArgumentError(f"unknown method {name!r} for service {self.service.__name__}")
            oneway = self._oneway[name] = getattr(self._stub, "recv_" + name, None) is None
        return oneway

    def check(self, name: str, args: Tuple[Any, ...]) -> None:
        """Raises RequestEncodingError for arguments that do not fit the IDL (nothing is encoded)."""
        checker_of(self.service, name)(args)

    def method(self, name: str) -> Tuple[bool, Callable[[Tuple[Any, ...]], None]]:
        """``is_oneway(name)`` and the argument check of ``check`` (for a caller to keep per method)."""
        return self.is_oneway(name), checker_of(self.service, name)

    def encode(self, name: str, args: Tuple[Any, ...], seqid: int, traceparent: Optional[str] = None) -> bytes:
        """The request as it goes on the wire (a frame for framed and THeader), carrying ``traceparent``
        where the wire can (``tracing.carry_trace``)."""
        if self._fast is not None and traceparent is None:
            fast = self._fast.encode(name, args, seqid)
            if fast is not None:
                return fast
        self._stub._seqid = seqid  # the generated send_<name> writes it
        try:
            if traceparent is not None:
                carry_trace(self._out_transport, name, args, traceparent)
            getattr(self._stub, "send_" + name)(*args)
        except BaseException:
            self._out_transport.discard_unflushed()
            self._memory.take()
            raise
        return self._memory.take()

    def header(self, message: bytes) -> Tuple[str, int, int]:
        """(name, message type, seqid) of a whole reply; ``decode`` then reads the rest of it."""
        self._in_transport.discard_rest_of_frame()  # nothing of an earlier message is read on
        self._memory.load(message)
        self._header = header = self._read_header()
        return header

    def decode(self, name: str) -> Any:
        """The result of the reply whose header was just read: the generated ``recv_<name>``, which
        raises its TApplicationException or declared exception."""
        return getattr(self._stub, "recv_" + name)()

    def notice(self) -> ServerNotice:
        """The server's unasked notice whose header was just read (an EXCEPTION named "", seqid 0)."""
        return server_notice(self._reader)

    def _header_read(self) -> Tuple[str, int, int]:
        header, self._header = self._header, None
        if header is None:
            raise AssertionError("decode() before header()")
        return header
