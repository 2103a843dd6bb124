"""Python function calls the threaded server makes per echo and per lifecycle: a deterministic figure
of its per-call and per-connection work, unlike CPU time on a shared machine.

The demo server runs in this process (INFO log lines to a file, as ``serve`` logs by default) with a
profile function on every thread it starts (``threading.setprofile``) that counts Python function calls
(``call`` events; C functions are counted apart). The client is the main thread, which is not profiled,
and writes pre-encoded strict binary messages on a raw socket, so it adds nothing to the count.

- echo: one connection says hello, then calls echo (32 bytes) ``--calls`` times, one at a time;
  the count of those calls is divided by their number.
- lifecycle: ``--lifecycles`` times connect, hello, echo, goodbye, close; the count runs until the
  server has closed each connection (its log line written).

    .venv/bin/python -m bench.call_count [--calls 2000] [--lifecycles 200] [--tree /other/checkout] [--components]

``--components`` also prints the counts by component (``COMPONENTS``: the file a Python function is in, or
that calls a C function).

``--tree`` runs the same probe against another checkout's ``service/`` and ``gen-py/`` (e.g. one made with
``git worktree add /tmp/old 5265a17``) in a child process, so two trees' counts print side by side.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, Tuple

_counts = {"python": 0, "c": 0}
#: Calls by component ("python:<component>" for a Python function of that component's files, "c:<component>"
#: for a C function called from them).
_by_component: Dict[str, int] = {}
#: A file's component: the first of these that its path contains (else "other").
COMPONENTS = (
    ("wire/strict.py", "strict decoding"), ("wire/protocols.py", "strict decoding"),
    ("wire/connection_socket.py", "socket layer (deadlines, byte budgets)"),
    ("wire/sockets.py", "socket layer (deadlines, byte budgets)"),
    ("wire/stack.py", "server transport (pipelined input, pricing)"),
    ("wire/whole_arguments.py", "server transport (pipelined input, pricing)"),
    ("decoded_budget.py", "server transport (pipelined input, pricing)"),
    ("wire/sniff.py", "connection (accept, admission, watch, pool, stack)"),
    ("thrift_handshake/server/", "connection (accept, admission, watch, pool, stack)"),
    ("service/server/", "connection (accept, admission, watch, pool, stack)"),
    ("pool.py", "connection (accept, admission, watch, pool, stack)"),
    ("gate", "gate and session"), ("session.py", "gate and session"), ("states.py", "gate and session"),
    ("metrics.py", "gate and session"), ("watched.py", "gate and session"), ("tracing.py", "gate and session"),
    ("calllog.py", "gate and session"), ("interceptors.py", "gate and session"),
    ("config.py", "gate and session"),
    ("logging/", "logging"), ("posixpath", "logging"),
    ("thrift/", "Thrift's own (as B)"), ("thrift_handshake_gen", "Thrift's own (as B)"),
    ("demo/", "handler"),
)


_components_of: Dict[str, str] = {}


def _component(path: str) -> str:
    component = _components_of.get(path)
    if component is None:
        component = _components_of[path] = next((name for part, name in COMPONENTS if part in path),
                                                "other (stdlib: socket, threading, enum, weakref)")
    return component


def _profile(frame: Any, event: str, arg: object) -> None:
    if event == "call":
        kind = "python"
    elif event == "c_call":
        kind = "c"
    else:
        return
    _counts[kind] += 1
    key = f"{kind}:{_component(frame.f_code.co_filename)}"  # a C call: the component of the code calling it
    _by_component[key] = _by_component.get(key, 0) + 1


def _message(name: str, seqid: int, args: object) -> bytes:
    from thrift.protocol.TBinaryProtocol import TBinaryProtocol
    from thrift.transport.TTransport import TMemoryBuffer

    buffer = TMemoryBuffer()
    protocol = TBinaryProtocol(buffer)
    protocol.writeMessageBegin(name, 1, seqid)
    args.write(protocol)
    protocol.writeMessageEnd()
    return buffer.getvalue()


def _messages() -> Tuple[bytes, bytes, bytes]:
    from thrift_handshake_gen import HandshakeService
    from thrift_handshake_gen.session import SessionService
    from thrift_handshake_gen.session.ttypes import ClientHello

    hello = SessionService.hello_args(hello=ClientHello(client_name="probe", language="raw", min_version=1,
                                                        max_version=2, features=set()))
    return (_message("hello", 0, hello), _message("echo", 1, HandshakeService.echo_args(message="x" * 32)),
            _message("goodbye", 2, SessionService.goodbye_args()))


def _exchange(sock: socket.socket, request: bytes, reply_size: Dict[bytes, int]) -> None:
    """Sends ``request`` and reads its whole reply (its size learnt from the first one: replies of the
    same request have the same size)."""
    sock.sendall(request)
    size = reply_size.get(request)
    if size is None:  # the first time: a reply is whole when nothing more comes for a moment
        data = sock.recv(65536)
        sock.settimeout(0.2)
        try:
            while True:
                more = sock.recv(65536)
                if not more:
                    break
                data += more
        except socket.timeout:
            pass
        sock.settimeout(None)
        reply_size[request] = len(data)
        return
    got = 0
    while got < size:
        chunk = sock.recv(size - got)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        got += len(chunk)


def _wait_closed(server: object, connections: int) -> None:
    """Until the server has closed ``connections`` connections in all (each one's log line written)."""
    deadline = time.monotonic() + 10
    while server.metrics.connections_total != connections or _open(server):
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not close the connections")
        time.sleep(0.001)


def _open(server: object) -> int:
    return server.metrics.snapshot().connections_open


def probe(calls: int, lifecycles: int) -> Dict[str, float]:
    """Counts in this process; returns calls per echo and per lifecycle (Python and C functions)."""
    log = tempfile.NamedTemporaryFile(prefix="call_count", suffix=".log", delete=False)
    logging.basicConfig(level=logging.INFO, filename=log.name)
    from thrift_handshake import ServerConfig
    from thrift_handshake.demo import demo_server

    hello, echo, goodbye = _messages()
    threading.setprofile(_profile)  # every thread the server starts from now on
    server = demo_server(ServerConfig(port=0, host="127.0.0.1"))
    server.start()
    sizes: Dict[bytes, int] = {}
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _exchange(sock, hello, sizes)
            for _ in range(200):  # warm up (the first calls fill caches, grow the pool)
                _exchange(sock, echo, sizes)
            time.sleep(0.2)
            before, components_before = dict(_counts), dict(_by_component)
            for _ in range(calls):
                _exchange(sock, echo, sizes)
            after, components_after = dict(_counts), dict(_by_component)
            _exchange(sock, goodbye, sizes)
        opened = 1

        def lifecycle() -> None:
            with socket.create_connection(("127.0.0.1", server.port)) as each:
                each.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for request in (hello, echo, goodbye):
                    _exchange(each, request, sizes)

        for _ in range(20):  # warm up
            lifecycle()
            opened += 1
            _wait_closed(server, opened)
        time.sleep(0.2)
        start, components_start = dict(_counts), dict(_by_component)
        for _ in range(lifecycles):
            lifecycle()
            opened += 1
            _wait_closed(server, opened)
        end, components_end = dict(_counts), dict(_by_component)
    finally:
        threading.setprofile(None)
        server.stop()
        os.unlink(log.name)
    return {"echo_python": (after["python"] - before["python"]) / calls,
            "echo_c": (after["c"] - before["c"]) / calls,
            "lifecycle_python": (end["python"] - start["python"]) / lifecycles,
            "lifecycle_c": (end["c"] - start["c"]) / lifecycles,
            "echo_components": _per(components_before, components_after, calls),
            "lifecycle_components": _per(components_start, components_end, lifecycles)}


def _per(before: Dict[str, int], after: Dict[str, int], count: int) -> Dict[str, float]:
    return {key: (value - before.get(key, 0)) / count for key, value in sorted(after.items())
            if value != before.get(key, 0)}


def tree_path(tree: str) -> str:
    """A PYTHONPATH under which ``thrift_handshake`` and its generated code are ``tree``'s (a checkout)."""
    links = tempfile.mkdtemp(prefix="thrift_handshake_tree")
    os.symlink(os.path.join(tree, "service"), os.path.join(links, "thrift_handshake"))
    os.symlink(os.path.join(tree, "gen-py", "thrift_handshake_gen"), os.path.join(links, "thrift_handshake_gen"))
    return links


def _in_tree(tree: str, calls: int, lifecycles: int) -> Dict[str, float]:
    """The probe run in a child process against ``tree``'s service/ and gen-py/."""
    env = dict(os.environ, PYTHONPATH=tree_path(tree))
    out = subprocess.run([sys.executable, "-m", "bench.call_count", "--json", "--calls", str(calls),
                          "--lifecycles", str(lifecycles)], env=env, check=True, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--lifecycles", type=int, default=200)
    parser.add_argument("--tree", help="also probe this checkout (its service/ and gen-py/)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    parser.add_argument("--components", action="store_true", help="also by component (the file's module)")
    args = parser.parse_args()
    if args.json:
        print(json.dumps(probe(args.calls, args.lifecycles)))
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = [(here, _in_tree(here, args.calls, args.lifecycles))]
    if args.tree:
        rows.append((args.tree, _in_tree(os.path.abspath(args.tree), args.calls, args.lifecycles)))
    print("server-side function calls (Python / C) per 32-byte echo and per lifecycle (hello, echo, goodbye):")
    for tree, figures in rows:
        print(f"  {tree}: echo {figures['echo_python']:.1f} / {figures['echo_c']:.1f}, lifecycle "
              f"{figures['lifecycle_python']:.1f} / {figures['lifecycle_c']:.1f}")
        if args.components:
            for what in ("echo", "lifecycle"):
                for key, value in figures[f"{what}_components"].items():
                    print(f"    {what:9} {key:70} {value:7.2f}")


if __name__ == "__main__":
    main()
