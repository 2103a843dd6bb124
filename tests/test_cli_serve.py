"""``thrift-handshake serve`` at start-up: mistakes that used to start silently get one line and the fix.

Real parts only: the handlers are modules in a temporary folder over code the `thrift` compiler
generates; servers are ``serve`` subprocesses on port 0 (the port read from the ``listening on`` line).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest
from serving import listening_port

ROOT = Path(__file__).resolve().parent.parent

CALC_IDL = """include "session.thrift"
namespace py cli_serve_calc
service Calculator extends session.SessionService {
  i32 add(1: i32 a, 2: i32 b),
  i32 sub(1: i32 a, 2: i32 b),
}
"""
PLAIN_IDL = "namespace py cli_serve_plain\nservice Store {\n  string get(1: string key),\n}\n"

HANDLERS = {
    "partial.py": "from cli_serve_calc import Calculator\n\nclass Handler(Calculator.Iface):\n"
                  "    def add(self, a, b):\n        return a + b\n",
    "plain.py": "from cli_serve_plain import Store\n\nclass Handler(Store.Iface):\n"
                "    def get(self, key):\n        return key.upper()\n",
    "broken.py": "from cli_serve_calc import Calculator\n\nclass Handler(Calculator.Iface:\n    pass\n",
    "raising.py": "raise RuntimeError('no settings file /etc/calc.ini')\n",
    "needs_args.py": "from cli_serve_calc import Calculator\n\nclass Handler(Calculator.Iface):\n"
                     "    def __init__(self, database):\n        self.database = database\n",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder: two IDLs, their generated code in gen-py, and the handler modules."""
    folder = tmp_path_factory.mktemp("project")
    (folder / "gen-py").mkdir()
    for name, text in (("calc.thrift", CALC_IDL), ("plain.thrift", PLAIN_IDL)):
        (folder / name).write_text(text)
        subprocess.run(["thrift", "-I", str(ROOT / "idl"), "--gen", "py", "-out", str(folder / "gen-py"),
                        str(folder / name)], check=True)
    for name, text in HANDLERS.items():
        (folder / name).write_text(text)
    return folder


def cli(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thrift_handshake.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@contextmanager
def serving(*args: str, cwd: Path = ROOT) -> Iterator[Tuple[int, List[str]]]:
    """``serve --port 0 ARGS``: yields (port, log lines so far, growing); stops it with SIGTERM, exit 0."""
    process = subprocess.Popen([sys.executable, "-m", "thrift_handshake.cli", "serve", "--port", "0", *args],
                               cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log: List[str] = []
    port = listening_port(process, log)
    try:
        yield port, log
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
    assert code == 0, "".join(log)


def test_a_service_without_the_session_contract_needs_no_hello(project):
    """It started with handshake=on, and every call of its own clients was refused (needs hello())."""
    done = cli("serve", "--port", "0", "--handler", "plain:Handler", "--path", str(project / "gen-py"),
               "--path", str(project))
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: service Store (cli_serve_plain.Store) does not extend session.SessionService, so its clients "
        "cannot say hello and every call would be refused: serve it with --no-hello (a plain service) or "
        "--hello optional (its clients served without hello), or declare `service Store extends "
        "session.SessionService` in its IDL"]
    with serving("--handler", "plain:Handler", "--path", str(project / "gen-py"), "--path", str(project),
                 "--no-hello") as (port, _):
        got = cli("call", "--idl", str(project / "plain.thrift"), "--no-hello", "--port", str(port), "get", '"k"')
        assert got.returncode == 0 and json.loads(got.stdout) == "K", got.stderr


def test_a_method_the_handler_lacks_is_named_at_start_and_answered_not_implemented(project):
    """It started silently; the call answered `server error 5: sub failed: unknown result`, and the server
    logged nothing."""
    with serving("--handler", "partial:Handler", "--path", str(project / "gen-py"), "--path", str(project)) \
            as (port, log):
        warned = [line for line in log if "does not implement" in line]
        assert len(warned) == 1 and "partial:Handler does not implement sub(): calls to it will be answered " \
                                    "'not implemented'" in warned[0], "".join(log)
        calc = ("--idl", str(project / "calc.thrift"), "--port", str(port))
        added = cli("call", *calc, "add", "2", "3")
        assert added.returncode == 0 and added.stdout.strip() == "5", added.stderr
        module = cli("call", "--module", "cli_serve_calc.Calculator", "--path", str(project / "gen-py"),
                     "--port", str(port), "add", "4", "5")  # `call` had no --path for generated code
        assert module.returncode == 0 and module.stdout.strip() == "9", module.stderr
        missing = cli("call", *calc, "sub", "2", "3")
        assert missing.returncode == 1
        assert "sub() is not implemented by this server" in missing.stderr, missing.stderr
    text = "".join(log)
    assert "WARNING root: call to sub(): not implemented by partial:Handler" in text, text
    assert "Traceback" not in text


@pytest.mark.parametrize("handler, says", [
    ("broken:Handler", "error: --handler broken:Handler: syntax error in "),
    ("raising:Handler", "error: --handler raising:Handler: importing raising failed: RuntimeError: "
                        "no settings file /etc/calc.ini"),
    ("needs_args:Handler", "__init__() missing 1 required positional argument: 'database' (--handler "
                           "needs_args:Handler: Handler() raised TypeError; the CLI makes the handler with no arguments)"),
    ("nosuch:Handler", "error: --handler nosuch:Handler: No module named 'nosuch'"),
    ("partial:Nope", "error: --handler partial:Nope: partial has no class Nope"),
], ids=["syntax error", "raises at import", "constructor needs arguments", "no module", "no class"])
def test_handler_import_and_constructor_errors_are_one_line_exit_2(project, handler, says):
    """A syntax error was a 20-line traceback with exit 1; a constructor needing arguments a TypeError traceback."""
    done = cli("serve", "--port", "0", "--handler", handler, "--path", str(project / "gen-py"), "--path", str(project))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], done.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_busy_port_is_named(workers):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = cli("serve", "--port", str(port), "--workers", workers)
    assert done.returncode == 2
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr, done.stderr


