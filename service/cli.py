"""The ``thrift-handshake`` command: serve, call and demo.

    thrift-handshake serve [--host 127.0.0.1] [--port 9090] [--auth-token-file F] [limits ...]
    thrift-handshake serve --service MODULE:CLASS [--path DIR ...] [--no-hello]   any Thrift service
    thrift-handshake serve --workers auto              pre-forked worker processes, one per core
    thrift-handshake call echo '"hi"' [--trace]        each ARG is a JSON value for the next parameter
    thrift-handshake call --idl kv.thrift [--service NAME] [--no-hello] [--list] METHOD [ARG ...]
    thrift-handshake demo                               the whole flow against a throwaway server

The server's flags are generated from ``config.ServerLimits`` (and, for the demo service, from
``demo.DemoLimits``) so a new limit is a flag at once. The CLI owns the process: it installs the
SIGINT/SIGTERM handlers (the first stops gracefully, a second ends the grace period).
Exit codes: 0 success, 1 an RPC or connection error, 2 bad usage or arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from types import ModuleType
from typing import Any, Optional, Sequence

from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Event, Request, Shape

from . import idlcache, jsonargs
from .client import Client
from .config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    PROTOCOLS,
    TRANSPORTS,
    ClientOptions,
    ClientTLS,
    ServerConfig,
    ServerLimits,
    ServerTLS,
    Timeouts,
    Wire,
)
from .demo import SERVER_TIMED, DemoLimits, demo_server
from .errors import ArgumentError, ServiceError, ThriftHandshakeError
from .peerlog import clip_for_log
from .server import HandshakeServer
from .timing import format_summary, format_table
from .workers import Supervisor, cpu_count

__all__ = ["main"]

AUTH_TOKEN_ENV = "THRIFT_HANDSHAKE_AUTH_TOKEN"
DEFAULT_SERVICE = "thrift_handshake_gen.HandshakeService"
#: The most characters of what a server said that ``call`` prints (then an ellipsis and the length).
_SERVER_TEXT_LIMIT = 2000
#: The installed HandshakeService's unions, for ``call`` without ``--idl`` (the generated code cannot
#: tell unions from structs; with ``--idl`` they come from the compiler's description of the IDL).
UNIONS = (Shape,)

DEMO_TEXT = "请求数据"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: ``--workers`` at most (a worker's slot number travels as one byte).
MAX_WORKERS = 256

logger = logging.getLogger(__name__)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("thrift-handshake")
    except Exception:  # not installed as a distribution (e.g. run from a source tree)
        return "unknown"


def _limit_flags(parser: argparse.ArgumentParser, limits_class: type) -> None:
    defaults = limits_class()
    for field in dataclasses.fields(limits_class):
        default = getattr(defaults, field.name)
        parser.add_argument("--" + field.name.replace("_", "-"), type=type(default), default=default,
                            metavar=type(default).__name__.upper(),
                            help=f"{field.metadata['help']} (default {default})")


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}; IPv6 such as ::1 works")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"0..65535 (default {DEFAULT_PORT})")
    _wire_flags(parser)
    parser.add_argument("--auth-token-file", metavar="FILE",
                        help=f"read the shared hello() token from FILE (or set ${AUTH_TOKEN_ENV}; "
                             "never on the command line, where ps shows it)")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is outside 0..65535")
    return port


def _workers(text: str) -> int:
    if text == "auto":
        return cpu_count()
    try:
        workers = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of workers (or auto): {text!r}") from None
    if not 1 <= workers <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{workers} is outside 1..{MAX_WORKERS}")
    return workers


def _auth_token(args: argparse.Namespace) -> Optional[str]:
    """The token from --auth-token-file, else from the environment; an empty one is an error."""
    if args.auth_token_file:
        try:
            with open(args.auth_token_file, encoding="utf-8") as file:
                token = file.read().strip()
        except OSError as error:
            raise ArgumentError(f"--auth-token-file {args.auth_token_file}: {error.strerror}") from None
        source = f"--auth-token-file {args.auth_token_file}"
    elif AUTH_TOKEN_ENV in os.environ:
        token, source = os.environ[AUTH_TOKEN_ENV].strip(), f"${AUTH_TOKEN_ENV}"
    else:
        return None
    if not token:
        raise ArgumentError(f"the auth token from {source} is empty")
    return token


def _wire_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=PROTOCOLS, default=Wire.protocol,
                        help=f"Thrift protocol (default {Wire.protocol})")
    parser.add_argument("--transport", choices=TRANSPORTS, default=Wire.transport,
                        help=f"Thrift transport (default {Wire.transport})")
    parser.add_argument("--pure-python", action="store_true",
                        help="do not use Thrift's C extension (same bytes on the wire, slower)")


def _wire(args: argparse.Namespace) -> Wire:
    return Wire(protocol=args.protocol, transport=args.transport, accelerated=not args.pure_python)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thrift-handshake", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                        help="logging level (default INFO)")
    # also accepted after the command; SUPPRESS keeps a value given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default=argparse.SUPPRESS, type=str.upper, choices=LOG_LEVELS,
                        help="logging level (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", parents=[common], help="run a server until SIGINT/SIGTERM")
    _connection_flags(serve_parser)
    serve_parser.add_argument("--grace", type=float, default=ServerConfig.grace,
                              help="seconds in-flight calls get to finish on stop")
    serve_parser.add_argument("--server-name", default=ServerConfig.server_name)
    serve_parser.add_argument("--workers", type=_workers, default=1, metavar="N",
                              help="serve from N pre-forked processes on one socket, or auto: one per core "
                                   "(default 1: this process); the demo's tickets then go to a shared "
                                   "--ticket-store (default: a temporary file)")
    serve_parser.add_argument("--tls-cert", help="serve TLS with this certificate chain (PEM)")
    serve_parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    serve_parser.add_argument("--tls-client-ca", help="require client certificates signed by this CA (mTLS)")
    serve_parser.add_argument("--service", metavar="MODULE:CLASS",
                              help="host this handler class (it implements a generated Iface; default: the demo)")
    serve_parser.add_argument("--path", action="append", default=[], metavar="DIR",
                              help="add DIR to the import path (generated code, the handler); repeatable")
    serve_parser.add_argument("--only-wire", action="store_true",
                              help="serve only --protocol/--transport (default: binary and compact, buffered and "
                                   "framed, and THeader, told apart per connection)")
    serve_parser.add_argument("--no-hello", action="store_true",
                              help="a plain service: clients know nothing of hello (no session gate)")
    _limit_flags(serve_parser, ServerLimits)
    demo_group = serve_parser.add_argument_group("demo service (without --service)")
    _limit_flags(demo_group, DemoLimits)
    demo_group.add_argument("--ticket-store", metavar="FILE",
                            help="SQLite file recording every submit ticket's fate, so a restarted server "
                                 "still answers for them (default: memory only)")

    call_parser = commands.add_parser("call", parents=[common], help="connect, hello, call METHOD, goodbye")
    call_parser.add_argument("method", nargs="?", help="the method to call (not needed with --list)")
    call_parser.add_argument("args", nargs="*", metavar="ARG", help="JSON value for the next parameter")
    _connection_flags(call_parser)
    call_parser.add_argument("--trace", action="store_true", help="print the phase timeline after the result")
    call_parser.add_argument("--timeout", type=float, default=Timeouts.call, help="call timeout, seconds")
    call_parser.add_argument("--connect-timeout", type=float, default=Timeouts.connect,
                      help=f"seconds to open the connection, TLS included (default {Timeouts.connect:g})")
    call_parser.add_argument("--handshake-timeout", type=float, default=Timeouts.handshake,
                      help=f"seconds for hello() (default {Timeouts.handshake:g})")
    call_parser.add_argument("--client-name", default=ClientOptions.client_name)
    call_parser.add_argument("--versions", default="1-2", help="version range to offer, e.g. 1-1")
    call_parser.add_argument("--tls", action="store_true", help="connect with TLS (system CAs unless --tls-ca)")
    call_parser.add_argument("--tls-ca", help="verify the server against this CA (PEM); implies --tls")
    call_parser.add_argument("--tls-cert", help="client certificate for mutual TLS (PEM); implies --tls")
    call_parser.add_argument("--tls-key", help="the client certificate's key (PEM)")
    call_parser.add_argument("--tls-server-name", help="name expected in the server's certificate")
    call_parser.add_argument("--idl", help="call the service of this Thrift IDL (compiled with `thrift`, cached)")
    call_parser.add_argument("-I", "--include-dir", action="append", default=[], metavar="DIR",
                             help="with --idl: a folder to search for included IDLs (repeatable)")
    call_parser.add_argument("--service", default=None,
                             help="with --idl: the service's name in the IDL (default: its last service); "
                                  f"without: a generated service module (default {DEFAULT_SERVICE})")
    call_parser.add_argument("--no-hello", action="store_true",
                             help="the server's clients say no hello/goodbye: connect and call straight away")
    call_parser.add_argument("--list", action="store_true",
                             help="print the services and methods with their signatures; connects to nothing")

    demo_parser = commands.add_parser("demo", parents=[common], help="the whole flow against a throwaway local server")
    _wire_flags(demo_parser)
    return parser


def _server_config(args: argparse.Namespace) -> ServerConfig:
    limits = ServerLimits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ServerLimits)})
    tls = None
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        if not (args.tls_cert and args.tls_key):
            raise ArgumentError("TLS needs both --tls-cert and --tls-key")
        tls = ServerTLS(args.tls_cert, args.tls_key, args.tls_client_ca)
    return ServerConfig(host=args.host, port=args.port, wire=_wire(args), detect_wire=not args.only_wire,
                        handshake=not args.no_hello,
                        auth_token=_auth_token(args), tls=tls, grace=args.grace, server_name=args.server_name,
                        limits=limits)


def _load_handler(spec: str, paths: Sequence[str]) -> Any:
    """Imports MODULE (from the --path dirs first) and instantiates CLASS."""
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise ArgumentError(f"--service must look like MODULE:CLASS, not {spec!r}")
    for path in reversed(paths):
        if not os.path.isdir(path):
            raise ArgumentError(f"--path {path}: no such directory")
        sys.path.insert(0, os.path.abspath(path))
    try:
        handler_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ArgumentError(f"--service {spec}: {error}") from None
    return handler_class()


def _server(args: argparse.Namespace) -> HandshakeServer:
    config = _server_config(args)
    if args.service is None:
        limits = DemoLimits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DemoLimits)})
        return demo_server(config, limits, ticket_store=args.ticket_store)
    handler = _load_handler(args.service, args.path)
    try:
        return HandshakeServer(handler, config)
    except TypeError as error:  # the class implements no generated Iface
        raise ArgumentError(f"--service {args.service}: {error}") from None


def run_serve(args: argparse.Namespace) -> int:
    """Serves until SIGINT/SIGTERM: the first drains gracefully, a second ends the grace period."""
    if args.workers > 1:
        return _serve_workers(args)
    server = _server(args)

    def on_signal(*_: Any) -> None:
        server.request_stop(0.0 if server.stopping else None)

    if threading.current_thread() is threading.main_thread():  # before listening: no signal is missed
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, on_signal)
    server.listen()
    server.serve()
    return 0


def _serve_workers(args: argparse.Namespace) -> int:
    """``serve --workers N``: a supervisor and N workers; the demo's tickets in a store they all share."""
    config = _server_config(args)  # bad flags fail here, before any fork
    store_dir = None
    if args.service is None and args.ticket_store is None:
        store_dir = tempfile.mkdtemp(prefix="thrift-handshake-")
        args.ticket_store = os.path.join(store_dir, "tickets.sqlite")
        logger.info("tickets shared by the workers in %s", args.ticket_store)
    def remove_store() -> None:
        if store_dir is not None:
            shutil.rmtree(store_dir, ignore_errors=True)

    try:
        return Supervisor(lambda: _server(args), config, args.workers, orphaned=remove_store).run()
    finally:
        remove_store()


