"""``thrift-handshake new NAME``: a service to start from, in a new folder NAME/.

It writes the five files of the README's "Host your own service": the IDL (extending the session
contract), a script that generates the Python code, the handler, a test that serves and calls it, and
a README with the commands. Nothing is overwritten: the folder must not exist or be empty.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
from pathlib import Path
from typing import Dict

from ..errors import ArgumentError

__all__ = ["scaffold"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_TAKEN = {"thrift", "session", "thrift_handshake", "thrift_handshake_gen", "test", "tests"}

_IDL = """\
// {name}.thrift: the {Service} service. It extends the runtime's session contract, so hello, ping,
// stats, goodbye and the gate come with it; declare HandshakeRequired for a typed refusal before hello.
include "session.thrift"

service {Service} extends session.SessionService {{
  string echo(1: string message) throws (1: session.HandshakeRequired handshake_required),
}}
"""

_GEN = """\
#!/usr/bin/env sh
# Generates {name}.thrift's Python code into gen-py/{name}/ (session.thrift's code is installed with
# thrift-handshake: generate only this file, no -r).
set -eu
cd "$(dirname "$0")"
thrift -I "$(thrift-handshake idl-path)" --gen py {name}.thrift
"""

_HANDLER = """\
\"\"\"The {Service} service's handler: one method per method of the IDL (the runtime answers hello, ping,
stats and goodbye). Served with: thrift-handshake serve --handler {name}_handler:{Service}Handler
--path gen-py --path .\"\"\"

from thrift_handshake import current_session

from {name} import {Service}


class {Service}Handler({Service}.Iface):
    def echo(self, message: str) -> str:
        session = current_session()  # who calls: session_id, version, client_name, peer
        return f"{{message}} (session {{session.session_id[:8]}})"
"""

_TEST = """\
\"\"\"{Service} served on a free loopback port and called through the typed client (run: pytest).\"\"\"

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "gen-py"), str(HERE)]

from thrift_handshake import Client, HandshakeServer, ServerConfig  # noqa: E402

from {name} import {Service}  # noqa: E402
from {name}_handler import {Service}Handler  # noqa: E402


def test_echo() -> None:
    with HandshakeServer({Service}Handler(), ServerConfig(port=0)) as server:  # serving on a thread
        with Client("127.0.0.1", server.port, service={Service}) as client:
            assert client.typed({Service}.Iface).echo("hi").startswith("hi (session ")
"""

_README = """\
# {name}

    ./gen.sh                                                                  # gen-py/{name}/
    thrift-handshake serve --handler {name}_handler:{Service}Handler --path gen-py --path . --port 9090
    thrift-handshake call --idl {name}.thrift --port 9090 echo '"hi"'         # from another terminal
    python -m pytest test_{name}.py                                           # serves and calls it

Add methods to {name}.thrift, run ./gen.sh, implement them in {name}_handler.py.
"""


def _files(name: str) -> Dict[str, str]:
    service = "".join(part.capitalize() for part in name.split("_"))
    values = {"name": name, "Service": service}
    return {f"{name}.thrift": _IDL.format(**values), "gen.sh": _GEN.format(**values),
            f"{name}_handler.py": _HANDLER.format(**values), f"test_{name}.py": _TEST.format(**values),
            "README.md": _README.format(**values)}


def _module_named(name: str) -> str:
    """Where an importable module ``name`` lives ("" if none: a bare folder of that name does not count)."""
    spec = importlib.util.find_spec(name)
    return "" if spec is None or spec.origin in (None, "namespace") else spec.origin


def scaffold(name: str, parent: Path) -> Path:
    """Writes the service ``name`` into ``parent/name`` and returns that folder."""
    if not _NAME.match(name) or keyword.iskeyword(name) or name in _TAKEN:
        raise ArgumentError(f"new {name!r}: the name becomes a Python module and an IDL file: lowercase "
                            "letters, digits and _, starting with a letter, not a Python keyword nor "
                            f"one of {', '.join(sorted(_TAKEN))}")
    existing = _module_named(name)
    if existing:
        raise ArgumentError(f"new {name!r}: {name!r} is already a Python module ({existing}), which the "
                            "generated package of that name could not replace on import; choose another name")
    folder = parent / name
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ArgumentError(f"new {name}: {folder} already exists and is not an empty folder; nothing written")
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, text in _files(name).items():
        (folder / file_name).write_text(text, encoding="utf-8")
    (folder / "gen.sh").chmod(0o755)
    return folder
