"""Thrift over HTTP on the server's one port: Apache's THttpClient with TJSONProtocol and binary, this
project's client over HTTP, what a browser's XHRConnection sends (CORS included), one-way calls, keep-alive
sessions, pipelined requests, and malformed or oversized requests answered with their status while the
server goes on serving others."""

from __future__ import annotations

import http.client
import socket
import threading
from typing import Dict, Optional, Tuple

import pytest
from thrift.protocol import TBinaryProtocol, TCompactProtocol, TJSONProtocol
from thrift.Thrift import TApplicationException
from thrift.transport import THttpClient, TSocket, TTransport

from conftest import eventually, read_until_closed
from thrift_handshake import Client, ClientOptions, ServerLimits
from thrift_handshake.errors import ConnectionBroken, RemoteApplicationError
from thrift_handshake.demo import HandshakeHandler
from thrift_handshake.config import Wire
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello
from thrift_handshake_gen.ttypes import Event, Request

JSON = "application/vnd.apache.thrift.json; charset=utf-8"
PAGE = "http://127.0.0.1:8000"


def xhr_headers(origin: Optional[str] = None) -> Dict[str, str]:
    """What Thrift's JavaScript library (TXHRTransport / XHRConnection) sets on each POST."""
    headers = {"Accept": JSON, "Content-Type": JSON}
    if origin is not None:
        headers["Origin"] = origin  # the browser adds it to a cross-origin request
    return headers


def json_message(method: str, args, seqid: int = 1, message_type: int = 1) -> bytes:
    """A request encoded with Thrift's own TJSONProtocol, as the JavaScript library writes it."""
    buffer = TTransport.TMemoryBuffer()
    protocol = TJSONProtocol.TJSONProtocol(buffer)
    protocol.writeMessageBegin(method, message_type, seqid)
    args.write(protocol)
    protocol.writeMessageEnd()
    return buffer.getvalue()


def json_reply(body: bytes, result_class):
    """(message type, result) of a JSON reply body."""
    protocol = TJSONProtocol.TJSONProtocol(TTransport.TMemoryBuffer(body))
    _, message_type, _ = protocol.readMessageBegin()
    result = TApplicationException() if message_type == 3 else result_class()
    result.read(protocol)
    return message_type, result


def hello_args() -> SessionService.hello_args:
    return SessionService.hello_args(ClientHello(min_version=1, max_version=2, client_name="browser", language="js"))


def post(conn: http.client.HTTPConnection, body: bytes, headers: Dict[str, str]) -> Tuple[http.client.HTTPResponse, bytes]:
    conn.request("POST", "/", body=body, headers=headers)
    response = conn.getresponse()
    return response, response.read()


@pytest.mark.parametrize("protocol_class", [TJSONProtocol.TJSONProtocol, TBinaryProtocol.TBinaryProtocolAccelerated,
                                            TCompactProtocol.TCompactProtocolAccelerated])
def test_apache_thttpclient_calls_the_one_port(start_server, protocol_class) -> None:
    """THttpClient opens a new connection for every call, so each is its own (anonymous) session."""
    server = start_server(optional_hello=True)
    transport = THttpClient.THttpClient(f"http://127.0.0.1:{server.port}/")
    stub = HandshakeService.Client(protocol_class(transport))
    transport.open()
    try:
        assert stub.echo("über JSON") == "über JSON"
        assert transport.code == 200
        stub.notify(None)  # one-way: THttpClient still reads a (200, empty) response
        assert transport.code == 200
        assert stub.echo("after") == "after"
    finally:
        transport.close()


def test_a_one_way_call_is_answered_before_it_runs(start_server) -> None:
    """Apache's HTTP clients wait for the response of a one-way call (and its cross test times it)."""
    release, ran = threading.Event(), threading.Event()

    class Slow(HandshakeHandler):
        def notify(self, event: Event) -> None:
            release.wait(10)
            ran.set()

    server = start_server(handler=Slow(), optional_hello=True)
    transport = THttpClient.THttpClient(f"http://127.0.0.1:{server.port}/")
    stub = HandshakeService.Client(TBinaryProtocol.TBinaryProtocolAccelerated(transport))
    transport.open()
    try:
        stub.notify(Event(name="n", payload="p"))
        assert transport.code == 200 and not ran.is_set()
        release.set()
        assert ran.wait(5)
    finally:
        release.set()
        transport.close()


