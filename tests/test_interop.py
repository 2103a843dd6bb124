"""Interop: real Node.js and Go clients run the contract's whole flow against our Python server.

Each client (interop/node/client.js, interop/go/main.go) prints one line per check and exits non-zero on
any mismatch. The Thrift code of each language is generated here, into temp dirs, by the `thrift`
compiler (never committed); interop/setup.sh installs the clients' packages (npm ci, go mod download).

These tests never skip: a missing toolchain fails them with what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from thrift_handshake import ServerConfig
from thrift_handshake.demo import demo_server

ROOT = Path(__file__).resolve().parent.parent
IDL = ROOT / "idl" / "handshake.thrift"
INTEROP = ROOT / "interop"
NODE_DIR = INTEROP / "node"
GO_DIR = INTEROP / "go"
GO_MODULE = "thrift-handshake/interop/go"  # interop/go/go.mod

SETUP_TIMEOUT = 300  # npm ci / go mod download from a cold cache
GO_BUILD_TIMEOUT = 120  # a cold Go build cache compiles the standard library too
CLIENT_TIMEOUT = 60

INSTALL_HINTS = {
    "thrift": "the Thrift compiler 0.17 (apt-get install thrift-compiler)",
    "node": "Node.js >= 18 with npm (apt-get install nodejs npm, or https://nodejs.org)",
    "npm": "npm (apt-get install npm)",
    "go": "Go >= 1.21 (https://go.dev/dl/, or apt-get install golang-go)",
}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: the interop tests need {INSTALL_HINTS[name]}", pytrace=False)
    return path


def run(cmd: List[str], what: str, timeout: float, cwd: Optional[Path] = None,
        env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Runs a command; a non-zero exit or a timeout fails the test with the command's output."""
    try:
        result = subprocess.run(cmd, cwd=cwd, env=env, timeout=timeout, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace")
    except subprocess.TimeoutExpired as error:
        output = error.stdout.decode("utf-8", "replace") if isinstance(error.stdout, bytes) else (error.stdout or "")
        pytest.fail(f"{what} timed out after {timeout:.0f} s: {' '.join(cmd)}\n{output}", pytrace=False)
    if result.returncode != 0:
        pytest.fail(f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n{result.stdout}", pytrace=False)
    return result


def interop_setup(part: str, tools: List[str]) -> None:
    """interop/setup.sh PART: npm ci (node) or go mod download (go); fast when already done."""
    for tool in ["thrift", *tools]:
        require_tool(tool)
    run(["sh", str(INTEROP / "setup.sh"), part], f"interop/setup.sh {part}", SETUP_TIMEOUT)


@pytest.fixture(scope="session")
def node_client(tmp_path_factory: pytest.TempPathFactory) -> List[str]:
    """The command that runs the Node client, with JS code generated into a temp dir."""
    interop_setup("node", ["node", "npm"])
    gen = tmp_path_factory.mktemp("gen-js")
    run(["thrift", "-r", "--gen", "js:node,es6", "-out", str(gen), str(IDL)], "thrift --gen js:node,es6", 60)
    return [require_tool("node"), str(NODE_DIR / "client.js"), str(gen)]


@pytest.fixture(scope="session")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> List[str]:
    """The Go client, built from a temp copy of interop/go with its Go code generated into gen/."""
    interop_setup("go", ["go"])
    module = tmp_path_factory.mktemp("go-client")
    for name in ("go.mod", "go.sum", "main.go"):
        shutil.copy2(GO_DIR / name, module / name)
    gen = module / "gen"
    gen.mkdir()
    run(["thrift", "-r", "--gen", f"go:package_prefix={GO_MODULE}/gen/", "-out", str(gen), str(IDL)],
        "thrift --gen go", 60)
    # The 0.17 generator also writes a sample `-remote` command (package main): not ours to build.
    for remote in gen.glob("*/*-remote"):
        shutil.rmtree(remote)
    binary = module / "interop-client"
    env = dict(os.environ, GOFLAGS=(os.environ.get("GOFLAGS", "") + " -mod=readonly").strip())
    # -trimpath keeps the build cache valid across temp dirs (no absolute paths in the objects).
    run([require_tool("go"), "build", "-trimpath", "-o", str(binary), "."], "go build of interop/go",
        GO_BUILD_TIMEOUT, cwd=module, env=env)
    return [str(binary)]


@pytest.fixture
def server() -> Iterator[HandshakeServer]:
    server = demo_server(ServerConfig(host="127.0.0.1", port=0, grace=2.0)).start()
    try:
        yield server
    finally:
        server.stop()


def run_client(command: List[str], host: str, port: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, HANDSHAKE_HOST=host, HANDSHAKE_PORT=str(port))
    try:
        return subprocess.run(command, env=env, timeout=CLIENT_TIMEOUT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace")
    except subprocess.TimeoutExpired as error:
        output = error.stdout.decode("utf-8", "replace") if isinstance(error.stdout, bytes) else (error.stdout or "")
        pytest.fail(f"{command[0]} did not finish within {CLIENT_TIMEOUT} s\n{output}", pytrace=False)


def assert_flow_passes(command: List[str], server: HandshakeServer, language: str) -> None:
    host, port = server.address
    result = run_client(command, host, port)
    sys.stdout.write(result.stdout)  # shown by pytest on failure (and with -s)
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert result.returncode == 0 and not failed, (
        f"the {language} client found contract mismatches (exit {result.returncode}):\n"
        + "\n".join(failed or ["(no FAIL line)"]) + "\n(full output under 'Captured stdout call')")
    assert "checks passed" in result.stdout, result.stdout


def test_node_client_runs_the_whole_flow(node_client: List[str], server: HandshakeServer) -> None:
    assert_flow_passes(node_client, server, "Node.js")


def test_go_client_runs_the_whole_flow(go_client: List[str], server: HandshakeServer) -> None:
    assert_flow_passes(go_client, server, "Go")


@pytest.mark.parametrize("language", ["node", "go"])
def test_clients_fail_on_a_mismatch(language: str, request: pytest.FixtureRequest) -> None:
    """A server that only speaks version 1 breaks the flow's expectations: each client must exit non-zero."""
    command = request.getfixturevalue(f"{language}_client")
    with demo_server(ServerConfig(host="127.0.0.1", port=0, versions=(1, 1), grace=2.0)) as server:
        result = run_client(command, *server.address)
    assert result.returncode != 0, f"the {language} client passed against a version-1-only server:\n{result.stdout}"
    assert "FAIL hello 1..2 -> version 2" in result.stdout, result.stdout
