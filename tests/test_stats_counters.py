"""stats() keeps counting what closed connections did (calls, notifications) and its uptime moves with
the clock (test_contract.py covers the counters of live connections)."""

from __future__ import annotations

import time

from thrift_handshake import Client
from thrift_handshake.metrics import ConnectionCounters, ServerMetrics
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Event


def test_calls_and_notifications_of_closed_connections_still_count(server):
    with Client("127.0.0.1", server.port, service=HandshakeService) as gone:
        gone.echo("a")
        gone.notify(Event(name="n", payload=""))
    with Client("127.0.0.1", server.port) as observer:
        stats = observer.stats()
    assert stats.notifications == 1, "exactly the one notification, from a closed connection"
    assert stats.calls["echo"] == 1 and stats.calls["notify"] == 1
    assert stats.calls["hello"] == 2 and stats.calls["goodbye"] == 1 and stats.calls["stats"] == 1
    assert stats.connections_total == 2


def test_uptime_is_the_time_since_the_metrics_started_in_milliseconds():
    before = time.monotonic()
    metrics = ServerMetrics()
    after = time.monotonic()
    assert 0 <= metrics.snapshot().uptime_ms < 60_000
    time.sleep(1.5)
    earliest = time.monotonic()
    uptime = metrics.snapshot().uptime_ms
    latest = time.monotonic()
    # bracketed by clock readings taken around the start and the snapshot: exact, whatever the load
    assert int((earliest - after) * 1000) <= uptime <= int((latest - before) * 1000)


def test_connections_that_said_goodbye_no_longer_count_as_open():
    metrics = ServerMetrics()
    leaving, staying = ConnectionCounters(), ConnectionCounters()
    metrics.connection_opened(leaving)
    metrics.connection_opened(staying)
    assert metrics.snapshot().connections_open == 2
    leaving.said_goodbye = True
    assert metrics.snapshot().connections_open == 1
    metrics.connection_closed(staying)
    metrics.connection_closed(staying)  # twice: counted once
    assert metrics.snapshot().connections_open == 0
    assert metrics.snapshot().connections_total == 2