def test_a_browser_page_does_hello_then_calls_on_one_keep_alive_connection(start_server) -> None:
    server = start_server(http_origins={PAGE})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        response, body = post(conn, json_message("hello", hello_args()), xhr_headers(PAGE))
        assert response.status == 200
        assert response.getheader("Access-Control-Allow-Origin") == PAGE
        assert response.getheader("Content-Type") == "application/vnd.apache.thrift.json"
        message_type, hello = json_reply(body, SessionService.hello_result)
        assert message_type == 2 and hello.success.session_id
        response, body = post(conn, json_message("echo", HandshakeService.echo_args("hi"), 2), xhr_headers(PAGE))
        assert json_reply(body, HandshakeService.echo_result)[1].success == "hi"
        response, body = post(conn, json_message("stats", SessionService.stats_args(), 3), xhr_headers(PAGE))
        assert json_reply(body, SessionService.stats_result)[1].success.handshakes_ok == 1
        info, = server.connections_now()  # the session followed the connection
        assert (info.session_id, info.client_name, info.language) == (hello.success.session_id, "browser", "js")
    finally:
        conn.close()


def test_without_hello_the_next_post_is_refused_as_on_any_dialect(server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        response, body = post(conn, json_message("echo", HandshakeService.echo_args("hi")), xhr_headers())
        assert response.status == 200  # a Thrift answer: where a Thrift client reads it
        result = json_reply(body, HandshakeService.echo_result)[1]
        assert result.handshake_required is not None
    finally:
        conn.close()


def test_the_cors_preflight_of_an_allowed_origin(start_server) -> None:
    server = start_server(http_origins={PAGE})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("OPTIONS", "/", headers={"Origin": PAGE, "Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Headers": "content-type"})
        response = conn.getresponse()
        assert response.read() == b""
        assert response.status == 204
        assert response.getheader("Access-Control-Allow-Origin") == PAGE
        assert response.getheader("Access-Control-Allow-Methods") == "POST, OPTIONS"
        assert "Content-Type" in response.getheader("Access-Control-Allow-Headers")
        response, body = post(conn, json_message("hello", hello_args()), xhr_headers(PAGE))  # same connection
        assert json_reply(body, SessionService.hello_result)[1].success.session_id
    finally:
        conn.close()


@pytest.mark.parametrize("method", ["OPTIONS", "POST"])
def test_another_origin_is_refused(server, method: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        body = json_message("hello", hello_args()) if method == "POST" else None
        conn.request(method, "/", body=body, headers=xhr_headers("http://evil.example"))
        response = conn.getresponse()
        assert response.status == 403
        assert b"http_origins" in response.read()
        assert response.getheader("Access-Control-Allow-Origin") is None
    finally:
        conn.close()


def test_any_origin_when_configured(start_server) -> None:
    server = start_server(http_origins={"*"})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        response, _ = post(conn, json_message("hello", hello_args()), xhr_headers("http://anywhere.example"))
        assert response.getheader("Access-Control-Allow-Origin") == "http://anywhere.example"
    finally:
        conn.close()


def test_a_get_is_told_what_the_port_serves(server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        text = response.read().decode()
        assert response.status == 405
        assert response.getheader("Allow") == "POST, OPTIONS"
        assert "application/vnd.apache.thrift.json" in text
    finally:
        conn.close()
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:  # still serving
        assert client.call("echo", "x") == "x"


@pytest.mark.parametrize("protocol", ["json", "binary", "compact"])
def test_this_clients_http_keeps_its_session_on_one_connection(server, protocol: str) -> None:
    options = ClientOptions(wire=Wire(transport="http", protocol=protocol))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        session = client.server_hello.session_id
        assert client.call("echo", "é" * 1000) == "é" * 1000
        client.call("notify", None)  # one-way: the empty 200 is read, the next call gets its own reply
        assert client.call("stats").handshakes_ok == 1
        info, = server.connections_now()
        assert info.session_id == session
        echo, = client.timeline.calls("echo")  # the response is read as the reply is: its bytes are the reply's
        assert echo.bytes_in > 2000 and echo.bytes_out > 2000 and echo.wait is not None


def test_pipelined_requests_are_answered_in_order(start_server) -> None:
    server = start_server(optional_hello=True)
    requests = b""
    words = ["one", "two", "three", "last"]
    for seqid, text in enumerate(words, 1):
        body = json_message("echo", HandshakeService.echo_args(text), seqid)
        close = "Connection: close\r\n" if text == "last" else ""  # the server closes after answering it
        requests += (f"POST / HTTP/1.1\r\nHost: x\r\n{close}Content-Type: {JSON}\r\nContent-Length: {len(body)}"
                     "\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(requests)
        data = read_until_closed(sock)
    replies = data.split(b"HTTP/1.1 ")[1:]
    assert [r.split(b"\r\n", 1)[0] for r in replies] == [b"200 OK"] * 4
    texts = [json_reply(r.split(b"\r\n\r\n", 1)[1], HandshakeService.echo_result)[1].success for r in replies]
    assert texts == words


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n", b"400"),
    (b"POST / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", b"431"),
    (b"POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n" + b"[" * 10, b"413"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"411"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\n[]", b"415"),
])
def test_malformed_requests_get_their_status_and_others_are_served(start_server, request_bytes: bytes,
                                                                   status: bytes) -> None:
    server = start_server(limits=ServerLimits(max_message_bytes=1000), optional_hello=True)
    answer = raw_exchange(server.port, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status + b" ")
    assert b"Connection: close" in answer
    transport = THttpClient.THttpClient(f"http://127.0.0.1:{server.port}/")
    stub = HandshakeService.Client(TJSONProtocol.TJSONProtocol(transport))
    transport.open()
    assert stub.echo("still here") == "still here"
    transport.close()


def test_a_json_request_cut_short_is_answered_with_protocol_error(start_server) -> None:
    server = start_server(optional_hello=True)
    body = json_message("echo", HandshakeService.echo_args("hi"))[:-6]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        response, data = post(conn, body, xhr_headers())
        assert response.status == 200
        message_type, error = json_reply(data, HandshakeService.echo_result)
        assert message_type == 3 and error.type == TApplicationException.PROTOCOL_ERROR
        assert "ended before" in error.message
    finally:
        conn.close()


def test_a_json_string_over_max_message_bytes_is_refused(start_server) -> None:
    server = start_server(optional_hello=True, limits=ServerLimits(max_message_bytes=2000))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        response, _ = post(conn, json_message("echo", HandshakeService.echo_args("x" * 3000)), xhr_headers())
        assert response.status == 413
    finally:
        conn.close()


def test_a_slow_request_is_cut_at_request_timeout(start_server) -> None:
    server = start_server(limits=ServerLimits(request_timeout=0.3))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.connect()
    response, _ = post(conn, json_message("hello", hello_args()), xhr_headers())
    assert response.status == 200
    conn.sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[1,")  # then silence
    assert read_until_closed(conn.sock, 5.0) == b""
    assert eventually(lambda: not server.connections_now())
    conn.close()


@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
def test_apache_json_over_plain_tcp_is_served_on_the_same_port(server, framed: bool) -> None:
    """Apache's TSocket with TJSONProtocol, buffered or framed (its cross test's json cells), with hello."""
    sock = TSocket.TSocket("127.0.0.1", server.port)
    transport = (TTransport.TFramedTransport if framed else TTransport.TBufferedTransport)(sock)
    stub = HandshakeService.Client(TJSONProtocol.TJSONProtocol(transport))
    transport.open()
    try:
        assert stub.hello(hello_args().hello).session_id
        assert stub.echo("ünïcode") == "ünïcode"
        stub.notify(None)  # dropped (the event is required): no answer, the connection goes on
        assert stub.stats().handshakes_ok == 1
    finally:
        transport.close()


@pytest.mark.parametrize("transport", ["buffered", "framed"])
def test_this_clients_json_over_plain_tcp(server, transport: str) -> None:
    options = ClientOptions(wire=Wire(transport=transport, protocol="json"))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        assert client.call("echo", "z" * 200_000) == "z" * 200_000


def test_a_pipelined_hello_over_http_reads_both_replies_in_order(server) -> None:
    options = ClientOptions(wire=Wire(transport="http", protocol="json"), pipeline_hello=True, await_farewell=False)
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        assert client.call("echo", "first") == "first"  # hello's answer is read first, then this call's
        assert client.server_hello.session_id
        client.call("notify", None)
        assert client.call("echo", "after one-way") == "after one-way"


def test_a_client_speaking_http_to_a_port_serving_one_wire_learns_why(start_server) -> None:
    server = start_server(detect_wire=False)
    client = Client("127.0.0.1", server.port, ClientOptions(wire=Wire(transport="http", protocol="json")),
                    service=HandshakeService)
    with pytest.raises(ConnectionBroken) as caught:
        client.connect()
    assert "the server answered HTTP 400 Bad Request" in str(caught.value)
    assert "this server speaks Thrift buffered binary" in str(caught.value)
    assert str(caught.value).endswith("the server's HTTP answer holds no Thrift reply")


def test_a_client_uploading_a_body_over_the_limit_reads_its_413(start_server) -> None:
    server = start_server(optional_hello=True, limits=ServerLimits(max_message_bytes=10_000))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        response, text = post(conn, b"[" + b"1" * 3_000_000, xhr_headers())
        assert response.status == 413
        assert b"a body of 3000001 bytes; this server takes at most 10000 (max_message_bytes)" in text
    finally:
        conn.close()


def test_https_on_the_tls_port(start_server) -> None:
    """TLS first, then Thrift over HTTP inside it (https), from this client and from Apache's THttpClient."""
    import ssl
    from pathlib import Path

    from thrift_handshake import ClientTLS, ServerTLS

    certs = Path(__file__).resolve().parent / "certs"
    server = start_server(tls=ServerTLS(str(certs / "server.pem"), str(certs / "server.key")), optional_hello=True)
    options = ClientOptions(wire=Wire(transport="http", protocol="json"),
                            tls=ClientTLS(ca_file=str(certs / "ca.pem"), server_hostname="localhost"))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        assert client.call("echo", "over https") == "over https"
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    context.check_hostname = False
    transport = THttpClient.THttpClient(f"https://127.0.0.1:{server.port}/", ssl_context=context)
    stub = HandshakeService.Client(TJSONProtocol.TJSONProtocol(transport))
    transport.open()
    try:
        assert stub.echo("apache https") == "apache https"
    finally:
        transport.close()


def test_expect_100_continue_is_answered_before_the_body(start_server) -> None:
    server = start_server(optional_hello=True)
    body = json_message("echo", HandshakeService.echo_args("continued"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n"
                     f"Content-Type: {JSON}\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json_reply(answer.split(b"\r\n\r\n", 1)[1], HandshakeService.echo_result)[1].success == "continued"


def test_a_traceparent_header_gives_each_call_its_trace(start_server) -> None:
    from thrift_handshake.interceptors import Interceptor

    seen = []

    class Seen(Interceptor):
        def call_started(self, call) -> None:
            seen.append((call.method, call.session.traceparent))

    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    server = start_server(optional_hello=True, interceptors=[Seen()], http_origins={PAGE})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        post(conn, json_message("echo", HandshakeService.echo_args("a")), {**xhr_headers(PAGE), "traceparent": trace})
        post(conn, json_message("echo", HandshakeService.echo_args("b"), 2), xhr_headers(PAGE))
        conn.request("OPTIONS", "/", headers={"Origin": PAGE, "Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Headers": "content-type,traceparent"})
        response = conn.getresponse()
        response.read()
        assert "traceparent" in response.getheader("Access-Control-Allow-Headers")
    finally:
        conn.close()
    assert seen == [("echo", trace), ("echo", None)]


def test_this_clients_trace_context_rides_each_http_request(start_server) -> None:
    from thrift_handshake.interceptors import Interceptor
    from thrift_handshake.tracing import ClientTracing, parse_traceparent

    seen = []

    class Seen(Interceptor):
        def call_started(self, call) -> None:
            seen.append((call.method, call.session.traceparent))

    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    server = start_server(interceptors=[Seen()])
    options = ClientOptions(wire=Wire(transport="http", protocol="json"),
                            interceptors=(ClientTracing(f"00-{trace}-00f067aa0ba902b7-01"),))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        assert client.call("echo", "traced") == "traced"
    assert [method for method, _ in seen] == ["hello", "echo", "goodbye"]
    assert all(parse_traceparent(traceparent).trace_id == trace for _, traceparent in seen)


class _SessionsOnly(SessionService.Iface):
    """hello and goodbye (the runtime's), and nothing else."""


@pytest.mark.parametrize("transport", ["http", "buffered", "framed"])
def test_an_unknown_method_over_json_is_answered_and_the_session_goes_on(start_server, transport: str) -> None:
    # Its string arguments were skipped with readBinary, which JSON decodes as base64: PROTOCOL_ERROR and
    # the connection closed, where binary answers UNKNOWN_METHOD and the session goes on.
    server = start_server(handler=_SessionsOnly())
    options = ClientOptions(wire=Wire(transport=transport, protocol="json"))
    with Client("127.0.0.1", server.port, options, service=HandshakeService) as client:
        with pytest.raises(RemoteApplicationError, match="Unknown function process") as refused:
            client.process(Request(request_id="r1", payload="abcdefghijklmnopq"))  # no base64: 17 letters
        assert refused.value.type == TApplicationException.UNKNOWN_METHOD
        assert client.call("stats").handshakes_ok == 1  # the same session, still served


def test_a_request_refused_before_its_body_is_answered_to_its_origin(start_server) -> None:
    # A 413 decided from Content-Length alone carried no Access-Control-Allow-Origin: the browser hid it
    # from the page, which could only say "network error".
    server = start_server(http_origins={PAGE}, limits=ServerLimits(max_message_bytes=1024))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.putrequest("POST", "/")
        for name, value in {**xhr_headers(PAGE), "Content-Length": "4096"}.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
        assert response.getheader("Access-Control-Allow-Origin") == PAGE
        assert response.getheader("Timing-Allow-Origin") == PAGE  # the page may read its connect time
    finally:
        conn.close()
