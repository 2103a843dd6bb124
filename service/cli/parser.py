"""The command line's grammar: every command, flag, help text and example, and nothing that runs.

Two rules for every parser here: an option is only ever its full name (argparse's prefix matching is
off, so ``--auth-token SECRET`` is not taken for ``--auth-token-file``), and an unknown option is named
without the values around it (they may be secrets). Errors from the settings speak in flags
(``in_flag_terms``), not in the names of the dataclasses behind them.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
from typing import Any, Dict, Iterator, List, NoReturn, Optional, Sequence

from ..config import (CLIENT_PROTOCOLS, CLIENT_TRANSPORTS, DEFAULT_HOST, DEFAULT_PORT, LOG_LEVELS, PROTOCOLS, TRANSPORTS,
                      ClientOptions, ServerConfig)
from ..config import ServerLimits
from ..logs import LOG_FORMATS
from ..config import Timeouts, Wire
from ..demo.limits import DemoLimits

__all__ = ["Parser", "build_parser", "in_flag_terms", "AUTH_TOKEN_ENV", "EXIT_CODES", "FORMATS"]

AUTH_TOKEN_ENV = "THRIFT_HANDSHAKE_AUTH_TOKEN"
FORMATS = ("text", "json")
#: ``serve --hello``: the session gate's modes.
HELLO_MODES = ("required", "optional", "off")
#: ``--workers`` at most (a worker's slot number travels as one byte).
MAX_WORKERS = 256

#: What each exit status means; the top-level help prints it and the tests hold the CLI to it.
EXIT_CODES = {
    0: "success",
    1: "the call failed: connection, handshake, a declared exception or a server error",
    2: "bad usage: flags, arguments, the IDL, the handler (nothing was sent or served)",
    130: "interrupted (Ctrl-C)",
}

DESCRIPTION = """\
Serve a Thrift service with an explicit session handshake, call any Thrift service from the shell,
or watch the whole flow in a demo. Every command has --help with examples."""

EXAMPLES = {
    "serve": """\
examples:
  thrift-handshake serve                                        # the demo service on 127.0.0.1:9090
  thrift-handshake serve --host '[::1]' --port 9191 --idle-timeout 60
  thrift-handshake serve --handler calc_handler:CalculatorHandler --path gen-py --path .
  thrift-handshake serve --handler store:StoreHandler --path gen-py --no-hello   # a plain service
  thrift-handshake serve --handler calc:CalcHandler --handler store:StoreHandler --path gen-py   # Calc:add, Store:get
  thrift-handshake serve --handler store:StoreHandler --path gen-py --hello optional  # hello or not
  thrift-handshake serve --workers auto --tls-cert s.pem --tls-key s.key""",
    "call": """\
examples:
  thrift-handshake call echo '"hi"'                             # the demo service on 127.0.0.1:9090
  thrift-handshake call process '{"request_id": "r1", "payload": "abc"}' --trace
  thrift-handshake call --idl calc.thrift add 1 2               # your own service, from its IDL
  thrift-handshake call --idl calc.thrift --list --format json  # its methods, as data
  thrift-handshake call --idl calc.thrift --describe add        # one method or type
  thrift-handshake call --idl plain.thrift --service Store --no-hello find '{"id": 1}'
  thrift-handshake call --idl calc.thrift --multiplexed Calc add 1 2   # Calc on a port of several
  thrift-handshake call --module calc.Calculator --path gen-py add 1 2

stdout carries the result only (JSON); --trace writes the timeline to stderr. With --format json
stdout is one document: {"method", "result", "timeline"}, or "exception" and "value" instead of
"result" for a declared exception, or "error" (its class) and "message" for any other failed call
(both exit 1).""",
    "probe": """\
examples:
  thrift-handshake probe --port 9090 && echo serving           # exit 0 serving, 1 draining or down
  thrift-handshake probe --host 10.0.0.7 --port 9090 --timeout 1   # a Kubernetes readiness probe
  thrift-handshake probe --port 9090 --alive                    # liveness: draining or full is alive (exit 0)""",
    "idl-path": """\
example:
  thrift -I "$(thrift-handshake idl-path)" --gen py calc.thrift      # calc.thrift includes session.thrift""",
    "new": """\
example:
  thrift-handshake new calc && cd calc && ./gen.sh          # calc.thrift, calc_handler.py, gen.sh, a test""",
    "completion": """\
example:
  eval "$(thrift-handshake completion bash)"                   # in ~/.bashrc""",
}

