"""The HTTP parser and writer of Thrift over HTTP (wire/http.py), from bytes alone: whole, split, dripped
byte by byte, pipelined, and every limit and rule answered with its status."""

from __future__ import annotations

from typing import List, Optional

import pytest

from thrift_handshake.wire.http import (HttpError, HttpLimits, HttpRequest, RequestParser, ResponseParser,
                                        protocol_of, request_bytes, response_bytes)

JSON = "application/vnd.apache.thrift.json; charset=utf-8"
BODY = b'[1,"echo",1,0,{"1":{"str":"hi"}}]'


def post(body: bytes = BODY, content_type: Optional[str] = JSON, extra: str = "") -> bytes:
    head = f"POST / HTTP/1.1\r\nHost: x\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    return (head + extra + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def parse(data: bytes, step: Optional[int] = None, limits: HttpLimits = HttpLimits()) -> List[HttpRequest]:
    parser, requests = RequestParser(limits), []
    step = step or len(data) or 1
    for start in range(0, len(data), step):
        parser.feed(data[start:start + step])
        while True:
            request = parser.next_request()
            if request is None:
                break
            requests.append(request)
    assert parser.buffered == 0
    return requests


def refused(data: bytes, limits: HttpLimits = HttpLimits()) -> HttpError:
    with pytest.raises(HttpError) as caught:
        parse(data, limits=limits)
    return caught.value


@pytest.mark.parametrize("step", [None, 1, 7])
def test_a_request_whole_split_or_dripped_is_the_same(step: Optional[int]) -> None:
    request, = parse(post(), step)
    assert (request.method, request.target, request.version, request.body) == ("POST", "/", (1, 1), BODY)
    assert request.media_type == "application/vnd.apache.thrift.json"
    assert request.keep_alive


def test_pipelined_requests_come_out_in_order() -> None:
    second = post(b"\x80\x01\x00\x01", "application/x-thrift")
    requests = parse(post() + second + post(b"[2]"), step=5)
    assert [r.body for r in requests] == [BODY, b"\x80\x01\x00\x01", b"[2]"]


def test_the_parser_asks_for_no_more_than_the_body_lacks() -> None:
    parser = RequestParser()
    data = post()
    parser.feed(data[:-10])
    assert parser.next_request() is None
    assert parser.wanted() == 10


def test_connection_close_and_http_1_0() -> None:
    closing, = parse(post(extra="Connection: close\r\n"))
    assert not closing.keep_alive
    old, = parse(post().replace(b"HTTP/1.1", b"HTTP/1.0"))
    assert not old.keep_alive
    kept, = parse(post(extra="Connection: keep-alive\r\n").replace(b"HTTP/1.1", b"HTTP/1.0"))
    assert kept.keep_alive


def test_a_get_has_no_body_without_length() -> None:
    request, = parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (request.method, request.body) == ("GET", b"")


def test_expect_100_continue_is_told_while_the_body_waits() -> None:
    parser = RequestParser()
    data = post(extra="Expect: 100-continue\r\n")
    parser.feed(data[:-len(BODY)])
    assert parser.next_request() is None
    assert parser.expects_continue
    parser.feed(BODY)
    assert parser.next_request().body == BODY


@pytest.mark.parametrize("length, status", [("-1", 400), ("1x", 400), ("+5", 400), ("5, 6", 400),
                                            ("99999999999999999999", 400), ("", 400)])
def test_a_bad_content_length_is_400(length: str, status: int) -> None:
    data = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()
    assert refused(data).status == status


def test_the_same_length_repeated_is_one_length() -> None:
    request, = parse(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\n[]")
    assert request.body == b"[]"


def test_a_body_over_the_limit_is_413_before_it_arrives() -> None:
    error = refused(post(b"x" * 101)[:-101], HttpLimits(max_body_bytes=100))
    assert error.status == 413
    assert "101 bytes" in error.message


def test_a_head_over_the_limit_is_431_without_its_end() -> None:
    data = b"POST / HTTP/1.1\r\nX-Big: " + b"a" * 2000
    assert refused(data, HttpLimits(max_head_bytes=1024)).status == 431


def test_a_head_at_the_limit_is_served() -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX-Pad: "
    data = head + b"a" * (1024 - len(head)) + b"\r\n\r\n"
    request, = parse(data, limits=HttpLimits(max_head_bytes=1024))
    assert request.body == b""


def test_too_many_header_fields_are_431() -> None:
    data = b"POST / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"Content-Length: 0\r\n\r\n"
    assert refused(data).status == 431


@pytest.mark.parametrize("data, why", [
    (b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]", "without a Host"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 2\r\n\r\n[]", "more than one Host"),
], ids=["no-host", "two-hosts"])
def test_an_http_1_1_request_needs_exactly_one_host(data: bytes, why: str) -> None:
    error = refused(data)
    assert (error.status, why in error.message) == (400, True), error.message


