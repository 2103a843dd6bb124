"""Prometheus metrics summed across ``--workers``: prometheus_client's multiprocess mode.

Each worker writes its metrics to files of its own in one directory (``use_directory``, before the
workers fork): the calls and their latency as they happen, what is live (connections by phase,
sessions, handshakes, bytes, the service's gauges) mirrored every ``PUBLISH_EVERY`` seconds by a
``WorkerPublisher``, which also writes there what the admin page shows of the worker (its connections
and latest calls: ``views``). The supervisor serves their sum (``SummedMetrics``, read at each scrape)
and every worker's page view merged, and drops a dead worker's live figures and view (``worker_gone``);
the counts it made stay in the sum.

    directory = tempfile.mkdtemp()
    use_directory(directory)                   # in the supervisor, before anything is forked
    with AdminEndpoint(SummedMetrics(directory), port=9464):
        Supervisor(build, config, workers=4, worker_gone=lambda pid: worker_gone(pid, directory)).run()
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Dict, List, Optional, Tuple

from .prometheus import PrometheusMetrics
from .recent import RecentCalls
from .views import drop_view, merged_views, worker_view, write_view

__all__ = ["PUBLISH_EVERY", "SummedMetrics", "WorkerPublisher", "use_directory", "worker_gone"]

logger = logging.getLogger(__name__)

#: How often a worker mirrors its live figures into its files (a scrape sees them at most this old).
PUBLISH_EVERY = 0.5
#: The environment variable prometheus_client reads in every process of the service.
DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def use_directory(directory: str) -> None:
    """Makes this process, and every process it forks from now on, keep its metrics in files under
    ``directory`` (even when prometheus_client was imported before, which decides it at import)."""
    os.environ[DIRECTORY_VARIABLE] = directory
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


def worker_gone(pid: int, directory: str) -> None:
    """Supervisor: the worker ``pid`` has died; its live gauges and its connections leave the sum and the
    page (its counts stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)
    drop_view(directory, pid)


class SummedMetrics:
    """What the supervisor serves: every worker's metrics summed from their files at each scrape.

    Stands where an ``AdminEndpoint`` expects a ``PrometheusMetrics``: ``registry`` and ``namespace``;
    it watches no server in this process (``servers()`` is empty): the admin page's connections and
    latest calls are the workers' views (``live()``).
    """

    def __init__(self, directory: str, namespace: str = "thrift_handshake") -> None:
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        self.registry = CollectorRegistry()
        self.namespace = namespace
        self.directory = directory
        MultiProcessCollector(self.registry, path=directory)

    def servers(self) -> List[Any]:
        return []

    def live(self) -> Dict[str, Any]:
        """Every live worker's servers, connections and latest calls, merged (``views.merged_views``)."""
        return merged_views(self.directory)


class WorkerPublisher:
    """In a worker: mirrors ``metrics``' live figures into this process's files every ``every``
    seconds, on a daemon thread, from ``start()`` on. Gauges are summed over the live workers
    (``livesum``); counters grow by what the worker counted since its last publication. With
    ``directory``, it writes the worker's admin page view there too (its connections, and ``recent``'s
    calls)."""

    def __init__(self, metrics: PrometheusMetrics, every: float = PUBLISH_EVERY, directory: Optional[str] = None,
                 recent: Optional[RecentCalls] = None) -> None:
        self._metrics = metrics
        self._directory = directory
        self._recent = recent
        self._every = every
        self._gauges: Dict[str, Any] = {}
        self._counters: Dict[str, Any] = {}
        self._published: Dict[Tuple[str, Tuple[str, ...]], float] = {}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "WorkerPublisher":
        self.publish()
        self._thread = threading.Thread(target=self._run, name="metrics-publisher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Publishes no more; returns once a publication under way has ended (its files are written:
        the directory can be removed)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.publish()
            except Exception:  # a failed mirror must not end the thread: the next one may work
                logger.exception("publishing the worker's live metrics failed")

    def publish(self) -> None:
        """Writes the live figures (and the page's view) now."""
        if self._directory is not None:
            write_view(self._directory, worker_view(self._metrics.servers(), self._recent))
        for family in self._metrics.live_families():
            for sample in family.samples:
                names = tuple(sorted(sample.labels))
                values = tuple(sample.labels[name] for name in names)
                if family.type == "counter":
                    if not sample.name.endswith("_total"):
                        continue  # e.g. _created
                    key = (family.name, values)
                    delta = sample.value - self._published.get(key, 0.0)
                    if delta > 0:
                        counter = self._metric(self._counters, family, names)
                        (counter.labels(*values) if names else counter).inc(delta)
                        self._published[key] = sample.value
                else:
                    gauge = self._metric(self._gauges, family, names)
                    (gauge.labels(*values) if names else gauge).set(sample.value)

    @staticmethod
    def _metric(made: Dict[str, Any], family: Any, labels: Tuple[str, ...]) -> Any:
        metric = made.get(family.name)
        if metric is None:
            from prometheus_client import Counter, Gauge

            if family.type == "counter":
                metric = Counter(family.name, family.documentation, labels, registry=None)
            else:
                metric = Gauge(family.name, family.documentation, labels, registry=None, multiprocess_mode="livesum")
            made[family.name] = metric
        return metric
