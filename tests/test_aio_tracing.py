"""Trace context from ``AsyncClient`` as from ``Client``: a THeader ``traceparent`` per call, hello's own
field on every wire, ClientTracing's spans; followed into the server's JSON log lines (threaded and
asyncio servers alike)."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.trace import SpanKind

from thrift_handshake import ClientOptions, Interceptor
from thrift_handshake.aio import AsyncClient
from thrift_handshake.tracing import ClientTracing, ServerTracing, parse_traceparent
from thrift_handshake_gen import HandshakeService

from server_process import json_log_of_one_session
from test_tracing import HEADER, TRACE, TRACEPARENT, TraceEcho, spans  # noqa: F401 (fixture)


@pytest.mark.parametrize("server", ["threaded", "asyncio"])
def test_one_async_call_is_followed_from_the_client_through_the_servers_json_lines(server: str) -> None:
    sessions = []

    async def calls(port: int) -> None:
        options = ClientOptions(wire=HEADER, interceptors=(ClientTracing(TRACEPARENT),))
        async with AsyncClient("127.0.0.1", port, options, service=HandshakeService) as client:
            await client.echo("followed")
            sessions.append(client.session_id)

    flags = ("--asyncio",) if server == "asyncio" else ()
    lines = json_log_of_one_session(lambda port: asyncio.run(calls(port)), "--call-log-level", "INFO", *flags)
    [session] = sessions
    traced = [line for line in lines if line.get("trace_id") == TRACE]
    assert [line["method"] for line in traced if "method" in line] == ["hello", "echo", "goodbye"]
    [echo] = [line for line in traced if line.get("method") == "echo"]
    assert f"session={session} trace={TRACE} " in echo["msg"]


def test_each_pipelined_call_carries_its_own_trace_to_the_handler(start_server) -> None:
    server = start_server(handler=TraceEcho(), handshake=False)

    async def calls() -> list:
        options = ClientOptions(wire=HEADER, handshake=False, interceptors=(ClientTracing(TRACEPARENT),))
        async with AsyncClient("127.0.0.1", server.port, options, service=HandshakeService) as traced:
            answers = await asyncio.gather(*(traced.echo(str(index)) for index in range(5)))
        async with AsyncClient("127.0.0.1", server.port, ClientOptions(wire=HEADER, handshake=False),
                               service=HandshakeService) as untraced:
            answers.append(await untraced.echo("b"))
        return answers

    assert asyncio.run(calls()) == [TRACE] * 5 + ["none"]  # no interceptor, no header: nothing carried


def test_without_headers_hello_carries_the_trace(start_server) -> None:
    seen = []

    class Seen(Interceptor):
        def call_started(self, call):
            seen.append((call.method, call.session.traceparent))

    server = start_server(handler=TraceEcho(), interceptors=[Seen()])

    async def call() -> str:
        options = ClientOptions(interceptors=(ClientTracing(TRACEPARENT),))
        async with AsyncClient("127.0.0.1", server.port, options, service=HandshakeService) as client:
            return await client.echo("a")

    assert asyncio.run(call()) == "none"
    assert [method for method, _ in seen] == ["hello", "echo", "goodbye"]
    assert parse_traceparent(seen[0][1]).trace_id == TRACE
    assert (seen[1][1], seen[2][1]) == (None, None)  # a buffered binary message has nowhere to carry it


def test_the_server_span_is_the_child_of_the_async_client_span(start_server, spans) -> None:  # noqa: F811
    tracer, exporter = spans
    server = start_server(handler=TraceEcho(), interceptors=[ServerTracing(tracer)])

    async def call() -> None:
        options = ClientOptions(wire=HEADER, interceptors=(ClientTracing(tracer=tracer),))
        with tracer.start_as_current_span("the caller's work"):
            async with AsyncClient("127.0.0.1", server.port, options, service=HandshakeService) as client:
                await client.echo("traced")

    asyncio.run(call())
    finished = {(span.name, span.kind): span for span in exporter.get_finished_spans()}
    outer = finished[("the caller's work", SpanKind.INTERNAL)]
    client_span, server_span = finished[("echo", SpanKind.CLIENT)], finished[("echo", SpanKind.SERVER)]
    assert {client_span.context.trace_id, server_span.context.trace_id} == {outer.context.trace_id}
    assert client_span.parent.span_id == outer.context.span_id
    assert server_span.parent.span_id == client_span.context.span_id and server_span.parent.is_remote
    assert client_span.status.is_ok and client_span.attributes["rpc.thrift_handshake.outcome"] == "ok"
    hello = finished[("hello", SpanKind.SERVER)]
    assert hello.parent.span_id == finished[("hello", SpanKind.CLIENT)].context.span_id
