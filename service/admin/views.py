"""The live part of the admin page: the servers, their open connections, the latest calls, and where the
"run it" panel calls. Read from this process's servers (``live_state``); under ``--workers``, each worker
writes its own into the metrics directory (``write_view``, with its metrics' ``WorkerPublisher``) and the
supervisor merges every live worker's at each request (``merged_views``), dropping a dead one's
(``drop_view``)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from .recent import RecentCalls
from .runit import runit_target

if TYPE_CHECKING:
    from ..server import HandshakeServer

__all__ = ["live_state", "worker_view", "write_view", "drop_view", "merged_views", "RECENT_SHOWN"]

logger = logging.getLogger(__name__)

#: The latest calls the page gets (its timelines draw the last sessions among them).
RECENT_SHOWN = 120
#: The connections one worker writes at most (its count of open ones is written whole).
MAX_CONNECTIONS = 500

_PREFIX, _SUFFIX = "admin-view-", ".json"


def live_state(servers: List["HandshakeServer"], recent: Optional[RecentCalls]) -> Dict[str, Any]:
    """What ``servers`` (in this process) hold now, and ``recent``'s latest calls."""
    rows, connections = [], []
    for server in servers:
        stats = server.metrics.snapshot()
        host, port = server.address
        rows.append({"address": f"{host}:{port}", "service": server.service_name,
                     "sessions_active": stats.sessions_active, "connections_total": stats.connections_total,
                     "handshakes_ok": stats.handshakes_ok, "handshakes_rejected": stats.handshakes_rejected,
                     "uptime_s": round((stats.uptime_ms or 0) / 1000, 1)})
        connections += [{**dataclasses.asdict(info), "age_seconds": round(info.age_seconds, 1)}
                        for info in server.connections_now()]
    return {"servers": rows, "connections": connections, "connections_open": len(connections),
            "recent": [] if recent is None else recent.calls()[-RECENT_SHOWN:], "runit": runit_target(servers)}


def worker_view(servers: List["HandshakeServer"], recent: Optional[RecentCalls]) -> Dict[str, Any]:
    """``live_state`` as one worker writes it: its pid, when, and at most ``MAX_CONNECTIONS`` connections."""
    view = live_state(servers, recent)
    view["connections"] = view["connections"][:MAX_CONNECTIONS]
    return {**view, "pid": os.getpid(), "written": time.time()}


def _path(directory: str, pid: int) -> Path:
    return Path(directory) / f"{_PREFIX}{pid}{_SUFFIX}"


def write_view(directory: str, view: Dict[str, Any]) -> None:
    """Replaces this worker's view in ``directory`` whole (a reader never sees half of one)."""
    final = _path(directory, view["pid"])
    partial = final.with_name("." + final.name)
    partial.write_text(json.dumps(view), encoding="utf-8")
    os.replace(partial, final)


def drop_view(directory: str, pid: int) -> None:
    """Supervisor: the worker ``pid`` has died; its connections and calls leave the page."""
    final = _path(directory, pid)
    for path in (final, final.with_name("." + final.name)):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def merged_views(directory: str) -> Dict[str, Any]:
    """Every worker's view in ``directory`` as one ``live_state``: connections (with their ``worker`` pid,
    aged to now) oldest first, the latest calls of all, the service's row (its counts are the workers'
    sums already) with the workers' pids, and where the panel calls (the port they all serve)."""
    views = []
    for path in sorted(Path(directory).glob(f"{_PREFIX}*{_SUFFIX}")):
        try:
            views.append(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:  # the worker died meanwhile
            continue
    now = time.time()
    connections = [{**connection, "worker": view["pid"],
                    "age_seconds": round(connection["age_seconds"] + max(0.0, now - view["written"]), 1)}
                   for view in views for connection in view["connections"]]
    connections.sort(key=lambda connection: -connection["age_seconds"])
    recent = sorted(({**call, "worker": view["pid"]} for view in views for call in view["recent"]),
                    key=lambda call: call["started"])[-RECENT_SHOWN:]
    newest = max(views, key=lambda view: view["written"], default=None)
    pids = [view["pid"] for view in views]
    return {"servers": [] if newest is None else [{**row, "workers": pids} for row in newest["servers"]],
            "connections": connections, "connections_open": sum(view["connections_open"] for view in views),
            "recent": recent,
            "runit": {"unavailable": "no worker serves yet"} if newest is None else newest["runit"]}
