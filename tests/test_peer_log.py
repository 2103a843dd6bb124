"""What a peer can make the server log is bounded: no traceback for bad input, peer text clipped, and
warnings about peers rate-limited (at most 20 a second, the rest summarised)."""

from __future__ import annotations

import logging
import math
import re
import time

import pytest
from conftest import encode_call, eventually

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
