"""Every method of the contract, called through the public client against a real server."""

from __future__ import annotations

import hashlib
import math
import struct
import time

import pytest
from conftest import every_type_at_its_edges

from thrift_handshake.demo import DemoLimits
from thrift_handshake import RemoteApplicationError, ServiceError
from thrift_handshake_gen.ttypes import AllTypes, Event, InvalidRequest, NotReady, Request, UnknownTicket
from thrift_handshake_gen import HandshakeService


def test_ping(client):
    assert client.ping() is None


def test_echo_returns_the_message_unchanged(client):
    assert client.echo("请求数据") == "请求数据"
    assert client.echo("") == ""
    assert client.echo("emoji 🚀 and\nnewlines\0nul") == "emoji 🚀 and\nnewlines\0nul"


def test_process_answers_after_the_work(client):
    payload = "请求数据"
    started = time.perf_counter()
    response = client.process(Request(request_id="r-1", payload=payload, work_ms=50, headers={"a": "b"}))
    elapsed = time.perf_counter() - started
    assert elapsed >= 0.05
    assert response.request_id == "r-1"
    assert response.digest == hashlib.sha256(payload.encode("utf-8")).hexdigest()
    assert response.session_id == client.session_id
    assert response.sequence == 1
    assert 50_000 <= response.processing_us <= elapsed * 1e6


def test_process_sequence_counts_per_session(client, connect):
    assert [client.process(Request(request_id=f"r{i}", payload="x")).sequence for i in range(3)] == [1, 2, 3]
    other = connect()
    assert other.process(Request(request_id="o", payload="x")).sequence == 1


@pytest.mark.parametrize(
    "request_, field",
    [
        (Request(request_id="", payload="x"), "request_id"),
        (Request(request_id=None, payload="x"), "request_id"),
        (Request(request_id="r", payload="x", work_ms=-1), "work_ms"),
        (Request(request_id="r", payload="x", work_ms=10_001), "work_ms"),
        (None, "request"),
    ],
)
def test_process_rejects_invalid_requests_with_the_field(client, request_, field):
    with pytest.raises(InvalidRequest) as caught:
        client.process(request_)
    assert caught.value.field == field
    assert isinstance(caught.value, ServiceError)
    assert client.echo("still usable") == "still usable"


def test_submit_acknowledges_before_the_work_is_done(client):
    started = time.perf_counter()
    ack = client.submit(Request(request_id="s-1", payload="abc", work_ms=2000))
    acknowledged_in = time.perf_counter() - started
    assert acknowledged_in < 1.0, "submit must return on receipt, not after the work"
    assert ack.ticket and ack.request_id == "s-1"
    assert abs(ack.accepted_at_ms - time.time() * 1000) < 5000
    with pytest.raises(NotReady) as caught:
        client.get_result(ack.ticket, 0)
    assert caught.value.ticket == ack.ticket
    result = client.get_result(ack.ticket, 5000)
    assert result.request_id == "s-1"
    assert result.digest == hashlib.sha256(b"abc").hexdigest()
    assert result.processing_us >= 2_000_000


def test_submit_validates_like_process(client):
    with pytest.raises(InvalidRequest) as caught:
        client.submit(Request(request_id="r", work_ms=20_000))
    assert caught.value.field == "work_ms"


def test_get_result_unknown_ticket(client):
    with pytest.raises(UnknownTicket) as caught:
        client.get_result("no-such-ticket", 0)
    assert caught.value.ticket == "no-such-ticket"


def test_ticket_works_from_another_connection_and_session(client, connect):
    ack = client.submit(Request(request_id="x", payload="p", work_ms=0))
    other = connect(client_name="other")
    result = other.get_result(ack.ticket, 5000)
    assert result.request_id == "x"
    assert result.session_id == client.session_id


def test_notify_is_counted_in_stats(client, server):
    before = client.stats().notifications
    client.notify(Event(name="e", payload="p"))
    client.notify(Event(name="e2", payload="p2"))
    assert client.stats().notifications == before + 2
    assert [e.name for e in server.handler.recent_events][-2:] == ["e", "e2"]


