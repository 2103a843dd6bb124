"""Thrift over HTTP on asyncio, with the threaded server's and client's own pieces. The server's: whole requests cut by
``wire.http.RequestParser`` (the sans-IO parser), each served by ``wire.http_server``'s transport and
protocol over memory, so the answers (CORS, 405, 413, 415, one-way 200s) are the threaded server's.

``HttpRequestFramer`` stands where ``wire.MessageFramer`` does for the other dialects: bytes in, one
whole request's bytes out. A request the parser refuses (a head too large, a body over
``max_message_bytes``, a malformed line) is handed out as it came: the transport parses it again, answers
its status and ends the connection, as on the threaded server. ``HttpPipe`` is the memory the
transport reads each request from: past it, the next request has not come yet (``NoMessageYet``).

``HttpResponseFramer`` is ``AsyncClient``'s side: the bodies of whole responses (``wire.http.ResponseParser``),
each a reply; the empty 200s that answer one-way calls are skipped, another status ends the connection
with ``HttpStatusError`` (as the threaded client's ``HttpClientTransport`` reads them).
"""

from __future__ import annotations

from typing import Callable, Collection, List, Optional, Tuple

from ..config import ServerConfig
from ..server.stacks import http_stack
from ..wire import NoMessageYet
from ..wire.http import HttpError, HttpLimits, RequestParser, ResponseParser
from ..wire.http_client import next_response, reply_of
from .pipe import MemoryPipe

__all__ = ["HttpPipe", "HttpRequestFramer", "HttpResponseFramer", "http_memory_stack"]


class HttpRequestFramer:
    """One connection's bytes cut into whole HTTP requests (each as the bytes it came in), under ``limits``."""

    def __init__(self, limits: HttpLimits) -> None:
        self._parser = RequestParser(limits)
        self._buffer = bytearray()
        self._refused = False
        self._continued = False  # the request being received was told 100 Continue
        #: What to send the peer now, before the request is whole (``100 Continue``); taken by the connection.
        self.interim = b""

    @property
    def pending(self) -> int:
        """Bytes received that are not yet part of a whole request."""
        return len(self._buffer)

    def head(self, size: int) -> bytes:
        return bytes(self._buffer[:size])

    def receive(self, data: bytes) -> None:
        self._buffer += data
        self._parser.feed(data)

    def next_message(self) -> Optional[bytes]:
        """The next whole request's bytes, or None until more come; a refused one as far as it came."""
        if self._refused or not self._buffer:
            return None
        try:
            request = self._parser.next_request()
        except HttpError:  # the transport parses these bytes again and answers the refusal
            self._refused = True
            message, self._buffer = bytes(self._buffer), bytearray()
            return message
        if request is None:
            if self._parser.expects_continue and not self._continued:
                self._continued = True
                self.interim = b"HTTP/1.1 100 Continue\r\n\r\n"
            return None
        self._continued = False
        taken = len(self._buffer) - self._parser.buffered
        message = bytes(self._buffer[:taken])
        del self._buffer[:taken]
        return message


class HttpPipe(MemoryPipe):
    """The memory an ``HttpServerTransport`` reads requests from and writes responses to."""

    handle = None  # no socket: the asyncio connection drops a refused peer's input itself (``send_last``)
    #: Where a flushed response goes at once (the connection's writer): a one-way call's 200 before it runs.
    sink: Optional[Callable[[bytes], None]] = None

    def flush(self) -> None:
        if self.sink is not None:
            self.sink(self.take_output())

    def read(self, sz: int) -> bytes:
        if not self._input:  # the request fed is answered (e.g. a CORS preflight): none more yet
            raise NoMessageYet()
        return super().read(sz)

    def message_done(self) -> None:
        pass

    def discard_input(self) -> None:
        pass


def http_memory_stack(config: ServerConfig, origins: Collection[str]) -> Tuple[object, object, HttpPipe]:
    """The threaded server's HTTP stack (transport, protocol) over a fresh ``HttpPipe``, and the pipe."""
    pipe = HttpPipe()
    transport, protocol = http_stack(config, pipe, origins)
    return transport, protocol, pipe


class HttpResponseFramer:
    """A client connection's bytes cut into the bodies of whole HTTP responses (bodies up to ``max_body_bytes``)."""

    def __init__(self, max_body_bytes: int) -> None:
        self._parser = ResponseParser(max_body_bytes)

    @property
    def pending(self) -> int:
        """Bytes received that are not yet part of a whole response."""
        return self._parser.buffered

    def feed(self, data: bytes) -> List[bytes]:
        """The replies that ``data`` completes, in order. Raises HttpStatusError for a status other than
        200, TTransportException for a response this end cannot read."""
        self._parser.feed(data)
        replies: List[bytes] = []
        while True:
            response = next_response(self._parser)
            if response is None:
                return replies
            body = reply_of(response)
            if body:  # (an empty 200 answers a one-way call)
                replies.append(body)
