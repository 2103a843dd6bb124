"""What a connection's first bytes say its peer speaks, over bytes alone (no socket)."""

from __future__ import annotations

from enum import Enum
from typing import Callable, NamedTuple, Optional, Tuple

from ..config import Wire

__all__ = ["DialectKind", "Dialect", "SNIFF_BYTES", "sniff", "sniff_stream", "thrift_start", "explain_reply"]


class DialectKind(Enum):
    """The families of peers ``sniff`` tells apart."""

    THRIFT = "thrift"  # strict binary or compact, buffered or framed (``Dialect.wire`` says which)
    HEADER = "header"  # THeader
    FRAMED_HEADER = "framed-header"  # THeader frames inside a framed transport's frames
    ZLIB = "zlib"  # a zlib stream (TZlibTransport): the dialect inside is told from its inflated bytes
    HTTP = "http"
    TLS = "tls"  # a TLS record (handshake or alert) on a plain connection
    BAD_VERSION = "bad-version"  # binary with a version this library does not know
    UNKNOWN = "unknown"


class Dialect(NamedTuple):
    """What the first bytes of a connection say its peer speaks: ``kind``, and for THRIFT its ``wire``."""

    kind: DialectKind
    wire: Optional[Wire] = None
    detail: str = ""

    def __str__(self) -> str:
        if self.kind is DialectKind.THRIFT:
            return f"{self.wire.transport} {self.wire.protocol}"
        return {DialectKind.HEADER: "THeader", DialectKind.FRAMED_HEADER: "THeader inside a framed transport",
                DialectKind.ZLIB: "zlib (TZlibTransport)", DialectKind.HTTP: "HTTP", DialectKind.TLS: "TLS",
                DialectKind.BAD_VERSION: self.detail,
                DialectKind.UNKNOWN: "something that is not Thrift"}[self.kind]

    @property
    def answer_wire(self) -> Optional[Wire]:
        """The wire a Thrift peer (plain or THeader) is answered in (a bad binary version gets strict
        binary); None for a peer that is not Thrift."""
        if self.kind in (DialectKind.HEADER, DialectKind.FRAMED_HEADER):
            return Wire(transport="header")
        if self.kind is DialectKind.THRIFT:
            return self.wire
        if self.kind is DialectKind.BAD_VERSION:
            return Wire()
        return None


#: Enough of a connection's first bytes to tell every dialect ``sniff`` knows apart (six do, but for
#: THeader inside a framed transport: two lengths, then THeader's magic).
SNIFF_BYTES = 10
_HEADER_MAGIC = b"\x0f\xff"
_FRAME_TELLS = 6  # a frame's length, then its first two bytes
_JSON_START = b'[1,"'  # TJSONProtocol's message: version 1, then the method's name
_HTTP_METHODS = (b"HTTP", b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"PRI ", b"CONN", b"TRAC")


def thrift_start(data: bytes) -> Optional[str]:
    """"binary" or "compact" if ``data`` starts a strict binary or compact message header."""
    if data[:2] == b"\x80\x01":
        return "binary"
    if len(data) >= 2 and data[0] == 0x82 and data[1] & 0x1F == 1:
        return "compact"
    return None


#: The dialects of unframed binary and compact, made once: told for almost every connection (a Wire is frozen).
_UNFRAMED = {protocol: Dialect(DialectKind.THRIFT, Wire(protocol=protocol, transport="buffered"))
             for protocol in ("binary", "compact")}