def test_stats_counts_connections_sessions_and_calls(client, connect, server):
    client.echo("a")
    client.echo("b")
    other = connect()
    stats = other.stats()
    assert stats.connections_open == 2
    assert stats.connections_total == 2
    assert stats.sessions_active == 2
    assert stats.handshakes_ok == 2
    assert stats.handshakes_rejected == 0
    assert stats.calls["echo"] == 2
    assert stats.calls["hello"] == 2
    assert stats.uptime_ms >= 0


def test_fail_becomes_a_tapplicationexception_and_the_connection_stays(client):
    with pytest.raises(RemoteApplicationError) as caught:
        client.fail("boom")
    assert caught.value.type == 6  # INTERNAL_ERROR
    assert client.echo("alive") == "alive"


def _bits(value: float) -> bytes:
    return struct.pack("<d", value)


def test_echo_types_round_trips_every_type(client):
    value = every_type_at_its_edges()
    echoed = client.echo_types(value)
    assert echoed == value
    assert _bits(echoed.real) == _bits(-0.0)
    assert echoed.greeting == "hello" and echoed.answer == 42


@pytest.mark.parametrize("special", [math.nan, math.inf, -math.inf, 5e-324])
def test_echo_types_keeps_special_doubles_bit_for_bit(client, special):
    echoed = client.echo_types(AllTypes(id="d", real=special))
    assert _bits(echoed.real) == _bits(special)


def test_submit_refuses_work_beyond_the_queue_limits(start_server):
    from thrift_handshake import Client
    from thrift_handshake_gen.ttypes import Overloaded

    server = start_server(demo=DemoLimits(submit_workers=1, submit_queue=1, submit_queue_bytes=10_000))
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        with pytest.raises(InvalidRequest, match="can never be accepted"):  # bytes counted as bytes:
            client.submit(Request(request_id="big", payload="字" * 3400))  # 10 200 bytes in 3 400 characters
        client.submit(Request(request_id="a", work_ms=5000, payload="字" * 1000))
        with pytest.raises(Overloaded):  # 3 000 + 9 000 bytes: more than the queue holds, for now
            client.submit(Request(request_id="b", work_ms=5000, payload="字" * 3000))
        client.submit(Request(request_id="b", work_ms=5000))
        with pytest.raises(Overloaded) as caught:
            client.submit(Request(request_id="c", work_ms=5000))
        assert caught.value.capacity == 2


def test_submit_counts_the_memory_many_small_headers_take(start_server):
    from thrift_handshake import Client
    from thrift_handshake_gen.ttypes import Overloaded

    # A header of six characters and an empty value is 6 bytes as UTF-8 but about 100 bytes as Python
    # strings and a dict entry: the queue's byte limit must count the latter.
    headers = {f"{i:06x}": "" for i in range(20_000)}  # 120 kB of UTF-8, about 2 MB in memory
    server = start_server(demo=DemoLimits(submit_workers=1, submit_queue=10, submit_queue_bytes=1 << 20))
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        with pytest.raises(InvalidRequest, match="can never be accepted"):
            client.submit(Request(request_id="many", headers=headers))
        quarter = dict(list(headers.items())[:5_000])  # about half a MiB in memory
        client.submit(Request(request_id="a", work_ms=3000, headers=quarter))
        with pytest.raises(Overloaded):
            client.submit(Request(request_id="b", work_ms=3000, headers=quarter))


def _held_and_counted(request: Request) -> "tuple[int, int]":
    """The memory ``request`` holds once decoded from the wire (tracemalloc), and what the submit queue counts."""
    import tracemalloc

    from thrift.protocol.TCompactProtocol import TCompactProtocolAcceleratedFactory
    from thrift.TSerialization import deserialize, serialize

    from thrift_handshake.demo.handler import _memory_cost

    wire = serialize(request, TCompactProtocolAcceleratedFactory())
    tracemalloc.start()
    try:
        decoded = deserialize(Request(), wire, TCompactProtocolAcceleratedFactory())
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return held, _memory_cost(decoded)


@pytest.mark.parametrize("key_length, value_length", [(6, 0), (6, 6), (100, 100)])
def test_the_submit_queue_counts_no_less_than_a_decoded_request_holds(key_length, value_length):
    headers = {f"{i:0{key_length}x}": "v" * value_length for i in range(20_000)}
    held, counted = _held_and_counted(Request(request_id="r", payload="p" * 1000, headers=headers))
    assert held <= counted <= 3 * held


