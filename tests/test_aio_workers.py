"""``serve --asyncio --workers N``: each worker runs the asyncio server on the supervisor's socket
(``aio.blocking.BlockingAsyncServer``), and the workers make room for each other as one service. The
threaded workers' eviction tests (tests/test_workers_eviction.py) and the summed metrics' scrape
(tests/test_prometheus_workers.py) run here unchanged: this module's
``serve`` fixture starts the workers with ``--asyncio``."""

from __future__ import annotations

import signal
from typing import Callable, Iterator, List

import pytest

from test_prometheus_workers import test_one_scrape_sums_the_calls_and_sessions_of_every_worker  # noqa: F401
from test_workers import Workers
from test_workers_eviction import (  # noqa: F401 (run here against asyncio workers)
    test_a_newcomer_is_not_refused_while_a_sibling_holds_a_silent_connection,
    test_the_service_wide_limit_holds_while_the_workers_make_room)


@pytest.fixture
def serve() -> Iterator[Callable[..., Workers]]:
    """test_workers' ``serve(*flags)``, every worker on the asyncio server."""
    started: List[Workers] = []

    def start(*flags: str) -> Workers:
        workers = Workers("--asyncio", *flags)
        started.append(workers)
        return workers

    yield start
    for workers in started:
        workers.kill()


def test_serve_asyncio_with_workers_serves_from_each_and_stops_on_sigterm(serve) -> None:
    started = serve("--workers", "2", "--grace", "5")
    assert len(started.matches(r"thrift_handshake\.aio\[\d+\]: listening on .* asyncio=")) == 2
    clients = started.clients_on_each_worker()
    for pid, client in clients.items():
        assert client.echo(f"from {pid}") == f"from {pid}"
    stats = next(iter(clients.values())).stats()
    assert stats.sessions_active == len(started.clients)  # summed across the workers
    assert started.stop(signal.SIGTERM) == 0
    started.wait_for(r"worker 0 \(pid \d+\) exited with code 0")
    started.wait_for(r"worker 1 \(pid \d+\) exited with code 0")