#: Names in the settings' error messages, and the flag each one is.
_FLAG_NAMES = {
    "Timeouts.call": "--timeout",
    "Timeouts.connect": "--connect-timeout",
    "Timeouts.handshake": "--handshake-timeout",
    "ClientTLS.ca_file": "--tls-ca",
    "ClientTLS.server_hostname": "--tls-server-name",
    "TLS CA": "--tls-ca",
    "TLS client certificate": "--tls-cert",
    "TLS client key": "--tls-key",
    "TLS certificate": "--tls-cert",
    "TLS key": "--tls-key",
    "TLS client CA": "--tls-client-ca",
    "optional_hello": "--hello optional",
    "an auth_token": "an auth token",
}
_LIMITS_NAME = re.compile(r"\b(?:ServerLimits|DemoLimits)\.(\w+)")
_BARE_SETTING = re.compile(r"^(port|grace|drain_notice|versions) must\b")


def in_flag_terms(message: str) -> str:
    """A settings error worded with the CLI's flags: ``ServerLimits.idle_timeout`` is ``--idle-timeout``."""
    message = _LIMITS_NAME.sub(lambda m: "--" + m.group(1).replace("_", "-"), message)
    message = _BARE_SETTING.sub(lambda m: f"--{m.group(1).replace('_', '-')} must", message)
    for name, flag in _FLAG_NAMES.items():
        message = re.sub(rf"(?<![\w-]){re.escape(name)}\b", flag, message)
    return message.replace(" seconds or None,", " seconds,") if message.startswith("--") else message


class Parser(argparse.ArgumentParser):
    """An ArgumentParser without prefix matching, whose errors never repeat a value it did not know."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Optional[Sequence[str]] = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        known, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(self._unknown(extras))
        return known

    def _unknown(self, extras: List[str]) -> str:
        options = [extra.split("=", 1)[0] for extra in extras if extra.startswith("-")]
        if not options:
            return f"{len(extras)} unexpected argument(s) (a value after a flag that takes none?)"
        known = sorted({flag for parser in _parsers(self) for action in parser._actions
                        for flag in action.option_strings})
        words = []
        for option in options:
            close = difflib.get_close_matches(option, known, n=2, cutoff=0.75)
            words.append(option + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        # only the option names: the values next to them may be secrets (--auth-token SECRET)
        return "unknown option " + ", ".join(words)

    def error(self, message: str) -> NoReturn:
        self.print_usage()
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                yield from _parsers(sub)


class Once(argparse.Action):
    """An option that may be given once: a second one is an error, not a silent replacement."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        given = namespace.__dict__.setdefault("_given_once", {})
        if self.dest in given:
            parser.error(f"{option_string} given twice ({given[self.dest]} and {values}): "
                         f"{self.metavar or self.dest} names one thing; give it once")
        given[self.dest] = values
        setattr(namespace, self.dest, values)


def host(text: str) -> str:
    """A host name or address; an IPv6 address may be bracketed as in URLs ([::1])."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text or "[" in text or "]" in text:
        raise argparse.ArgumentTypeError(f"not a host name or address: {text!r}")
    return text


def port(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{number} is outside 0..65535")
    return number


def workers(text: str) -> int:
    from ..workers import cpu_count

    if text == "auto":
        return cpu_count()
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of workers (or auto): {text!r}") from None
    if not 1 <= number <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{number} is outside 1..{MAX_WORKERS}")
    return number


def limit_flags(parser: Any, limits_class: type) -> None:
    """One flag per field of a limits dataclass, with its help text and default."""
    defaults = limits_class()
    for field in dataclasses.fields(limits_class):
        default = getattr(defaults, field.name)
        parser.add_argument("--" + field.name.replace("_", "-"), type=type(default), default=default,
                            metavar=type(default).__name__.upper(),
                            help=f"{field.metadata['help']} (default {default})")


def wire_flags(parser: argparse.ArgumentParser, client: bool = False) -> None:
    """--protocol, --transport, --pure-python; a client's (``client``) also json and http (a server detects HTTP)."""
    protocols, transports = (CLIENT_PROTOCOLS, CLIENT_TRANSPORTS) if client else (PROTOCOLS, TRANSPORTS)
    parser.add_argument("--protocol", choices=protocols, default=Wire.protocol,
                        help=f"Thrift protocol (default {Wire.protocol})" + ("; json over --transport http" if client else ""))
    parser.add_argument("--transport", choices=transports, default=Wire.transport,
                        help=f"Thrift transport (default {Wire.transport})" + (
                            "; http: one POST per message on one keep-alive connection" if client else ""))
    parser.add_argument("--pure-python", action="store_true",
                        help="do not use Thrift's C extension (same bytes on the wire, slower)")


