"""Prometheus metrics: calls by method and outcome, latency, what is live; scraped over real HTTP and
read with prometheus_client's own text-format parser."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Dict, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from thrift_handshake import Client, ClientOptions
from thrift_handshake.admin import AdminEndpoint, PrometheusMetrics
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import InvalidRequest, Request

from conftest import encode_call, eventually, exchange
from server_process import read_log_until, serve_subprocess

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def scrape(url: str, token: str = "") -> Samples:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=")  # the text format
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def calls(samples: Samples, method: str, outcome: str) -> float:
    return samples.get(("thrift_handshake_calls_total", (("method", method), ("outcome", outcome))), 0.0)


@pytest.fixture
def watched(start_server):
    metrics = PrometheusMetrics()
    server = start_server(interceptors=[metrics])
    metrics.watch(server)
    with AdminEndpoint(metrics) as endpoint:
        yield server, endpoint


def test_calls_are_counted_by_method_and_outcome_and_timed(watched):
    server, endpoint = watched
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        for _ in range(3):
            client.echo("hi")
        with pytest.raises(InvalidRequest):
            client.process(Request(request_id=""))
    exchange(server.port, encode_call("echo", HandshakeService.echo_args(message="early")))
    assert eventually(lambda: calls(scrape(endpoint.url), "goodbye", "ok") == 1)
    samples = scrape(endpoint.url)
    assert calls(samples, "echo", "ok") == 3
    assert calls(samples, "process", "declared_error") == 1
    assert calls(samples, "echo", "refused") == 1
    assert calls(samples, "hello", "ok") == 1
    assert samples[("thrift_handshake_call_duration_seconds_count", (("method", "echo"),))] == 4
    assert 0 < samples[("thrift_handshake_call_duration_seconds_sum", (("method", "echo"),))] < 4
    assert samples[("thrift_handshake_handshakes_total", (("result", "accepted"),))] == 1


def test_live_connections_by_phase_and_sessions(watched):
    server, endpoint = watched
    with Client("127.0.0.1", server.port, service=HandshakeService):
        samples = scrape(endpoint.url)
        assert samples[("thrift_handshake_sessions_active", ())] == 1
        phases = {labels[0][1]: value for (name, labels), value in samples.items()
                  if name == "thrift_handshake_connections"}
        assert set(phases) == {"ACCEPTED", "STARTING", "SERVING", "WAITING", "CLOSING", "CLOSED"}
        assert sum(phases.values()) == 1
    assert eventually(lambda: scrape(endpoint.url)[("thrift_handshake_sessions_active", ())] == 0)
    assert scrape(endpoint.url)[("thrift_handshake_connections_accepted_total", ())] == 1


def test_names_a_peer_makes_up_do_not_grow_the_label_set(watched):
    server, endpoint = watched
    junk = b"".join(encode_call(f"junk{index}", HandshakeService.echo_args(message="?"), seqid=index)
                    for index in range(50))
    exchange(server.port, junk)
    assert eventually(lambda: calls(scrape(endpoint.url), "<unknown>", "unknown_method") == 50)
    methods = {dict(labels).get("method") for (name, labels) in scrape(endpoint.url)
               if name == "thrift_handshake_calls_total"}
    assert methods == {"<unknown>"}


def test_with_a_token_the_metrics_need_it_as_a_bearer_token(start_server):
    metrics = PrometheusMetrics()
    with AdminEndpoint(metrics, token="s3cret") as endpoint:
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(endpoint.url)
        assert refused.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as wrong:
            scrape(endpoint.url, token="s3cre")
        assert wrong.value.code == 401
        assert ("thrift_handshake_sessions_active", ()) in scrape(endpoint.url, token="s3cret")
        with pytest.raises(urllib.error.HTTPError) as elsewhere:
            urllib.request.urlopen(endpoint.url.replace("/metrics", "/"), timeout=5)
        assert elsewhere.value.code == 401  # nothing at all without the token


def test_serve_metrics_port_serves_them_from_the_cli(tmp_path):
    process, port = serve_subprocess("--metrics-port", "0")
    try:
        line = read_log_until(process, "metrics on")
        url = re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", line).group(1)
        with Client("127.0.0.1", port, ClientOptions(), service=HandshakeService) as client:
            client.echo("from the cli")
        assert calls(scrape(url), "echo", "ok") == 1
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url.replace("/metrics", "/nothing"), timeout=5)
        assert missing.value.code == 404
    finally:
        process.terminate()
        process.wait(20)
        process.stderr.close()
