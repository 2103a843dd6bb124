"""The timeline: every phase recorded with its cost, bytes counted, the accelerated path kept."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.transport.TTransport import CReadableTransport

from thrift_handshake import Client, ClientOptions, ConnectionBroken, RemoteApplicationError
from thrift_handshake.demo import SERVER_TIMED
from thrift_handshake.timing import Record, Timeline, format_summary, format_table
from thrift_handshake.wire import accelerated_available
from thrift_handshake_gen.ttypes import Event, Request
from thrift_handshake_gen import HandshakeService


def test_the_c_extension_is_installed_and_used(client):
    assert accelerated_available(), "thrift's C extension (fastbinary) is missing"
    protocol = client._stub._iprot
    assert isinstance(protocol, TBinaryProtocolAccelerated)
    assert isinstance(protocol.trans, CReadableTransport), "byte counting must sit below the buffered transport"


def test_phases_in_order_with_costs(server):
    started = time.perf_counter()
    client = Client("127.0.0.1", server.port, service=HandshakeService)
    with client:
        client.echo("请求数据")
        client.notify(Event(name="n", payload=""))
    took = time.perf_counter() - started
    phases = [(r.phase, r.name) for r in client.timeline]
    assert phases == [
        ("connect", f"127.0.0.1:{server.port}"),
        ("handshake", "hello"),
        ("call", "echo"),
        ("call", "notify"),
        ("disconnect", "goodbye"),
        ("disconnect", "close"),
    ]
    starts = [r.start for r in client.timeline]
    assert starts == sorted(starts)
    assert all(0 <= r.duration <= took and 0 <= r.start <= took and r.ok for r in client.timeline)
    assert sum(r.duration for r in client.timeline) <= took


def test_bytes_are_counted_exactly(client):
    text = "请求数据"
    client.echo(text)
    record = client.timeline.calls("echo")[-1]
    encoded = len(text.encode("utf-8"))
    # strict binary message header (4 version + 4+4 name + 4 seqid) + field header (3) + length (4) + stop (1)
    expected = 4 + 4 + len("echo") + 4 + 3 + 4 + encoded + 1
    assert record.bytes_out == expected
    assert record.bytes_in == expected  # the reply carries the same string as field 0
    assert record.request_throughput and record.response_throughput


def test_process_splits_call_time_into_server_network_and_decode(connect):
    client = connect(server_timed_methods=SERVER_TIMED)  # the demo declares which replies time themselves
    client.process(Request(request_id="t", payload="x" * 1000, work_ms=30))
    record = client.timeline.calls("process")[-1]
    assert record.server_us >= 30_000
    # network = the round trip (send + wait) minus the server's own time T_s, which the reply reports
    assert record.network == pytest.approx(record.send + record.wait - record.server_us / 1e6, abs=1e-9)
    assert 0 < record.network < record.round_trip
    total = record.server_us / 1e6 + record.network + record.receive
    assert abs(total - record.duration) < 1e-3
    assert record.send + record.wait + record.receive <= record.duration + 1e-6


def test_get_result_does_not_claim_the_work_time_as_its_own(connect):
    client = connect(server_timed_methods=SERVER_TIMED)
    ack = client.submit(Request(request_id="s", payload="", work_ms=50))
    client.get_result(ack.ticket, 2000)
    assert client.timeline.calls("get_result")[-1].server_us is None


def test_oneway_records_no_reply(client):
    started = time.perf_counter()
    client.notify(Event(name="n", payload=""))
    took = time.perf_counter() - started
    record = client.timeline.calls("notify")[-1]
    assert record.bytes_out > 0 and record.bytes_in == 0 and record.wait is None
    assert 0 <= record.duration <= took and record.send == record.duration  # the time to send it, all of it


def test_errors_are_recorded(client):
    with pytest.raises(RemoteApplicationError):
        client.fail("x")
    record = client.timeline.calls("fail")[-1]
    assert not record.ok and "RemoteApplicationError" in record.error


def test_a_call_the_connection_broke_under_is_recorded_failed_within_its_time():
    """A peer that reads the call and closes: the call's record has the error and lasts no longer than
    the call did."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(4096)
    thread = threading.Thread(target=serve)
    thread.start()
    client = Client("127.0.0.1", listener.getsockname()[1], ClientOptions(handshake=False), service=HandshakeService)
    try:
        client.connect()
        began = time.perf_counter()
        with pytest.raises(ConnectionBroken):
            client.echo("x")
        took = time.perf_counter() - began
    finally:
        client.close()
        thread.join(5)
        listener.close()
    record = client.timeline.calls("echo")[-1]
    assert not record.ok and "TTransportException" in record.error
    assert 0 <= record.duration <= took
    assert began <= client.epoch + record.start <= began + took


def test_timeline_is_bounded(server):
    client = Client("127.0.0.1", server.port, ClientOptions(timeline_size=5), service=HandshakeService)
    with client:
        for _ in range(20):
            client.ping()
    assert len(client.timeline) == 5


def test_table_and_summary_render_every_phase(connect):
    client = connect(server_timed_methods=SERVER_TIMED)
    client.process(Request(request_id="t", payload="abc", work_ms=5))
    table = format_table(client.timeline)
    for word in ["connect", "handshake", "request", "response", "T_s=", "network=", "T_e="]:
        assert word in table
    summary = format_summary(client.timeline)
    assert "R = bytes sent / send time" in summary
    assert "S = bytes received / receive time" in summary
    assert "process: call time" in summary and "T_s" in summary and "T_e" in summary


def test_a_timeline_subclass_keeps_its_own_add():
    """Timeline.add is the deque's own append for speed, but not where a subclass overrides it."""
    seen = []

    class Watched(Timeline):
        def add(self, record: Record) -> None:
            seen.append(record.name)
            super().add(record)

    timeline = Watched(maxlen=2)
    for name in ("a", "b", "c"):
        timeline.add(Record("call", name, 0.0, 0.0))
    assert seen == ["a", "b", "c"] and [record.name for record in timeline] == ["b", "c"]