def _connection_flags(parser: argparse.ArgumentParser, client: bool = False) -> None:
    parser.add_argument("--host", type=host, default=DEFAULT_HOST,
                        help=f"name or address (default {DEFAULT_HOST}); IPv6 as ::1 or [::1]")
    parser.add_argument("--port", type=port, default=DEFAULT_PORT, help=f"0..65535 (default {DEFAULT_PORT})")
    wire_flags(parser, client)
    parser.add_argument("--auth-token-file", metavar="FILE",
                        help=f"read the shared hello() token from FILE (or set ${AUTH_TOKEN_ENV}; "
                             "never on the command line, where ps shows it)")


def _serve_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    serve = commands.add_parser("serve", parents=[common], help="run a server until SIGINT/SIGTERM",
                                description="Serve the demo service, or your handler (--handler), until "
                                            "SIGINT/SIGTERM:\nthe first stops gracefully, a second at once.",
                                epilog=EXAMPLES["serve"])
    _connection_flags(serve)
    serve.add_argument("--unix", metavar="PATH",
                       help="listen on this Unix domain socket instead of --host/--port (mode 0660; a stale "
                            "socket file is replaced, any other file is an error; removed at the stop)")
    serve.add_argument("--grace", type=float, default=ServerConfig.grace, metavar="SECONDS",
                       help=f"seconds in-flight calls get to finish on stop (default {ServerConfig.grace:g})")
    serve.add_argument("--drain-notice", type=float, default=ServerConfig.drain_notice, metavar="SECONDS",
                       help="on stop, keep the port open this long (within --grace) answering ping and hello "
                            "with Draining, so a load balancer's health check sees the drain (default "
                            f"{ServerConfig.drain_notice:g})")
    serve.add_argument("--server-name", default=ServerConfig.server_name, metavar="NAME",
                       help=f"the name hello() answers with (default {ServerConfig.server_name})")
    serve.add_argument("--workers", type=workers, default=1, metavar="N",
                       help="serve from N pre-forked processes on one socket, or auto: one per core "
                            "(default 1: this process); the demo's tickets then go to a shared "
                            "--ticket-store (default: a temporary file)")
    serve.add_argument("--asyncio", action="store_true",
                       help="serve on an asyncio event loop (uvloop's when installed): coroutine handlers "
                            "(async def) wait without a thread, plain ones run on --max-threads threads")
    serve.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate chain")
    serve.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    serve.add_argument("--tls-client-ca", metavar="PEM", help="require client certificates signed by this CA (mTLS)")
    serve.add_argument("--handler", "--service", dest="handler", action="append", metavar="[NAME=]MODULE:CLASS",
                       help="host this handler class, a subclass of your generated Iface, made with no "
                            "arguments (default: the demo service); --service is the same flag. Repeat it to "
                            "host several services on one port, each called as NAME:method (Apache's "
                            "TMultiplexedProtocol); NAME defaults to the IDL service's name")
    serve.add_argument("--default-service", action=Once, metavar="NAME",
                       help="with several --handler: the service that bare method names reach "
                            "(default: none, every call names its service)")
    serve.add_argument("--path", action="append", default=[], metavar="DIR",
                       help="add DIR to the import path (generated code, the handler); repeatable")
    serve.add_argument("--only-wire", action="store_true",
                       help="serve only --protocol/--transport (default: binary and compact, buffered and "
                            "framed, and THeader, told apart per connection)")
    serve.add_argument("--hello", choices=HELLO_MODES, default=None,
                       help="required (default): every call needs hello() first; optional: a connection "
                            "whose first call is not hello() is served as an anonymous session; off: a "
                            "plain service, clients know nothing of hello (no session gate)")
    serve.add_argument("--no-hello", action="store_true", help="the same as --hello off")
    serve.add_argument("--metrics-port", type=int, metavar="PORT",
                       help="serve Prometheus metrics at http://HOST:PORT/metrics and the admin page at "
                            "http://HOST:PORT/ (0: a free port, named in the log); behind the auth token "
                            "(bearer, or a browser's password) when one is set")
    serve.add_argument("--call-log-level", default=ServerConfig.call_log_level, type=str.upper,
                       choices=LOG_LEVELS, help="the level of the line every call gets, an access log "
                                                f"(default {ServerConfig.call_log_level}: shown with --log-level DEBUG)")
    serve.add_argument("--http-origin", action="append", default=[], metavar="ORIGIN",
                       help="let web pages from ORIGIN (scheme://host:port; * for any) call this port with Thrift "
                            "over HTTP from a browser (CORS); repeatable. Other origins are refused; --metrics-port "
                            "adds the admin page's own")
    serve.add_argument("--metrics-host", default=DEFAULT_HOST, metavar="HOST",
                       help=f"the address the metrics port listens on (default {DEFAULT_HOST})")
    limit_flags(serve, ServerLimits)
    demo = serve.add_argument_group("demo service (without --handler)")
    limit_flags(demo, DemoLimits)
    demo.add_argument("--ticket-store", metavar="FILE|URL",
                      help="where every submit ticket's fate is recorded, so a restarted server still "
                           "answers for them: an SQLite file (one host), or redis://HOST:PORT/DB shared by "
                           "servers on several hosts (default: memory only)")


