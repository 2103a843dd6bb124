"""Prometheus metrics of a server: an interceptor counts calls, a collector reads what is live at scrape time."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, FrozenSet, Iterator, List, Optional

from ..interceptors import Interceptor
from ..metrics import UNKNOWN_METHOD

if TYPE_CHECKING:
    from ..server import HandshakeServer

__all__ = ["PrometheusMetrics", "missing_client_library"]

#: Call latency buckets in seconds: loopback calls take tens of microseconds, demo work up to seconds.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)


def missing_client_library() -> Optional[str]:
    """Why Prometheus metrics cannot be served here, or None when they can."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return "Prometheus metrics need prometheus-client: pip install 'thrift-handshake[metrics]'"
    return None


class PrometheusMetrics(Interceptor):
    """The metrics of the servers it watches, in its own ``registry``.

    As an interceptor (put it in ``ServerConfig.interceptors``) it counts every call by method and
    outcome (``thrift_handshake_calls_total``) and times it (``thrift_handshake_call_duration_seconds``).
    ``watch(server)`` (before the server starts) adds what is live at each scrape: connections by phase,
    sessions, connections and handshakes so far. Method names the service does not declare are counted
    as ``<unknown>``, so a peer cannot grow the label set.
    """

    observes_handler = True  # a declared error is counted as such, not as "ok"

    def __init__(self, namespace: str = "thrift_handshake") -> None:
        problem = missing_client_library()
        if problem is not None:
            raise RuntimeError(problem)
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self._namespace = namespace
        self._calls = Counter("calls", "Calls the server handled, by method and outcome", ["method", "outcome"],
                              namespace=namespace, registry=self.registry)
        self._latency = Histogram("call_duration_seconds", "From a call's header read to its answer written",
                                  ["method"], namespace=namespace, registry=self.registry, buckets=LATENCY_BUCKETS)
        self._servers: List["HandshakeServer"] = []
        self._methods: FrozenSet[str] = frozenset()
        self._lock = threading.Lock()
        self.registry.register(_Live(self))

    def watch(self, server: "HandshakeServer") -> None:
        """Adds ``server``'s live figures to the metrics, and its methods to the names counted as they are."""
        with self._lock:
            self._servers.append(server)
            self._methods = self._methods | frozenset(server.processor.methods)

    def call_ended(self, call: Any) -> None:
        method = call.method if call.method in self._methods else UNKNOWN_METHOD
        self._calls.labels(method, call.outcome.value).inc()
        if call.duration is not None:
            self._latency.labels(method).observe(call.duration)

    def servers(self) -> List["HandshakeServer"]:
        with self._lock:
            return list(self._servers)

    @property
    def namespace(self) -> str:
        return self._namespace


class _Live:
    """The collector of what is live, read from the watched servers at each scrape."""

    def __init__(self, owner: PrometheusMetrics) -> None:
        self._owner = owner

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        name = self._owner.namespace
        phases = GaugeMetricFamily(f"{name}_connections", "Open connections by phase", labels=["phase"])
        sessions = GaugeMetricFamily(f"{name}_sessions_active", "Sessions established and not ended")
        accepted = CounterMetricFamily(f"{name}_connections_accepted", "Connections accepted since the start")
        handshakes = CounterMetricFamily(f"{name}_handshakes", "hello() answers since the start", labels=["result"])
        by_phase: dict = {}
        totals = [0, 0, 0, 0]
        for server in self._owner.servers():
            for phase, count in server.connection_phases().items():
                by_phase[phase] = by_phase.get(phase, 0) + count
            stats = server.metrics.snapshot()
            for index, value in enumerate((stats.sessions_active, stats.connections_total, stats.handshakes_ok,
                                           stats.handshakes_rejected)):
                totals[index] += value or 0
        for phase, count in sorted(by_phase.items()):
            phases.add_metric([phase], count)
        sessions.add_metric([], totals[0])
        accepted.add_metric([], totals[1])
        handshakes.add_metric(["accepted"], totals[2])
        handshakes.add_metric(["rejected"], totals[3])
        yield from (phases, sessions, accepted, handshakes)

    def describe(self) -> Iterator[Any]:
        return iter(())  # families vary with the phases present; nothing to check at registration


