"""The admin page's "run it" panel: its files, where it tells the page to call, and the handshake run from
headless Chromium with Apache Thrift's JavaScript library (JSON over HTTP POST) against a real server.

THRIFT_HANDSHAKE_SCREENSHOT=docs/admin-page.png keeps the first browser test's screenshot for the README."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from thrift_handshake.config import ServerLimits
from thrift_handshake.admin import AdminEndpoint, PrometheusMetrics, RecentCalls, runit
from thrift_handshake_gen.session import SessionService

from browser import Page
from server_process import read_log_until, serve_subprocess

ROOT = Path(__file__).resolve().parent.parent

#: URL path -> the content type it is served with.
PANEL_FILES = {"admin/static/runit.html": "text/html; charset=utf-8",
               "admin/static/runit.css": "text/css; charset=utf-8",
               "admin/static/runit.js": "text/javascript; charset=utf-8",
               "admin/js/thrift-handshake.js": "text/javascript; charset=utf-8",
               "admin/js/thrift-handshake.js.LICENSES.txt": "text/plain; charset=utf-8"}


@pytest.fixture(scope="module")
def built_client() -> Path:
    """The browser's Thrift client, built as scripts/test builds it (quick once web/node_modules is there)."""
    done = subprocess.run([str(ROOT / "scripts" / "gen-js")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, "scripts/gen-js failed (it needs thrift-compiler, node and npm):\n" + done.stderr
    return runit.STATIC / "gen" / "thrift-handshake.js"


def get(url: str, authorization: str = "") -> Tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_the_panel_s_files_are_served_with_their_types_behind_the_token(start_server, built_client):
    with AdminEndpoint(PrometheusMetrics(), token="s3cret") as endpoint:
        for path, content_type in PANEL_FILES.items():
            status, served_as, body = get(endpoint.base_url + path, "Bearer s3cret")
            assert (status, served_as) == (200, content_type), path
            assert body == (runit.STATIC / runit._FILES["/" + path][0]).read_bytes()
            assert get(endpoint.base_url + path)[0] == 401
        assert get(endpoint.base_url + "admin/static/../page.py", "Bearer s3cret")[0] == 404
        assert get(endpoint.base_url + "admin/static/gen/thrift-handshake.js", "Bearer s3cret")[0] == 404
    header = built_client.read_text()[:2000]
    assert re.search(r"\* +thrift 0\.24\.0 \(Apache-2\.0\)", header), header
    assert "Thrift compiler 0.17.0, --gen js:node" in header


def test_without_a_built_client_the_page_is_told_how_to_build_it(monkeypatch, tmp_path):
    (tmp_path / "runit.js").write_text("// the panel\n")
    monkeypatch.setattr(runit, "STATIC", tmp_path)
    with AdminEndpoint(PrometheusMetrics()) as endpoint:
        assert get(endpoint.base_url + "admin/static/runit.js")[::2] == (200, b"// the panel\n")
        status, content_type, body = get(endpoint.base_url + "admin/js/thrift-handshake.js")
    assert (status, content_type) == (404, "text/plain; charset=utf-8")
    assert b"run scripts/gen-js" in body


def _state(endpoint: AdminEndpoint, authorization: str = "") -> Dict:
    status, _, body = get(endpoint.base_url + "admin/state.json", authorization)
    assert status == 200
    return json.loads(body)


def test_the_state_tells_the_page_where_to_call(start_server, tmp_path):
    metrics = PrometheusMetrics()
    server = start_server(auth_token="s3cret")
    metrics.watch(server)
    with AdminEndpoint(metrics, token="s3cret") as endpoint:
        assert _state(endpoint, "Bearer s3cret")["runit"] == {
            "host": "127.0.0.1", "port": server.port, "path": "/", "https": False, "token_required": True,
            "client": "admin/js/thrift-handshake.js"}
    alone = PrometheusMetrics()
    alone.watch(start_server(unix_socket=str(tmp_path / "thrift.sock")))
    with AdminEndpoint(alone) as endpoint:
        assert "Unix socket" in _state(endpoint)["runit"]["unavailable"]
    with AdminEndpoint(PrometheusMetrics()) as endpoint:
        assert _state(endpoint)["runit"] == {"unavailable": "no Thrift server runs in this process"}


# --- the panel in a real browser ------------------------------------------------------------------------------

_STATE = "document.getElementById('runit-status') && document.getElementById('runit-status').dataset.state"
#: The panel's rows as the page shows them.
_ROWS = """[...document.querySelectorAll('#runit-steps tbody tr')].map((row) => ({
  phase: row.cells[0].textContent, call: row.cells[1].textContent, ms: row.cells[2].textContent,
  bars: [...row.querySelectorAll('.seg')].map((bar) => bar.classList[1]).join(' '),
  result: row.cells[4].textContent, failed: row.cells[4].className === 'failed'}))"""


@pytest.fixture
def panel(start_server, built_client) -> Iterator:
    """An admin endpoint, then a server (``start(**ServerConfig fields)``) whose port lets the page's origin
    call it over HTTP (CORS), and ``run(page, token="")``: clicks Run it and returns the rows and status."""
    metrics, recent = PrometheusMetrics(), RecentCalls()
    with AdminEndpoint(metrics, recent=recent) as endpoint:
        def start(**config: Any):
            config.setdefault("http_origins", frozenset([endpoint.base_url.rstrip("/")]))
            server = start_server(interceptors=[metrics, recent], **config)
            metrics.watch(server)
            return server

        def run(page: Page, token: str = "") -> Tuple[List[Dict[str, Any]], str, str]:
            page.wait_for(f"{_STATE} === 'ready' || {_STATE} === 'done' || {_STATE} === 'failed'")
            page.evaluate(f"document.querySelector('#runit-form [name=auth_token]').value = {json.dumps(token)}")
            page.evaluate("document.getElementById('runit-run').click()")
            state = page.wait_for(f"{_STATE} !== 'running' && {_STATE}")
            return page.evaluate(_ROWS), state, page.evaluate("document.getElementById('runit-status').textContent")

        yield endpoint, start, run, recent


def test_chromium_runs_the_handshake_and_draws_each_phase(panel, tmp_path):
    endpoint, start, run, recent = panel
    start()
    with Page(endpoint.base_url, height=1000) as page:
        rows, state, text = run(page)
        assert state == "done", text
        assert [(row["phase"], row["call"]) for row in rows] == [
            ("connect", "TCP"), ("hello", "hello"), ("request", "process"), ("request", "submit"),
            ("request", "get_result"), ("goodbye", "goodbye")]
        # the port sends Timing-Allow-Origin: the browser shows the connect inside hello's request
        assert [row["bars"] for row in rows] == ["connect", "hello", "request response", "request response",
                                                 "request response", "goodbye"]
        assert not any(row["failed"] for row in rows)
        session = re.fullmatch(r"session (\S+), version 2, server \S+", rows[1]["result"]).group(1)
        found = re.fullmatch(r"digest [0-9a-f]{12}\.\.\., sequence 1, the server's own time (\d+) us", rows[2]["result"])
        # process asked for 25 ms of work: the browser's round trip holds the server's own time
        assert 25_000 <= int(found.group(1)) <= float(rows[2]["ms"]) * 1000
        assert re.fullmatch(r"ticket \S+", rows[3]["result"])
        assert rows[4]["result"].endswith("... for browser-2")
        assert re.fullmatch(r"3 calls in \d+ ms", rows[5]["result"])
        assert re.fullmatch(r"done in [\d.]+ ms: 5 calls", text)
        # the page's live part shows the browser's session once it re-reads the state
        page.wait_for(f"document.getElementById('timelines').textContent.includes({json.dumps(session)})")
        page.screenshot(tmp_path / "admin.png")
    assert (tmp_path / "admin.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("THRIFT_HANDSHAKE_SCREENSHOT"):
        Path(os.environ["THRIFT_HANDSHAKE_SCREENSHOT"]).write_bytes((tmp_path / "admin.png").read_bytes())
    # the server saw the same session, call by call
    calls = [(call["method"], call["outcome"]) for call in recent.calls() if call["session"] == session]
    assert calls == [("hello", "ok"), ("process", "ok"), ("submit", "ok"), ("get_result", "ok"), ("goodbye", "ok")]


def test_hello_carries_the_token_the_user_types_and_a_refusal_shows_typed(panel):
    endpoint, start, run, recent = panel
    server = start(auth_token="s3cret")
    with Page(endpoint.base_url) as page:
        page.wait_for(f"{_STATE} === 'ready'")
        assert page.evaluate("document.querySelector('#runit-form [name=auth_token]').placeholder") == "required"
        rows, state, text = run(page)
        assert state == "failed"
        assert [(row["phase"], row["call"], row["bars"], row["failed"]) for row in rows] == [
            ("hello", "hello", "error", True)]
        assert re.fullmatch(r'HandshakeRejected: reason="[^"]*token[^"]*", min_version=1, max_version=2',
                            rows[0]["result"]), rows[0]["result"]
        assert text.startswith("failed after ") and text.endswith(rows[0]["result"])
        rows, state, text = run(page, token="s3cret")
        assert state == "done", text
        assert [row["call"] for row in rows] == ["TCP", "hello", "process", "submit", "get_result", "goodbye"]
    assert server.metrics.snapshot().handshakes_rejected == 1


def test_a_server_without_process_answers_unknown_method_and_the_panel_still_says_goodbye(panel):
    class SessionsOnly(SessionService.Iface):
        """hello and goodbye (the runtime's), and nothing else."""

    endpoint, start, run, recent = panel
    start(handler=SessionsOnly())
    with Page(endpoint.base_url) as page:
        rows, state, text = run(page)
    assert state == "failed"
    assert [(row["call"], row["bars"], row["failed"]) for row in rows] == [
        ("TCP", "connect", False), ("hello", "hello", False), ("process", "error", True), ("goodbye", "goodbye", False)], rows[2]["result"]
    assert re.fullmatch(r"TApplicationException \(UNKNOWN_METHOD\): .*process.*", rows[2]["result"])
    assert rows[3]["result"] == "0 calls in " + rows[3]["result"].split()[3] + " ms"
    assert text.endswith(rows[2]["result"])


def test_an_http_refusal_reaches_the_page_as_its_status(panel):
    endpoint, start, run, _ = panel
    start(limits=ServerLimits(max_message_bytes=4096))
    with Page(endpoint.base_url) as page:
        page.wait_for(f"{_STATE} === 'ready'")
        page.evaluate("document.querySelector('#runit-form [name=payload]').value = 'x'.repeat(10000)")
        rows, state, _ = run(page)
    assert state == "failed"
    assert [row["call"] for row in rows][:3] == ["TCP", "hello", "process"]
    assert rows[2]["result"].startswith("HttpError: HTTP 413: 413 a body of "), rows[2]["result"]
    assert "(max_message_bytes)" in rows[2]["result"]


def test_a_server_that_does_not_allow_the_page_s_origin_is_refused_by_the_browser(panel):
    endpoint, start, run, _ = panel
    server = start(http_origins=frozenset())
    with Page(endpoint.base_url) as page:
        rows, state, text = run(page)
    assert state == "failed"
    assert [(row["call"], row["bars"]) for row in rows] == [("hello", "error")]
    assert rows[0]["result"] == f"NetworkError: no answer from http://127.0.0.1:{server.port}/ (refused, " \
                                "unreachable, or blocked by CORS)"


def test_serve_metrics_port_lets_its_page_run_it_by_localhost_too(built_client):
    """What a user does: ``serve --metrics-port``, then the page, by 127.0.0.1 or by localhost."""
    process, port = serve_subprocess("--metrics-port", "0")
    try:
        page_url = re.search(r"the admin page on (http://127\.0\.0\.1:\d+/)", read_log_until(process, "admin page")).group(1)
        for url in (page_url, page_url.replace("127.0.0.1", "localhost")):
            with Page(url) as page:
                page.wait_for(f"{_STATE} === 'ready'")
                assert page.evaluate("document.getElementById('runit-target').textContent") == f"http://127.0.0.1:{port}/"
                page.evaluate("document.getElementById('runit-run').click()")
                assert page.wait_for(f"{_STATE} !== 'running' && {_STATE}") == "done", \
                    page.evaluate("document.getElementById('runit-status').textContent")
    finally:
        process.terminate()
        process.wait(20)
        process.stderr.close()


def test_with_an_auth_token_the_page_opens_with_it_and_hello_carries_it(built_client, tmp_path):
    """The page behind the token (the browser sends it as the Basic password), and the token typed into the
    panel for hello: the server's one token guards both."""
    (tmp_path / "token").write_text("s3cret\n")
    process, port = serve_subprocess("--metrics-port", "0", "--auth-token-file", str(tmp_path / "token"))
    try:
        page_url = re.search(r"the admin page on http://(127\.0\.0\.1:\d+/)", read_log_until(process, "admin page")).group(1)
        with Page(f"http://admin:s3cret@{page_url}") as page:
            page.wait_for(f"{_STATE} === 'ready'")
            page.evaluate("document.querySelector('#runit-form [name=auth_token]').value = 's3cret'")
            page.evaluate("document.getElementById('runit-run').click()")
            assert page.wait_for(f"{_STATE} !== 'running' && {_STATE}") == "done", \
                page.evaluate("document.getElementById('runit-status').textContent")
            # the page's live part too: it read the state (it failed to, opened with user:token@)
            page.wait_for("Number(document.getElementById('updated').dataset.refreshes) >= 1", timeout=5)
            assert page.evaluate("document.getElementById('summary').textContent").startswith("sessions ")
    finally:
        process.terminate()
        process.wait(20)
        process.stderr.close()
