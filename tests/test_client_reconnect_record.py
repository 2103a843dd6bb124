"""The timeline record of a reconnect the server asked for (``--max-connection-age``; real servers on
127.0.0.1)."""

from __future__ import annotations

import time

import pytest

from thrift_handshake.interceptors import Call, Interceptor

from test_connection_age import AGE, JITTER, aged, open_client, reconnects


def test_a_reconnect_record_says_when_it_started_and_that_it_did_not_fail(start_server):
    server = start_server(limits=aged())
    made = time.perf_counter()
    client = open_client("127.0.0.1", server.port)
    assert client.echo("first") == "first"  # a session is asked to reconnect once it has served a call
    time.sleep(AGE * (1 + JITTER) + 0.05)  # lets the connection pass its age (not a proof of anything)
    assert client.echo("next") == "next"
    record, = reconnects(client)
    assert record.error is None
    assert 0 <= client.epoch + record.start - made <= time.perf_counter() - made
    assert 0 <= record.duration <= time.perf_counter() - made
    client.close()


class _InterruptsTheSecondHello(Interceptor):
    """Raises KeyboardInterrupt (as Ctrl-C would) when the second hello starts: the reconnect's."""

    def __init__(self) -> None:
        self.hellos = 0

    def call_started(self, call: Call) -> None:
        if call.method == "hello":
            self.hellos += 1
            if self.hellos == 2:
                raise KeyboardInterrupt


def test_a_reconnect_that_fails_is_recorded_with_its_error(start_server):
    server = start_server(limits=aged())
    client = open_client("127.0.0.1", server.port, interceptors=(_InterruptsTheSecondHello(),))
    assert client.echo("first") == "first"  # a session is asked to reconnect once it has served a call
    time.sleep(AGE * (1 + JITTER) + 0.05)  # lets the connection pass its age (not a proof of anything)
    with pytest.raises(KeyboardInterrupt):
        client.echo("next")
    record, = reconnects(client)
    assert record.error == "KeyboardInterrupt()"
    client.close()
