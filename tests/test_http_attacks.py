"""Thrift over HTTP on the one port, attacked as an outside prober would, on the threaded and the asyncio
server: each test a defect found and fixed. A body that is no Thrift message was answered with an empty
200 (threaded: what a one-way call gets) or not at all (asyncio); header values with CR, LF or NUL were
taken (RFC 9110 5.5: reject them, or a proxy that splits at a bare LF reads other headers than this server);
HTTP/1.1 requests without a Host field, or with two, were served (RFC 9112 3.2: 400);
JSON integers out of their type's range reached the handler and failed as the server's own error."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
import threading
from typing import Callable

import pytest
from thrift.Thrift import TApplicationException

from conftest import read_until_closed
from test_async_server import event_loop_thread, loop_factory, start_async  # noqa: F401 (fixtures)
from test_http_server import json_message, json_reply, post, xhr_headers

from thrift_handshake import Client, ClientOptions, Timeouts, Wire
from thrift_handshake.aio import AsyncClient
from thrift_handshake.wire.http import HttpError, RequestParser, ResponseParser
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import AllTypes


@pytest.fixture(params=["threads", "asyncio"])
def start(request) -> Callable:
    """``start(**ServerConfig fields)``: the threaded server, or the asyncio one."""
    return request.getfixturevalue("start_server" if request.param == "threads" else "start_async")


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


def _post(body: bytes, content_type: str = "application/vnd.apache.thrift.json") -> bytes:
    return (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)


def _echo_still_served(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        response, data = post(conn, json_message("echo", HandshakeService.echo_args("still here")), xhr_headers())
        assert response.status == 200
        assert json_reply(data, HandshakeService.echo_result)[1].success == "still here"
    finally:
        conn.close()


@pytest.mark.parametrize("body, content_type, why", [
    (b"", "application/vnd.apache.thrift.json", "ended before"),
    (b'[2,"echo",1,1,{}]', "application/vnd.apache.thrift.json", "bad version"),
    (b'[1,"echo",1,1e999,{}]', "application/vnd.apache.thrift.json", "numeric data"),
    (b'[1,"echo', "application/vnd.apache.thrift.json", "ended before"),
    (b"\x80\x01\x00\x01\x00\x00\x00\x04echo\x00\x00\x00\x01\x00", "application/vnd.apache.thrift.json", "Unexpected"),
    (b"\x80\x02\x00\x01", "application/x-thrift", "Bad version"),
], ids=["empty", "json-version", "json-seqid", "json-cut-in-name", "binary-as-json", "binary-version"])
def test_a_body_that_is_no_thrift_message_is_answered_400_and_others_go_on(start, body, content_type, why):
    server = start(optional_hello=True)
    answer = _raw(server.port, _post(body, content_type))
    head, _, text = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:300]
    assert b"Connection: close" in head
    assert text.startswith(b"400 the body is no Thrift message: "), text[:300]
    assert why.lower().encode() in text.lower(), text[:300]
    _echo_still_served(server.port)


@pytest.mark.parametrize("value", [b"a\nTransfer-Encoding: chunked", b"a\rb", b"a\x00b"], ids=["LF", "CR", "NUL"])
def test_a_header_value_with_cr_lf_or_nul_is_400(value):
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: x\r\nX-Smuggled: " + value + b"\r\nContent-Length: 2\r\n\r\n[]")
    with pytest.raises(HttpError) as refused:
        parser.next_request()
    assert refused.value.status == 400
    assert "X-Smuggled" in refused.value.message


def test_a_smuggled_header_is_refused_on_the_port(start):
    server = start(optional_hello=True)
    body = json_message("echo", HandshakeService.echo_args("hi"))
    answer = _raw(server.port, b"POST / HTTP/1.1\r\nHost: x\r\nX: a\nTransfer-Encoding: chunked\r\nContent-Length: "
                  + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:200]


@pytest.mark.parametrize("host_fields", [b"", b"Host: a\r\nHost: b\r\n"], ids=["no-host", "two-hosts"])
def test_an_http_1_1_request_without_exactly_one_host_is_400_on_the_port(start, host_fields):
    server = start(optional_hello=True)
    body = json_message("echo", HandshakeService.echo_args("hi"))
    answer = _raw(server.port, b"POST / HTTP/1.1\r\n" + host_fields + b"Content-Length: "
                  + str(len(body)).encode() + b"\r\n\r\n" + body)
    head, _, text = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:200]
    assert b"Host header field" in text, text[:200]
    _echo_still_served(server.port)


def _json_call(port: int, body: bytes):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        return post(conn, body, xhr_headers())
    finally:
        conn.close()


@pytest.mark.parametrize("field, value", [
    ("3", b'{"i8":128}'), ("4", b'{"i16":-32769}'), ("5", b'{"i32":2147483648}'),
    ("6", b'{"i64":9223372036854775808}'), ("16", b'{"lst":["i32",1,99999999999]}'),
])
def test_a_json_integer_out_of_its_type_s_range_is_the_caller_s_protocol_error(start, caplog, field, value):
    server = start(optional_hello=True)
    body = b'[1,"echo_types",1,7,{"1":{"rec":{"1":{"str":"a"},"' + field.encode() + b'":' + value + b"}}}]"
    with caplog.at_level(logging.WARNING):
        response, data = _json_call(server.port, body)
    assert response.status == 200
    message_type, error = json_reply(data, HandshakeService.echo_types_result)
    assert (message_type, error.type) == (3, TApplicationException.PROTOCOL_ERROR), error
    assert "out of range" in error.message
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]  # not the server's fault
    # at the edges of the ranges, the values go through
    edges = AllTypes(id="a", small=-128, short_number=32767, number=-2147483648, big_number=2**63 - 1)
    response, data = _json_call(server.port, json_message("echo_types", HandshakeService.echo_types_args(edges)))
    assert json_reply(data, HandshakeService.echo_types_result)[1].success == edges


def test_a_seqid_out_of_the_i32_range_is_no_thrift_message(start):
    server = start(optional_hello=True)
    answer = _raw(server.port, _post(b'[1,"echo",1,99999999999,{"1":{"str":"x"}}]'))
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:300]
    assert b"out of range" in answer


def _strict_json(body: bytes):
    def refuse(constant: str):
        raise ValueError(f"{constant} is no JSON")
    return json.loads(body, parse_constant=refuse)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["NaN", "Infinity", "-Infinity"])
def test_a_double_that_is_no_number_is_written_as_thrift_json_s_quoted_name(start, value):
    """TJSONProtocol's special doubles are strings ("NaN", "Infinity", "-Infinity"), as Java's, C++'s and the
    JavaScript library's write and read them: Python's wrote nan and inf bare, which no JSON parser reads."""
    server = start(optional_hello=True)
    name = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[str(value)]
    body = b'[1,"echo_types",1,1,{"1":{"rec":{"1":{"str":"a"},"7":{"dbl":"' + name.encode() + b'"}}}}]'
    response, data = _json_call(server.port, body)
    assert response.status == 200
    reply = _strict_json(data)
    assert reply[4]["0"]["rec"]["7"] == {"dbl": name}, data
    got = json_reply(data, HandshakeService.echo_types_result)[1].success.real
    assert got != got if value != value else got == value


class _InterimFlood:
    """Between a client and ``port``: relays both ways, and sends ``count`` interim ``100 Continue``
    responses before the server's first bytes (a hostile or broken server, or a proxy)."""

    def __init__(self, port: int, count: int) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._upstream = port
        self._count = count
        self._threads = [threading.Thread(target=self._serve)]
        self._sockets: list = [self._listener]

    def __enter__(self) -> "_InterimFlood":
        self._threads[0].start()
        return self

    def __exit__(self, *exc_info) -> None:
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # never connected, or gone
                pass
            sock.close()
        for thread in self._threads:
            thread.join(5)

    def _serve(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:  # closed unused
            return
        upstream = socket.create_connection(("127.0.0.1", self._upstream))
        self._sockets += [client, upstream]
        pump = threading.Thread(target=self._pump, args=(client, upstream))
        self._threads.append(pump)
        pump.start()
        self._pump(upstream, client, b"HTTP/1.1 100 Continue\r\n\r\n" * self._count)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, first: bytes = b"") -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(first + data)
                first = b""
        except OSError:  # the other end closed
            pass


def test_interim_responses_by_the_thousand_do_not_break_the_clients(start_server):
    """The response parser skipped each 1xx response by calling itself: AsyncClient, which feeds it what
    arrives, broke its connection with a RecursionError on 5000 of them in a row (the threaded client reads
    at most 4 KiB at a time: fewer than 1000 per call)."""
    server = start_server()
    options = ClientOptions(wire=Wire(transport="http", protocol="json"), timeouts=Timeouts(connect=5, call=10))
    with _InterimFlood(server.port, 5000) as flood:
        with Client("127.0.0.1", flood.port, options, service=HandshakeService) as client:
            assert client.call("echo", "through") == "through"

    async def call() -> str:
        async with AsyncClient("127.0.0.1", flood.port, options, service=HandshakeService) as client:
            return await client.echo("through")

    with _InterimFlood(server.port, 5000) as flood:
        assert asyncio.run(call()) == "through"


def test_the_response_parser_skips_interim_responses_without_limit_of_depth():
    parser = ResponseParser(1000)
    parser.feed(b"HTTP/1.1 100 Continue\r\n\r\n" * 5000 + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]")
    response = parser.next_response()
    assert (response.status, response.body, parser.buffered) == (200, b"[]", 0)
