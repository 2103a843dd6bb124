"""``serve --workers``: the grace period a stop gives the calls in flight (real processes on 127.0.0.1)."""

from __future__ import annotations

import signal
import threading
import time
from typing import List

from test_workers import Workers, _alive, _try, serve  # noqa: F401 (serve: the fixture)

from thrift_handshake_gen.ttypes import Request


def test_a_call_longer_than_a_third_of_the_grace_period_still_gets_its_answer(serve):
    """The workers are killed only after the whole grace period (and their time to unwind), not before."""
    workers = serve("--workers", "2", "--grace", "6")
    client = workers.connect()
    outcome: List[object] = []
    thread = threading.Thread(target=lambda: outcome.append(_try(client.process, Request(request_id="slow",
                                                                                        work_ms=3500))))
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
