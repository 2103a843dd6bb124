"""stats() keeps counting what closed connections did (calls, notifications) and its uptime moves with
the clock (test_contract.py covers the counters of live connections)."""

from __future__ import annotations

import time

from thrift_handshake import Client
from thrift_handshake.metrics import ServerMetrics
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


def test_uptime_moves_with_the_clock():
    metrics = ServerMetrics()
    first = metrics.snapshot().uptime_ms
    time.sleep(0.2)
    second = metrics.snapshot().uptime_ms
    assert 0 <= first < second
    assert second - first >= 199  # at least the time slept (whole milliseconds, truncated)
