"""What a pipelined AsyncClient keeps of the one-way calls it wrote behind two-way calls (``aio.behind``),
for the server's "reconnect" answer: on plain objects, no connection (the connection's side is in
tests/test_connection_age.py)."""

from __future__ import annotations

from thrift_handshake.aio.behind import WrittenBehind


def test_one_way_calls_written_while_nothing_is_awaited_are_not_kept() -> None:
    behind = WrittenBehind()
    behind.written("notify", ("a",), ())
    assert list(behind.unconfirmed) == []
    assert behind.unread(1) == []


def test_the_calls_written_behind_the_asked_call_are_unread_and_those_before_it_are_not() -> None:
    behind = WrittenBehind()
    behind.written("notify", ("a",), {1})  # behind 1
    behind.written("notify", ("b",), {1, 2})  # behind 1 and 2
    behind.written("notify", ("c",), {3})  # 1 and 2 answered meanwhile (not told here), behind 3
    assert behind.unread(2) == [("notify", ("b",))]
    assert list(behind.unconfirmed) == []  # the connection is over: forgotten


def test_a_reply_confirms_what_was_written_before_its_call_and_only_that() -> None:
    behind = WrittenBehind()
    behind.written("notify", ("a",), {1})  # written after 1, before 2
    behind.written("notify", ("b",), {1, 2})
    behind.answered(1, last=False)  # 1 was written before both: neither is confirmed read
    assert [args for _, _, args in behind.unconfirmed] == [("a",), ("b",)]
    behind.answered(2, last=False)  # "a" came before 2: read; "b" came after it
    assert [args for _, _, args in behind.unconfirmed] == [("b",)]
    behind.answered(3, last=True)  # the last call in flight answered: everything before it was read
    assert list(behind.unconfirmed) == []


def test_a_connection_always_busy_keeps_only_the_one_way_calls_still_unconfirmed() -> None:
    behind = WrittenBehind()
    for seqid in range(1, 1001):  # two calls always in flight, a one-way call between each two
        behind.written("notify", (seqid,), {seqid, seqid + 1})
        behind.answered(seqid, last=False)
    assert len(behind.unconfirmed) <= 2


def test_once_every_call_ahead_of_a_one_way_call_is_answered_it_is_confirmed() -> None:
    behind = WrittenBehind()
    behind.written("notify", ("a",), {1})
    behind.answered(1, last=True)  # not "reconnect": the server reads on, "a" included
    assert list(behind.unconfirmed) == []
