"""The demo service's own limits: its submit queue and stored results (each also a ``serve`` flag)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import check_positive, setting

__all__ = ["DemoLimits"]


@dataclass(frozen=True)
class DemoLimits:
    """Bounds on the demo's submit()ted work and the results kept for get_result()."""

    submit_workers: int = setting(4, "threads running submit()ted work")
    submit_queue: int = setting(1000, "submitted requests that may wait for a worker (more: Overloaded)")
    submit_queue_bytes: int = setting(256 * 1024 * 1024, "request bytes unfinished submit() work may hold")
    result_ttl: float = setting(600.0, "seconds a finished submit() result is kept for get_result()")
    max_results: int = setting(10_000, "finished submit() results kept at most (the oldest go first)")
    max_wait: float = setting(30.0, "longest get_result() wait the server honours, in seconds")

    def __post_init__(self) -> None:
        check_positive(self)
