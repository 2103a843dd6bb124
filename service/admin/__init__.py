"""What an operator sees of a running server, over HTTP on a separate port: Prometheus metrics now.

``PrometheusMetrics`` is an interceptor (calls, outcomes, latency by method) and a collector of what is
live (connections by phase, sessions, handshakes); ``AdminEndpoint`` serves it at ``/metrics``:

    metrics = PrometheusMetrics()
    server = HandshakeServer(handler, ServerConfig(interceptors=[metrics]))
    metrics.watch(server)
    with server, AdminEndpoint(metrics, port=9464):
        ...

The runtime does not import this package; it needs ``prometheus-client`` (``pip install
thrift-handshake[metrics]``).
"""

from .endpoint import AdminEndpoint
from .prometheus import PrometheusMetrics

__all__ = ["AdminEndpoint", "PrometheusMetrics"]
