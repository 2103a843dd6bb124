"""Thrift over HTTP on the asyncio server: the threaded server's tests of it run here unchanged (the
``server`` and ``start_server`` fixtures of tests/on_asyncio.py start the asyncio server), served by the
same sans-IO request parser and HTTP transport over memory; and AsyncClient over HTTP (one keep-alive
connection, calls pipelined, responses in order)."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from conftest import eventually, read_until_closed
from on_asyncio import server, start_server  # noqa: F401 (fixtures: the threaded tests on the asyncio server)
from test_async_server import event_loop_thread, loop_factory, start_async  # noqa: F401 (fixtures)
from test_http_server import (  # noqa: F401 (run here against the asyncio server)
    PAGE,
    test_a_browser_page_does_hello_then_calls_on_one_keep_alive_connection,
    json_message, test_a_client_speaking_http_to_a_port_serving_one_wire_learns_why,
    test_a_client_uploading_a_body_over_the_limit_reads_its_413, test_a_get_is_told_what_the_port_serves,
    test_a_json_request_cut_short_is_answered_with_protocol_error, test_a_json_string_over_max_message_bytes_is_refused,
    test_a_one_way_call_is_answered_before_it_runs, test_a_pipelined_hello_over_http_reads_both_replies_in_order,
    test_a_slow_request_is_cut_at_request_timeout, test_a_traceparent_header_gives_each_call_its_trace,
    test_another_origin_is_refused, test_any_origin_when_configured, test_apache_thttpclient_calls_the_one_port,
    test_expect_100_continue_is_answered_before_the_body, test_https_on_the_tls_port,
    test_malformed_requests_get_their_status_and_others_are_served, test_pipelined_requests_are_answered_in_order,
    test_the_cors_preflight_of_an_allowed_origin, test_this_clients_http_keeps_its_session_on_one_connection,
    test_this_clients_trace_context_rides_each_http_request, test_without_hello_the_next_post_is_refused_as_on_any_dialect)
from test_server_eviction import test_a_newcomer_speaking_http_to_a_full_server_gets_a_503  # noqa: F401
from test_tracing import TRACE, TRACEPARENT, TraceEcho

from thrift_handshake import ClientOptions, HandshakeServer, ServerConfig, Wire
from thrift_handshake.aio import AsyncClient
from thrift_handshake.errors import ConnectionBroken
from thrift_handshake.tracing import ClientTracing
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Event


HTTP_WIRES = [Wire(transport="http", protocol=protocol) for protocol in ("json", "binary", "compact")]


@pytest.mark.parametrize("wire", HTTP_WIRES, ids=str)
def test_the_async_client_pipelines_calls_over_http_on_one_connection(server, wire: Wire) -> None:
    async def calls() -> list:
        async with AsyncClient("127.0.0.1", server.port, ClientOptions(wire=wire), service=HandshakeService) as client:
            echoed = await asyncio.gather(*(client.echo(f"{index}]\"") for index in range(20)))
            await client.notify(Event("e", "one-way: its empty 200 is skipped"))
            echoed.append(await client.echo("after one-way"))
            echoed.append(server.connection_count)
            return echoed

    assert asyncio.run(calls()) == [f"{index}]\"" for index in range(20)] + ["after one-way", 1]


@pytest.mark.parametrize("wire", HTTP_WIRES[:1], ids=str)
def test_the_async_client_over_http_to_the_threaded_server_with_trace_context(wire: Wire) -> None:
    threaded = HandshakeServer(TraceEcho(), ServerConfig(host="127.0.0.1", port=0)).start()

    async def call() -> str:
        options = ClientOptions(wire=wire, interceptors=(ClientTracing(TRACEPARENT),))
        async with AsyncClient("127.0.0.1", threaded.port, options, service=HandshakeService) as client:
            return await client.echo("traced")

    try:
        assert asyncio.run(call()) == TRACE  # the request's traceparent header, as the handler sees it
    finally:
        threaded.stop()


def test_the_async_client_reads_an_http_status_as_why_it_broke(start_async) -> None:  # noqa: F811
    server = start_async(detect_wire=False)

    async def connect() -> None:
        await AsyncClient("127.0.0.1", server.port, ClientOptions(wire=HTTP_WIRES[0]), service=HandshakeService).connect()

    with pytest.raises(ConnectionBroken) as caught:
        asyncio.run(connect())
    assert "the server answered HTTP 400 Bad Request" in str(caught.value)
    assert "this server speaks Thrift buffered binary" in str(caught.value)


@pytest.mark.parametrize("start", [b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", b"POST / HTTP/1.0\r\n"],
                         ids=["close", "http-1.0"])
def test_a_request_that_asks_to_close_is_answered_and_the_connection_closed(start_async, start: bytes) -> None:  # noqa: F811
    server = start_async(optional_hello=True)
    body = json_message("echo", HandshakeService.echo_args("last"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(start + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert eventually(lambda: server.connection_count == 0)  # closed by the server, the peer still open
        answer = read_until_closed(sock, 5.0)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n" in answer
    assert answer.endswith(b'{"0":{"str":"last"}}]')


def _end_line(caplog: pytest.LogCaptureFixture, logger: str, peer: str) -> str:
    """The server's one line about how the connection from ``peer`` ended ("" until there is one)."""
    start = (f"closed peer={peer} ", f"dropped peer={peer} ")
    return next((record.getMessage() for record in list(caplog.records)
                 if record.name == logger and record.getMessage().startswith(start)), "")


def test_a_preflight_that_asks_to_close_ends_as_on_the_threaded_server(start_async, caplog) -> None:  # noqa: F811
    caplog.set_level(logging.INFO)
    preflight = (b"OPTIONS / HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: " + PAGE.encode() +
                 b"\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n")
    threaded = HandshakeServer(TraceEcho(), ServerConfig(host="127.0.0.1", port=0, http_origins={PAGE})).start()
    lines = []
    try:
        for server, logger in ((threaded, "thrift_handshake.server"),
                               (start_async(http_origins={PAGE}), "thrift_handshake.aio")):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                peer = "%s:%d" % sock.getsockname()
                sock.sendall(preflight)
                answer = read_until_closed(sock, 5.0)
                assert answer.startswith(b"HTTP/1.1 204 No Content\r\n") and b"Connection: close\r\n" in answer
                assert eventually(lambda: _end_line(caplog, logger, peer))
                lines.append(_end_line(caplog, logger, peer).replace(peer, "PEER").split(" session="))
    finally:
        threaded.stop()
    assert lines[1] == lines[0] == ["closed peer=PEER", "None: peer closed the connection"]
