"""``serve --workers 2 --metrics-port 0`` on real processes: one scrape of the supervisor's endpoint
shows every worker's calls, sessions and connections summed (prometheus_client's multiprocess mode),
read with prometheus_client's own text-format parser."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request

from conftest import eventually
from test_prometheus import calls, scrape
from test_workers import Workers, serve  # noqa: F401 (a fixture)


def _metrics_url(workers: Workers) -> str:
    return workers.wait_for(r"metrics on (http://127\.0\.0\.1:\d+/metrics)").group(1)


def test_one_scrape_sums_the_calls_and_sessions_of_every_worker(serve):  # noqa: F811
    workers: Workers = serve("--workers", "2", "--metrics-port", "0")
    url = _metrics_url(workers)
    on_each = workers.clients_on_each_worker()
    assert len(on_each) == 2
    for times, client in zip((3, 5), on_each.values()):
        for _ in range(times):
            client.echo("hi")
    opened = len(workers.clients)

    def summed() -> bool:
        samples = scrape(url)
        return (calls(samples, "echo", "ok") == 8 and samples.get(("thrift_handshake_sessions_active", ())) == opened)

    assert eventually(summed, 10), scrape(url)
    samples = scrape(url)
    assert calls(samples, "hello", "ok") == opened
    assert samples[("thrift_handshake_call_duration_seconds_count", (("method", "echo"),))] == 8
    assert samples[("thrift_handshake_handshakes_total", (("result", "accepted"),))] == opened
    assert samples[("thrift_handshake_connections_accepted_total", ())] == opened
    phases = {dict(labels)["phase"]: value for (name, labels), value in samples.items()
              if name == "thrift_handshake_connections"}
    assert sum(phases.values()) == opened
    assert samples[("thrift_handshake_received_bytes_total", ())] > 0
    assert samples[("thrift_handshake_submit_queue_tickets", ())] == 0  # the demo's gauge, from every worker
    with urllib.request.urlopen(url.replace("/metrics", "/admin/state.json"), timeout=5) as answer:
        state = json.load(answer)
    assert {row["method"]: row["calls"] for row in state["methods"]}["echo"] == 8  # the page's table, summed
    directory = workers.wait_for(r"metrics of every worker summed from (\S+)").group(1)
    assert os.listdir(directory)
    assert workers.stop() == 0
    assert not os.path.exists(directory)


def test_a_dead_workers_live_figures_leave_the_sum_and_its_counts_stay(serve):  # noqa: F811
    workers: Workers = serve("--workers", "2", "--metrics-port", "0")
    url = _metrics_url(workers)
    on_each = workers.clients_on_each_worker()
    victim, client = next(iter(on_each.items()))
    client.echo("counted before the end")
    opened = len(workers.clients)
    held_by_victim = len([line for line in workers.matches(r"\[%d\]: handshake ok" % victim)])
    assert eventually(lambda: scrape(url).get(("thrift_handshake_sessions_active", ())) == opened, 10)
    os.kill(victim, signal.SIGKILL)
    workers.wait_for(r"worker \d \(pid %d\) killed by SIGKILL" % victim)
    assert eventually(lambda: scrape(url).get(("thrift_handshake_sessions_active", ())) == opened - held_by_victim,
                      10), scrape(url)
    samples = scrape(url)
    assert calls(samples, "echo", "ok") == 1  # what the dead worker counted stays in the sum
    assert calls(samples, "hello", "ok") == opened
    workers.stop()


def test_the_metrics_directory_goes_with_a_killed_supervisor(serve):  # noqa: F811
    workers: Workers = serve("--workers", "2", "--metrics-port", "0", "--grace", "1")
    directory = workers.wait_for(r"metrics of every worker summed from (\S+)").group(1)
    workers.process.kill()
    workers.process.wait(10)
    assert eventually(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers.pids), 10)
    assert not os.path.exists(directory), "the metrics directory outlived the service"


def test_a_metrics_port_in_use_is_named_and_nothing_is_left_behind():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "thrift_handshake.cli", "serve", "--port", "0", "--workers", "2",
                               "--metrics-port", str(port)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    made = re.findall(r"(?:summed from|shared by the workers in) (\S+?)(?:/tickets\.sqlite)?$", done.stderr, re.M)
    assert made and not any(map(os.path.exists, made)), done.stderr
