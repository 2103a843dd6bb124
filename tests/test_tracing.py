"""Trace context from the Python client to the server: W3C traceparent per call over THeader and in
hello on every wire, on the server's log lines and in the handler's hands; OpenTelemetry spans on both
ends, recorded by the SDK's in-memory exporter."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from thrift_handshake import Client, ClientOptions, HandshakeFailed, Interceptor, Wire
from thrift_handshake.admin import RecentCalls
from thrift_handshake.tracing import ClientTracing, ServerTracing, TraceParent, current_trace, parse_traceparent
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session.ttypes import HandshakeRequired

from conftest import encode_call, eventually, exchange
from server_process import json_log_of_one_session, read_log_until

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
HEADER = Wire(transport="header")


class TraceEcho(HandshakeService.Iface):
    """echo answers the trace id of the call's trace context, as the handler sees it."""

    def echo(self, message):
        trace = current_trace()
        logging.getLogger("the.handler").info("echoing %s", message)
        return "none" if trace is None else trace.trace_id


def test_a_traceparent_is_taken_only_in_the_w3c_form():
    assert parse_traceparent(TRACEPARENT) == TraceParent(TRACE, "00f067aa0ba902b7", "01")
    assert parse_traceparent(TRACEPARENT.encode()) == TraceParent(TRACE, "00f067aa0ba902b7", "01")
    assert parse_traceparent(f"01-{TRACE}-00f067aa0ba902b7-00-later") == TraceParent(TRACE, "00f067aa0ba902b7", "00")
    for bad in (TRACEPARENT.upper(), f"00-{'0' * 32}-00f067aa0ba902b7-01", f"00-{TRACE}-{'0' * 16}-01",
                f"ff-{TRACE}-00f067aa0ba902b7-01", TRACEPARENT + "-more", TRACEPARENT[:-1], "00-x\n", None, 7,
                b"\xff" * 55):
        assert parse_traceparent(bad) is None, bad


def test_over_theader_each_call_carries_its_own_trace_to_the_handler(start_server):
    server = start_server(handler=TraceEcho(), handshake=False)
    options = ClientOptions(wire=HEADER, handshake=False, interceptors=(ClientTracing(TRACEPARENT),))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        assert client.echo("a") == TRACE
    with Client("127.0.0.1", server.port, ClientOptions(wire=HEADER, handshake=False), service=HandshakeService) as client:
        assert client.echo("b") == "none"  # no interceptor, no header: nothing carried


def test_without_headers_hello_carries_the_trace_and_later_calls_have_none(start_server):
    seen = []

    class Seen(Interceptor):
        def call_started(self, call):
            seen.append((call.method, call.session.traceparent))

    server = start_server(handler=TraceEcho(), interceptors=[Seen()])
    options = ClientOptions(interceptors=(ClientTracing(TRACEPARENT),))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        assert client.echo("a") == "none"
    assert [method for method, _ in seen] == ["hello", "echo", "goodbye"]
    hello, echo, goodbye = (traceparent for _, traceparent in seen)
    assert parse_traceparent(hello).trace_id == TRACE
    assert (echo, goodbye) == (None, None)  # a buffered binary message has nowhere to carry it


def test_one_call_is_followed_from_the_client_through_the_servers_json_lines():
    sessions = []

    def use(port: int) -> None:
        options = ClientOptions(wire=HEADER, interceptors=(ClientTracing(TRACEPARENT),))
        with Client("127.0.0.1", port, options, service=HandshakeService) as client:
            client.echo("followed")
            sessions.append(client.session_id)

    lines = json_log_of_one_session(use, "--call-log-level", "INFO")
    [session] = sessions
    traced = [line for line in lines if line.get("trace_id") == TRACE]
    assert [line["method"] for line in traced if "method" in line] == ["hello", "echo", "goodbye"]
    assert all(line["session"] == session for line in traced if line.get("method") != "hello")
    [echo] = [line for line in traced if line.get("method") == "echo"]
    assert f"session={session} trace={TRACE} " in echo["msg"]


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def test_the_server_span_is_the_child_of_the_client_span_in_one_trace(start_server, spans):
    tracer, exporter = spans

    class SpanningEcho(HandshakeService.Iface):
        def echo(self, message):
            with tracer.start_as_current_span("inside the handler"):
                return message

    server = start_server(handler=SpanningEcho(), interceptors=[ServerTracing(tracer)])
    options = ClientOptions(wire=HEADER, interceptors=(ClientTracing(tracer=tracer),))
    with tracer.start_as_current_span("the caller's work") as outer:
        with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
            assert client.echo("traced") == "traced"
    finished = {(span.name, span.kind): span for span in exporter.get_finished_spans()}
    client_span, server_span = finished[("echo", SpanKind.CLIENT)], finished[("echo", SpanKind.SERVER)]
    inside = finished[("inside the handler", SpanKind.INTERNAL)]
    trace_id = outer.get_span_context().trace_id
    assert {client_span.context.trace_id, server_span.context.trace_id, inside.context.trace_id} == {trace_id}
    assert client_span.parent.span_id == outer.get_span_context().span_id
    assert server_span.parent.span_id == client_span.context.span_id
    assert server_span.parent.is_remote
    assert inside.parent.span_id == server_span.context.span_id  # current while the handler runs
    assert server_span.attributes["rpc.thrift_handshake.session"] == client.session_id
    hello = finished[("hello", SpanKind.SERVER)]
    assert hello.parent.span_id == finished[("hello", SpanKind.CLIENT)].context.span_id


