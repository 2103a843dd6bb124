"""Prometheus figures beyond the calls: bytes in and out, the demo's submit queue (through the gauge
hook the runtime offers), refused handshakes by reason, and ``serve --asyncio --metrics-port``;
scraped over real HTTP after real calls."""

from __future__ import annotations

import re
import socket

import pytest

from thrift_handshake import Client, ClientOptions, HandshakeFailed
from thrift_handshake.admin import AdminEndpoint, PrometheusMetrics
from thrift_handshake.demo import DemoLimits
from thrift_handshake.metrics import socket_bytes
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session.ttypes import ClientHello, HandshakeRejected
from thrift_handshake_gen.ttypes import Request

from conftest import eventually
from server_process import read_log_until, serve_subprocess
from test_prometheus import calls, scrape


@pytest.fixture
def watch(start_server):
    endpoints = []

    def start(**config):
        metrics = PrometheusMetrics()
        server = start_server(interceptors=[metrics], **config)
        metrics.watch(server)
        endpoints.append(AdminEndpoint(metrics).start())
        return server, endpoints[-1].url

    yield start
    for endpoint in endpoints:
        endpoint.stop()


def _bytes(url: str):
    samples = scrape(url)
    return samples[("thrift_handshake_received_bytes_total", ())], samples[("thrift_handshake_sent_bytes_total", ())]


def test_bytes_in_and_out_are_what_the_client_wrote_and_read(watch):
    server, url = watch()
    client = Client("127.0.0.1", server.port, service=HandshakeService)
    client.connect()
    client.echo("x" * 20000)
    received, sent = _bytes(url)  # an open connection counts too
    assert received > 20000 and sent > 20000
    client.close()
    wrote = sum(record.bytes_out for record in client.timeline)
    read = sum(record.bytes_in for record in client.timeline)
    assert eventually(lambda: server.connection_count == 0)
    assert _bytes(url) == (wrote, read)


def test_the_demos_submit_queue_is_a_gauge_it_adds_through_the_runtime(watch):
    server, url = watch(demo=DemoLimits(submit_workers=1))
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        tickets = [client.submit(Request(request_id=f"r{index}", payload="abc", work_ms=300)) for index in range(3)]
        samples = scrape(url)
        assert samples[("thrift_handshake_submit_queue_tickets", ())] == 3  # one running, two waiting
        assert samples[("thrift_handshake_submit_queue_bytes", ())] > 0
        for ticket in tickets:
            assert client.get_result(ticket.ticket, 5000).request_id.startswith("r")
    assert eventually(lambda: scrape(url)[("thrift_handshake_submit_queue_tickets", ())] == 0)
    assert scrape(url)[("thrift_handshake_submit_queue_bytes", ())] == 0


def _refused(samples, reason: str) -> float:
    return samples[("thrift_handshake_handshakes_rejected_by_reason_total", (("reason", reason),))]


def test_refused_handshakes_are_counted_by_reason(watch):
    server, url = watch(auth_token="s3cret")
    for options in (ClientOptions(auth_token="wrong"), ClientOptions(), ClientOptions(auth_token="s3cret",
                                                                                      versions=(7, 9))):
        with pytest.raises(HandshakeFailed):
            Client("127.0.0.1", server.port, options, service=HandshakeService).connect()
    with Client("127.0.0.1", server.port, ClientOptions(auth_token="s3cret"), service=HandshakeService) as client:
        second = ClientHello(client_name="twice", min_version=1, max_version=2, auth_token="s3cret")
        try:  # (the generated exception is immutable: pytest.raises cannot hold it)
            client.call("hello", second)
        except HandshakeRejected as error:
            assert error.reason.startswith("this connection already has session")
        else:
            raise AssertionError("a second hello was accepted")
    samples = scrape(url)
    assert (_refused(samples, "auth"), _refused(samples, "version"), _refused(samples, "already_open"),
            _refused(samples, "invalid")) == (2, 1, 1, 0)
    assert samples[("thrift_handshake_handshakes_total", (("result", "rejected"),))] == 4
    assert samples[("thrift_handshake_handshakes_total", (("result", "accepted"),))] == 1


def test_serve_asyncio_metrics_port_serves_the_calls():
    process, port = serve_subprocess("--asyncio", "--metrics-port", "0")
    try:
        line = read_log_until(process, "metrics on")
        url = re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", line).group(1)
        with Client("127.0.0.1", port, service=HandshakeService) as client:
            client.echo("on the event loop")
        assert eventually(lambda: calls(scrape(url), "goodbye", "ok") == 1)
        samples = scrape(url)
        assert calls(samples, "echo", "ok") == 1
        assert samples[("thrift_handshake_sessions_active", ())] == 0
    finally:
        process.terminate()
        process.wait(20)
        process.stderr.close()


def test_a_peers_close_is_not_counted_as_a_byte_in():
    # The kernel's count of bytes received moves with the sequence number, which a FIN advances by one:
    # a connection whose peer had closed before the server read its counts showed one byte too many.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        served, _ = listener.accept()
        with peer, served:
            peer.sendall(b"x" * 1000)
            peer.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                chunk = served.recv(4096)
                if not chunk:
                    break
                got += chunk
            assert len(got) == 1000
            assert socket_bytes(served)[0] == 1000
