"""The timeline record of a reconnect the server asked for (``--max-connection-age``; real servers on
127.0.0.1)."""

from __future__ import annotations

import time

from test_connection_age import AGE, JITTER, aged, open_client, reconnects


def test_a_reconnect_record_says_when_it_started_and_that_it_did_not_fail(start_server):
    server = start_server(limits=aged())
    made = time.perf_counter()
    client = open_client("127.0.0.1", server.port)
    time.sleep(AGE * (1 + JITTER) + 0.05)  # lets the connection pass its age (not a proof of anything)
    assert client.echo("next") == "next"
    record, = reconnects(client)
    assert record.error is None
    assert 0 <= client.epoch + record.start - made <= time.perf_counter() - made
    assert 0 <= record.duration <= time.perf_counter() - made
    client.close()
