"""The admin page under ``serve --workers 2 --metrics-port 0``, on real processes: the supervisor's page shows
every worker's connections and latest calls (which worker holds each), drops a dead worker's, and its "run it"
panel runs the handshake from headless Chromium against the port the workers share."""

from __future__ import annotations

import json
import os
import re
import signal
import urllib.request
from typing import Any, Dict

import pytest

from conftest import eventually
from browser import Page
from test_admin_runit import _STATE, _ROWS, built_client  # noqa: F401 (a fixture)
from test_workers import Workers, serve  # noqa: F401 (a fixture)


def _page_url(workers: Workers) -> str:
    return workers.wait_for(r"the admin page on (http://127\.0\.0\.1:\d+/)").group(1)


def _state(page_url: str) -> Dict[str, Any]:
    with urllib.request.urlopen(page_url + "admin/state.json", timeout=5) as answer:
        return json.load(answer)


@pytest.mark.parametrize("flags", [(), ("--asyncio",)], ids=["threads", "asyncio"])
def test_the_page_shows_every_worker_s_connections_and_calls_and_which_worker(serve, flags):  # noqa: F811
    workers: Workers = serve("--workers", "2", "--metrics-port", "0", *flags)
    page_url = _page_url(workers)
    on_each = workers.clients_on_each_worker()
    for times, client in zip((1, 2), on_each.values()):
        for _ in range(times):
            client.echo("seen")
    opened = {client.session_id: workers.pid_of(client) for client in workers.clients}

    def shown() -> bool:
        state = _state(page_url)
        return ({row["session_id"]: row["worker"] for row in state["connections"]} == opened
                and sum(row["method"] == "echo" for row in state["recent"]) == 3)

    assert eventually(shown, 10), _state(page_url)
    state = _state(page_url)
    assert state["connections_open"] == len(opened)
    for row in state["connections"]:
        assert (row["client_name"], row["language"], row["version"]) == ("thrift-handshake-python", "python", 2), row
        assert row["phase"] in ("WAITING", "SERVING") and row["age_seconds"] >= 0
        assert re.fullmatch(r"127\.0\.0\.1:\d+", row["peer"])
    by_session = {row["session_id"]: row for row in state["connections"]}
    for times, client in zip((1, 2), on_each.values()):
        assert by_session[client.session_id]["calls"] == 1 + times  # hello and the echoes
    echoes = [(call["session"], call["worker"]) for call in state["recent"] if call["method"] == "echo"]
    expected = [(client.session_id, pid) for times, (pid, client) in zip((1, 2), on_each.items()) for _ in range(times)]
    assert sorted(echoes) == sorted(expected)
    [server] = state["servers"]
    assert sorted(server["workers"]) == sorted(workers.pids)
    assert server["address"] == f"127.0.0.1:{workers.port}"
    # the service's counts: every worker's, as each published them last (SharedStats)
    assert eventually(lambda: _state(page_url)["servers"][0]["sessions_active"] == len(opened), 10)
    assert state["runit"] == {"host": "127.0.0.1", "port": workers.port, "path": "/", "https": False,
                              "token_required": False, "client": "admin/js/thrift-handshake.js"}

    victim = next(iter(on_each))
    directory = workers.wait_for(r"metrics of every worker summed from (\S+)").group(1)
    assert os.path.exists(os.path.join(directory, f"admin-view-{victim}.json"))
    os.kill(victim, signal.SIGKILL)
    workers.wait_for(r"worker \d \(pid %d\) killed by SIGKILL" % victim)
    state = _state(page_url)  # dropped when the supervisor reaped it, before it logged so
    assert victim not in {row["worker"] for row in state["connections"]}
    assert victim not in {call["worker"] for call in state["recent"]}
    assert {row["session_id"] for row in state["connections"]} == {
        session for session, pid in opened.items() if pid != victim}
    assert not os.path.exists(os.path.join(directory, f"admin-view-{victim}.json"))
    workers.stop()


def test_before_any_worker_wrote_its_view_the_panel_says_so(tmp_path):
    from thrift_handshake.admin.views import merged_views

    assert merged_views(str(tmp_path)) == {"servers": [], "connections": [], "connections_open": 0, "recent": [],
                                           "runit": {"unavailable": "no worker serves yet"}}


@pytest.mark.parametrize("flags", [(), ("--asyncio",)], ids=["threads", "asyncio"])
def test_chromium_runs_it_against_the_workers_and_the_page_shows_that_session(serve, built_client, flags):  # noqa: F811
    workers: Workers = serve("--workers", "2", "--metrics-port", "0", *flags)
    page_url = _page_url(workers)
    for url in (page_url, page_url.replace("127.0.0.1", "localhost")):
        with Page(url) as page:
            page.wait_for(f"{_STATE} === 'ready'")
            assert page.evaluate("document.getElementById('runit-target').textContent") == \
                f"http://127.0.0.1:{workers.port}/"
            page.evaluate("document.getElementById('runit-run').click()")
            state = page.wait_for(f"{_STATE} !== 'running' && {_STATE}")
            assert state == "done", page.evaluate("document.getElementById('runit-status').textContent")
            rows = page.evaluate(_ROWS)
            assert [row["call"] for row in rows] == ["TCP", "hello", "process", "submit", "get_result", "goodbye"]
            session = re.fullmatch(r"session (\S+), version 2, server \S+", rows[1]["result"]).group(1)
            # the live part of the page: the browser's session in the timelines, with its worker
            page.wait_for(f"document.getElementById('timelines').textContent.includes({json.dumps(session)})")
            title = page.evaluate(f"[...document.querySelectorAll('#timelines div.muted')].map(d => d.textContent)"
                                  f".find(t => t.includes({json.dumps(session)}))")
            worker = int(re.search(r"worker (\d+)", title).group(1))
            assert worker in workers.pids
            assert page.evaluate("document.getElementById('service').textContent").endswith(", 2 workers")
        calls = [(call["method"], call["outcome"], call["worker"]) for call in _state(page_url)["recent"]
                 if call["session"] == session]
        # one browser connection, kept alive: the whole session on one worker (submit's ticket is shared anyway)
        assert [call[:2] for call in calls] == [("hello", "ok"), ("process", "ok"), ("submit", "ok"),
                                                ("get_result", "ok"), ("goodbye", "ok")]
        assert {call[2] for call in calls} == {worker}
    assert workers.stop() == 0
