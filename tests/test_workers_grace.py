"""``serve --workers``: the grace period a stop gives the calls in flight (real processes on 127.0.0.1)."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import List

from test_workers import _alive, _try, serve  # noqa: F401 (serve: the fixture)

from thrift_handshake_gen.ttypes import Request


def test_a_call_longer_than_a_third_of_the_grace_period_still_gets_its_answer(serve):
    """The workers are killed only after the whole grace period and their time to unwind (3 s), not before."""
    workers = serve("--workers", "2", "--grace", "6")
    client = workers.connect()
    outcome: List[object] = []
    thread = threading.Thread(target=lambda: outcome.append(_try(client.process, Request(request_id="slow",
                                                                                        work_ms=4500))))
    thread.start()
    time.sleep(0.5)  # the call is in flight (ordering only: what is checked is its answer)
    workers.process.send_signal(signal.SIGTERM)
    thread.join(15)
    assert workers.process.wait(15) == 0
    assert getattr(outcome[0], "request_id", outcome[0]) == "slow"
    assert not any(map(_alive, workers.pids))
    assert not workers.matches("still running after its grace period")
    clean_exits = r" INFO thrift_handshake\.workers\[\d+\]: worker \d+ \(pid \d+\) exited with code 0$"
    assert len(workers.matches(clean_exits)) == 2, workers.lines[-10:]


def test_a_worker_killed_during_the_grace_period_makes_the_stop_unclean(serve):
    workers = serve("--workers", "2", "--grace", "30")
    client = workers.connect()
    pid = workers.pid_of(client)
    thread = threading.Thread(target=_try, args=(client.process, Request(request_id="long", work_ms=10_000)))
    thread.start()
    workers.process.send_signal(signal.SIGTERM)
    workers.wait_for("stopping 2 workers")
    os.kill(pid, signal.SIGKILL)
    assert workers.process.wait(15) == 1
    thread.join(15)
    assert workers.matches(r" WARNING thrift_handshake\.workers\[\d+\]: worker \d+ \(pid %d\) killed by SIGKILL" % pid)


def test_a_worker_that_outlives_the_grace_period_is_killed_its_unwinding_time_after_it(serve):
    """Killed ``grace`` + 3 s after the stop (here 2 + 3), not sooner, not later, and not never."""
    workers = serve("--workers", "2", "--grace", "2")
    stuck = workers.pids[0]
    os.kill(stuck, signal.SIGSTOP)  # it can neither drain nor exit
    started = time.monotonic()
    workers.process.send_signal(signal.SIGTERM)
    workers.wait_for(r" WARNING thrift_handshake\.workers\[\d+\]: worker \d+ \(pid %d\) still running after its "
                     r"grace period: killed$" % stuck, timeout=15)
    took = time.monotonic() - started
    assert workers.process.wait(15) == 1
    assert 4.8 <= took < 5.9, took


def test_after_a_second_signal_a_stuck_worker_is_killed_its_unwinding_time_after_that_signal(serve):
    """Not at the end of the first signal's grace period (here 30 s + 3 s), nor at once."""
    workers = serve("--workers", "2", "--grace", "30")
    stuck = workers.pids[0]
    os.kill(stuck, signal.SIGSTOP)  # it can neither drain nor exit
    workers.process.send_signal(signal.SIGTERM)
    workers.wait_for("stopping 2 workers")
    started = time.monotonic()
    workers.process.send_signal(signal.SIGINT)
    workers.wait_for("second signal")
    workers.process.send_signal(signal.SIGTERM)  # a third: nothing more to do (the stuck worker keeps it alive)
    workers.wait_for(r" WARNING thrift_handshake\.workers\[\d+\]: worker \d+ \(pid %d\) still running after its "
                     r"grace period: killed$" % stuck, timeout=15)
    took = time.monotonic() - started
    assert workers.process.wait(15) == 1
    assert 2.9 <= took < 15, took
    assert len(workers.matches("second signal")) == 1
