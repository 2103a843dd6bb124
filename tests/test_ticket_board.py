"""The ticket board behind submit()/get_result(), on its own: what a waiting, failed, cancelled or evicted
ticket answers, and the bounds on waits, results and queued work (test_contract.py covers it through
the server)."""

from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest

from thrift_handshake.demo import DemoLimits
from thrift_handshake.demo.tickets import TicketBoard
from thrift_handshake_gen.ttypes import InvalidRequest, NotReady, Overloaded, Response, UnknownTicket


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Blocked work waits on this; set at the end so no worker outlives the test."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def make_board(release: threading.Event) -> Iterator:
    """TicketBoard(DemoLimits(**limits)); stopped (its workers released) after the test."""
    boards = []

    def make(**limits) -> TicketBoard:
        boards.append(TicketBoard(DemoLimits(**limits)))
        return boards[-1]

    yield make
    release.set()
    for board in boards:
        board.stop()


def response(name: str) -> Response:
    return Response(request_id=name)


def blocked(release: threading.Event, name: str = "blocked"):
    def work() -> Response:
        release.wait(10)
        return response(name)
    return work


def test_a_wait_that_runs_out_says_how_long_it_waited(make_board, release):
    board = make_board()
    ticket = board.submit(blocked(release), 0, "s1")
    with pytest.raises(NotReady) as caught:
        board.result(ticket, 0.2)
    assert caught.value.ticket == ticket and "after waiting 200 ms" in caught.value.message
    release.set()
    assert board.result(ticket, 5).request_id == "blocked"


def test_waits_are_capped_at_max_wait_and_never_negative(make_board, release):
    board = make_board(max_wait=0.75)
    ticket = board.submit(blocked(release), 0, "s1")
    with pytest.raises(NotReady) as caught:
        board.result(ticket, 60)
    assert "after waiting 750 ms" in caught.value.message  # 750, not 749 or 751: milliseconds exactly
    with pytest.raises(NotReady) as caught:
        board.result(ticket, -5)
    assert "after waiting 0 ms" in caught.value.message


def test_work_that_fails_answers_not_ready_with_the_reason(make_board):
    def failing() -> Response:
        raise RuntimeError("the disk is gone")

    board = make_board()
    ticket = board.submit(failing, 0, "s1")
    with pytest.raises(NotReady) as caught:
        board.result(ticket, 5)
    assert caught.value.message == "no result: the disk is gone"


def test_stop_refuses_new_work_and_cancels_queued_work(make_board, release):
    board = make_board(submit_workers=1)
    running = board.submit(blocked(release, "running"), 0, "s1")
    queued = board.submit(blocked(release, "queued"), 0, "s1")
    stopper = threading.Thread(target=board.stop)
    stopper.start()
    stopper.join(5)
    assert not stopper.is_alive(), "stop() must not wait for running work"
    with pytest.raises(Overloaded) as caught:
        board.submit(blocked(release), 0, "s1")
    assert "stopping" in caught.value.message
    with pytest.raises(NotReady) as caught:
        board.result(queued, 1)
    assert "cancelled" in caught.value.message
    release.set()
    assert board.result(running, 5).request_id == "running", "work already running finishes"


def test_the_newest_max_results_are_kept(make_board, release):
    board = make_board(max_results=2, submit_workers=1)
    tickets = [board.submit(lambda n=n: response(str(n)), 0, "s1") for n in range(3)]
    for ticket in tickets:  # one worker: they finish in order
        try:
            board.result(ticket, 5)
        except UnknownTicket:
            pass
    with pytest.raises(UnknownTicket):
        board.result(tickets[0], 0)
    assert [board.result(t, 0).request_id for t in tickets[1:]] == ["1", "2"]


def test_unknown_tickets_are_refused(make_board):
    board = make_board()
    with pytest.raises(UnknownTicket) as caught:
        board.result("never-issued", 0)
    assert caught.value.ticket == "never-issued"


def test_the_queue_is_bounded_by_count_and_by_bytes(make_board, release):
    board = make_board(submit_workers=1, submit_queue=2, submit_queue_bytes=100)
    board.submit(blocked(release), 40, "s1")
    board.submit(blocked(release), 40, "s1")
    with pytest.raises(Overloaded):
        board.submit(blocked(release), 21, "s1")  # 101 bytes
    board.submit(blocked(release), 20, "s1")  # exactly 100 bytes: still accepted
    with pytest.raises(Overloaded) as caught:
        board.submit(blocked(release), 0, "s1")  # 1 running + 2 queued = capacity 3
    assert caught.value.queued == 3 and caught.value.capacity == 3


