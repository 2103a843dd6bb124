"""HTTP/1.1 for Thrift over HTTP, over bytes alone (no socket): requests parsed under limits, responses
written, the Thrift protocol a body is in.

``RequestParser`` takes bytes as they arrive (``feed``) and gives whole requests (``next_request``),
refusing what breaks a limit or HTTP's rules with an ``HttpError`` that carries the status to answer.
A body is delimited by ``Content-Length`` only (chunked bodies are refused with 411: Thrift's HTTP
clients all send a length). ``ResponseParser`` is the client's side of the same.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

__all__ = ["HttpError", "HttpLimits", "HttpRequest", "HttpResponse", "RequestParser", "ResponseParser",
           "response_bytes", "request_bytes", "protocol_of", "CONTENT_TYPES", "REASONS"]

#: The Thrift protocol each media type names (Apache's THttpClient sends application/x-thrift for any).
CONTENT_TYPES = {
    "application/vnd.apache.thrift.json": "json",
    "application/vnd.apache.thrift.binary": "binary",
    "application/vnd.apache.thrift.compact": "compact",
    "application/x-thrift": None,  # told from the body's first bytes
    "application/octet-stream": None,
}
#: The media type a protocol's replies are sent with.
MEDIA_TYPES = {"json": "application/vnd.apache.thrift.json", "binary": "application/x-thrift",
               "compact": "application/vnd.apache.thrift.compact"}
REASONS = {100: "Continue", 200: "OK", 204: "No Content", 400: "Bad Request", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required",
           413: "Content Too Large", 415: "Unsupported Media Type", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable", 505: "HTTP Version Not Supported"}

_DIGITS = re.compile(rb"[0-9]{1,19}")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP/(\d)\.(\d)")
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: (.*))?")
_MAX_HEADERS = 100
#: In a field value, these are invalid and dangerous (RFC 9110 5.5): a peer that splits lines at a bare LF
#: would read other fields than this server does.
_FORBIDDEN_IN_VALUE = re.compile(rb"[\r\n\x00]")


class HttpError(Exception):
    """A request this end will not serve, with the status (and text) to answer it with; the connection
    closes after the answer (where the next request starts can no longer be trusted)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {REASONS.get(status, '')}: {message}")
        self.status = status
        self.message = message


class HttpLimits(NamedTuple):
    """max_head_bytes: the request line and headers together; max_body_bytes: one body."""

    max_head_bytes: int = 16 * 1024
    max_body_bytes: int = 16 * 1024 * 1024


class HttpRequest(NamedTuple):
    """One whole request: ``headers`` by lower-case name (repeated ones joined with ", ")."""

    method: str
    target: str
    version: Tuple[int, int]
    headers: Dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        """Whether the connection stays open after the answer (HTTP/1.1 unless ``Connection: close``)."""
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version >= (1, 1):
            return "close" not in tokens
        return "keep-alive" in tokens

    @property
    def media_type(self) -> str:
        """The body's media type without its parameters ("" when not given)."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


class HttpResponse(NamedTuple):
    status: int
    reason: str
    headers: Dict[str, str]
    body: bytes


class _Head(NamedTuple):
    start: Tuple[bytes, ...]
    headers: Dict[str, str]
    size: int  # bytes of the head, its blank line included


def _parse_head(data: bytes, end: int, line: re.Pattern, what: str) -> _Head:
    lines = data[:end].split(b"\r\n")
    match = line.fullmatch(lines[0])
    if match is None:
        raise HttpError(400, f"malformed {what} line {lines[0][:80]!r}")
    if len(lines) - 1 > _MAX_HEADERS:
        raise HttpError(431, f"more than {_MAX_HEADERS} header fields")
    headers: Dict[str, str] = {}
    for raw in lines[1:]:
        name, colon, value = raw.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):  # also a folded line (obs-fold, RFC 9112 5.2)
            raise HttpError(400, f"malformed header field {raw[:80]!r}")
        if _FORBIDDEN_IN_VALUE.search(value):
            raise HttpError(400, f"header field {name.decode('ascii')} has a CR, LF or NUL in its value")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return _Head(match.groups(), headers, end + 4)


def _content_length(headers: Dict[str, str], limit: int) -> Optional[int]:
    """The body's declared length (None when not declared), refused when malformed, chunked or over ``limit``."""
    if "transfer-encoding" in headers:
        raise HttpError(411, "Transfer-Encoding (chunked) bodies are not accepted; send Content-Length")
    value = headers.get("content-length")
    if value is None:
        return None
    values = {v.strip() for v in value.split(",")}  # the same length repeated is allowed (RFC 9110 8.6)
    if len(values) != 1 or not _DIGITS.fullmatch(next(iter(values)).encode("latin-1")):
        raise HttpError(400, f"invalid Content-Length {value[:40]!r}")
    length = int(next(iter(values)))
    if length > limit:
        raise HttpError(413, f"a body of {length} bytes; this server takes at most {limit} (max_message_bytes)")
    return length