@pytest.mark.parametrize("payload", ["p" * 100_000, "\u00e9" + "p" * 100_000, "\U0001f600" + "p" * 100_000],
                         ids=["ascii", "latin-1", "emoji"])
def test_the_submit_queue_counts_what_a_string_takes_in_memory_whatever_its_characters(payload):
    # CPython stores a string with one character beyond U+FFFF at 4 bytes per character: counted as
    # UTF-8, such a payload took 4 times its count (a 256 MiB budget held about 1 GiB).
    held, counted = _held_and_counted(Request(request_id="r", payload=payload))
    assert held <= counted <= 3 * held


def test_one_client_cannot_take_the_whole_submit_queue_even_with_many_sessions(start_server):
    import socket

    from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
    from thrift.transport import TSocket, TTransport

    from thrift_handshake import Client
    from thrift_handshake_gen.session.ttypes import ClientHello
    from thrift_handshake_gen.ttypes import Overloaded

    server = start_server(demo=DemoLimits(submit_workers=1, submit_queue=10, submit_per_session=3))
    with Client("127.0.0.1", server.port, service=HandshakeService) as greedy:
        for n in range(3):
            greedy.submit(Request(request_id=f"g{n}", work_ms=1000))
        with pytest.raises(Overloaded, match="submit_per_session"):
            greedy.submit(Request(request_id="g3", work_ms=1000))
        with Client("127.0.0.1", server.port, service=HandshakeService) as same_host:  # a new session: same share
            with pytest.raises(Overloaded, match="submit_per_session"):
                same_host.submit(Request(request_id="g4", work_ms=1000))
        handle = socket.socket()  # another host (127.0.0.2 is loopback too): its own share
        handle.bind(("127.0.0.2", 0))
        handle.connect(("127.0.0.1", server.port))
        sock = TSocket.TSocket()
        sock.setHandle(handle)
        transport = TTransport.TBufferedTransport(sock)
        other = HandshakeService.Client(TBinaryProtocolAccelerated(transport))
        try:
            other.hello(ClientHello(client_name="other", min_version=1, max_version=2))
            assert other.submit(Request(request_id="o", payload="mine")).ticket
        finally:
            transport.close()


def test_results_are_kept_for_a_bounded_count(start_server):
    from thrift_handshake import Client

    server = start_server(demo=DemoLimits(max_results=2, submit_workers=1))
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        tickets = [client.submit(Request(request_id=str(i))).ticket for i in range(3)]
        assert client.get_result(tickets[2], 5000).request_id == "2"  # one worker: it finished last
        with pytest.raises(UnknownTicket):
            client.get_result(tickets[0], 0)
        assert client.get_result(tickets[2], 1000).request_id == "2"


def test_results_are_kept_for_a_bounded_time(start_server):
    from thrift_handshake import Client

    server = start_server(demo=DemoLimits(result_ttl=0.3))
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        ticket = client.submit(Request(request_id="t")).ticket
        assert client.get_result(ticket, 1000).request_id == "t"
        time.sleep(0.5)
        with pytest.raises(UnknownTicket):
            client.get_result(ticket, 0)


def test_what_the_demo_keeps_after_a_call_is_bounded(start_server):
    from thrift_handshake import Client
    from thrift_handshake.demo import HandshakeHandler
    from thrift_handshake.demo.handler import RECENT_EVENT_BYTES

    handler = HandshakeHandler()
    server = start_server(handler)
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        with pytest.raises(InvalidRequest, match="request_id is limited to 256"):  # results keep it for 600 s
            client.submit(Request(request_id="r" * 257, payload=""))
        for n in range(5):
            client.notify(Event(name=f"e{n}", payload="x" * 600_000))
        client.notify(Event(name="huge", payload="x" * (2 * RECENT_EVENT_BYTES)))  # delivered, not kept
        client.stats()  # one-way calls before it on this connection have been handled
    kept = handler.recent_events
    assert sum(len(e.payload) for e in kept) <= RECENT_EVENT_BYTES
    assert [e.name for e in kept] == ["e4"]
