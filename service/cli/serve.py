"""``thrift-handshake serve``: the demo service or the user's handler, until SIGINT/SIGTERM.

The CLI owns the process: it installs the signal handlers (the first stops gracefully, a second ends
the grace period). Settings are checked before anything listens; a port that cannot be bound is named.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import logging
import os
import shutil
import signal
import tempfile
import threading
from typing import Any, Dict, Optional, Tuple

from ..admin.endpoint import AdminEndpoint
from ..aio import AsyncHandshakeServer, event_loop_factory
from ..aio.blocking import BlockingAsyncServer
from ..admin.prometheus import PrometheusMetrics, missing_client_library
from ..admin.multiprocess import SummedMetrics, WorkerPublisher, use_directory, worker_gone
from ..admin.recent import RecentCalls
from ..config import ServerConfig, ServerLimits, ServerTLS, Wire
from ..contract import coroutine_methods, describe_service
from ..demo import DemoLimits, demo_server
from ..errors import ArgumentError
from ..server import HandshakeServer
from ..tracing import server_tracing_if_configured
from ..workers import Supervisor
from .handlers import answer_unimplemented, check_contract, load_handler, service_module, unimplemented_methods
from .parser import AUTH_TOKEN_ENV

__all__ = ["run_serve", "auth_token", "wire", "ListenError"]

logger = logging.getLogger(__name__)

#: Errors of bind()/listen() that are about the address asked for.
_ADDRESS_ERRORS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES, errno.EAFNOSUPPORT, errno.EEXIST,
                   errno.ENOENT, errno.ENOTDIR}


class ListenError(ArgumentError):
    """The address cannot be listened on (in use, not local, a privileged port)."""


def wire(args: argparse.Namespace) -> Wire:
    return Wire(protocol=args.protocol, transport=args.transport, accelerated=not args.pure_python)


def auth_token(args: argparse.Namespace) -> Optional[str]:
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


def _server_config(args: argparse.Namespace, interceptors: Tuple[Any, ...] = ()) -> ServerConfig:
    limits = ServerLimits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ServerLimits)})
    tls = None
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        if not (args.tls_cert and args.tls_key):
            raise ArgumentError("TLS needs both --tls-cert and --tls-key")
        tls = ServerTLS(args.tls_cert, args.tls_key, args.tls_client_ca)
    mode = hello_mode(args)
    tracing = server_tracing_if_configured()  # OpenTelemetry set up (e.g. opentelemetry-instrument): spans
    if tracing is not None:
        interceptors = (*interceptors, tracing)
    return ServerConfig(host=args.host, port=args.port, unix_socket=args.unix, wire=wire(args),
                        detect_wire=not args.only_wire,
                        handshake=mode != "off", optional_hello=mode == "optional", auth_token=auth_token(args),
                        tls=tls, grace=args.grace, drain_notice=args.drain_notice, server_name=args.server_name,
                        limits=limits, interceptors=interceptors, call_log_level=args.call_log_level,
                        http_origins=args.http_origin)


def hello_mode(args: argparse.Namespace) -> str:
    """``--hello MODE``, with ``--no-hello`` as ``--hello off``."""
    if args.no_hello:
        if args.hello not in (None, "off"):
            raise ArgumentError(f"--no-hello and --hello {args.hello} contradict each other: give one")
        return "off"
    return args.hello or "required"


def _server(args: argparse.Namespace, interceptors: Tuple[Any, ...] = (), server_class: Any = HandshakeServer) -> Any:
    config = _server_config(args, interceptors)
    specs = args.handler or []
    if not specs:
        if args.default_service is not None:
            raise ArgumentError("--default-service names one of several --handler services")
        limits = DemoLimits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DemoLimits)})
        return demo_server(config, limits, ticket_store=args.ticket_store, server_class=server_class)
    hosted: Dict[str, Any] = {}
    for spec in specs:
        name, _, target = spec.rpartition("=")
        handler = load_handler(target, args.path)
        service = service_module(handler, target)
        name = name or service.__name__.rsplit(".", 1)[-1]
        if name in hosted:
            raise ArgumentError(f"two --handler for service {name}: name them apart with NAME=MODULE:CLASS")
        hosted[name] = (handler, service, target)
    plain = len(hosted) == 1 and "=" not in specs[0]  # one service, bare names: a plain port
    if args.default_service is not None and plain:
        raise ArgumentError("--default-service names one of several --handler services")
    if args.default_service is not None and args.default_service not in hosted:
        raise ArgumentError(f"--default-service {args.default_service}: not one of the services "
                            f"({', '.join(hosted)})")
    for handler, service, target in hosted.values():
        check_contract(service, config.handshake and not config.optional_hello)
        answer_unimplemented(handler, unimplemented_methods(handler, service, config.handshake), target)
        awaited = sorted(coroutine_methods(handler, describe_service(service)))
        if awaited and server_class is HandshakeServer:
            raise ArgumentError(f"{target}: {awaited[0]} is a coroutine function (async def): serve it with --asyncio")
    if plain:
        handler, service, _ = hosted.popitem()[1]
        return server_class(handler, config, service=service)
    return server_class(services={name: handler for name, (handler, _, _) in hosted.items()},
                        default_service=args.default_service, config=config)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listen_error(error: OSError, args: argparse.Namespace, host: Optional[str] = None,
                  port: Optional[int] = None, flag: str = "--port") -> ListenError:
    if args.unix and host is None:
        return ListenError(f"cannot listen on unix:{args.unix}: {error.strerror or error}")
    address = _address(args.host if host is None else host, args.port if port is None else port)
    return ListenError(f"cannot listen on {address}: {error.strerror or error}"
                       + (f" (another server has it: stop it, or choose {flag})" if error.errno == errno.EADDRINUSE
                          else ""))


def run_serve(args: argparse.Namespace) -> int:
    """Serves until SIGINT/SIGTERM: the first drains gracefully, a second ends the grace period."""
    if args.workers > 1:
        if args.unix:
            raise ArgumentError("--unix serves from this process only: it cannot be combined with --workers")
        return _serve_workers(args)
    if args.asyncio:
        return _serve_asyncio(args)
    metrics = _metrics(args)
    recent = None if metrics is None else RecentCalls()
    server = _server(args, () if metrics is None else (metrics, recent))
    endpoint = None
    if metrics is not None:
        metrics.watch(server)
        endpoint = AdminEndpoint(metrics, args.metrics_host, args.metrics_port, token=server.config.auth_token,
                                 recent=recent)

    def on_signal(*_: Any) -> None:
        server.request_stop(0.0 if server.stopping else None)

    if threading.current_thread() is threading.main_thread():  # before listening: no signal is missed
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, on_signal)
    try:
        server.listen()
        if endpoint is not None:
            try:
                endpoint.start()
            except OSError as error:
                server.serverTransport.close()
                raise _listen_error(error, args, args.metrics_host, args.metrics_port, "--metrics-port") from None
            for origin in admin_origins(endpoint.base_url):  # its page may call this port (the run-it panel)
                server.allow_http_origin(origin)
    except OSError as error:
        if error.errno in _ADDRESS_ERRORS or error.errno is None:
            raise _listen_error(error, args) from None
        raise
    try:
        server.serve()
    finally:
        if endpoint is not None:
            endpoint.stop()
    return 0


def admin_origins(base_url: str) -> Tuple[str, ...]:
    """The origins a browser names the admin page at ``base_url`` by (loopback's also as localhost)."""
    origin = base_url.rstrip("/")
    if origin.startswith("http://127.0.0.1:"):
        return origin, origin.replace("127.0.0.1", "localhost", 1)
    return (origin,)


def _metrics(args: argparse.Namespace) -> Optional[PrometheusMetrics]:
    if args.metrics_port is None:
        return None
    _metrics_port_checked(args)
    return PrometheusMetrics()


def _metrics_port_checked(args: argparse.Namespace) -> None:
    if not 0 <= args.metrics_port <= 65535:
        raise ArgumentError(f"--metrics-port must be within 0..65535, not {args.metrics_port}")
    problem = missing_client_library()
    if problem is not None:
        raise ArgumentError(f"--metrics-port: {problem}")


def _serve_workers(args: argparse.Namespace) -> int:
    """``serve --workers N``: a supervisor and N workers; the demo's tickets in a store they all share."""
    config = _server_config(args)  # bad flags fail here, before any fork
    summed = _SummedEndpoint(args, config) if args.metrics_port is not None else None  # binds: may fail
    store_dir = None
    if args.handler is None and args.ticket_store is None:
        store_dir = tempfile.mkdtemp(prefix="thrift-handshake-")
        args.ticket_store = os.path.join(store_dir, "tickets.sqlite")
        logger.info("tickets shared by the workers in %s", args.ticket_store)

    def remove_store() -> None:
        if store_dir is not None:
            shutil.rmtree(store_dir, ignore_errors=True)

    def orphaned() -> None:  # in a worker whose supervisor is gone: what the supervisor would remove
        remove_store()
        if summed is not None:
            shutil.rmtree(summed.directory, ignore_errors=True)

    def build() -> Any:
        server_class = AsyncHandshakeServer if args.asyncio else HandshakeServer
        server = _server(args, server_class=server_class) if summed is None else summed.build_worker(server_class)
        if args.asyncio:  # each worker runs the asyncio server on an event loop of its own
            return BlockingAsyncServer(server, event_loop_factory())
        return server

    try:
        return Supervisor(build, config, args.workers, orphaned=orphaned,
                          worker_gone=None if summed is None else summed.worker_gone).run()
    except OSError as error:
        if error.errno in _ADDRESS_ERRORS:
            raise _listen_error(error, args) from None
        raise
    finally:
        remove_store()
        if summed is not None:
            summed.stop()


class _SummedEndpoint:
    """``--metrics-port`` with ``--workers``: the supervisor serves every worker's metrics summed
    (prometheus_client's multiprocess mode, in a directory of its own for this run)."""

    def __init__(self, args: argparse.Namespace, config: ServerConfig) -> None:
        _metrics_port_checked(args)
        self._args = args
        self.directory = tempfile.mkdtemp(prefix="thrift-handshake-metrics-")
        use_directory(self.directory)  # before any metric exists, and before the workers fork
        logger.info("metrics of every worker summed from %s", self.directory)
        self._endpoint = AdminEndpoint(SummedMetrics(self.directory), args.metrics_host, args.metrics_port,
                                       token=config.auth_token)
        try:
            self._endpoint.start()
        except OSError as error:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise _listen_error(error, args, args.metrics_host, args.metrics_port, "--metrics-port") from None

    def build_worker(self, server_class: Any = HandshakeServer) -> Any:
        """In a worker: its server (a ``server_class``), counted into its own files and publishing what is live
        (the admin page's view too); the admin page's origin may call it (the run-it panel)."""
        metrics, recent = PrometheusMetrics(), RecentCalls()
        server = _server(self._args, (metrics, recent), server_class=server_class)
        metrics.watch(server)
        for origin in admin_origins(self._endpoint.base_url):
            server.allow_http_origin(origin)
        publisher = WorkerPublisher(metrics, directory=self.directory, recent=recent).start()
        server.on_stop(lambda _timeout: publisher.stop())  # its last write before the directory goes
        return server

    def worker_gone(self, pid: int) -> None:
        worker_gone(pid, self.directory)

    def stop(self) -> None:
        self._endpoint.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _serve_asyncio(args: argparse.Namespace) -> int:
    """``serve --asyncio``: the asyncio server on uvloop's event loop when installed, else asyncio's."""
    metrics = _metrics(args)
    recent = None if metrics is None else RecentCalls()
    server = _server(args, () if metrics is None else (metrics, recent), server_class=AsyncHandshakeServer)
    endpoint = None
    if metrics is not None:
        metrics.watch(server)
        endpoint = AdminEndpoint(metrics, args.metrics_host, args.metrics_port, token=server.config.auth_token,
                                 recent=recent)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():  # before listening: no signal is missed
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, lambda: server.request_stop(0.0 if server.stopping else None))
        try:
            await server.start()
        except OSError as error:
            if error.errno in _ADDRESS_ERRORS or error.errno is None:
                raise _listen_error(error, args) from None
            raise
        if endpoint is not None:
            try:
                endpoint.start()
            except OSError as error:
                raise _listen_error(error, args, args.metrics_host, args.metrics_port, "--metrics-port") from None
            for origin in admin_origins(endpoint.base_url):  # its page may call this port (the run-it panel)
                server.allow_http_origin(origin)
        await server.serve()

    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(main())
    finally:
        if endpoint is not None:
            endpoint.stop()
    return 0
