"""What an operator sees of a running server, over HTTP on a separate port: Prometheus metrics and the
admin page.

``PrometheusMetrics`` is an interceptor (calls, outcomes, latency by method) and a collector of what is
live (connections by phase, sessions, handshakes); ``RecentCalls`` keeps the latest calls for the page's
timelines; ``AdminEndpoint`` serves ``/metrics``, the page at ``/`` and its data at ``/admin/state.json``:

    metrics, recent = PrometheusMetrics(), RecentCalls()
    server = HandshakeServer(handler, ServerConfig(interceptors=[metrics, recent]))
    metrics.watch(server)
    with server, AdminEndpoint(metrics, port=9464, recent=recent):
        ...

The runtime does not import this package; it needs ``prometheus-client`` (``pip install
thrift-handshake[metrics]``).
"""

from .endpoint import AdminEndpoint
from .prometheus import PrometheusMetrics
from .recent import RecentCalls

__all__ = ["AdminEndpoint", "PrometheusMetrics", "RecentCalls"]