def test_each_session_gets_its_share_of_the_queue(make_board, release):
    board = make_board(submit_workers=1, submit_per_session=2)
    board.submit(blocked(release), 0, "s1")
    board.submit(blocked(release), 0, "s1")
    with pytest.raises(Overloaded) as caught:
        board.submit(blocked(release), 0, "s1")
    assert "its share" in caught.value.message
    board.submit(blocked(release), 0, "s2")  # another session still has its own share


def test_a_request_larger_than_the_whole_queue_is_invalid_not_overloaded(make_board):
    board = make_board(submit_queue_bytes=100)
    with pytest.raises(InvalidRequest) as caught:
        board.submit(lambda: response("big"), 101, "s1")
    assert caught.value.field == "payload" and "can never be accepted" in caught.value.message
    assert board.result(board.submit(lambda: response("fits"), 100, "s1"), 5).request_id == "fits"


def test_a_finished_submission_gives_its_share_back(make_board):
    board = make_board(submit_workers=2, submit_per_session=2)
    releases = [threading.Event(), threading.Event()]
    try:
        first, _ = [board.submit(blocked(r, str(n)), 0, "s1") for n, r in enumerate(releases)]
        releases[0].set()
        assert board.result(first, 5).request_id == "0"
        deadline = time.monotonic() + 5
        while True:  # the share comes back when the board has recorded the finish
            try:
                board.submit(blocked(releases[1]), 0, "s1")
                break
            except Overloaded:
                assert time.monotonic() < deadline, "a finished submission still counts against its session"
                time.sleep(0.01)
        with pytest.raises(Overloaded):  # one running + the new one: the share is full again
            board.submit(blocked(releases[1]), 0, "s1")
    finally:
        for event in releases:
            event.set()


def test_with_a_ledger_a_new_board_answers_for_tickets_of_the_old_one(make_board, release, tmp_path):
    """A restart: the first board's tickets are known to a second board only through the ledger."""
    from thrift_handshake.demo.ledger import TicketLedger

    def failing() -> Response:
        raise RuntimeError("the disk is gone")

    ledger = TicketLedger(str(tmp_path / "tickets.sqlite"), ttl=600)
    first = TicketBoard(DemoLimits(submit_workers=1), ledger)
    try:
        done = first.submit(lambda: response("kept"), 0, "s1")
        assert first.result(done, 5).request_id == "kept"
        failed = first.submit(failing, 0, "s1")
        with pytest.raises(NotReady):
            first.result(failed, 5)
        started = threading.Event()

        def running_work() -> Response:
            started.set()
            return blocked(release, "running")()

        running = first.submit(running_work, 0, "s1")
        assert started.wait(5)  # running (the one worker may still be recording the failed ticket)
        queued = first.submit(blocked(release, "queued"), 0, "s1")
        first.stop()  # the queued one is cancelled
        release.set()
        assert first.result(running, 5).request_id == "running"
        assert first.drain(5), "the outcomes never reached the ledger"
        second = TicketBoard(DemoLimits(), ledger)
        try:
            assert second.result(done, 0).request_id == "kept"
            with pytest.raises(NotReady) as caught:
                second.result(failed, 0)
            assert caught.value.message == "no result: the disk is gone"
            with pytest.raises(NotReady) as caught:
                second.result(queued, 0)
            assert caught.value.message.startswith("aborted by shutdown")
            with pytest.raises(UnknownTicket):
                second.result("never-issued", 0)
        finally:
            second.stop()
    finally:
        first.stop()
        ledger.close()


def test_drain_returns_once_every_outcome_is_on_disk(release, tmp_path):
    # A worker process exits right after its stop: outcomes written after the work's end were lost.
    from thrift_handshake.demo.ledger import DONE, TicketLedger

    ledger = TicketLedger(str(tmp_path / "tickets.sqlite"), ttl=600)
    board = TicketBoard(DemoLimits(submit_workers=8), ledger)
    try:
        tickets = [board.submit(blocked(release, f"t{n}"), 0, "s1") for n in range(8)]
        board.stop()
        assert not board.drain(0.05)  # still running: not drained
        release.set()
        assert board.drain(5)
        assert [ledger.outcome(ticket)[0] for ticket in tickets] == [DONE] * 8  # no wait: already there
    finally:
        board.stop()
        ledger.close()


