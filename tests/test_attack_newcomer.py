"""A newcomer's first commands, tried as written: `new` with a name that cannot work must say so
before writing anything."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys

import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thrift_handshake.cli", *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("name", ["json", "os", "logging", "pytest"])
def test_new_refuses_the_name_of_a_module_its_generated_package_could_not_replace(tmp_path, name):
    """`new json` wrote a service whose own test failed at collection and whose serve said
    "cannot import name 'Json' from 'json'": the standard library's module wins the import."""
    done = run_cli("new", name, "--dir", str(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"new {name!r}: {name!r} is already a Python module" in done.stderr
    assert "choose another name" in done.stderr
    assert not (tmp_path / name).exists()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the probe is closed


def test_call_format_json_prints_a_document_when_the_call_fails(server):
    """--format json printed nothing on stdout for a failure that is not a declared exception (a server
    error, no server), although the help promises one document for scripts and jq."""
    failed = run_cli("call", "--port", str(server.port), "--format", "json", "fail", '"on purpose"')
    assert failed.returncode == 1, failed.stderr
    document = json.loads(failed.stdout)
    assert document["method"] == "fail" and document["error"] == "RemoteApplicationError"
    assert document["message"] == "fail: server error 6: Internal error"
    assert [record["name"] for record in document["timeline"]] == ["127.0.0.1:%d" % server.port, "hello", "fail",
                                                                   "goodbye", "close"]
    assert "error: fail: server error 6: Internal error" in failed.stderr
    port = _closed_port()
    refused = run_cli("call", "--port", str(port), "--format", "json", "ping")
    assert refused.returncode == 1, refused.stderr
    document = json.loads(refused.stdout)
    assert document["error"] == "ConnectError" and "Connection refused" in document["message"]
    assert [record["phase"] for record in document["timeline"]] == ["connect"]
    assert "error: cannot connect to 127.0.0.1:%d" % port in refused.stderr


def test_bash_completion_finds_the_command_after_a_global_option_with_a_value():
    """`thrift-handshake --log-level DEBUG call --tr<TAB>` completed nothing: DEBUG was taken for the command."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    script = run_cli("completion", "bash").stdout
    probe = script + ('COMP_WORDS=(thrift-handshake --log-level DEBUG call --tr); COMP_CWORD=4; _thrift_handshake; '
                      'echo "${COMPREPLY[@]}"; COMP_WORDS=(thrift-handshake --log-level WARNING se); COMP_CWORD=3; '
                      '_thrift_handshake; echo "${COMPREPLY[@]}"\n')
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.stdout.splitlines() == ["--trace --traceparent --transport", "serve"], done.stderr

