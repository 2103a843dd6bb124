"""The ``thrift-handshake`` command: serve, call, demo, new, idl-path, probe, completion.

    thrift-handshake serve [--host 127.0.0.1] [--port 9090] [--auth-token-file F] [limits ...]
    thrift-handshake serve --handler MODULE:CLASS [--path DIR ...] [--no-hello]   your own service
    thrift-handshake call echo '"hi"' [--trace] [--format json]
    thrift-handshake call --idl calc.thrift [--service NAME] [--list | --describe NAME | METHOD ARG ...]
    thrift-handshake demo                                the whole flow against a throwaway server
    thrift-handshake new calc                            a service to start from, in calc/
    thrift-handshake idl-path                            where session.thrift is, for `thrift -I`
    thrift-handshake probe --port 9090                   exit 0 serving, 1 draining or down (health checks)

The grammar is in ``parser``, each command in its own module (the demo's in ``thrift_handshake.demo.cli``).
Exit status: ``parser.EXIT_CODES`` (0 success, 1 the call failed, 2 bad usage, 130 interrupted).
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .. import logs
from ..errors import ArgumentError, ThriftHandshakeError
from ..peerlog import clip_for_log
from .parser import build_parser, in_flag_terms

__all__ = ["main", "build_parser"]

#: The most characters of an error that quotes a peer (its text has any length).
_ERROR_TEXT_LIMIT = 2000


def version() -> str:
    """The installed distribution's version ("unknown" when run from a source tree without installing)."""
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed("thrift-handshake")
    except PackageNotFoundError:
        return "unknown"


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from .serve import run_serve

        return run_serve(args)
    if args.command == "call":
        from .call import run_call

        return run_call(args)
    if args.command == "demo":
        from ..demo.cli import run_demo

        return run_demo(args)
    if args.command == "probe":
        from .probe import run_probe

        return run_probe(args)
    if args.command == "idl-path":
        from ..idl import directory

        print(directory())
        return 0
    if args.command == "new":
        from pathlib import Path

        from .new import scaffold

        folder = scaffold(args.name, Path(args.dir))
        print(f"wrote {folder}: {args.name}.thrift, gen.sh, {args.name}_handler.py, test_{args.name}.py, README.md")
        print(f"next: cd {folder} && ./gen.sh, then see README.md")
        return 0
    from .completion import bash_script

    print(bash_script(build_parser(version())), end="")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line ``argv`` (default: sys.argv); returns the exit status."""
    args = build_parser(version()).parse_args(argv)
    logs.configure(args.log_level, args.log_format, with_pid=getattr(args, "workers", 1) > 1)
    try:
        return _run(args)
    except ArgumentError as error:
        print(f"error: {in_flag_terms(str(error))}", file=sys.stderr)
        return 2
    except ThriftHandshakeError as error:  # it may quote the server, whose text has any length
        print(f"error: {in_flag_terms(clip_for_log(error, _ERROR_TEXT_LIMIT))}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:  # a bad setting, a TLS file that does not load
        print(f"error: {in_flag_terms(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