def test_a_store_that_cannot_write_refuses_tickets_and_is_logged_once_with_a_count(tmp_path, caplog):
    # A read-only store raised sqlite3's error out of submit: a traceback per call, the ticket half made.
    import logging

    from thrift_handshake.demo.ledger import TicketLedger

    ledger = TicketLedger(str(tmp_path / "tickets.sqlite"), ttl=600)
    ledger._db.execute("PRAGMA query_only = ON")  # as a read-only file does (chmod does not stop root)
    board = TicketBoard(DemoLimits(), ledger)
    caplog.set_level(logging.ERROR)
    try:
        for _ in range(20):
            with pytest.raises(Overloaded, match="ticket store cannot record"):
                board.submit(lambda: response("never"), 0, "s1")
        board.stop()
        board.drain(1)
    finally:
        ledger.close()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and not [r for r in caplog.records if r.exc_info], messages
    assert "readonly database" in messages[0] and messages[1].endswith("19 more times"), messages


def test_a_reused_pid_or_an_earlier_boot_is_not_the_owner(tmp_path):
    # Owners were pids alone: a server restarted under its old pid (pid 1 in a container) counted as the
    # owner of its predecessor's tickets but for a special case that a second process could not see,
    # and any process that got a dead owner's pid kept its tickets "still running".
    import os
    import sqlite3

    from thrift_handshake.demo.ledger import ACCEPTED, LOST, TicketLedger, _owner_id

    path = str(tmp_path / "tickets.sqlite")
    TicketLedger(path, ttl=600).close()
    boot, _, start = _owner_id(os.getpid()).rpartition(":")
    parent = os.getppid()
    rows = [("mine", os.getpid(), f"{boot}:{start}"),                  # this very process: alive
            ("reused", os.getpid(), f"{boot}:{int(start) - 1}"),       # an earlier process with this pid
            ("parent", parent, _owner_id(parent)),                     # another live process
            ("rebooted", parent, f"an-earlier-boot:{_owner_id(parent).rpartition(':')[2]}")]
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO tickets (ticket, state, updated, owner, owner_id) VALUES (?, 'accepted', 0, ?, ?)",
                       rows)
    ledger = TicketLedger(path, ttl=10**10)
    try:
        assert {ticket: ledger.outcome(ticket)[0] for ticket, _, _ in rows} == {
            "mine": ACCEPTED, "reused": LOST, "parent": ACCEPTED, "rebooted": LOST}
    finally:
        ledger.close()


def test_a_ticket_the_store_refused_gives_its_place_back(tmp_path, release):
    # The store is written outside the board's lock, after the ticket took its place in the queue: a
    # refusal that kept the place would lock the client out once its share was used up by failures.
    from thrift_handshake.demo.ledger import TicketLedger

    ledger = TicketLedger(str(tmp_path / "tickets.sqlite"), ttl=600)
    board = TicketBoard(DemoLimits(submit_workers=1, submit_queue=1, submit_per_session=2), ledger)
    try:
        ledger._db.execute("PRAGMA query_only = ON")
        for _ in range(3):
            with pytest.raises(Overloaded) as caught:
                board.submit(blocked(release), 0, "s1")
            assert caught.value.message.startswith("the ticket store cannot record") and caught.value.queued == 0
        ledger._db.execute("PRAGMA query_only = OFF")
        tickets = [board.submit(blocked(release, f"t{n}"), 0, "s1") for n in range(2)]
        release.set()
        assert [board.result(ticket, 5).request_id for ticket in tickets] == ["t0", "t1"]
    finally:
        board.stop()
        ledger.close()


def test_the_board_that_ran_a_ticket_answers_it_once_the_store_has_it(tmp_path):
    # Flaky in test_tickets_across_hosts: server B read a result from the shared store while server A, which ran
    # it and was still finishing its write, answered "still running after waiting 0 ms".
    from thrift_handshake.demo.ledger import DONE, TicketLedger

    written, go_on = threading.Event(), threading.Event()

    class SlowToReturn(TicketLedger):
        """Writes an outcome, then returns only once told (the window between the write and the ticket's end)."""

        def finished(self, ticket, state, result=None, message=""):
            super().finished(ticket, state, result, message)
            written.set()
            go_on.wait(10)

    ledger = SlowToReturn(str(tmp_path / "tickets.sqlite"), ttl=600)
    board = TicketBoard(DemoLimits(submit_workers=1), ledger)
    try:
        ticket = board.submit(lambda: response("ran here"), 0, "s1")
        assert written.wait(5)
        assert ledger.outcome(ticket)[0] == DONE  # what another server sharing the store answers now
        threading.Timer(0.2, go_on.set).start()
        assert board.result(ticket, 0).request_id == "ran here"  # not "still running"
    finally:
        go_on.set()
        board.stop()
        ledger.close()