def test_a_refused_call_ends_its_server_span_as_an_error(start_server, spans):
    tracer, exporter = spans
    server = start_server(handler=TraceEcho(), interceptors=[ServerTracing(tracer)])
    options = ClientOptions(wire=HEADER, handshake=False, interceptors=(ClientTracing(tracer=tracer),))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        with pytest.raises(HandshakeRequired):
            client.echo("before hello")

    def server_spans():
        return [span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER]

    assert eventually(server_spans)  # ended once its answer is written: the client may read it first
    [span] = server_spans()
    assert (span.name, span.status.status_code.name, span.attributes["rpc.thrift_handshake.outcome"]) == (
        "echo", "ERROR", "refused")


SERVE_WITH_OPENTELEMETRY = """
import sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
provider = TracerProvider()  # what opentelemetry-instrument sets up before the program runs
provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(formatter=lambda span: span.to_json(None) + "\\n")))
trace.set_tracer_provider(provider)
from thrift_handshake.cli import main
sys.exit(main(["serve", "--port", "0"]))
"""


def test_serve_makes_server_spans_once_opentelemetry_is_set_up():
    process = subprocess.Popen([sys.executable, "-c", SERVE_WITH_OPENTELEMETRY], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        port = int(read_log_until(process, "listening on").rsplit("listening on ", 1)[1].split()[0].rsplit(":", 1)[1])
        options = ClientOptions(wire=HEADER, interceptors=(ClientTracing(TRACEPARENT),))
        with Client("127.0.0.1", port, options, service=HandshakeService) as client:
            client.echo("spanned")
        read_log_until(process, "closed peer=")  # each span is written when it ends, before this line
    finally:
        process.terminate()
        written = process.communicate(timeout=20)[0]
    spans = [json.loads(line) for line in written.splitlines()]
    [echo] = [span for span in spans if span["name"] == "echo"]
    assert (echo["kind"], echo["context"]["trace_id"]) == ("SpanKind.SERVER", f"0x{TRACE}")
    assert echo["parent_id"] is not None  # the client's span (a new span id under the given trace)


def test_without_headers_the_hello_span_still_has_the_clients_as_parent(start_server, spans):
    tracer, exporter = spans
    server = start_server(handler=TraceEcho(), interceptors=[ServerTracing(tracer)])
    with Client("127.0.0.1", server.port, ClientOptions(interceptors=(ClientTracing(tracer=tracer),)),
                service=HandshakeService) as client:
        client.echo("buffered")
    finished = {(span.name, span.kind): span for span in exporter.get_finished_spans()}
    hello_client, hello_server = finished[("hello", SpanKind.CLIENT)], finished[("hello", SpanKind.SERVER)]
    assert hello_server.parent.span_id == hello_client.context.span_id  # from ClientHello.traceparent
    echo_server = finished[("echo", SpanKind.SERVER)]
    assert echo_server.parent is None  # nothing carried it: a trace of its own


def test_call_traceparent_is_followed_into_the_servers_log():
    def use(port: int) -> None:
        done = subprocess.run([sys.executable, "-m", "thrift_handshake.cli", "call", "--port", str(port),
                               "--transport", "header", "--traceparent", TRACEPARENT, "echo", '"from the cli"'],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr

    lines = json_log_of_one_session(use, "--call-log-level", "INFO")
    assert [line["method"] for line in lines if line.get("trace_id") == TRACE and "method" in line] == [
        "hello", "echo", "goodbye"]


def test_call_refuses_a_traceparent_that_is_not_one():
    done = subprocess.run([sys.executable, "-m", "thrift_handshake.cli", "call", "--traceparent", "00-abc", "echo",
                           '"x"'], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "--traceparent: '00-abc' is not a W3C traceparent" in done.stderr


def test_a_name_the_service_does_not_have_is_not_a_span_name(start_server, spans):
    tracer, exporter = spans
    server = start_server(handler=TraceEcho(), interceptors=[ServerTracing(tracer)])
    exchange(server.port, encode_call("made_up_by_the_peer", HandshakeService.echo_args(message="?")))
    assert eventually(lambda: exporter.get_finished_spans())
    [span] = exporter.get_finished_spans()
    assert (span.name, span.attributes["rpc.method"], span.attributes["rpc.thrift_handshake.outcome"]) == (
        "<unknown>", "<unknown>", "unknown_method")


def test_the_admin_pages_recent_calls_carry_the_trace_id(start_server):
    recent = RecentCalls()
    server = start_server(handler=TraceEcho(), interceptors=[recent])
    options = ClientOptions(wire=HEADER, interceptors=(ClientTracing(TRACEPARENT),))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        client.echo("listed")
    # goodbye is recorded when its call ends, after its reply is written: wait for it before the next hello
    assert eventually(lambda: len(recent.calls()) == 3)
    with Client("127.0.0.1", server.port, ClientOptions(wire=HEADER), service=HandshakeService) as client:
        client.echo("untraced")
    assert eventually(lambda: len(recent.calls()) == 6)
    assert [(entry["method"], entry["trace_id"]) for entry in recent.calls()] == [
        ("hello", TRACE), ("echo", TRACE), ("goodbye", TRACE), ("hello", None), ("echo", None), ("goodbye", None)]


WITHOUT_OPENTELEMETRY = """
import sys
sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
from thrift_handshake import Client, ClientOptions, ServerConfig, Wire
from thrift_handshake.demo import demo_server
from thrift_handshake.tracing import ClientTracing, ServerTracing, opentelemetry_available
from thrift_handshake_gen import HandshakeService
assert not opentelemetry_available()
try:
    ServerTracing()
except RuntimeError as error:
    print(error)
server = demo_server(ServerConfig(port=0)).start()
seen = []
class Seen(ClientTracing):
    def call_started(self, call):
        super().call_started(call)
        seen.append(call.traceparent[3:35])
options = ClientOptions(wire=Wire(transport="header"), interceptors=(Seen(),))
with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
    client.echo("no opentelemetry")
server.stop()
print(len(seen), len(set(seen)))
"""


def test_without_opentelemetry_the_client_still_sends_a_new_trace_per_call():
    done = subprocess.run([sys.executable, "-c", WITHOUT_OPENTELEMETRY], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ServerTracing needs opentelemetry-api: pip install opentelemetry-api",
                                        "3 3"]  # hello, echo, goodbye: a trace each


def test_a_given_traceparent_is_the_parent_of_the_client_spans(start_server, spans):
    tracer, exporter = spans
    server = start_server(handler=TraceEcho())
    options = ClientOptions(wire=HEADER, interceptors=(ClientTracing(TRACEPARENT, tracer=tracer),))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        assert client.echo("given") == TRACE
    [echo] = [span for span in exporter.get_finished_spans() if span.name == "echo"]
    assert (f"{echo.context.trace_id:032x}", f"{echo.parent.span_id:016x}") == (TRACE, "00f067aa0ba902b7")


def test_a_refused_hello_that_nothing_watches_still_logs_the_trace_it_carried(tmp_path):
    """No interceptor and no call log line (INFO): hello is served without the watched wrapper, and the
    JSON line saying why it was refused still carries ClientHello.traceparent's trace id."""
    token = tmp_path / "token"
    token.write_text("right\n")

    def use(port: int) -> None:
        options = ClientOptions(auth_token="wrong", interceptors=(ClientTracing(TRACEPARENT),))
        with pytest.raises(HandshakeFailed):
            Client("127.0.0.1", port, options, service=HandshakeService).connect()

    lines = json_log_of_one_session(use, "--auth-token-file", str(token))
    [refused] = [line for line in lines if line["msg"].startswith("handshake rejected")]
    assert refused["trace_id"] == TRACE


def test_a_hello_a_hook_gave_a_trace_is_not_reused_by_the_next_connection(start_server):
    """Options with interceptors never keep their hello: a trace one hook put there stays with its connection."""
    seen = []

    class Seen(Interceptor):
        def call_started(self, call):
            if call.method == "hello":
                seen.append(call.session.traceparent)

    class TraceTheFirstHello(Interceptor):
        traced = False

        def call_started(self, call):
            if call.method == "hello" and not self.traced:
                call.traceparent, self.traced = TRACEPARENT, True

    server = start_server(interceptors=[Seen()])
    options = ClientOptions(interceptors=(TraceTheFirstHello(),))
    for _ in range(2):
        with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
            client.ping()
    assert seen == [TRACEPARENT, None]
