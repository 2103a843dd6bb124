"""The admin page: what a server is doing now, as JSON and as a page a real browser (headless Chromium)
draws and keeps up to date."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any, Dict

import pytest

from thrift_handshake import Client, ClientOptions
from thrift_handshake.admin import AdminEndpoint, PrometheusMetrics, RecentCalls
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import InvalidRequest, Request

from browser import browse
from conftest import eventually


def state(endpoint: AdminEndpoint, authorization: str = "") -> Dict[str, Any]:
    request = urllib.request.Request(endpoint.base_url + "admin/state.json",
                                     headers={"Authorization": authorization} if authorization else {})
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.headers["Content-Type"] == "application/json"
        return json.loads(answer.read())


@pytest.fixture
def admin(start_server):
    metrics, recent = PrometheusMetrics(), RecentCalls()
    server = start_server(interceptors=[metrics, recent])
    metrics.watch(server)
    with AdminEndpoint(metrics, recent=recent) as endpoint:
        yield server, endpoint


def _client(port: int, name: str) -> Client:
    return Client("127.0.0.1", port, ClientOptions(client_name=name), service=HandshakeService)


def test_the_state_shows_connections_methods_and_the_latest_calls(admin):
    server, endpoint = admin
    with _client(server.port, "admin-test") as client:
        client.echo("one")
        with pytest.raises(InvalidRequest):
            client.process(Request(request_id=""))
        now = state(endpoint)
        session = client.session_id
    [connection] = now["connections"]
    assert (connection["client_name"], connection["language"], connection["version"]) == ("admin-test", "python", 2)
    assert connection["session_id"] == session and connection["calls"] == 3
    assert connection["phase"] in ("WAITING", "SERVING") and connection["age_seconds"] >= 0
    methods = {row["method"]: row for row in now["methods"]}
    assert (methods["echo"]["calls"], methods["echo"]["errors"]) == (1, 0)
    assert methods["process"]["outcomes"] == {"declared_error": 1} and methods["process"]["errors"] == 1
    assert methods["echo"]["mean_ms"] > 0
    assert [(call["method"], call["outcome"], call["session"]) for call in now["recent"]] == [
        ("hello", "ok", session), ("echo", "ok", session), ("process", "declared_error", session)]
    assert now["servers"][0]["sessions_active"] == 1
    assert eventually(lambda: state(endpoint)["connections"] == [])


def test_with_a_token_a_browser_s_password_or_a_bearer_token_opens_it(start_server):
    metrics = PrometheusMetrics()
    with AdminEndpoint(metrics, token="s3cret") as endpoint:
        basic = "Basic " + base64.b64encode(b"admin:s3cret").decode()
        assert state(endpoint, basic)["connections"] == []
        assert state(endpoint, "Bearer s3cret")["connections"] == []
        for wrong in ("", "Basic " + base64.b64encode(b"admin:s3cre").decode(), "Basic !!", "Token s3cret"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                state(endpoint, wrong)
            assert refused.value.code == 401
            assert refused.value.headers["WWW-Authenticate"].startswith("Basic realm=")


def test_a_real_browser_draws_the_page_and_keeps_it_live(admin, tmp_path):
    server, endpoint = admin
    for name in ("first", "second"):
        with _client(server.port, name) as client:
            client.echo(name)
    staying = _client(server.port, "still-here")
    staying.connect()
    staying.echo("x")
    try:
        dom = browse(endpoint.base_url, "--dump-dom")
        shot = tmp_path / "admin.png"
        browse(endpoint.base_url, "--window-size=1100,800", f"--screenshot={shot}")
    finally:
        staying.close()
    assert "<td>still-here</td><td>python</td>" in dom.replace('<td class="num">', "<td>")
    assert '<tr><td>echo</td><td class="num">3</td><td class="num">0</td>' in dom
    assert dom.count('class="bar hello"') == 3 and dom.count('class="bar goodbye"') == 2
    refreshes = int(dom.split('data-refreshes="', 1)[1].split('"', 1)[0])
    assert refreshes >= 2, "the page read the state once: it does not update by itself"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