def sniff(data: bytes) -> Optional[Dialect]:
    """The dialect that ``data`` (a connection's first bytes) is written in; None until more bytes
    are needed to tell (at most SNIFF_BYTES)."""
    if len(data) < 2:
        return None
    protocol = thrift_start(data)
    if protocol is not None:
        return _UNFRAMED[protocol]
    if data[:1] == b"[":  # as a frame length: over 1.5 GB, over any limit, so nothing served is mistaken
        if len(data) < len(_JSON_START):
            return None
        if data.startswith(_JSON_START):
            return Dialect(DialectKind.THRIFT, Wire(protocol="json", transport="buffered"))
    if data[0] == 0x80:
        return Dialect(DialectKind.BAD_VERSION,
                       detail=f"binary protocol version {data[1]} (strict binary is version 1)")
    if data[0] in (0x15, 0x16) and data[1] == 0x03:  # a TLS handshake or alert record
        return Dialect(DialectKind.TLS)
    if _zlib_header(data):  # as a frame length: 2 GB, over any limit, so nothing served is mistaken
        return Dialect(DialectKind.ZLIB)
    if len(data) < 4:
        return None
    if data[:4] in _HTTP_METHODS:
        return Dialect(DialectKind.HTTP)
    if len(data) < _FRAME_TELLS:
        return None
    # A frame's length comes first: any positive one (a frame over the limit is answered, not ignored).
    if data[0] >= 0x80:
        return Dialect(DialectKind.UNKNOWN)
    if data[4:6] == _HEADER_MAGIC:
        return Dialect(DialectKind.HEADER)
    framed = thrift_start(data[4:])
    if framed is not None:
        return Dialect(DialectKind.THRIFT, Wire(protocol=framed, transport="framed"))
    if data[4:5] == b"[":
        if len(data) < 4 + len(_JSON_START):
            return None
        if data[4:].startswith(_JSON_START):
            return Dialect(DialectKind.THRIFT, Wire(protocol="json", transport="framed"))
    # A THeader frame in a framed transport's frame: its own length is 4 less than the outer one.
    inner = (int.from_bytes(data[:4], "big") - 4).to_bytes(4, "big", signed=True)
    if not inner.startswith(data[4:8]):
        return Dialect(DialectKind.UNKNOWN)
    if len(data) < SNIFF_BYTES:
        return None
    return Dialect(DialectKind.FRAMED_HEADER if data[8:10] == _HEADER_MAGIC else DialectKind.UNKNOWN)


def _zlib_header(data: bytes) -> bool:
    """Whether ``data`` starts a zlib stream as every TZlibTransport writes it: deflate with a 32 KiB
    window (``78``), no preset dictionary, the header's check bits right (``78 01/5e/9c/da``)."""
    return data[0] == 0x78 and not data[1] & 0x20 and (data[0] << 8 | data[1]) % 31 == 0


def sniff_stream(more: Callable[[bytes], Optional[bytes]]) -> Tuple[bytes, Optional[Dialect]]:
    """A connection's first bytes and their dialect, however they are read: ``more(data)`` returns
    the bytes so far with more after them, or None once no more will come (the dialect is then None if
    they did not tell)."""
    data, dialect = b"", None
    while dialect is None and len(data) < SNIFF_BYTES:
        longer = more(data)
        if longer is None:
            break
        data = longer
        dialect = sniff(data)
    return data, dialect


def explain_reply(first_reply: bytes, wire: Wire) -> str:
    """Why a reply that starts with ``first_reply`` could not be read by a client speaking ``wire``."""
    if not first_reply:
        return ("the server closed the connection without answering (does it expect TLS, another Thrift "
                "protocol or transport, or is it at its connection limit? its log says which)")
    dialect = sniff(first_reply)
    if dialect is None:
        return f"the server's answer ({first_reply.hex(' ')}) ended before it could be read"
    if dialect.kind is DialectKind.THRIFT:
        if (dialect.wire.protocol, dialect.wire.transport) != (wire.protocol, wire.transport):
            return f"the server speaks {dialect}; this client speaks {wire.transport} {wire.protocol} (ClientOptions.wire)"
        return "the server's answer is not a reply this client can decode"
    if dialect.kind is DialectKind.HTTP:
        if wire.transport == "http":  # its status and text are in the error already
            return "the server's HTTP answer holds no Thrift reply"
        return "the server answered with HTTP: it is not a Thrift server (wrong port?)"
    if dialect.kind is DialectKind.TLS:
        return "the server answered with TLS: connect with TLS (ClientOptions.tls, call --tls)"
    return f"the server answered with {dialect} ({first_reply.hex(' ')})"
