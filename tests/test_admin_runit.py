"""The admin page's "run it" panel: its files, where it tells the page to call, and the handshake run from
headless Chromium with Apache Thrift's JavaScript library (JSON over HTTP POST) against a real server."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Tuple

import pytest

from thrift_handshake.admin import AdminEndpoint, PrometheusMetrics, RecentCalls
from thrift_handshake.admin import runit


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
        assert _state(endpoint)["runit"] == {"unavailable": "no Thrift server is watched by this endpoint"}
