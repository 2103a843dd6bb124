"""Where thrift was installed without its C extension (no wheel for this Python and no compiler), the
project runs in pure Python: the CLI works and says so in one warning line, nothing else changes.

The extension is made unimportable in a subprocess (``sys.modules`` entry set to None before thrift is
imported), which is what an installation without ``fastbinary*.so`` looks like to thrift.
"""

from __future__ import annotations

import json
import subprocess
import sys


FALLBACK_WARNING = "thrift's C extension is missing"

WITHOUT_EXTENSION = """
import sys
sys.modules["thrift.protocol.fastbinary"] = None  # import fails as if the .so were not installed
from thrift_handshake.wire import accelerated_available
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
    assert len(lines) == 1 and FALLBACK_WARNING in lines[0], done.stderr


def test_the_cli_serves_the_whole_call_flow_without_the_extension(server):
    done = run_cli_without_extension("call", "process", '{"request_id": "p", "payload": "abc", "work_ms": 1}',
                                     "--port", str(server.port), "--trace", "--log-level", "ERROR")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["request_id"] == "p"  # stdout: the result alone; --trace is on stderr
    assert done.stderr.startswith("phase "), "below WARNING nothing is logged, the fallback's warning included"