def _call_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    call = commands.add_parser("call", parents=[common], help="connect, hello, call METHOD, goodbye",
                               description="Call one method and print its result as JSON. Each ARG is a "
                                           "JSON value\nfor the next parameter.",
                               epilog=EXAMPLES["call"])
    call.add_argument("method", nargs="?", help="the method to call (not needed with --list or --describe)")
    call.add_argument("args", nargs="*", metavar="ARG", help="JSON value for the next parameter")
    _connection_flags(call, client=True)
    call.add_argument("--format", choices=FORMATS, default="text",
                      help="text: the result as JSON, the timeline (--trace) on stderr; json: one JSON "
                           "document on stdout, with the timeline inside (default text)")
    call.add_argument("--trace", action="store_true", help="also give the phase timeline (stderr, or in the JSON)")
    call.add_argument("--timeout", type=float, default=Timeouts.call, metavar="SECONDS",
                      help=f"seconds the call may take, round trip (default {Timeouts.call:g})")
    call.add_argument("--connect-timeout", type=float, default=Timeouts.connect, metavar="SECONDS",
                      help=f"seconds to open the connection, TLS included (default {Timeouts.connect:g})")
    call.add_argument("--handshake-timeout", type=float, default=Timeouts.handshake, metavar="SECONDS",
                      help=f"seconds for hello() (default {Timeouts.handshake:g})")
    call.add_argument("--client-name", default=ClientOptions.client_name, metavar="NAME",
                      help=f"the name hello() gives the server (default {ClientOptions.client_name})")
    call.add_argument("--versions", default="1-2", help="version range to offer, e.g. 1-1 (default 1-2)")
    call.add_argument("--tls", action="store_true", help="connect with TLS (system CAs unless --tls-ca)")
    call.add_argument("--tls-ca", metavar="PEM", help="verify the server against this CA; implies --tls")
    call.add_argument("--tls-cert", metavar="PEM", help="client certificate for mutual TLS; needs --tls-key")
    call.add_argument("--tls-key", metavar="PEM", help="the client certificate's key")
    call.add_argument("--tls-server-name", metavar="NAME", help="name expected in the server's certificate")
    call.add_argument("--unix", metavar="PATH", help="connect to this Unix domain socket (serve --unix) instead of "
                                                     "--host/--port")
    call.add_argument("--idl", action=Once, metavar="FILE",
                      help="call the service of this Thrift IDL (compiled with `thrift`, cached); "
                           "`include \"session.thrift\"` finds the runtime's own")
    call.add_argument("-I", "--include-dir", action="append", default=[], metavar="DIR",
                      help="with --idl: a folder to search for included IDLs (repeatable)")
    call.add_argument("--service", action=Once, metavar="NAME",
                      help="with --idl: the service's name in the IDL (default: its last service)")
    call.add_argument("--module", action=Once, metavar="MODULE",
                      help="without --idl: a generated Python service module, e.g. calc.Calculator "
                           "(default: the demo's thrift_handshake_gen.HandshakeService)")
    call.add_argument("--path", action="append", default=[], metavar="DIR",
                      help="with --module: add DIR to the import path (your gen-py); repeatable")
    call.add_argument("--no-hello", action="store_true",
                      help="the server's clients say no hello/goodbye: connect and call straight away")
    call.add_argument("--multiplexed", action=Once, metavar="NAME",
                      help="the server hosts several services on one port: call service NAME "
                           "(every request, hello included, goes out as NAME:method)")
    call.add_argument("--traceparent", metavar="TRACEPARENT",
                      help="W3C trace context to send (00-<32 hex>-<16 hex>-<2 hex>): in hello, and with "
                           "--transport header on every call (the server logs its trace id)")
    call.add_argument("--list", action="store_true",
                      help="the services and methods with their signatures (of --idl, else the demo's); "
                           "connects to nothing")
    call.add_argument("--describe", metavar="NAME",
                      help="one method's signature, or a type's fields or members (of --idl, else the "
                           "demo's); connects to nothing")


