"""The server's thread pool and readiness watch on their own (``thrift_handshake.pool``): which tasks
start a thread, when the pool says it is saturated, how relief, close and idle ends leave the count of
threads, and what the watch reports for descriptors added once or for good."""

from __future__ import annotations

import gc
import logging
import socket
import threading
import time
import weakref
from typing import Iterator, List

import pytest

from thrift_handshake.pool import ReadinessWatch, WorkerPool

from conftest import eventually


def _pool_threads(name: str) -> List[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(f"{name} ")]


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of the test: tasks that wait on it end."""
    event = threading.Event()
    yield event
    event.set()


@pytest.mark.parametrize("idle", [1, 2])
def test_a_task_is_taken_by_an_idle_thread_instead_of_a_new_one(idle, release):
    name = f"test-idle-taker-{idle}"
    pool = WorkerPool(name, maximum=4, idle_seconds=5.0)
    started, done = threading.Semaphore(0), threading.Semaphore(0)
    try:
        for _ in range(idle):  # at once: each on its own thread
            pool.submit(lambda _: (started.release(), release.wait(10), done.release()), None)
        for _ in range(idle):
            assert started.acquire(timeout=5)
        release.set()
        for _ in range(idle):
            assert done.acquire(timeout=5)
        assert eventually(lambda: pool.idle == idle)  # they wait for the next task
        for _ in range(3):
            pool.submit(lambda _: done.release(), None)
            assert done.acquire(timeout=5)
            assert eventually(lambda: pool.idle == idle)
        assert pool.threads == idle
        assert sorted(thread.name for thread in _pool_threads(name)) == [f"{name} {n}" for n in range(1, idle + 1)]
    finally:
        pool.close()
    assert eventually(lambda: pool.threads == 0)


def test_a_task_wakes_the_thread_idle_the_shortest_time_and_the_others_sleep_on(release):
    """One wake-up per task, for the most recently idle thread: a task handed to any idle thread (the
    longest waiting, or several woken to race for it) would cost a context switch each and keep every
    idle thread alive, so a pool grown for a burst would never shrink under a trickle of tasks."""
    name = "test-idle-lifo"
    pool = WorkerPool(name, maximum=4, idle_seconds=5.0)
    started, done = threading.Semaphore(0), threading.Semaphore(0)
    ran_on: List[str] = []
    try:
        for _ in range(4):  # at once: four threads
            pool.submit(lambda _: (started.release(), release.wait(10)), None)
        for _ in range(4):
            assert started.acquire(timeout=5)
        release.set()
        assert eventually(lambda: pool.idle == 4)
        for _ in range(8):
            pool.submit(lambda _: (ran_on.append(threading.current_thread().name), done.release()), None)
            assert done.acquire(timeout=5)
            assert eventually(lambda: pool.idle == 4)
        assert len(set(ran_on)) == 1, ran_on
        assert pool.threads == 4
    finally:
        pool.close()
    assert eventually(lambda: pool.threads == 0)


def test_the_pool_is_saturated_only_when_every_thread_runs_and_a_task_waits(release):
    pool = WorkerPool("test-saturated", maximum=2, idle_seconds=5.0)
    started = threading.Semaphore(0)

    def hold(_: object) -> None:
        started.release()
        release.wait(10)

    try:
        assert pool.saturated is False
        pool.submit(hold, None)
        assert started.acquire(timeout=5)
        assert pool.saturated is False, "a thread may still be started"
        pool.submit(hold, None)
        assert started.acquire(timeout=5)
        assert pool.threads == 2
        assert pool.saturated is False, "every thread runs, but no task waits"
        pool.submit(hold, None)
        assert pool.threads == 2, "never more threads than the maximum"
        assert pool.saturated is True
    finally:
        release.set()
        pool.close()
    assert eventually(lambda: pool.threads == 0)


def test_a_task_handed_to_an_idle_thread_does_not_make_the_pool_saturated(release):
    """Saturated means a task waits for a thread: a connection's thread then stops lingering for its peer.
    A task that an idle thread is about to take waits for nothing; counting it made every thread of a
    full pool give up its connection at each hand-off (the 64-connection cliff)."""
    pool = WorkerPool("test-not-saturated", maximum=2, idle_seconds=5.0)
    started = threading.Semaphore(0)
    try:
        for _ in range(2):
            pool.submit(lambda _: (started.release(), release.wait(10)), None)
        for _ in range(2):
            assert started.acquire(timeout=5)
        release.set()
        assert eventually(lambda: pool.idle == 2)
        release.clear()
        for _ in range(2):  # every thread the pool may start exists; each of these finds one idle
            pool.submit(lambda _: (started.release(), release.wait(10)), None)
            assert pool.saturated is False
        for _ in range(2):
            assert started.acquire(timeout=5)
        pool.submit(lambda _: None, None)
        assert pool.saturated is True, "now a task waits for a busy thread"
    finally:
        release.set()
        pool.close()
    assert eventually(lambda: pool.threads == 0)


def test_pool_threads_are_daemons_named_after_the_pool(release):
    pool = WorkerPool("test-daemons", maximum=2, idle_seconds=5.0)
    started = threading.Semaphore(0)
    try:
        for _ in range(2):
            pool.submit(lambda _: (started.release(), release.wait(10)), None)
        assert started.acquire(timeout=5) and started.acquire(timeout=5)
        threads = _pool_threads("test-daemons")
        assert sorted(thread.name for thread in threads) == ["test-daemons 1", "test-daemons 2"]
        assert all(thread.daemon for thread in threads), "a stuck task would keep the process alive"
    finally:
        release.set()
        pool.close()
    assert eventually(lambda: pool.threads == 0)


def test_relief_adds_threads_only_when_no_task_finished_since_the_last_look(release):
    pool = WorkerPool("test-relief-look", maximum=1, idle_seconds=5.0)
    started, finished = threading.Semaphore(0), threading.Semaphore(0)

    def hold(_: object) -> None:
        started.release()
        release.wait(10)
        finished.release()

    pool.submit(hold, None)
    try:
        assert started.acquire(timeout=5)
        pool.relieve(ceiling=5)  # nothing waits: nothing added
        assert pool.threads == 1
        for _ in range(3):
            pool.submit(hold, None)
        assert pool.saturated is True
        pool.relieve(ceiling=5)  # three wait, none finished since the last look: one thread each
        assert pool.threads == 4
        for _ in range(3):
            assert started.acquire(timeout=5)
        pool.submit(hold, None)  # every thread holds a task: this one waits
        assert pool.saturated is True, "more threads than the maximum, all busy, and a task waits"
        pool.relieve(ceiling=2)  # a ceiling below the threads running: nothing added
        assert pool.threads == 4
    finally:
        release.set()
        pool.close()
    assert eventually(lambda: pool.threads == 0)


def test_relief_adds_nothing_while_tasks_still_finish(release):
    pool = WorkerPool("test-relief-progress", maximum=1, idle_seconds=5.0)
    step, stepped = threading.Semaphore(0), threading.Semaphore(0)

    def one_step(_: object) -> None:
        step.acquire(timeout=10)
        stepped.release()

    for _ in range(3):
        pool.submit(one_step, None)
    try:
        pool.relieve(ceiling=5)  # the first look: nothing finished yet, tasks wait: stuck
        added = pool.threads
        assert added == 3
        step.release()
        assert stepped.acquire(timeout=5)
        for _ in range(4):  # one for the thread that finished, three wait
            pool.submit(one_step, None)
        pool.relieve(ceiling=10)  # a task finished since the last look: the threads are not stuck
        assert pool.threads == added
    finally:
        for _ in range(10):
            step.release()
        pool.close()
    assert eventually(lambda: pool.threads == 0)


def test_a_closed_pool_drops_the_tasks_still_queued_and_every_thread_ends(release):
    pool = WorkerPool("test-close", maximum=1, idle_seconds=5.0)
    started, ran = threading.Event(), []
    pool.submit(lambda _: (started.set(), release.wait(10)), None)
    assert started.wait(5)
    for n in range(3):
        pool.submit(ran.append, n)
    pool.close()
    with pytest.raises(RuntimeError, match="the pool is closed"):
        pool.submit(ran.append, 99)
    release.set()
    assert eventually(lambda: pool.threads == 0 and not _pool_threads("test-close"))
    assert ran == []


def test_a_failing_task_is_logged_and_its_thread_serves_the_next(caplog):
    pool = WorkerPool("test-failing", maximum=1, idle_seconds=5.0)
    done = threading.Event()

    def fail(_: object) -> None:
        raise ValueError("the task's own error")

    try:
        with caplog.at_level(logging.ERROR, logger="thrift_handshake.pool"):
            pool.submit(fail, None)
            pool.submit(lambda _: done.set(), None)
            assert done.wait(5)
        assert pool.threads == 1
        failed = [r for r in caplog.records if r.name == "thrift_handshake.pool"]
        assert [r.getMessage() for r in failed] == ["a pool task failed"]
        assert failed[0].exc_info[0] is ValueError
    finally:
        pool.close()
    assert eventually(lambda: pool.threads == 0)


def test_an_idle_thread_keeps_nothing_of_its_last_task_alive():
    class Payload:
        pass

    pool = WorkerPool("test-forget", maximum=1, idle_seconds=5.0)
    payload, done = Payload(), threading.Event()
    gone = weakref.ref(payload)
    gc.disable()  # freed by reference counts alone, not by a collection
    try:
        pool.submit(lambda argument: done.set(), payload)
        del payload
        assert done.wait(5)
        assert eventually(lambda: pool.idle == 1)
        assert gone() is None, "the idle thread still holds the last task's argument"
    finally:
        gc.enable()
        pool.close()
    assert eventually(lambda: pool.threads == 0)


def test_an_idle_thread_ends_after_its_idle_seconds_and_a_new_task_starts_another():
    pool = WorkerPool("test-idle-end", maximum=2, idle_seconds=0.2)
    done = threading.Semaphore(0)
    try:
        pool.submit(lambda _: done.release(), None)
        assert done.acquire(timeout=5)
        assert eventually(lambda: pool.threads == 0 and pool.idle == 0 and not _pool_threads("test-idle-end"))
        pool.submit(lambda _: done.release(), None)
        assert done.acquire(timeout=5)
        assert pool.threads == 1
    finally:
        pool.close()
    assert eventually(lambda: pool.threads == 0)


@pytest.fixture(params=[True, False], ids=["epoll", "selector"])
def watch(request) -> Iterator[ReadinessWatch]:
    """A readiness watch on epoll, then on a selector; closed afterwards."""
    watch = ReadinessWatch(use_epoll=request.param)
    yield watch
    watch.close()


@pytest.fixture
def pair() -> Iterator["tuple[socket.socket, socket.socket]"]:
    """A connected socket pair (left, right); closed afterwards."""
    left, right = socket.socketpair()
    with left, right:
        yield left, right


def test_a_descriptor_added_for_good_is_reported_while_it_has_input(watch, pair):
    left, right = pair
    watch.add(left.fileno(), "left", once=False)
    right.send(b"x")
    assert watch.wait(1.0) == ["left"]
    assert watch.wait(1.0) == ["left"], "reported once only"
    left.recv(1)
    assert watch.wait(0.05) == []
    watch.remove(left.fileno(), "left")
    right.send(b"y")
    assert watch.wait(0.05) == []


def test_removing_a_descriptor_reported_once_or_already_closed_is_quiet(watch, pair):
    left, right = pair
    other_left, other_right = socket.socketpair()
    with other_right:
        watch.add(left.fileno(), "left")
        right.send(b"x")
        assert watch.wait(1.0) == ["left"]
        watch.remove(left.fileno(), "left")  # reported once and not re-armed
        watch.add(other_left.fileno(), "other")
        fd = other_left.fileno()
        other_left.close()  # closed behind the watch's back
        watch.remove(fd, "other")
        right.send(b"y")
        assert watch.wait(0.05) == []


def test_many_wake_ups_end_one_wait_and_leave_no_input_behind(watch, pair):
    left, right = pair
    watch.add(left.fileno(), "left")
    for _ in range(10000):  # more than one read of the wake-up socket drains
        watch.wake()
    assert watch.wait(1.0) == []
    sender = threading.Timer(0.3, lambda: right.send(b"x"))
    sender.start()
    assert watch.wait(None) == ["left"], "the wait ended on an old wake-up"
    sender.join()


def test_every_wake_up_ends_the_wait_it_finds(watch):
    for _ in range(3):
        waking = threading.Timer(0.1, watch.wake)
        waking.start()
        started = time.monotonic()
        assert watch.wait(10.0) == []
        assert time.monotonic() - started < 5.0, "a wake-up did not end the wait"
        waking.join()


def _refusing_threads():
    """While in effect, the system refuses every new thread (a stack larger than the address space)."""
    import contextlib

    @contextlib.contextmanager
    def refusing():
        threading.stack_size(1 << 46)
        try:
            yield
        finally:
            threading.stack_size(0)
    return refusing()


def test_a_thread_the_system_refuses_leaves_the_task_to_the_threads_running(release, caplog):
    pool = WorkerPool("test-refused", maximum=3, idle_seconds=5.0)
    started, ran = threading.Event(), []
    try:
        pool.submit(lambda _: (started.set(), release.wait(10)), None)
        assert started.wait(5)
        with caplog.at_level(logging.WARNING, logger="thrift_handshake.pool"), _refusing_threads():
            pool.submit(ran.append, "queued")  # no new thread: the one running takes it when free
        assert pool.threads == 1
        assert [r.getMessage() for r in caplog.records] == [
            "cannot start another pool thread (can't start new thread); 1 serve the queue"]
        release.set()
        assert eventually(lambda: ran == ["queued"])
    finally:
        pool.close()
    assert eventually(lambda: pool.threads == 0)


def test_a_first_thread_the_system_refuses_is_the_callers_error():
    pool = WorkerPool("test-refused-alone", maximum=3, idle_seconds=5.0)
    with _refusing_threads(), pytest.raises(RuntimeError, match="^can't start new thread$"):
        pool.submit(lambda _: None, None)
    assert pool.threads == 0
    pool.close()


def test_by_default_an_idle_thread_ends_after_five_seconds():
    pool = WorkerPool("test-idle-default", maximum=1)
    finished = []
    try:
        pool.submit(lambda _: finished.append(time.monotonic()), None)  # then the thread is idle
        assert eventually(lambda: pool.threads == 0, timeout=10.0)
        ended = time.monotonic() - finished[0]
    finally:
        pool.close()
    assert 5.0 <= ended < 5.9, ended


def test_a_wait_without_timeout_lasts_until_input_comes(watch, pair):
    left, right = pair
    watch.add(left.fileno(), left, once=False)
    assert watch.wait(0) == []  # the selector's wake-up for the add, read
    sender = threading.Timer(1.2, lambda: right.sendall(b"x"))  # after more than a second
    sender.start()
    try:
        assert watch.wait(None) == [left]
    finally:
        sender.join()



def test_a_descriptor_two_waits_reported_at_once_is_unregistered_by_one_without_failing_the_other(pair):
    """Two waits on the selector interleave (made to happen here by a second wait from inside the first's
    select): both saw the once-only descriptor; the first unregisters it, the second finds it gone."""
    left, right = pair
    watch = ReadinessWatch(use_epoll=False)
    try:
        watch.add(left.fileno(), left)  # reported once
        assert watch.wait(0) == []  # the wake-up for the add, read
        right.sendall(b"x")
        selector = watch._selector
        select = selector.select
        inner = []

        def select_and_another_wait(timeout=None):
            events = select(timeout)
            if not inner:
                inner.append(None)
                inner.append(watch.wait(0))
            return events

        selector.select = select_and_another_wait
        assert watch.wait(1) == [left]
        assert inner[1] == [left]
    finally:
        watch.close()
