"""The admin page: what a server is doing now (connections, sessions, methods, the latest calls' timelines),
as JSON (``/admin/state.json``) and as one HTML page that redraws it every second."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Union

from .multiprocess import SummedMetrics
from .prometheus import PrometheusMetrics
from .recent import RecentCalls
from .views import live_state

__all__ = ["admin_state", "PAGE"]

#: Outcomes counted as errors on the page.
_ERRORS = frozenset({"failed", "declared_error"})


def admin_state(metrics: Union[PrometheusMetrics, SummedMetrics], recent: Optional[RecentCalls]) -> Dict[str, Any]:
    """Everything the page shows, now: this process's servers and ``recent``, or with ``SummedMetrics``
    every worker's (``recent`` unused: each worker keeps its own)."""
    live = metrics.live() if isinstance(metrics, SummedMetrics) else live_state(metrics.servers(), recent)
    return {"now": time.time(), **live, "methods": _methods(metrics)}


def _methods(metrics: Union[PrometheusMetrics, SummedMetrics]) -> List[Dict[str, Any]]:
    rows: Dict[str, Dict[str, Any]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            method = sample.labels.get("method")
            if method is None:
                continue
            row = rows.setdefault(method, {"method": method, "calls": 0, "errors": 0, "outcomes": {},
                                           "seconds": 0.0, "timed": 0})
            if sample.name.endswith("_calls_total"):
                outcome = sample.labels["outcome"]
                row["calls"] += int(sample.value)
                row["outcomes"][outcome] = int(sample.value)
                row["errors"] += int(sample.value) if outcome in _ERRORS else 0
            elif sample.name.endswith("_duration_seconds_sum"):
                row["seconds"] = sample.value
            elif sample.name.endswith("_duration_seconds_count"):
                row["timed"] = int(sample.value)
    return [{"method": row["method"], "calls": row["calls"], "errors": row["errors"], "outcomes": row["outcomes"],
             "mean_ms": round(row["seconds"] / row["timed"] * 1e3, 3) if row["timed"] else None}
            for row in sorted(rows.values(), key=lambda row: row["method"])]


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>thrift-handshake admin</title>
<style>
 body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
 h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin-top: 1.6em; }
 table { border-collapse: collapse; } td, th { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: left; }
 th { background: #f3f3f3; } .num { text-align: right; } .muted { color: #888; }
 .lane { position: relative; height: 18px; background: #f7f7f7; width: 640px; margin: 3px 0; }
 .bar { position: absolute; top: 2px; height: 14px; min-width: 3px; border-radius: 2px; }
 .hello { background: #3b78c2; } .goodbye { background: #888; } .call { background: #3a9a5b; }
 .error { background: #c23b3b; } .legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; }
</style>
<link rel="stylesheet" href="admin/static/runit.css"></head>
<body>
<h1>thrift-handshake <span id="service" class="muted"></span></h1>
<div id="summary" class="muted">loading...</div>
<div id="updated" class="muted" data-refreshes="0"></div>
<section id="runit"></section>
<h2>Connections now</h2>
<table id="connections"><thead><tr><th>peer</th><th>phase</th><th>client</th><th>language</th><th>version</th>
<th class="num">age (s)</th><th class="num">calls</th><th>session</th><th>worker</th></tr></thead><tbody></tbody>
</table>
<h2>Methods</h2>
<table id="methods"><thead><tr><th>method</th><th class="num">calls</th><th class="num">errors</th>
<th class="num">mean (ms)</th><th>outcomes</th></tr></thead><tbody></tbody></table>
<h2>Latest sessions, call by call</h2>
<div class="legend muted"><span class="hello"></span>hello<span class="call"></span>call<span class="error"></span>error
<span class="goodbye"></span>goodbye</div>
<div id="timelines"></div>
<script>
"use strict";
function cell(row, text, cls) { const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; }
function fill(id, rows, columns) {
  const body = document.querySelector("#" + id + " tbody"); body.replaceChildren();
  for (const item of rows) { const row = body.insertRow(); for (const [key, cls] of columns) {
    const value = typeof key === "function" ? key(item) : item[key]; cell(row, value == null ? "" : value, cls); } }
}
function timelines(recent) {
  const groups = new Map();
  for (const call of recent) { const key = call.session || call.peer;
    if (!groups.has(key)) groups.set(key, []); groups.get(key).push(call); }
  const box = document.getElementById("timelines"); box.replaceChildren();
  for (const [key, calls] of [...groups].slice(-8).reverse()) {
    const start = calls[0].started, end = Math.max(...calls.map(c => c.started + c.duration_ms / 1000));
    const span = Math.max(end - start, 0.001);
    const title = document.createElement("div"); title.className = "muted";
    title.textContent = calls[0].peer + (calls[0].worker ? "  worker " + calls[0].worker : "") + "  session " + (calls[0].session || "none") + "  " +
      calls.length + " calls in " + (span * 1000).toFixed(1) + " ms";
    const lane = document.createElement("div"); lane.className = "lane";
    for (const call of calls) { const bar = document.createElement("div");
      const kind = call.outcome !== "ok" ? "error" : call.method === "hello" ? "hello" : call.method === "goodbye" ? "goodbye" : "call";
      bar.className = "bar " + kind; bar.title = call.method + ": " + call.outcome + " in " + call.duration_ms + " ms";
      bar.style.left = (100 * (call.started - start) / span) + "%";
      bar.style.width = (100 * (call.duration_ms / 1000) / span) + "%"; lane.appendChild(bar); }
    box.append(title, lane);
  }
}
async function refresh() {
  try {
    // by absolute URL: a relative one inherits user:token@ from the page's, and fetch refuses those
    const state = await (await fetch(new URL("admin/state.json", location.origin + location.pathname),
                                     {cache: "no-store"})).json();
    const server = state.servers[0] || {};
    document.getElementById("service").textContent = (server.service || "") + " on " + (server.address || "") +
      (server.workers ? ", " + server.workers.length + " workers" : "");
    document.getElementById("summary").textContent = "sessions " + server.sessions_active + ", connections " +
      state.connections_open + " open, " + server.connections_total + " since the start; handshakes " +
      server.handshakes_ok + " accepted, " + server.handshakes_rejected + " rejected; up " + server.uptime_s + " s";
    fill("connections", state.connections, [["peer"], ["phase"], ["client_name"], ["language"], ["version"],
      ["age_seconds", "num"], ["calls", "num"], ["session_id", "muted"], ["worker", "muted"]]);
    fill("methods", state.methods, [["method"], ["calls", "num"], ["errors", "num"], ["mean_ms", "num"],
      [m => Object.entries(m.outcomes).map(([k, v]) => k + " " + v).join(", "), "muted"]]);
    timelines(state.recent);
    const updated = document.getElementById("updated"), count = Number(updated.dataset.refreshes) + 1;
    updated.dataset.refreshes = count;
    updated.textContent = "live: read " + count + " times, last at " + new Date(state.now * 1000).toLocaleTimeString();
  } catch (error) { document.getElementById("summary").textContent = "cannot read the server's state: " + error; }
}
refresh(); setInterval(refresh, 1000);
</script>
<script src="admin/static/runit.js"></script>
</body></html>
"""
