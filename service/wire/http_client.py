"""Thrift over HTTP, the client's end: each flushed message is POSTed on one keep-alive connection and its
response's body is the reply (as Thrift's THttpClient does, but the connection, and so the session, is kept)."""

from __future__ import annotations

from io import BytesIO
from typing import Dict, Optional

from thrift.transport import TTransport

from .http import MEDIA_TYPES, HttpError, HttpResponse, ResponseParser, request_bytes
from .stack import WholeBody

__all__ = ["HttpClientTransport", "HttpStatusError", "next_response", "reply_of"]


class HttpStatusError(TTransport.TTransportException):
    """The server answered a request with an HTTP status other than 200 (``status``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(TTransport.TTransportException.UNKNOWN, message)
        self.status = status


class HttpClientTransport(WholeBody):
    """POSTs what is written to ``path`` on ``sock`` at each flush (as ``protocol``'s media type); reads return
    the bodies of the responses, in order, each read from the socket when the one before is used up (so
    requests may be pipelined, as a pipelined hello is). Response bodies up to ``max_reply_bytes``."""

    ended = "the HTTP response's body ended before its Thrift reply did"

    def __init__(self, sock: TTransport.TTransportBase, host: str, protocol: str, max_reply_bytes: int,
                 path: str = "/") -> None:
        self._sock = sock
        self._host = host
        self._path = path
        self._media = "application/vnd.apache.thrift.json" if protocol == "json" else MEDIA_TYPES[protocol]
        self._max_reply = max_reply_bytes
        self._parser = ResponseParser(max_reply_bytes)
        self._rbuf = BytesIO()
        self._wbuf = BytesIO()
        self._pending = 0  # requests sent whose responses are not read yet
        self._headers: Dict[str, str] = {}  # for the next request only (a trace context)

    def isOpen(self) -> bool:
        return self._sock.isOpen()

    def open(self) -> None:
        self._sock.open()

    def close(self) -> None:
        self._sock.close()

    def set_header(self, name: bytes, value: bytes) -> None:
        """A header of the next request only (as THeader's ``set_header``: the client's trace context)."""
        self._headers[name.decode("latin-1")] = value.decode("latin-1")

    def flush(self) -> None:
        """POSTs what was written; its response is read when the reply is (a one-way call's is skipped then)."""
        body, self._wbuf = self._wbuf.getvalue(), BytesIO()
        headers, self._headers = self._headers, {}
        self._sock.write(request_bytes(self._host, self._path, body, self._media, headers.items()))
        self._pending += 1

    def read(self, sz: int) -> bytes:
        data = self._rbuf.read(sz)
        if not data and sz and self._next_body():
            data = self._rbuf.read(sz)
        if not data and sz:
            self._end()
        return data

    def cstringio_refill(self, partialread: bytes, reqlen: int) -> BytesIO:
        if not self._next_body():
            self._end()
        self._rbuf = BytesIO(partialread + self._rbuf.read())
        if len(self._rbuf.getbuffer()) < reqlen:
            self._end()
        return self._rbuf

    def _next_body(self) -> bool:
        """Reads the responses still owed, up to one with a body (the empty 200s of one-way calls are skipped);
        False when none is owed or left."""
        while self._pending:
            self._pending -= 1
            body = reply_of(self._receive())
            if body:
                self._rbuf = BytesIO(body)
                return True
        return False

    def _receive(self) -> HttpResponse:
        parser = self._parser
        while True:
            response = next_response(parser)
            if response is not None:
                return response
            parser.feed(self._sock.read(parser.wanted()))


def next_response(parser: ResponseParser) -> Optional[HttpResponse]:
    """The next whole response ``parser`` holds, or None; TTransportException for one this client cannot read."""
    try:
        return parser.next_response()
    except HttpError as error:
        kind = TTransport.TTransportException.SIZE_LIMIT if error.status == 413 else \
            TTransport.TTransportException.UNKNOWN
        raise TTransport.TTransportException(kind, f"an HTTP response this client cannot read: "
                                                   f"{error.message}") from None


def reply_of(response: HttpResponse) -> bytes:
    """The Thrift reply a response carries (b"": a one-way call's empty 200); HttpStatusError for a status
    other than 200."""
    if response.status != 200:
        text = response.body[:300].decode("utf-8", "replace").strip()
        raise HttpStatusError(response.status, f"the server answered HTTP {response.status} {response.reason}: {text}")
    return response.body
