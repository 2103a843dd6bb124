"""An outcome the shared Redis store could not take when the work ended (Redis unreachable then) is
written once the store answers again, so the other hosts do not read a finished ticket as "still
running" for ever, nor "lost" (inviting a second run) once its server stops. A real ``redis-server``
on loopback, as in tests/test_tickets_across_hosts.py, reached by the server under test through its
relay, which can cut it off."""

from __future__ import annotations

import logging
from typing import Iterator

import pytest

from conftest import eventually
from test_tickets_across_hosts import BreakingRelay, connect, demo_on, redis_server  # noqa: F401 (fixtures)
from thrift_handshake_gen.ttypes import NotReady, Request


@pytest.fixture
def relay(redis_server) -> Iterator[BreakingRelay]:  # noqa: F811 (the fixture)
    relay = BreakingRelay(redis_server.port)
    yield relay
    relay.close()


def _finished_while_cut_off(relay: BreakingRelay, a) -> str:
    """Submits on ``a`` (which reaches Redis through ``relay``), cuts it off while the work ends (the
    outcome's write fails), mends it; returns the ticket, which ``a`` answers from memory."""
    with connect(a) as on_a:
        ack = on_a.submit(Request(request_id="unrecorded", payload="x", work_ms=200))
        relay.cut()
        try:
            assert on_a.get_result(ack.ticket, 10_000).request_id == "unrecorded"  # after the write failed
        finally:
            relay.mend()
    return ack.ticket


def _answer_on(server, ticket: str):
    with connect(server) as client:
        try:
            return client.get_result(ticket, 0)
        except NotReady as error:
            return error.message


def test_an_outcome_redis_missed_is_written_when_it_answers_again(redis_server, relay, demo_on, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="thrift_handshake.demo.redis_store")
    # the lease's renewal (every 1/3 s) writes what was missed; the cut is shorter than the lease
    a, b = demo_on(relay.url("lease=1")), demo_on(redis_server.url)
    ticket = _finished_while_cut_off(relay, a)
    assert eventually(lambda: getattr(_answer_on(b, ticket), "request_id", None) == "unrecorded", 5), \
        _answer_on(b, ticket)  # "still running after waiting 0 ms" for ever (a day), then "lost"
    assert [r.getMessage() for r in caplog.records if "missed" in r.getMessage()] == [
        f"ticket store redis://127.0.0.1:{relay.port}/0: recorded 1 outcome(s) it had missed"]


def test_a_clean_stop_writes_the_missed_outcome_before_giving_its_lease_up(redis_server, relay, demo_on):  # noqa: F811
    a, b = demo_on(relay.url("lease=60")), demo_on(redis_server.url)  # no renewal within the test
    ticket = _finished_while_cut_off(relay, a)
    assert _answer_on(b, ticket) == "still running after waiting 0 ms"  # not recorded yet
    a.stop(grace=5.0)
    answer = _answer_on(b, ticket)  # it read "lost: ... submit it again": a second run of finished work
    assert getattr(answer, "request_id", answer) == "unrecorded"
