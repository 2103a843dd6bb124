"""Where thrift was installed without its C extension (no wheel for this Python and no compiler), the
project runs in pure Python: the CLI works and says so in one warning line, nothing else changes.

The extension is made unimportable in a subprocess (``sys.modules`` entry set to None before thrift is
imported), which is what an installation without ``fastbinary*.so`` looks like to thrift.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from thrift_handshake import Client, ClientPhase, RemoteApplicationError, ServerLimits

FALLBACK_WARNING = "thrift's C extension is missing: the accelerated protocol runs in pure Python"

WITHOUT_EXTENSION = """
import sys
sys.modules["thrift.protocol.fastbinary"] = None  # import fails as if the .so were not installed
from thrift_handshake.transport import accelerated_available
assert not accelerated_available()
from thrift_handshake.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_cli_without_extension(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_EXTENSION, *args], capture_output=True, text=True,
                          timeout=60)


def test_the_cli_works_without_the_extension_and_warns_once(server):
    done = run_cli_without_extension("call", "echo", '"请求数据"', "--port", str(server.port), "--log-level", "WARNING")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "请求数据"
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].endswith(FALLBACK_WARNING), done.stderr


def test_the_cli_serves_the_whole_call_flow_without_the_extension(server):
    done = run_cli_without_extension("call", "process", '{"request_id": "p", "payload": "abc", "work_ms": 1}',
                                     "--port", str(server.port), "--trace", "--log-level", "ERROR")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.partition("\nphase ")[0])["request_id"] == "p"
    assert done.stderr == "", "below WARNING nothing is logged, the fallback's warning included"


@pytest.mark.xfail(strict=True, reason=(
    "pure-Python thrift reports a size limit as TTransportException(SIZE_LIMIT), which service/server.py "
    "treats as a transport error and drops the connection without the PROTOCOL_ERROR answer; without the "
    "C extension the three oversized-message tests of test_server_lifecycle.py fail the same way. "
    "Remove this mark when the server answers it (see docs/setup.md)"))
def test_the_pure_python_protocol_refuses_an_oversized_message_with_an_answer(start_server):
    server = start_server(protocol="binary", limits=ServerLimits(max_message_bytes=1024))
    with Client("127.0.0.1", server.port) as client:
        assert client.echo("x" * 1000) == "x" * 1000
        with pytest.raises(RemoteApplicationError) as caught:
            client.echo("x" * 5000)
        assert caught.value.type == 7  # PROTOCOL_ERROR
        assert client.phase is ClientPhase.BROKEN
