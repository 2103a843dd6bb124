"""The admin endpoint attacked as an outside prober would: each a defect found and fixed, or a guard on what
held. A web page whose name was re-bound to 127.0.0.1 (DNS rebinding) could read the token-less page's state
(sessions, peers, client names); a client dripping its request a byte at a time held one of ``max_clients``
for ever; peer-chosen names shown on the page stay text in a real browser."""

from __future__ import annotations

import base64
import socket
import time
import urllib.error
import urllib.request
from typing import Dict, Optional

import pytest

from thrift_handshake import Client, ClientOptions
from thrift_handshake.admin import AdminEndpoint, PrometheusMetrics, RecentCalls
from thrift_handshake_gen import HandshakeService

from browser import Page
from conftest import encode_call, eventually, exchange


def _get(url: str, headers: Optional[Dict[str, str]] = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("path", ["admin/state.json", "metrics", ""])
def test_a_token_less_loopback_page_answers_only_to_loopback_names(path):
    with AdminEndpoint(PrometheusMetrics()) as endpoint:
        url, port = endpoint.base_url + path, endpoint.port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"127.0.0.2:{port}", f"[::1]:{port}"):
            assert _get(url, {"Host": host}) == 200, host
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", f"localhost.evil:{port}",
                     "[::1", ""):
            assert _get(url, {"Host": host}) == 403, host


def test_with_a_token_or_off_loopback_any_name_may_ask():
    with AdminEndpoint(PrometheusMetrics(), token="s3cret") as endpoint:
        headers = {"Host": "metrics.example", "Authorization": "Bearer s3cret"}
        assert _get(endpoint.base_url + "metrics", headers) == 200
        assert _get(endpoint.base_url + "metrics", {"Host": "metrics.example"}) == 401
    with AdminEndpoint(PrometheusMetrics(), host="0.0.0.0") as endpoint:
        assert _get(f"http://127.0.0.1:{endpoint.port}/metrics", {"Host": "metrics.example"}) == 200


def test_a_request_dripped_a_byte_at_a_time_is_cut_at_request_timeout():
    with AdminEndpoint(PrometheusMetrics(), idle_timeout=5.0, request_timeout=0.5) as endpoint:
        with socket.create_connection(("127.0.0.1", endpoint.port)) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            sock.settimeout(0.1)
            deadline = time.monotonic() + 10

            def cut() -> bool:
                try:
                    sock.sendall(b"a")  # never idle: each byte comes well within idle_timeout
                    return sock.recv(1024) == b""
                except socket.timeout:
                    return False
                except OSError:  # reset
                    return True

            while not cut():
                assert time.monotonic() < deadline, "a dripping client kept its connection for 10 s"
        assert _get(endpoint.base_url + "metrics") == 200


HOSTILE = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'


def test_peer_chosen_names_are_text_on_the_page(start_server):
    metrics, recent = PrometheusMetrics(), RecentCalls()
    server = start_server(interceptors=[metrics, recent], optional_hello=True)
    metrics.watch(server)
    with AdminEndpoint(metrics, recent=recent) as endpoint:
        client = Client("127.0.0.1", server.port, ClientOptions(client_name=HOSTILE), service=HandshakeService)
        with client:
            client.echo("hi")
            exchange(server.port, encode_call(HOSTILE, HandshakeService.echo_args(message="hi")))  # a method so named
            with Page(endpoint.base_url) as page:
                page.wait_for("document.querySelector('#connections tbody tr') !== null")
                page.wait_for("document.getElementById('timelines').textContent.length > 0")
                cells = page.evaluate("[...document.querySelectorAll('#connections tbody td')].map(td => td.textContent)")
                assert HOSTILE in cells
                methods = page.evaluate("[...document.querySelectorAll('#methods tbody td')].map(td => td.textContent)")
                assert "<unknown>" in methods  # the undeclared name is counted, not shown
                titles = page.evaluate("[...document.querySelectorAll('#timelines .bar')].map(bar => bar.title)")
                assert any(title.startswith(HOSTILE[:20]) for title in titles), titles
                assert page.evaluate("document.querySelectorAll('img').length") == 0
                assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 1  # the page's own
                assert page.evaluate("document.title") == "thrift-handshake admin"


def _status_of_raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        return sock.recv(64).split(b"\r\n", 1)[0]


def test_a_token_beyond_ascii_opens_the_page_as_a_bearer_token_too():
    """Prometheus sends its bearer token's UTF-8 bytes, as a browser does the Basic password's."""
    token = "s\u00e9cr\u20act"
    with AdminEndpoint(PrometheusMetrics(), token=token) as endpoint:
        bearer = b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer " + token.encode() + b"\r\n\r\n"
        assert _status_of_raw(endpoint.port, bearer) == b"HTTP/1.0 200 OK"
        basic = b"GET /metrics HTTP/1.1\r\nAuthorization: Basic " + base64.b64encode(b"admin:" + token.encode()) + b"\r\n\r\n"
        assert _status_of_raw(endpoint.port, basic) == b"HTTP/1.0 200 OK"
        for wrong in (token[:-1], token + "x", "s\u00e9cr\u20acT"):
            request = b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer " + wrong.encode() + b"\r\n\r\n"
            assert _status_of_raw(endpoint.port, request) == b"HTTP/1.0 401 Unauthorized", wrong
