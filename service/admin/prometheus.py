"""Prometheus metrics of a server: an interceptor counts calls, a collector reads what is live at scrape time."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, Iterator, List, Optional, Tuple

from ..interceptors import Interceptor
from ..metrics import UNKNOWN_METHOD
from ..session import REFUSAL_KINDS

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
    sessions, connections and handshakes so far (refusals by reason), bytes in and out, and the gauges
    the hosted service adds (``server.metrics.add_gauge``). Method names the service does not declare are counted
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
        self._high_received = self._high_sent = 0
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

    def live_families(self) -> List[Any]:
        """What the watched servers hold now, as metric families: connections by phase, sessions,
        connections accepted, handshakes (refused ones by reason), bytes in and out, and the hosted
        services' own gauges (``ServerMetrics.add_gauge``)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        name = self._namespace
        phases = GaugeMetricFamily(f"{name}_connections", "Open connections by phase", labels=["phase"])
        sessions = GaugeMetricFamily(f"{name}_sessions_active", "Sessions established and not ended")
        accepted = CounterMetricFamily(f"{name}_connections_accepted", "Connections accepted since the start")
        handshakes = CounterMetricFamily(f"{name}_handshakes", "hello() answers since the start", labels=["result"])
        refused = CounterMetricFamily(f"{name}_handshakes_rejected_by_reason", "hello() refusals since the start "
                                      "by reason: auth (token), version, already_open, invalid", labels=["reason"])
        received = CounterMetricFamily(f"{name}_received_bytes", "Bytes received on TCP connections, open or closed")
        sent = CounterMetricFamily(f"{name}_sent_bytes", "Bytes sent on TCP connections, open or closed")
        by_phase: Dict[str, int] = {}
        by_reason: Dict[str, int] = dict.fromkeys(REFUSAL_KINDS, 0)
        gauges: Dict[str, Tuple[str, float]] = {}
        totals = [0, 0, 0, 0, 0, 0]
        for server in self.servers():
            connection_phases = getattr(server, "connection_phases", None)  # (a server without it: none)
            for phase, count in ({} if connection_phases is None else connection_phases()).items():
                by_phase[phase] = by_phase.get(phase, 0) + count
            metrics = server.metrics
            stats = metrics.local_snapshot(earlier=False)  # this process's own: workers' are summed elsewhere
            bytes_now = getattr(server, "bytes_now", None)
            moved = (0, 0) if bytes_now is None else bytes_now()
            for index, value in enumerate((stats.sessions_active, stats.connections_total, stats.handshakes_ok,
                                           stats.handshakes_rejected, *moved)):
                totals[index] += value or 0
            for reason, count in dict(metrics.rejected_by).items():
                by_reason[reason] = by_reason.get(reason, 0) + count
            for gauge, (documentation, read) in metrics.gauges().items():
                gauges[gauge] = (documentation, gauges.get(gauge, ("", 0.0))[1] + read())
        for phase, count in sorted(by_phase.items()):
            phases.add_metric([phase], count)
        sessions.add_metric([], totals[0])
        accepted.add_metric([], totals[1])
        handshakes.add_metric(["accepted"], totals[2])
        handshakes.add_metric(["rejected"], totals[3])
        for reason, count in sorted(by_reason.items()):
            refused.add_metric([reason], count)
        with self._lock:  # counters never go back, though a connection closing during a scrape may be missed once
            self._high_received = max(self._high_received, totals[4])
            self._high_sent = max(self._high_sent, totals[5])
            received.add_metric([], self._high_received)
            sent.add_metric([], self._high_sent)
        families = [phases, sessions, accepted, handshakes, refused, received, sent]
        for gauge, (documentation, value) in sorted(gauges.items()):
            family = GaugeMetricFamily(f"{name}_{gauge}", documentation)
            family.add_metric([], value)
            families.append(family)
        return families

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
        return iter(self._owner.live_families())

    def describe(self) -> Iterator[Any]:
        return iter(())  # families vary with the phases present; nothing to check at registration