def _client_tls(args: argparse.Namespace) -> Optional[ClientTLS]:
    if args.tls_key and not args.tls_cert:
        raise ArgumentError("--tls-key needs --tls-cert (the client certificate it belongs to)")
    if not (args.tls or args.tls_ca or args.tls_cert):
        if args.tls_server_name:
            raise ArgumentError("--tls-server-name needs --tls (or --tls-ca / --tls-cert)")
        return None
    return ClientTLS(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key,
                     server_hostname=args.tls_server_name)


def _versions(text: str) -> "tuple[int, int]":
    low, _, high = text.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise ArgumentError(f"--versions must look like 1-2, not {text!r}") from None


def _print_json(value: Any) -> None:
    print(json.dumps(jsonargs.to_jsonable(value), ensure_ascii=False, indent=2))


def _print_idl_services(idl: idlcache.LoadedIdl, default: idlcache.IdlService) -> None:
    """``call --idl X --list``: each service of the IDL with every method's signature."""
    for service in idl.services():
        extends = f" extends {service.extends}" if service.extends else ""
        marker = "   (default)" if service == default else ""
        print(f"service {service.name}{extends}{marker}")
        owner_shown = service
        for method, owner in idl.methods(service):
            if owner != owner_shown:
                print(f"  # from {owner.qualified}")
                owner_shown = owner
            print(f"  {method.signature(idl.program)}")


