"""Thrift over HTTP, the server's end: one POST carries one Thrift message, its response the reply.

``HttpServerTransport`` reads whole requests from the connection's socket (``http.RequestParser``, under
the socket's own deadlines and byte budgets) and answers what is not a Thrift call itself (a CORS
preflight, a GET, a malformed request); ``HttpProtocol`` speaks, per request, the protocol the request
is in (JSON, binary or compact), so the gate above sees one protocol for the whole connection and the
session follows the connection (HTTP/1.1 keep-alive), as on every other dialect.
"""

from __future__ import annotations

import logging
from io import BytesIO
from typing import Callable, Collection, Dict, List, Mapping, Optional, Tuple

from thrift.protocol.TProtocol import TProtocolBase
from thrift.Thrift import TMessageType
from thrift.transport import TTransport

from .answers import discard_input
from .errors import BudgetExceeded
from .http import (CONTENT_TYPES, MEDIA_TYPES, HttpError, HttpLimits, HttpRequest, RequestParser, protocol_of,
                   response_bytes)
from .stack import WholeBody

__all__ = ["HttpRefused", "HttpServerTransport", "HttpProtocol", "ANY_ORIGIN"]

logger = logging.getLogger(__name__)

#: In ``ServerConfig.http_origins``: every origin may call (browsers' CORS then protects nothing).
ANY_ORIGIN = "*"
_ALLOWED_HEADERS = "Content-Type, Accept, traceparent"
#: In the User-Agent of Apache's C++ THttpClient ("Thrift/0.17.0 (C++/THttpClient)").
_READS_NO_ONE_WAY_ANSWER = "(C++/THttpClient)"
_NOT_THRIFT = ("This is a Thrift server (thrift-handshake). Thrift over HTTP: POST one Thrift message per "
               "request to any path, with Content-Type application/vnd.apache.thrift.json (TJSONProtocol, as "
               "Thrift's JavaScript library sends), application/x-thrift or application/vnd.apache.thrift.binary "
               "(TBinaryProtocol) or application/vnd.apache.thrift.compact (TCompactProtocol); or connect with "
               "a Thrift client over plain TCP on the same port.\n")


class HttpRefused(BudgetExceeded):
    """A request answered with an HTTP error status: the connection closes (the server counts it as bad input)."""


