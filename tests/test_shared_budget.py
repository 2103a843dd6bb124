"""One decoded-size budget for every worker process (``serve --workers``): what one worker's requests
hold counts in the others' decisions, and a dead worker's holdings are freed (no sockets)."""

from __future__ import annotations

import os

from thrift_handshake.shared_budget import DecodedArea, SharedDecodedBudget


def _in_child(action) -> int:
    """Runs ``action()`` in a forked child (as a worker runs); its exit code."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = action()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_workers_share_one_total_and_one_share_per_host():
    area = DecodedArea(slots=2)
    first = SharedDecodedBudget(1000, 0.5, area, slot=0)
    assert first.reserve("10.0.0.1", 400) is None

    def other_worker() -> int:  # sees what the first holds: the host is held to its share, all to the total
        budget = SharedDecodedBudget(1000, 0.5, area, slot=1)
        refused = budget.reserve("10.0.0.1", 200)
        if refused is None or "this client host's requests in flight hold" not in refused:
            return 3
        return 0 if budget.reserve("10.0.0.2", 500) is None else 4

    assert _in_child(other_worker) == 0
    assert first.used == 900 and first.allowance("10.0.0.1") == 100 and first.allowance("10.0.0.3") == 100
    first.release("10.0.0.1", 400)
    assert first.used == 500 and first.allowance("10.0.0.2") == 0


def test_a_dead_worker_s_holdings_are_freed_when_the_supervisor_retires_its_slot():
    area = DecodedArea(slots=2)
    assert _in_child(lambda: 0 if SharedDecodedBudget(1000, 1.0, area, 1).reserve("10.0.0.1", 900) is None else 3) == 0
    here = SharedDecodedBudget(1000, 1.0, area, slot=0)
    assert here.used == 900 and here.reserve("10.0.0.2", 200) is not None  # the child died holding it
    area.retire(1)
    assert here.used == 0 and here.reserve("10.0.0.2", 200) is None


def test_a_worker_holding_for_many_hosts_keeps_counting_right():
    area = DecodedArea(slots=1)
    budget = SharedDecodedBudget(10**9, 1.0, area, slot=0)
    hosts = [f"10.0.{index // 256}.{index % 256}" for index in range(1000)]
    for host in hosts:
        assert budget.reserve(host, 100) is None
    assert budget.used == 100_000 and budget.allowance(hosts[-1]) == 10**9 - 100_000
    for host in hosts[:999]:
        budget.release(host, 100)
    assert budget.used == 100 and budget._holdings(hosts[-1]) == (100, 100)