def _probe_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    probe = commands.add_parser("probe", parents=[common], epilog=EXAMPLES["probe"],
                                help="ping the server before any hello: exit 0 serving, 1 draining or down",
                                description="A health check that speaks the protocol (for Kubernetes exec "
                                            "probes):\none ping() before hello; prints serving, draining or down.")
    probe.add_argument("--host", type=host, default=DEFAULT_HOST,
                       help=f"name or address (default {DEFAULT_HOST}); IPv6 as ::1 or [::1]")
    probe.add_argument("--port", type=port, default=DEFAULT_PORT, help=f"0..65535 (default {DEFAULT_PORT})")
    probe.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS",
                       help="seconds to connect, and again for the reply (default 2)")
    probe.add_argument("--alive", action="store_true",
                       help="a liveness probe: a draining or full server answers, so exit 0 too (1 only when down)")


def build_parser(version: str = "unknown") -> Parser:
    """The ``thrift-handshake`` parser with every command."""
    from ..demo.cli import add_demo_command

    codes = "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items())
    parser = Parser(prog="thrift-handshake", description=DESCRIPTION, epilog=f"exit status:\n{codes}")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                        help="logging level, on stderr (default INFO)")
    parser.add_argument("--log-format", default="text", choices=LOG_FORMATS,
                        help="text lines, or one JSON object per line with the session id (default text)")
    # also accepted after the command; SUPPRESS keeps a value given before it
    common = Parser(add_help=False)
    common.add_argument("--log-level", default=argparse.SUPPRESS, type=str.upper, choices=LOG_LEVELS,
                        help="logging level, on stderr (default INFO)")
    common.add_argument("--log-format", default=argparse.SUPPRESS, choices=LOG_FORMATS,
                        help="text lines, or one JSON object per line with the session id (default text)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parser(commands, common)
    _call_parser(commands, common)
    add_demo_command(commands, common, wire_flags)
    _probe_parser(commands, common)
    commands.add_parser("idl-path", parents=[common], epilog=EXAMPLES["idl-path"],
                        help="print the folder of the runtime's IDL files (session.thrift) for `thrift -I`")
    new = commands.add_parser("new", parents=[common], epilog=EXAMPLES["new"],
                              help="write a service to start from into a new folder NAME/")
    new.add_argument("name", metavar="NAME", help="the service's module and IDL name, e.g. calc")
    new.add_argument("--dir", default=".", metavar="DIR", help="where to make NAME/ (default: here)")
    completion = commands.add_parser("completion", parents=[common], epilog=EXAMPLES["completion"],
                                     help="print a shell completion script")
    completion.add_argument("shell", choices=("bash",), help="the shell (bash; zsh reads it with bashcompinit)")
    return parser


def option_table(parser: argparse.ArgumentParser) -> Dict[str, List[str]]:
    """Each command's options (and the top level's under ""), for completion scripts."""
    table: Dict[str, List[str]] = {"": [f for a in parser._actions for f in a.option_strings]}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                table[name] = sorted(f for a in sub._actions for f in a.option_strings)
    return table