def _check_host(headers: Dict[str, str], minor: int) -> None:
    """HTTP/1.1 requires exactly one Host field (RFC 9112 3.2): a request without one, or with two, is 400."""
    host = headers.get("host")
    if host is None:
        if minor >= 1:
            raise HttpError(400, "an HTTP/1.1 request without a Host header field")
    elif "," in host:  # two fields, joined above (a host holds no comma)
        raise HttpError(400, "more than one Host header field")


class _Parser:
    """Bytes in, whole messages out; what is fed past one message waits for the next."""

    def __init__(self, max_head_bytes: int) -> None:
        self._buffer = bytearray()
        self._max_head = max_head_bytes
        self._head: Optional[_Head] = None
        self._length = 0
        self._scanned = 0  # bytes of the buffer searched for the head's end without finding it

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out in a message."""
        return len(self._buffer)

    def wanted(self) -> int:
        """How many more bytes would complete what is being parsed (a guess while the head is incomplete)."""
        if self._head is None:
            return max(1, min(4096, self._max_head + 4 - len(self._buffer)))
        return max(1, self._head.size + self._length - len(self._buffer))

    def _take_head(self, line: re.Pattern, what: str) -> Optional[_Head]:
        if self._head is None:
            end = self._buffer.find(b"\r\n\r\n", max(self._scanned - 3, 0), self._max_head + 4)
            if end < 0:
                if len(self._buffer) > self._max_head + 3:
                    raise HttpError(431, f"a {what} head over {self._max_head} bytes")
                self._scanned = len(self._buffer)  # a head dripped in is searched once, not on every read
                return None
            self._scanned = 0
            if end == 0 and what == "request":  # tolerated: blank lines before a request (RFC 9112 2.2)
                del self._buffer[:4]
                return self._take_head(line, what)
            self._head = _parse_head(bytes(self._buffer[:end]), end, line, what)
        return self._head

    def _take_body(self) -> Optional[bytes]:
        head = self._head
        if len(self._buffer) < head.size + self._length:
            return None
        body = bytes(self._buffer[head.size:head.size + self._length])
        del self._buffer[:head.size + self._length]
        self._head = None
        return body


class RequestParser(_Parser):
    """A server's parser of the requests on one connection, under ``limits``."""

    def __init__(self, limits: HttpLimits = HttpLimits()) -> None:
        super().__init__(limits.max_head_bytes)
        self._limits = limits

    @property
    def expects_continue(self) -> bool:
        """Whether the request being received waits for ``100 Continue`` before sending its body."""
        head = self._head
        return head is not None and head.headers.get("expect", "").lower() == "100-continue" and (
            len(self._buffer) < head.size + self._length)

    @property
    def headers_read(self) -> Mapping[str, str]:
        """The headers of the request being received, once its head is whole (what a refusal answers)."""
        return self._head.headers if self._head is not None else {}

    def next_request(self) -> Optional[HttpRequest]:
        """The next whole request, or None until more bytes are fed. HttpError when it is refused."""
        fresh = self._head is None
        head = self._take_head(_REQUEST_LINE, "request")
        if head is None:
            return None
        method, target, major, minor = head.start
        if fresh:
            if (int(major), int(minor)) not in ((1, 0), (1, 1)):
                raise HttpError(505, f"HTTP/{int(major)}.{int(minor)}; this server speaks HTTP/1.1")
            length = _content_length(head.headers, self._limits.max_body_bytes)
            if length is None and method == b"POST":
                raise HttpError(411, "a POST without Content-Length")
            _check_host(head.headers, int(minor))
            self._length = length or 0
        body = self._take_body()
        if body is None:
            return None
        return HttpRequest(method.decode("ascii"), target.decode("latin-1"), (int(major), int(minor)),
                           head.headers, body)