def _call_target(args: argparse.Namespace) -> "tuple[Optional[ModuleType], dict]":
    """The generated service module to call and what jsonargs needs to check its arguments."""
    if not args.idl:
        if args.list or args.include_dir:
            raise ArgumentError("--list and -I need --idl")
        return _generated_service(args.service or DEFAULT_SERVICE), {"unions": UNIONS}
    idl = idlcache.load_idl(args.idl, args.include_dir)
    service = idl.service(args.service)
    if args.list:
        _print_idl_services(idl, service)
        return None, {}
    if args.method is None:
        raise ArgumentError("which method? (call --idl FILE --list shows them)")
    idl.method(service, args.method)  # unknown method: lists the known ones
    if not args.no_hello and not any(m.name == "hello" for m, _ in idl.methods(service)):
        raise ArgumentError(f"service {service.name} has no hello(): it does not extend session.SessionService; "
                            "add --no-hello to call a server whose clients say no hello")
    fields, unions = idl.type_hints(service)
    return idl.service_module(service), {"unions": unions, "fields": fields}


def _client_options(args: argparse.Namespace) -> ClientOptions:
    return ClientOptions(client_name=args.client_name, versions=_versions(args.versions),
                         auth_token=_auth_token(args), wire=_wire(args), handshake=not args.no_hello,
                         timeouts=Timeouts(connect=args.connect_timeout, handshake=args.handshake_timeout,
                                           call=args.timeout),
                         tls=_client_tls(args))


