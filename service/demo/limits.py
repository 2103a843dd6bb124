"""The demo service's own limits: its submit queue and stored results (each also a ``serve`` flag)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ONE_DAY, check_limits, setting

__all__ = ["DemoLimits"]


@dataclass(frozen=True)
class DemoLimits:
    """Bounds on the demo's submit()ted work and the results kept for get_result()."""

    submit_workers: int = setting(4, "threads running submit()ted work", 1024)
    submit_queue: int = setting(1000, "submitted requests that may wait for a worker (more: Overloaded)", 1_000_000)
    submit_per_session: int = setting(250, "unfinished submit()ted requests one client (host, or TLS identity) may hold: its share", 1_000_000)
    submit_queue_bytes: int = setting(256 * 1024 * 1024, "bytes of memory unfinished submit() work may hold (each "
                                      "request as Python holds it: its strings, at least their UTF-8, and its headers)", 2**40)
    result_ttl: float = setting(600.0, "seconds a finished submit() result is kept for get_result()", 7 * ONE_DAY)
    max_results: int = setting(10_000, "finished submit() results kept at most (the oldest go first)", 10_000_000)
    max_wait: float = setting(30.0, "longest get_result() wait the server honours, in seconds", 3600)

    def __post_init__(self) -> None:
        check_limits(self)