class ResponseParser(_Parser):
    """A client's parser of the responses on one connection; bodies up to ``max_body_bytes``."""

    def __init__(self, max_body_bytes: int, max_head_bytes: int = 64 * 1024) -> None:
        super().__init__(max_head_bytes)
        self._max_body = max_body_bytes

    def next_response(self) -> Optional[HttpResponse]:
        """The next whole response (interim 1xx ones skipped, however many), or None until more bytes are fed."""
        while True:
            fresh = self._head is None
            head = self._take_head(_STATUS_LINE, "status")
            if head is None:
                return None
            status = int(head.start[2])
            if fresh:
                length = _content_length(head.headers, self._max_body)
                if length is None and 200 <= status and status not in (204, 304):
                    raise HttpError(400, "a response without Content-Length (this client reads none other)")
                self._length = length or 0
            body = self._take_body()
            if body is None:
                return None
            if not 100 <= status < 200:
                return HttpResponse(status, (head.start[3] or b"").decode("latin-1"), head.headers, body)


def _head_bytes(start: str, headers: Iterable[Tuple[str, str]], body: bytes) -> bytes:
    lines = [start] + [f"{name}: {value}" for name, value in headers] + [f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def response_bytes(status: int, body: bytes = b"", content_type: Optional[str] = None, keep_alive: bool = True,
                   headers: Iterable[Tuple[str, str]] = ()) -> bytes:
    """A whole HTTP/1.1 response."""
    fields: List[Tuple[str, str]] = []
    if content_type is not None:
        fields.append(("Content-Type", content_type))
    fields.extend(headers)
    if not keep_alive:
        fields.append(("Connection", "close"))
    return _head_bytes(f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}", fields, body)


def request_bytes(host: str, path: str, body: bytes, content_type: str,
                  headers: Iterable[Tuple[str, str]] = ()) -> bytes:
    """A whole HTTP/1.1 POST of ``body``."""
    fields = [("Host", host), ("Content-Type", content_type), ("Accept", content_type), *headers]
    return _head_bytes(f"POST {path} HTTP/1.1", fields, body)


def protocol_of(request: HttpRequest) -> str:
    """"json", "binary" or "compact": the Thrift protocol the body of ``request`` is in, by its media type
    or else its first byte. HttpError 415 for a media type that is not Thrift's or a body that is not."""
    media = request.media_type
    if media and media not in CONTENT_TYPES:
        raise HttpError(415, f"Content-Type {media!r} is not a Thrift protocol; send one of "
                             + ", ".join(CONTENT_TYPES))
    named = CONTENT_TYPES.get(media)
    if named is not None:
        return named
    first = request.body[:1]
    if first == b"[":
        return "json"
    if first == b"\x80":
        return "binary"
    if first == b"\x82":
        return "compact"
    raise HttpError(415, "the body is not a Thrift message (JSON, binary or compact)")