def _generated_service(name: str) -> ModuleType:
    """The generated service module ``name`` (e.g. thrift_handshake_gen.HandshakeService)."""
    try:
        module = importlib.import_module(name)
    except ImportError as error:
        raise ArgumentError(f"--service {name}: {error}") from None
    if not all(hasattr(module, part) for part in ("Client", "Iface", "Processor")):
        raise ArgumentError(f"--service {name}: not a generated Thrift service module (no Client, Iface, Processor)")
    return module


def run_call(args: argparse.Namespace) -> int:
    service, checks = _call_target(args)
    if service is None:  # --list
        return 0
    if args.method is None:
        raise ArgumentError("which method? (give METHOD, or --idl FILE --list to see them)")
    values = jsonargs.parse_arguments(service, args.method, args.args, **checks)
    options = _client_options(args)
    if service is HandshakeService:  # the demo declares which of its replies time themselves
        options = dataclasses.replace(options, server_timed_methods=SERVER_TIMED)
    client = Client(args.host, args.port, options, service=service)
    try:
        with client:
            if args.method == "goodbye" and not args.no_hello:
                result = client.goodbye()
            else:
                result = client.call(args.method, *values)
        _print_json(result)
    except ServiceError as error:
        said = json.dumps(jsonargs.to_jsonable(error), ensure_ascii=False)
        print(f"{type(error).__name__}: {clip_for_log(said, _SERVER_TEXT_LIMIT)}", file=sys.stderr)
        return 1
    finally:
        if args.trace:
            print(format_table(client.timeline))
    return 0


def run_demo(wire: Wire) -> int:
    """Starts a server on a free loopback port, runs every phase against it and prints the timeline."""
    server = demo_server(ServerConfig(port=0, wire=wire)).start()
    try:  # whatever happens from here (even a closed stdout), the server stops
        host, port = server.address
        print(f"server listening on {host}:{port} (TThreadedServer, {wire})")
        options = ClientOptions(client_name="demo", features=frozenset({"submit", "notify", "timing", "zstd"}),
                                server_timed_methods=SERVER_TIMED,
                                wire=wire)
        client = Client(host, port, options, service=HandshakeService)
        with client:
            hello = client.server_hello
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    process = "[%(process)d]" if getattr(args, "workers", 1) > 1 else ""  # which worker said it
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s %(name)s{process}: %(message)s")
    # Thrift's TSocket logs each failed connect with a traceback; our errors already say it in one line.
    logging.getLogger("thrift.transport.TSocket").setLevel(logging.CRITICAL)
    try:
        if args.command == "serve":
            return run_serve(args)
        if args.command == "call":
            return run_call(args)
        if args.command == "demo":
            return run_demo(_wire(args))
    except ArgumentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ThriftHandshakeError as error:  # it may quote the server, whose text has any length
        print(f"error: {clip_for_log(error, _SERVER_TEXT_LIMIT)}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:  # e.g. address in use, a bad flag value
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