def test_an_http_1_0_request_may_omit_host() -> None:
    request, = parse(b"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\n[]")
    assert (request.version, request.body) == ((1, 0), b"[]")


@pytest.mark.parametrize("data, status", [
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n", 411),
    (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", 411),
    (b"POST / HTTP/2.0\r\nContent-Length: 0\r\n\r\n", 505),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    (b"POST /\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 0\r\n folded\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nBad Name: 1\r\n\r\n", 400),
])
def test_what_http_forbids_or_this_server_does_not_take(data: bytes, status: int) -> None:
    assert refused(data).status == status


@pytest.mark.parametrize("content_type, body, protocol", [
    (JSON, b"[1]", "json"),
    ("application/vnd.apache.thrift.binary", b"\x80\x01", "binary"),
    ("application/vnd.apache.thrift.compact", b"\x82\x21", "compact"),
    ("application/x-thrift", b"\x80\x01", "binary"),  # Apache's THttpClient, whatever the protocol
    ("application/x-thrift", b"\x82\x21", "compact"),
    ("application/x-thrift", b"[1]", "json"),
    (None, b"[1]", "json"),
])
def test_the_protocol_by_media_type_else_first_byte(content_type: Optional[str], body: bytes, protocol: str) -> None:
    request, = parse(post(body, content_type))
    assert protocol_of(request) == protocol


@pytest.mark.parametrize("content_type, body", [("text/html", b"[1]"), (None, b"hello")])
def test_not_a_thrift_body_is_415(content_type: Optional[str], body: bytes) -> None:
    request, = parse(post(body, content_type))
    with pytest.raises(HttpError) as caught:
        protocol_of(request)
    assert caught.value.status == 415


def test_a_response_written_is_read_back_dripped() -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\n" + response_bytes(
        200, b"[1]", "application/vnd.apache.thrift.json", keep_alive=False, headers=[("Vary", "Origin")])
    parser = ResponseParser(max_body_bytes=10)
    responses = []
    for byte in data:
        parser.feed(bytes([byte]))
        response = parser.next_response()
        if response is not None:
            responses.append(response)
    response, = responses
    assert (response.status, response.body, response.headers["connection"]) == (200, b"[1]", "close")
    assert response.headers["vary"] == "Origin"


def test_a_response_over_the_client_limit_is_refused() -> None:
    parser = ResponseParser(max_body_bytes=2)
    parser.feed(response_bytes(200, b"[1]"))
    with pytest.raises(HttpError) as caught:
        parser.next_response()
    assert caught.value.status == 413


def test_a_request_written_is_parsed_back() -> None:
    request, = parse(request_bytes("h:1", "/", b"[1]", "application/vnd.apache.thrift.json"))
    assert (request.headers["host"], request.media_type, request.body) == ("h:1", "application/vnd.apache.thrift.json", b"[1]")


def test_mangled_requests_raise_only_http_errors() -> None:
    """Every byte of a pipelined pair replaced, or the pair cut there, in turn: whole requests or an HttpError."""
    import random

    data = post() + post(b"\x80\x01", "application/x-thrift", "Connection: close\r\n")
    chooser = random.Random(15)
    statuses = set()
    for at in range(len(data)):
        for mangled in (data[:at] + bytes([chooser.randrange(256)]) + data[at + 1:], data[:at]):
            parser = RequestParser()
            try:
                for start in range(0, len(mangled), 7):
                    parser.feed(mangled[start:start + 7])
                    while parser.next_request() is not None:
                        pass
            except HttpError as error:
                statuses.add(error.status)
    assert statuses <= {400, 411, 413, 431, 505}