def test_an_ipv6_host_in_brackets(tmp_path):
    """`--host '[::1]'` did not resolve (the brackets were kept)."""
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with serving("--host", "[::1]") as (port, _):
        done = cli("call", "--host", "[::1]", "--port", str(port), "echo", '"v6"')
        assert done.returncode == 0 and json.loads(done.stdout) == "v6", done.stderr


def test_an_untrusted_certificate_is_explained_in_flags():
    """The error named ClientTLS.ca_file; the user gave --tls-ca."""
    certs = ROOT / "tests" / "certs"
    with serving("--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key")) as (port, _):
        done = cli("call", "--port", str(port), "--tls-ca", str(certs / "other-ca.pem"), "ping")
    assert done.returncode == 1
    assert "not trusted by --tls-ca" in done.stderr and "ClientTLS" not in done.stderr, done.stderr


def test_several_handlers_share_one_port_by_service_name(project):
    """``serve --handler A --handler B``: each called as NAME:method (``call --multiplexed NAME``); with
    ``--hello optional`` the plain service's clients call without hello while Calculator's say it."""
    gen = ("--path", str(project / "gen-py"), "--path", str(project))
    with serving("--handler", "partial:Handler", "--handler", "plain:Handler", *gen, "--hello", "optional") \
            as (port, log):
        assert "service=Calculator,Store" in "".join(log) and "handshake=optional" in "".join(log)
        added = cli("call", "--idl", str(project / "calc.thrift"), "--multiplexed", "Calculator", "--port",
                    str(port), "add", "2", "3")
        assert added.returncode == 0 and added.stdout.strip() == "5", added.stderr
        got = cli("call", "--idl", str(project / "plain.thrift"), "--multiplexed", "Store", "--no-hello",
                  "--port", str(port), "get", '"k"')
        assert got.returncode == 0 and json.loads(got.stdout) == "K", got.stderr
        bare = cli("call", "--idl", str(project / "calc.thrift"), "--port", str(port), "add", "2", "3")
        assert bare.returncode == 1 and "call SERVICE:add (TMultiplexedProtocol)" in bare.stderr, bare.stderr
    with serving("--handler", "calc=partial:Handler", "--handler", "plain:Handler", *gen, "--hello", "optional",
                 "--default-service", "calc") as (port, _):
        bare = cli("call", "--idl", str(project / "calc.thrift"), "--port", str(port), "add", "2", "3")
        assert bare.returncode == 0 and bare.stdout.strip() == "5", bare.stderr


@pytest.mark.parametrize("flags, says", [
    (["--handler", "partial:Handler", "--handler", "partial:Handler"],
     "error: two --handler for service Calculator: name them apart with NAME=MODULE:CLASS"),
    (["--handler", "partial:Handler", "--handler", "plain:Handler", "--no-hello", "--default-service", "Nope"],
     "error: --default-service Nope: not one of the services (Calculator, Store)"),
    (["--handler", "partial:Handler", "--default-service", "Calculator"],
     "error: --default-service names one of several --handler services"),
    (["--handler", "partial:Handler", "--no-hello", "--hello", "optional"],
     "error: --no-hello and --hello optional contradict each other: give one"),
])
def test_several_handlers_mistakes_are_one_line_exit_2(project, flags, says):
    done = cli("serve", "--port", "0", *flags, "--path", str(project / "gen-py"), "--path", str(project))
    assert done.returncode == 2 and done.stderr.splitlines() == [says], done.stderr
