"""``thrift-handshake demo``: the whole flow against a throwaway local server, with the timeline.

The command lives with the demo service; the CLI registers it (``add_demo_command``).
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Event, Request

from ..client import Client
from ..config import ClientOptions, ServerConfig, Wire
from ..timing import format_summary, format_table
from . import SERVER_TIMED, demo_server

__all__ = ["add_demo_command", "run_demo"]

DEMO_TEXT = "请求数据"


def add_demo_command(commands: Any, common: argparse.ArgumentParser,
                     wire_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    """Adds ``demo`` to the CLI's subcommands (``wire_flags`` adds the CLI's wire options: the demo
    takes them from the CLI rather than importing it, so that the demo stays a guest of the runtime)."""
    demo = commands.add_parser("demo", parents=[common], help="the whole flow against a throwaway local server",
                               epilog="example:\n  thrift-handshake demo --protocol compact --transport framed")
    wire_flags(demo)


def run_demo(args: argparse.Namespace) -> int:
    """Starts a server on a free loopback port, runs every phase against it and prints the timeline."""
    wire = Wire(protocol=args.protocol, transport=args.transport, accelerated=not args.pure_python)
    server = demo_server(ServerConfig(port=0, wire=wire)).start()
    try:  # whatever happens from here (even a closed stdout), the server stops
        host, port = server.address
        print(f"server listening on {host}:{port} (HandshakeServer: a thread pool for connections with a "
              f"message, idle ones parked; {wire})")
        options = ClientOptions(client_name="demo", features=frozenset({"submit", "notify", "timing", "zstd"}),
                                server_timed_methods=SERVER_TIMED, wire=wire)
        client = Client(host, port, options, service=HandshakeService)
        with client:
            hello = client.server_hello
            assert hello is not None  # connected with the handshake on
            print(f"hello: session {hello.session_id}, version {hello.version}, "
                  f"features {sorted(hello.features)}, idle timeout {hello.idle_timeout_ms} ms")
            print(f"echo({DEMO_TEXT!r}) -> {client.echo(DEMO_TEXT)!r}")
            response = client.process(Request(request_id="demo-1", payload=DEMO_TEXT, work_ms=20))
            print(f"process -> sequence {response.sequence}, digest {response.digest[:16]}..., "
                  f"T_s {response.processing_us} us (async acknowledgement: after the work)")
            ack = client.submit(Request(request_id="demo-2", payload=DEMO_TEXT, work_ms=200))
            print(f"submit -> ticket {ack.ticket} in {client.timeline[-1].duration * 1e3:.2f} ms "
                  f"(sync acknowledgement: before the 200 ms of work)")
            result = client.get_result(ack.ticket, 5000)
            print(f"get_result -> {result.request_id}, digest {result.digest[:16]}..., T_s {result.processing_us} us")
            client.notify(Event(name="demo", payload="fire and forget"))
            print("notify -> (oneway: no acknowledgement)")
            stats = client.stats()
            print(f"stats -> connections {stats.connections_open}/{stats.connections_total}, "
                  f"handshakes ok {stats.handshakes_ok}, notifications {stats.notifications}, calls {stats.calls}")
        farewell = client.farewell
        assert farewell is not None  # the with block said goodbye
        print(f"goodbye -> session {farewell.session_id}: {farewell.calls} calls in {farewell.duration_ms} ms; "
              f"client {client.phase.value}")
        print()
        print(format_table(client.timeline))
        print()
        print(format_summary(client.timeline))
    finally:
        server.stop()
    print("server stopped")
    return 0
