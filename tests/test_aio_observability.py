"""The asyncio server seen live as the threaded one is: connections by phase and bytes in and out on
/metrics, the connections now on the admin page's state.json.

The threaded server's tests for the same figures run here unchanged: they are imported below, and this
``start_server`` fixture (tests/on_asyncio.py) starts the asyncio server instead.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.request

from conftest import eventually
from server_process import read_log_until, serve_subprocess
from test_admin_page import (  # noqa: F401 (run here against the asyncio server)
    admin, test_the_state_shows_connections_methods_and_the_latest_calls)
from on_asyncio import server, start_server  # noqa: F401 (fixtures: the threaded tests on the asyncio server)
from test_async_server import event_loop_thread, loop_factory, start_async  # noqa: F401 (fixtures)
from test_prometheus import scrape, test_live_connections_by_phase_and_sessions, watched  # noqa: F401
from test_prometheus_figures import test_bytes_in_and_out_are_what_the_client_wrote_and_read, watch  # noqa: F401
from test_workers import Workers, serve  # noqa: F401 (a fixture)

from thrift_handshake import Client, ClientOptions
from thrift_handshake_gen import HandshakeService


def _phases(samples) -> dict:
    return {labels[0][1]: value for (name, labels), value in samples.items() if name == "thrift_handshake_connections"}


def test_a_silent_connection_is_accepted_and_a_session_between_calls_waits(start_async) -> None:  # noqa: F811

    server = start_async()
    with socket.create_connection(("127.0.0.1", server.port)):
        assert eventually(lambda: server.connection_phases()["ACCEPTED"] == 1)
        with Client("127.0.0.1", server.port, service=HandshakeService) as client:
            client.echo("x")
            assert eventually(lambda: server.connection_phases() == {
                "ACCEPTED": 1, "STARTING": 0, "SERVING": 0, "WAITING": 1, "CLOSING": 0, "CLOSED": 0})
            [silent, session] = server.connections_now()
            assert (silent.phase, silent.session_id, silent.calls) == ("ACCEPTED", None, 0)
            assert (session.phase, session.session_id, session.calls) == ("WAITING", client.session_id, 2)


def test_serve_asyncio_metrics_port_shows_bytes_phases_and_the_connection() -> None:
    process, port = serve_subprocess("--asyncio", "--metrics-port", "0")
    try:
        line = read_log_until(process, "metrics on")
        url = re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", line).group(1)
        with Client("127.0.0.1", port, ClientOptions(client_name="aio-admin"), service=HandshakeService) as client:
            client.echo("y" * 5000)
            samples = scrape(url)
            assert _phases(samples)["WAITING"] + _phases(samples)["SERVING"] == 1
            assert sum(_phases(samples).values()) == 1
            assert samples[("thrift_handshake_received_bytes_total", ())] > 5000
            assert samples[("thrift_handshake_sent_bytes_total", ())] > 5000
            with urllib.request.urlopen(url.replace("/metrics", "/admin/state.json"), timeout=5) as answer:
                state = json.loads(answer.read())
            [connection] = state["connections"]
            assert (connection["client_name"], connection["session_id"], connection["calls"]) == (
                "aio-admin", client.session_id, 2)
            assert [call["method"] for call in state["recent"]] == ["hello", "echo"]
        wrote = sum(record.bytes_out for record in client.timeline)
        read = sum(record.bytes_in for record in client.timeline)
        assert eventually(lambda: sum(_phases(scrape(url)).values()) == 0)
        samples = scrape(url)
        assert (samples[("thrift_handshake_received_bytes_total", ())],
                samples[("thrift_handshake_sent_bytes_total", ())]) == (wrote, read)
    finally:
        process.terminate()
        process.wait(20)
        process.stderr.close()


def test_serve_asyncio_workers_sum_every_workers_phases_and_bytes(serve) -> None:  # noqa: F811
    workers: Workers = serve("--asyncio", "--workers", "2", "--metrics-port", "0")
    url = workers.wait_for(r"metrics on (http://127\.0\.0\.1:\d+/metrics)").group(1)
    assert len(workers.clients_on_each_worker()) == 2
    opened = len(workers.clients)
    assert eventually(lambda: sum(_phases(scrape(url)).values()) == opened, 10), scrape(url)
    samples = scrape(url)
    assert samples[("thrift_handshake_sessions_active", ())] == opened
    assert samples[("thrift_handshake_received_bytes_total", ())] > 0
    assert samples[("thrift_handshake_sent_bytes_total", ())] > 0
    assert workers.stop() == 0
