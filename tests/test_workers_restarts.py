"""``serve --workers``: which dead workers are restarted, and for how long (real processes on 127.0.0.1)."""

from __future__ import annotations

import os
import signal

from test_workers import _kill, flaky_service, serve  # noqa: F401 (serve: the fixture)


def test_every_worker_killed_at_once_is_restarted(serve):
    workers = serve("--workers", "2")
    workers.clients_on_each_worker()  # each serves, so the supervisor has its "serving" note
    for pid in workers.pids:
        _kill(pid)
    restarted = [int(workers.wait_for(r"worker \d+ started: pid (\d+)", count=n).group(1)) for n in (3, 4)]
    assert not set(restarted) & set(workers.pids)
    assert workers.process.poll() is None
    assert workers.connect().echo("after all died") == "after all died"
    assert workers.stop() == 0


def test_a_worker_failing_to_start_beside_one_that_serves_is_restarted_for_as_long_as_the_other_serves(
        serve, tmp_path):
    """Three failed starts in a row stop the service only when no worker serves."""
    flag = flaky_service(tmp_path)
    workers = serve("--workers", "2", "--service", "flaky_service:Handler", "--path", str(tmp_path))
    workers.clients_on_each_worker()  # each serves, so the supervisor has its "serving" note
    flag.touch()
    os.kill(workers.pids[0], signal.SIGKILL)
    # the kill, then three failed starts: each restarted
    delays = [float(workers.wait_for(r"worker 0 .* restarting it in ([\d.]+)s", count=n, timeout=15).group(1))
              for n in (1, 2, 3, 4)]
    assert delays == [0.5, 1.0, 2.0, 4.0]
    assert not workers.matches("no worker can serve")
    assert workers.connect().echo("the other worker") == "the other worker"
    assert workers.stop() == 0


def test_a_service_whose_workers_can_no_longer_start_gives_up_after_three_failed_starts(serve, tmp_path):
    flag = flaky_service(tmp_path)
    workers = serve("--workers", "2", "--service", "flaky_service:Handler", "--path", str(tmp_path))
    workers.clients_on_each_worker()  # each serves, so the supervisor has its "serving" note
    flag.touch()
    for pid in workers.pids:
        _kill(pid)
    assert workers.process.wait(30) == 1
    assert workers.matches(r"no worker can serve: 3 starts failed in a row")