class HttpServerTransport(WholeBody):
    """The bodies of the requests on ``sock`` as one stream of Thrift messages, each reply flushed as the
    response to its request. ``origins``: the browser origins (CORS) allowed to call (read at each request)."""

    ended = "the HTTP request's body ended before its Thrift message did"

    def __init__(self, sock: TTransport.TTransportBase, limits: HttpLimits, origins: Collection[str]) -> None:
        self._sock = sock
        self._parser = RequestParser(limits)
        self._origins = origins
        self._rbuf = BytesIO()
        self._wbuf = BytesIO()
        self.request: Optional[HttpRequest] = None  # the request being answered
        self.protocol = ""  # the protocol its body is in
        self._answered = True
        self._continued = False

    def isOpen(self) -> bool:
        return self._sock.isOpen()

    def close(self) -> None:
        self._sock.close()

    def flush(self) -> None:
        """Sends what was written as the response to the request being answered."""
        body, self._wbuf = self._wbuf.getvalue(), BytesIO()
        request = self.request
        if request is None or self._answered:  # an unasked notice (eviction, drain): HTTP cannot push one
            logger.debug("a message of %d bytes with no HTTP request to answer: not sent", len(body))
            return
        self._answered = True
        media = request.media_type if CONTENT_TYPES.get(request.media_type, "") is not None else ""
        self._send(response_bytes(200, body, media or MEDIA_TYPES[self.protocol], request.keep_alive,
                                  self._cors(request.headers)))

    def get_headers(self) -> Dict[bytes, bytes]:
        """The headers of the request being answered, by lower-case name (as THeader's: a trace context)."""
        request = self.request
        if request is None:
            return {}
        return {name.encode("latin-1"): value.encode("latin-1") for name, value in request.headers.items()}

    def rest_of_frame(self, more_than: int = 0) -> Optional[memoryview]:
        if self.protocol == "json":  # priced by the binary and compact walks only: JSON is bounded by its bytes
            return None
        return super().rest_of_frame(more_than)

    def one_way(self) -> None:
        """The request carries a one-way call: answered now, with an empty 200, before the call runs (as
        Apache's THttpServer does: its clients wait for the response, and time the call by it). Apache's C++
        THttpClient reads no response to a one-way call (its THttpServer writes none), so it gets none."""
        if self._answered:
            return
        self._answered = True
        if _READS_NO_ONE_WAY_ANSWER in self.request.headers.get("user-agent", ""):
            return
        try:
            self._send(response_bytes(200, b"", MEDIA_TYPES[self.protocol], self.request.keep_alive,
                                      self._cors(self.request.headers)))
        except TTransport.TTransportException:  # the peer is gone: the next read tells
            pass

    def keep_unread_input(self) -> bool:
        """A message is done: a request it did not answer (a one-way method sent as a call, a dropped
        message) gets its empty 200 now. True when the next request has begun arriving (or this connection
        must close: the next read says so)."""
        self.one_way()
        self._rbuf = BytesIO()
        return self._parser.buffered > 0 or (self.request is not None and not self.request.keep_alive)

    def next_request(self) -> str:
        """Reads the next request that carries a Thrift message, answering the others (CORS preflights) on
        the way; returns the protocol its body is in. Raises NoMessageYet as the socket does when none has
        started, HttpRefused after answering one that is refused."""
        self.keep_unread_input()
        if self.request is not None and not self.request.keep_alive:
            raise TTransport.TTransportException(TTransport.TTransportException.END_OF_FILE,
                                                 "the HTTP client asked to close the connection")
        while True:
            request = self._receive()
            protocol = self._served(request)
            if protocol is not None:
                self.request, self.protocol, self._answered = request, protocol, False
                self._rbuf = BytesIO(request.body)
                return protocol
            self._sock.message_done()  # a preflight is no message: the next request has its own deadline and budget

    def _receive(self) -> HttpRequest:
        parser = self._parser
        self._continued = False
        while True:
            try:
                request = parser.next_request()
            except HttpError as error:
                self._refuse(error, None)
            if request is not None:
                return request
            if parser.expects_continue and not self._continued:
                self._continued = True
                self._send(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                data = self._sock.read(parser.wanted())
            except BudgetExceeded as error:
                self._refuse(HttpError(413, str(error)), None)
            parser.feed(data)

    def _served(self, request: HttpRequest) -> Optional[str]:
        """The protocol of a request that carries a Thrift message; None once one that does not is answered."""
        origin = request.headers.get("origin")
        if origin is not None and not self._allowed(origin):
            self._refuse(HttpError(403, f"origin {origin!r} may not call this server (ServerConfig.http_origins)"),
                         request)
        if request.method == "OPTIONS":  # a CORS preflight (or a plain question)
            headers = [("Allow", "POST, OPTIONS"), *self._cors(request.headers)]
            if origin is not None:
                headers += [("Access-Control-Allow-Methods", "POST, OPTIONS"),
                            ("Access-Control-Allow-Headers", _ALLOWED_HEADERS), ("Access-Control-Max-Age", "600")]
            self._send(response_bytes(204, b"", None, request.keep_alive, headers))
            if not request.keep_alive:
                raise TTransport.TTransportException(TTransport.TTransportException.END_OF_FILE,
                                                     "the HTTP client asked to close the connection")
            return None
        if request.method != "POST":
            self._refuse(HttpError(405, f"{request.method} {request.target[:80]} is not a Thrift call"), request,
                         [("Allow", "POST, OPTIONS")])
        try:
            return protocol_of(request)
        except HttpError as error:
            self._refuse(error, request)

    def refuse_body(self, error: Exception) -> None:
        """The request's body does not begin with a Thrift message (``error`` says why): answered 400, not
        the empty 200 of a one-way call nor silence; raises HttpRefused."""
        self._answered = True
        self._refuse(HttpError(400, f"the body is no Thrift message: {type(error).__name__}: {error}"[:300]),
                     self.request)

    def _allowed(self, origin: str) -> bool:
        return origin in self._origins or ANY_ORIGIN in self._origins

    def _cors(self, headers: Mapping[str, str]) -> List[Tuple[str, str]]:
        origin = headers.get("origin")
        if origin is None or not self._allowed(origin):
            return []
        # Timing-Allow-Origin: the page may read the connection's timings (its connect bar)
        return [("Access-Control-Allow-Origin", origin), ("Timing-Allow-Origin", origin), ("Vary", "Origin")]

    def _refuse(self, error: HttpError, request: Optional[HttpRequest],
                headers: List[Tuple[str, str]] = ()) -> None:
        """Answers ``error`` (its text, and the hint on what this port serves), then raises HttpRefused."""
        # a request refused before it was whole (413 by its Content-Length) is answered to its origin too
        cors = self._cors(request.headers if request is not None else self._parser.headers_read)
        text = f"{error.status} {error.message}\n\n{_NOT_THRIFT}".encode()
        try:
            self._send(response_bytes(error.status, text, "text/plain; charset=utf-8", False, [*headers, *cors]))
            discard = getattr(self._sock, "discard_input", None)  # (the asyncio server's memory has its own)
            if discard is not None:
                discard()
            else:
                discard_input(self._sock.handle)  # so that a peer still sending its body is not reset before it reads
        except (TTransport.TTransportException, OSError):  # the peer is gone: the refusal is still what ends it
            pass
        raise HttpRefused(TTransport.TTransportException.SIZE_LIMIT, f"HTTP {error}") from None

    def _send(self, data: bytes) -> None:
        self._sock.write(data)
        flush = getattr(self._sock, "flush", None)
        if flush is not None:
            flush()


#: The protocol methods an ``HttpProtocol`` hands to the protocol of the request being served.
_DELEGATED = ("writeMessageBegin", "writeMessageEnd", "writeStructBegin", "writeStructEnd", "writeFieldBegin",
              "writeFieldEnd", "writeFieldStop", "writeMapBegin", "writeMapEnd", "writeListBegin", "writeListEnd",
              "writeSetBegin", "writeSetEnd", "writeBool", "writeByte", "writeI16", "writeI32", "writeI64",
              "writeDouble", "writeString", "writeBinary", "writeUuid", "readMessageEnd", "readStructBegin",
              "readStructEnd", "readFieldBegin", "readFieldEnd", "readMapBegin", "readMapEnd", "readListBegin",
              "readListEnd", "readSetBegin", "readSetEnd", "readBool", "readByte", "readI16", "readI32", "readI64",
              "readDouble", "readString", "readBinary", "readUuid")


class HttpProtocol(TProtocolBase):
    """The protocol of each request on an ``HttpServerTransport``: ``protocols`` by name ("json", "binary",
    "compact"), each made once for the connection over its transport."""

    def __init__(self, trans: HttpServerTransport, protocols: Dict[str, Callable[[TTransport.TTransportBase],
                                                                                  TProtocolBase]]) -> None:
        super().__init__(trans)
        self._factories = protocols
        self._made: Dict[str, TProtocolBase] = {}
        self._use("binary")

    def _use(self, name: str) -> None:
        protocol = self._made.get(name)
        if protocol is None:
            protocol = self._made[name] = self._factories[name](self.trans)
        self._protocol = protocol
        self._fast_encode = protocol._fast_encode
        self._fast_decode = protocol._fast_decode
        self.strings_are_text = getattr(protocol, "strings_are_text", False)  # (wire.skip_value asks)
        # the C decoder reads the limits from the protocol it is handed: this one
        self.string_length_limit = protocol.string_length_limit
        self.container_length_limit = protocol.container_length_limit

    def readMessageBegin(self) -> Tuple[str, int, int]:
        self._use(self.trans.next_request())
        try:
            name, message_type, seqid = self._protocol.readMessageBegin()
        except Exception as error:  # (this protocol's, decoding: its limits' refusals included)
            self.trans.refuse_body(error)
        if message_type == TMessageType.ONEWAY:
            self.trans.one_way()
        return name, message_type, seqid


def _delegate(name: str) -> Callable[..., object]:
    def delegated(self: HttpProtocol, *args: object) -> object:
        return getattr(self._protocol, name)(*args)
    delegated.__name__ = name
    return delegated


for _name in _DELEGATED:
    setattr(HttpProtocol, _name, _delegate(_name))
