"""What a peer can make the server log is bounded: no traceback for bad input, peer text clipped, and
warnings about peers rate-limited (at most 20 a second, the rest summarised)."""

from __future__ import annotations

import logging
import math
import re
import struct
import time

import pytest
from conftest import encode_call, eventually, report_reliability

from thrift_handshake import Client, RemoteApplicationError
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Event


def _records(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> "list[logging.LogRecord]":
    return [r for r in list(caplog.records) if r.levelno >= level]


def test_a_notify_without_its_event_is_dropped_not_a_handler_crash(server, raw, caplog):
    caplog.set_level(logging.DEBUG)
    connection = raw()
    connection.hello()
    for _ in range(50):
        connection.stub.notify(None)  # the event field left out: 19 bytes on the wire
    assert connection.stub.echo("still served") == "still served"  # the one-way calls were read before it

    assert not [r for r in _records(caplog) if r.exc_info or r.levelno >= logging.ERROR]
    dropped = [r.getMessage() for r in _records(caplog) if "dropped one-way notify" in r.getMessage()]
    assert len(dropped) == 1 and "event" in dropped[0], dropped  # once per connection, saying why
    assert server.handler.recent_events == []
    assert server.metrics.snapshot().notifications == 0


def test_a_huge_message_to_fail_is_clipped_in_the_log(client, caplog):
    caplog.set_level(logging.INFO)
    message = "A" * (4 << 20)
    with pytest.raises(RemoteApplicationError):
        client.fail(message)
    assert client.echo("after") == "after"
    logged = _records(caplog, logging.ERROR)
    assert logged, "fail() is still logged"
    for record in logged:
        text = logging.Formatter().format(record)
        assert len(text) < 10_000, f"a log line of {len(text)} characters"
        assert re.search(r"AAA… \(\d{7} characters\)", text), text[-300:]  # clipped, saying how long it was


def test_dropped_one_way_calls_before_hello_share_the_warning_rate_limit(start_server, send_raw, caplog):
    server = start_server()
    notify = encode_call("notify", HandshakeService.notify_args(event=Event(name="n", payload="p")), message_type=4)
    caplog.set_level(logging.WARNING)
    started = time.monotonic()
    for _ in range(100):  # one one-way call before hello on each of 100 connections
        send_raw(server.port, notify)
    assert eventually(lambda: server.metrics.snapshot().calls.get("notify", 0) == 100)
    seconds = time.monotonic() - started
    server.stop()  # reports what was suppressed
    dropped = [r for r in _records(caplog) if "dropped one-way" in r.getMessage()]
    allowed = 20 * (math.ceil(seconds) + 1)  # 20 in each second the burst touched
    assert len(dropped) <= allowed, f"{len(dropped)} 'dropped one-way' warnings in {seconds:.2f} s"
    assert any("suppressed" in r.getMessage() for r in _records(caplog))


def _log_bytes(records: "list[logging.LogRecord]") -> int:
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    return sum(len(formatter.format(record).encode()) + 1 for record in records)


def test_wrong_token_guesses_log_within_the_budget(start_server, send_raw, caplog):
    # Each wrong token wrote two INFO lines that no budget limited ("handshake rejected" and the
    # connection's "closed ... hello refused"): about 300 bytes of log per guess, however fast the guesses.
    from thrift_handshake_gen.session import SessionService
    from thrift_handshake_gen.session.ttypes import ClientHello

    server = start_server(auth_token="the-real-token")
    caplog.set_level(logging.INFO)
    guesses = 400
    started = time.monotonic()
    for n in range(guesses):
        hello = ClientHello(client_name="guesser", min_version=1, max_version=2, auth_token=f"guess-{n}")
        send_raw(server.port, encode_call("hello", SessionService.hello_args(hello=hello)))
    assert eventually(lambda: server.metrics.snapshot().handshakes_rejected == guesses)
    seconds = time.monotonic() - started
    server.stop()
    records = [r for r in list(caplog.records) if r.name.startswith("thrift_handshake")
               and ("refused" in r.getMessage() or "rejected" in r.getMessage() or "suppressed" in r.getMessage())]
    size = _log_bytes(records)
    figure = (f"{guesses} guesses in {seconds:.2f} s: {len(records)} log lines, {size} bytes "
              f"({size / guesses:.0f} bytes a guess)")
    allowed = 2 * 20 * (math.ceil(seconds) + 1) + 4  # the session's and the server's budget, and their summaries
    print("\n" + figure)
    report_reliability("wrong auth tokens: log volume (within the warning budget)", guesses, True,
                       max(0, len(records) - allowed), figure=figure)
    assert len(records) <= allowed, f"{len(records)} lines for {guesses} guesses in {seconds:.2f} s"
    assert any("handshake rejected" in r.getMessage() for r in records)
    assert any("suppressed" in r.getMessage() for r in records), "what was left out is not summarised"


def _theader_frame(transforms: int) -> bytes:
    """A THeader frame (before hello) whose header lists ``transforms`` transform ids (all 100)."""
    def varint(value: int) -> bytes:
        out = b""
        while True:
            byte, value = value & 0x7F, value >> 7
            out += bytes([byte | (0x80 if value else 0)])
            if not value:
                return out

    header = varint(0) + varint(transforms) + b"\x64" * transforms + varint(0)
    header += b"\0" * (-len(header) % 4)
    body = struct.pack("!HHIH", 0x0FFF, 0, 1, len(header) // 4) + header + encode_call("ping", _ping_args())
    return struct.pack("!I", len(body)) + body


def _ping_args():
    from thrift_handshake_gen.session import SessionService

    return SessionService.ping_args()


def test_a_theader_frame_listing_thousands_of_transforms_is_logged_clipped(server, send_raw, caplog):
    # The refusal quoted every transform id: one WARNING line of about 300 000 characters per frame.
    caplog.set_level(logging.INFO)
    frame = _theader_frame(60_000)
    assert len(frame) < 64 * 1024
    send_raw(server.port, frame)
    assert eventually(lambda: any("transform" in r.getMessage() for r in list(caplog.records)))
    longest = max(len(r.getMessage()) for r in list(caplog.records) if "transform" in r.getMessage())
    figure = f"a frame of {len(frame)} bytes listing 60 000 transform ids: longest log line {longest} characters"
    print("\n" + figure)
    report_reliability("THeader frame listing thousands of transforms: log line clipped", 1, True, 0, figure=figure)
    assert longest < 1000, f"a log line of {longest} characters"
    with Client("127.0.0.1", server.port, service=HandshakeService) as client:
        assert client.echo("still serving") == "still serving"


def test_a_failing_ticket_store_is_logged_once_per_kind_with_a_count(start_server, tmp_path, caplog):
    # A store that cannot record wrote a full traceback per submit ("Unexpected exception in handler").
    from thrift_handshake import ServerConfig
    from thrift_handshake.demo import demo_server
    from thrift_handshake_gen.ttypes import Overloaded, Request

    store = tmp_path / "tickets.sqlite"
    server = demo_server(ServerConfig(port=0), ticket_store=str(store)).start()
    caplog.set_level(logging.INFO)
    try:
        with Client("127.0.0.1", server.port, service=HandshakeService) as client:
            ack = client.submit(Request(request_id="before", payload="x"))
            assert client.get_result(ack.ticket, 5000).request_id == "before"
            for name in ("tickets.sqlite", "tickets.sqlite-wal", "tickets.sqlite-shm"):
                (tmp_path / name).unlink(missing_ok=True)
            refused = 0
            for n in range(50):
                with pytest.raises(Overloaded, match="ticket store cannot record"):
                    client.submit(Request(request_id=f"after-{n}", payload="x"))
                refused += 1
    finally:
        server.stop()
    assert not store.exists(), "the deleted store was silently made again"
    errors = [r for r in list(caplog.records) if r.levelno >= logging.ERROR]
    figure = (f"{refused} submits to a deleted store: {len(errors)} error lines, "
              f"{sum(bool(r.exc_info) for r in errors)} tracebacks")
    print("\n" + figure)
    report_reliability("a failing ticket store: errors logged once per kind with a count", refused, True, 0,
                       figure=figure)
    assert not [r for r in errors if r.exc_info], "a traceback per submit"
    first = [r.getMessage() for r in errors if "deleted or replaced" in r.getMessage()]
    assert len(first) == 2, first  # the error once, then (at stop) how often it happened since
    repeats = int(re.search(r"(\d+) more times", first[1]).group(1))
    assert repeats in (49, 50), first  # the 50 refused submits (and the first ticket's outcome, if it came late)


def test_repeated_errors_are_logged_once_per_kind_then_counted(caplog):
    from thrift_handshake.peerlog import RepeatedErrors

    caplog.set_level(logging.ERROR)
    errors = RepeatedErrors(logging.getLogger("test.repeated"), "the store failed", interval=3600)
    for _ in range(1000):
        errors.report(OSError("read-only file system"))
    errors.report(ValueError("disk full"))
    assert [r.getMessage() for r in caplog.records] == [
        "the store failed: OSError: read-only file system (repeats are counted, reported at most every 3600 s)",
        "the store failed: ValueError: disk full (repeats are counted, reported at most every 3600 s)"]
    errors.flush()
    assert caplog.records[-1].getMessage() == "the store failed: OSError: read-only file system: 999 more times"
    errors.flush()  # nothing new: nothing more
    assert len(caplog.records) == 3
