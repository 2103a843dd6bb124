"""``serve --asyncio --workers N``: each worker runs the asyncio server on the supervisor's socket
(``aio.blocking.BlockingAsyncServer``), and the workers make room for each other as one service. The
threaded workers' eviction tests (tests/test_workers_eviction.py) run here unchanged: this module's
``serve`` fixture starts the workers with ``--asyncio``."""

from __future__ import annotations

import signal
from typing import Callable, Iterator, List

import pytest

from conftest import eventually
from test_prometheus import calls, scrape
from test_prometheus_workers import _metrics_url
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


def test_one_scrape_sums_the_calls_and_sessions_of_every_asyncio_worker(serve) -> None:
    """``--metrics-port`` with asyncio workers: the supervisor's endpoint sums them (as
    tests/test_prometheus_workers.py checks for threaded workers; the connections by phase are the
    threaded server's own, not asked here)."""
    workers = serve("--workers", "2", "--metrics-port", "0")
    url = _metrics_url(workers)
    on_each = workers.clients_on_each_worker()
    for times, client in zip((3, 5), on_each.values()):
        for _ in range(times):
            client.echo("hi")
    opened = len(workers.clients)

    def summed() -> bool:
        samples = scrape(url)
        return calls(samples, "echo", "ok") == 8 and samples.get(("thrift_handshake_sessions_active", ())) == opened

    assert eventually(summed, 10), scrape(url)
    assert calls(scrape(url), "hello", "ok") == opened
    assert workers.stop() == 0
