"""The server's call log: which calls it warns about, and the one DEBUG line every call gets."""

from __future__ import annotations

import logging

import pytest

from thrift_handshake.calllog import CallLog
from thrift_handshake.gate_state import ConnectionState
from thrift_handshake.interceptors import Outcome, ServerCall
from thrift_handshake.metrics import ServerMetrics
from thrift_handshake.peerlog import WarningBudget
from thrift_handshake.session import SessionContext

LOGGER = "thrift_handshake.calllog"


def _ended(connection: ConnectionState, oneway: bool, outcome: Outcome, reason=None, seconds=0.0025) -> ServerCall:
    call = ServerCall("notify", 7, oneway, 100.0, connection)
    call.outcome, call.reason, call.ended = outcome, reason, 100.0 + seconds
    return call


@pytest.fixture
def connection() -> ConnectionState:
    return ConnectionState(SessionContext(peer="10.0.0.1:4000"), None, ServerMetrics())


@pytest.fixture
def call_log() -> CallLog:
    return CallLog(WarningBudget(logging.getLogger("test.calllog")))


@pytest.mark.parametrize("oneway, outcome", [(False, Outcome.REFUSED), (False, Outcome.UNKNOWN_METHOD),
                                             (True, Outcome.OK), (True, Outcome.FAILED)])
def test_only_one_way_calls_that_were_not_run_count_as_dropped(call_log, connection, caplog, oneway, outcome):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        call_log.call_ended(_ended(connection, oneway, outcome, "why"))
    assert connection.dropped_oneway == 0
    assert [r for r in caplog.records if r.name == LOGGER] == []


def test_every_call_gets_one_debug_line_with_its_outcome_and_time_in_ms(call_log, connection, caplog):
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        call_log.call_ended(_ended(connection, False, Outcome.OK))
        call_log.call_ended(_ended(connection, False, Outcome.REFUSED, "before hello", seconds=0.5))
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "call notify peer=10.0.0.1:4000 session=- seqid=7: ok in 2.500 ms",
        "call notify peer=10.0.0.1:4000 session=- seqid=7: refused in 500.000 ms (before hello)"]


def test_the_line_of_every_call_can_be_an_access_log_at_info(connection, caplog):
    access = CallLog(WarningBudget(logging.getLogger("test.calllog")), level=logging.INFO)
    connection.context.session_id = "ab12"
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert access.observes_handler
        access.call_ended(_ended(connection, False, Outcome.DECLARED_ERROR))
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert (record.levelno, record.getMessage()) == (
        logging.INFO, "call notify peer=10.0.0.1:4000 session=ab12 seqid=7: declared_error in 2.500 ms")
    assert (record.method, record.outcome, record.duration_ms) == ("notify", "declared_error", 2.5)


def test_without_debug_calls_are_not_logged(call_log, connection, caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        call_log.call_ended(_ended(connection, False, Outcome.OK))
    assert [r for r in caplog.records if r.name == LOGGER] == []


def test_the_first_dropped_one_way_call_is_a_warning_the_next_ones_debug_lines(call_log, connection, caplog):
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for _ in range(3):
            call_log.call_ended(_ended(connection, True, Outcome.DROPPED, "no session"))
    drops = [(r.levelname, r.getMessage()) for r in caplog.records
             if r.name == LOGGER and r.getMessage().startswith("dropped")]
    line = "dropped one-way notify peer=10.0.0.1:4000: no session (further drops on this connection are not logged)"
    assert drops == [("WARNING", line), ("DEBUG", line), ("DEBUG", line)]
    assert connection.dropped_oneway == 3
