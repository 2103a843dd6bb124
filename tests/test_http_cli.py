"""Thrift over HTTP from the command line: ``call --transport http --protocol json``, and ``serve`` letting its
admin page's origin (``--metrics-port``) and ``--http-origin`` call the Thrift port from a browser (CORS)."""

from __future__ import annotations

import http.client
import re
from typing import List

import pytest

from conftest import eventually
from test_cli_serve import cli, serving

ADMIN = re.compile(r"the admin page on (http://127\.0\.0\.1:\d+)/")


def preflight(port: int, origin: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("OPTIONS", "/", headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                          "Access-Control-Request-Headers": "content-type"})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def admin_origin(log: List[str]) -> str:
    assert eventually(lambda: any(ADMIN.search(line) for line in log)), "".join(log)
    return next(ADMIN.search(line).group(1) for line in log if ADMIN.search(line))


@pytest.mark.parametrize("transport, protocol", [("http", "json"), ("http", "compact"), ("buffered", "json"),
                                                 ("framed", "json")])
def test_call_speaks_http_and_json(transport: str, protocol: str) -> None:
    with serving() as (port, _):
        result = cli("call", "--port", str(port), "--transport", transport, "--protocol", protocol, "echo", '"über"')
    assert (result.returncode, result.stdout) == (0, '"über"\n'), result.stderr


def test_serve_refuses_http_as_its_own_wire() -> None:
    result = cli("serve", "--port", "0", "--only-wire", "--transport", "http")
    assert result.returncode == 2
    assert "invalid choice: 'http'" in result.stderr


def test_the_admin_page_may_call_the_thrift_port_and_other_pages_may_not() -> None:
    with serving("--metrics-port", "0") as (port, log):
        origin = admin_origin(log)
        allowed = preflight(port, origin)
        assert (allowed.status, allowed.getheader("Access-Control-Allow-Origin")) == (204, origin)
        local = origin.replace("127.0.0.1", "localhost")
        assert preflight(port, local).getheader("Access-Control-Allow-Origin") == local
        assert preflight(port, "http://127.0.0.1:1").status == 403


def test_http_origin_flag() -> None:
    with serving("--http-origin", "http://app.example:8080") as (port, _):
        assert preflight(port, "http://app.example:8080").status == 204
        assert preflight(port, "http://app.example:8081").status == 403


def test_the_asyncio_server_serves_json_and_http() -> None:
    with serving("--asyncio") as (port, _):
        json_tcp = cli("call", "--port", str(port), "--protocol", "json", "echo", '"x"')
        over_http = cli("call", "--port", str(port), "--transport", "http", "--protocol", "json", "echo", '"y"')
    assert (json_tcp.returncode, json_tcp.stdout) == (0, '"x"\n'), json_tcp.stderr
    assert (over_http.returncode, over_http.stdout) == (0, '"y"\n'), over_http.stderr


def test_the_admin_page_may_call_the_asyncio_servers_port() -> None:
    with serving("--asyncio", "--metrics-port", "0") as (port, log):
        origin = admin_origin(log)
        allowed = preflight(port, origin)
        assert (allowed.status, allowed.getheader("Access-Control-Allow-Origin")) == (204, origin)
        assert preflight(port, "http://127.0.0.1:1").status == 403
