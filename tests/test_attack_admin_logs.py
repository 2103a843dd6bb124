"""Attacks on the admin endpoint and the logs by a peer that chooses what it sends: idle or reset HTTP
connections, and names that try to forge log lines or fields."""

from __future__ import annotations

import json
import logging
import socket
import struct

import pytest

from thrift_handshake.admin import AdminEndpoint, PrometheusMetrics

from conftest import eventually


@pytest.fixture
def endpoint():
    with AdminEndpoint(PrometheusMetrics(), token="s3cret", idle_timeout=0.5) as endpoint:
        yield endpoint


def test_a_connection_that_never_finishes_its_request_is_closed(endpoint):
    with socket.create_connection(("127.0.0.1", endpoint.port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        sock.settimeout(5.0)
        assert sock.recv(1024) == b""  # closed by the endpoint (a timeout here would raise)


def test_a_reset_connection_is_one_debug_line_not_a_traceback_on_stderr(endpoint, capsys, caplog):
    with caplog.at_level(logging.DEBUG, logger="thrift_handshake.admin.endpoint"):
        sock = socket.create_connection(("127.0.0.1", endpoint.port))
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset, not a FIN
        assert eventually(lambda: any("reset" in r.getMessage().lower() for r in caplog.records))
    assert capsys.readouterr().err == ""
