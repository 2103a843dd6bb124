"""``thrift-handshake call``: one method of any Thrift service, arguments and result as JSON.

stdout carries data only: the result (``--format text``), or one JSON document (``--format json``:
``{"method", "result", "timeline"}``, or ``{"method", "exception", "value", "timeline"}`` for a declared
exception). The timeline of ``--trace`` goes to stderr in text mode. Enums come back by name: the
compiler's model of the IDL says which i32 is which enum (``--idl``, or the demo's model installed with
the package); with ``--module``, as numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Optional, Tuple

from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Shape

from .. import idlcache, jsonargs
from ..client import Client
from ..config import ClientOptions, ClientTLS, Timeouts
from ..contract import describe_service
from ..demo import SERVER_TIMED
from ..errors import ArgumentError, ServiceError, ThriftHandshakeError
from ..idlcache import IdlField, IdlMethod, IdlType, LoadedIdl
from ..peerlog import clip_for_log
from ..timing import Record, format_table
from ..tracing import ClientTracing
from .handlers import add_import_paths
from .serve import auth_token, wire

__all__ = ["run_call"]

DEFAULT_MODULE = "thrift_handshake_gen.HandshakeService"
#: The most characters of what a server said that ``call`` prints (then an ellipsis and the length).
SERVER_TEXT_LIMIT = 2000
#: The installed HandshakeService's unions, for ``call`` without ``--idl`` (the generated code cannot
#: tell unions from structs; with ``--idl`` they come from the compiler's description of the IDL).
UNIONS = (Shape,)


class _Target:
    """What is called: the generated service module, the argument checks, and (with --idl) the model."""

    def __init__(self, module: ModuleType, checks: Dict[str, Any], idl: Optional[LoadedIdl] = None,
                 method: Optional[IdlMethod] = None) -> None:
        self.module, self.checks, self.idl, self.method = module, checks, idl, method


def _generated_module(name: str, paths: List[str]) -> ModuleType:
    add_import_paths(paths)
    try:
        module = importlib.import_module(name)
    except ImportError as error:
        raise ArgumentError(f"--module {name}: {error}" + ("" if paths else " (your gen-py needs --path DIR)")) from None
    if not all(hasattr(module, part) for part in ("Client", "Iface", "Processor")):
        raise ArgumentError(f"--module {name}: not a generated Thrift service module (no Client, Iface, Processor)")
    return module


def _field_json(field: IdlField) -> Dict[str, Any]:
    return {"id": field.id, "name": field.name, "type": str(field.type), "requiredness": field.requiredness}


def _method_json(method: IdlMethod) -> Dict[str, Any]:
    return {"name": method.name, "returns": str(method.returns), "oneway": method.oneway,
            "args": [_field_json(f) for f in method.args], "throws": [_field_json(f) for f in method.throws]}


def _print(document: Any) -> None:
    print(json.dumps(document, ensure_ascii=False, indent=2))


def _list(idl: LoadedIdl, default: idlcache.IdlService, as_json: bool) -> None:
    """``--list``: each service of the IDL with every method's signature."""
    if as_json:
        _print({"services": [
            {"name": s.name, "qualified": s.qualified, "extends": s.extends, "default": s == default,
             "methods": [{**_method_json(m), "from": owner.qualified} for m, owner in idl.methods(s)]}
            for s in idl.services()]})
        return
    for service in idl.services():
        extends = f" extends {service.extends}" if service.extends else ""
        print(f"service {service.name}{extends}" + ("   (default)" if service == default else ""))
        owner_shown = service
        for method, owner in idl.methods(service):
            if owner != owner_shown:
                print(f"  # from {owner.qualified}")
                owner_shown = owner
            print(f"  {method.signature(idl.program)}")


def _describe(idl: LoadedIdl, service: idlcache.IdlService, name: str, as_json: bool) -> None:
    """``--describe NAME``: a method of the service, or a struct, union, exception or enum of the IDL."""
    qualified = name if "." in name else f"{idl.program}.{name}"
    methods = {m.name: m for m, _ in idl.methods(service)}
    if name in methods:
        method = methods[name]
        if as_json:
            _print({"kind": "method", "service": service.qualified, **_method_json(method)})
        else:
            print(method.signature(idl.program))
        return
    struct = idl.model.structs.get(qualified)
    if struct is not None:
        if as_json:
            _print({"kind": struct.kind, "name": qualified, "fields": [_field_json(f) for f in struct.fields]})
        else:
            print(f"{struct.kind} {qualified} {{")
            for field in struct.fields:
                print(f"  {field},")
            print("}")
        return
    program, _, short = qualified.rpartition(".")
    members = idl.model.programs[program].enums.get(short) if program in idl.model.programs else None
    if members is not None:
        if as_json:
            _print({"kind": "enum", "name": qualified, "members": dict(members)})
        else:
            print(f"enum {qualified} {{ " + ", ".join(f"{m} = {v}" for m, v in members) + " }")
        return
    types = sorted(idl.model.structs) + sorted(f"{p.name}.{e}" for p in idl.model.programs.values() for e in p.enums)
    raise ArgumentError(f"--describe {name}: no method of {service.name} and no type of that name; "
                        f"methods: {', '.join(sorted(methods))}; types: {', '.join(types)}")


def _demo_model() -> LoadedIdl:
    """The compiler's description of the demo's IDL, installed beside its generated code (scripts/gen)."""
    import thrift_handshake_gen

    return idlcache.described(Path(thrift_handshake_gen.__file__).parent / "handshake.xml", "handshake")


def _list_or_describe(args: argparse.Namespace, idl: LoadedIdl) -> None:
    service = idl.service(args.service)
    if args.list:
        _list(idl, service, args.format == "json")
    else:
        _describe(idl, service, args.describe, args.format == "json")


def _target(args: argparse.Namespace) -> Optional[_Target]:
    """The service to call, or None when --list/--describe already answered."""
    if not args.idl and args.module is None and (args.list or args.describe):
        _list_or_describe(args, _demo_model())  # the demo's model ships with the package
        return None
    if not args.idl:
        for flag, given in (("--list", args.list), ("--describe", args.describe), ("-I", args.include_dir),
                            ("--service", args.service)):
            if given:
                raise ArgumentError(f"{flag} needs --idl FILE" + (" (a generated module is --module)"
                                                                   if flag == "--service" else ""))
        module = _generated_module(args.module or DEFAULT_MODULE, args.path)
        if args.method is not None and args.module is None and args.method not in describe_service(module):
            raise ArgumentError(f"unknown method {args.method!r}: without --idl, call speaks the demo's "
                                f"HandshakeService ({', '.join(sorted(describe_service(module)))}); for your "
                                "own service give --idl YOUR.thrift (or --module with --path)")
        if args.module is None and args.method is not None:  # the demo: its model ships with the package
            demo = _demo_model()
            return _Target(module, {"unions": UNIONS}, demo, demo.method(demo.service(), args.method))
        return _Target(module, {"unions": UNIONS})
    if args.module or args.path:
        raise ArgumentError("--module and --path are for generated code; --idl compiles the IDL itself")
    idl = idlcache.load_idl(args.idl, args.include_dir)
    service = idl.service(args.service)
    if args.list or args.describe:
        _list_or_describe(args, idl)
        return None
    if args.method is None:
        raise ArgumentError("which method? (call --idl FILE --list shows them)")
    method = idl.method(service, args.method)  # unknown method: lists the known ones
    if not args.no_hello and not any(m.name == "hello" for m, _ in idl.methods(service)):
        raise ArgumentError(f"service {service.name} has no hello(): it does not extend session.SessionService; "
                            "add --no-hello to call a server whose clients say no hello")
    fields, unions = idl.type_hints(service)
    return _Target(idl.service_module(service), {"unions": unions, "fields": fields}, idl, method)


def _client_tls(args: argparse.Namespace) -> Optional[ClientTLS]:
    if args.tls_key and not args.tls_cert:
        raise ArgumentError("--tls-key needs --tls-cert (the client certificate it belongs to)")
    if args.tls_cert and not args.tls_key:
        raise ArgumentError("--tls-cert needs --tls-key (the certificate's private key)")
    if not (args.tls or args.tls_ca or args.tls_cert):
        if args.tls_server_name:
            raise ArgumentError("--tls-server-name needs --tls (or --tls-ca / --tls-cert)")
        return None
    return ClientTLS(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key,
                     server_hostname=args.tls_server_name)


def _versions(text: str) -> Tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise ArgumentError(f"--versions must look like 1-2, not {text!r}") from None


def _client_options(args: argparse.Namespace) -> ClientOptions:
    return ClientOptions(client_name=args.client_name, versions=_versions(args.versions),
                         auth_token=auth_token(args), wire=wire(args), handshake=not args.no_hello,
                         timeouts=Timeouts(connect=args.connect_timeout, handshake=args.handshake_timeout,
                                           call=args.timeout),
                         tls=_client_tls(args), unix_socket=args.unix, multiplexed=_service_name(args.multiplexed),
                         interceptors=_tracing(args.traceparent))


def _tracing(traceparent: Optional[str]) -> Tuple[ClientTracing, ...]:
    """``--traceparent``: the calls go out in that trace."""
    if traceparent is None:
        return ()
    try:
        return (ClientTracing(traceparent),)
    except ValueError as error:
        raise ArgumentError(f"--traceparent: {error}") from None


def _service_name(name: Optional[str]) -> Optional[str]:
    if name is not None and (not name or ":" in name):
        raise ArgumentError(f"--multiplexed takes a service name without ':', not {name!r}")
    return name


def named_enums(value: Any, idl_type: Optional[IdlType], idl: LoadedIdl) -> Any:
    """A JSON value (from ``jsonargs.to_jsonable``) with every enum number of ``idl_type`` by its name."""
    if value is None or idl_type is None:
        return value
    kind = idl_type.kind
    if kind == "enum":
        return dict((v, m) for m, v in idl_type.members).get(value, value)
    if kind in ("struct", "union", "exception") and isinstance(value, dict):
        fields = {f.name: f.type for f in idl.model.structs[idl_type.name].fields}
        return {name: named_enums(item, fields.get(name), idl) for name, item in value.items()}
    if kind in ("list", "set") and isinstance(value, list):
        return [named_enums(item, idl_type.elem, idl) for item in value]
    if kind == "map" and isinstance(value, dict):
        named_keys = idl_type.key is not None and idl_type.key.kind == "enum"
        return {(named_enums(int(k), idl_type.key, idl) if named_keys else k): named_enums(v, idl_type.value, idl)
                for k, v in value.items()}
    if kind == "map" and isinstance(value, list):
        return [[named_enums(k, idl_type.key, idl), named_enums(v, idl_type.value, idl)] for k, v in value]
    return value


def _timeline_json(records: List[Record]) -> List[Dict[str, Any]]:
    return [{key: value for key, value in record._asdict().items() if value is not None} for record in records]


def _exception_type(target: _Target, error: ServiceError) -> Optional[IdlType]:
    if target.method is None:
        return None
    return next((f.type for f in target.method.throws if f.type.name.endswith("." + type(error).__name__)), None)


def run_call(args: argparse.Namespace) -> int:
    target = _target(args)
    if target is None:  # --list or --describe
        return 0
    if args.method is None:
        raise ArgumentError("which method? (give METHOD, or --idl FILE --list to see them)")
    values = jsonargs.parse_arguments(target.module, args.method, args.args, **target.checks)
    options = _client_options(args)
    if target.module is HandshakeService:  # the demo declares which of its replies time themselves
        options = dataclasses.replace(options, server_timed_methods=SERVER_TIMED)
    client = Client(args.host, args.port, options, service=target.module)
    as_json = args.format == "json"
    document: Dict[str, Any] = {"method": args.method}
    status = 0
    failure: Optional[ThriftHandshakeError] = None
    try:
        with client:
            if args.method == "goodbye" and not args.no_hello:
                result = client.goodbye()
            else:
                result = client.call(args.method, *values)
        document["result"] = jsonargs.to_jsonable(result)
        if target.idl is not None and target.method is not None:
            document["result"] = named_enums(document["result"], target.method.returns, target.idl)
        if not as_json:
            _print(document["result"])
    except ServiceError as error:
        value = jsonargs.to_jsonable(error)
        if target.idl:
            value = named_enums(value, _exception_type(target, error), target.idl)
        document.update(exception=type(error).__name__, value=value)
        status = 1
        if not as_json:
            said = json.dumps(value, ensure_ascii=False)
            print(f"{type(error).__name__}: {clip_for_log(said, SERVER_TEXT_LIMIT)}", file=sys.stderr)
    except ThriftHandshakeError as error:  # no answer of the IDL's: the document says why, then main() does
        if not as_json or isinstance(error, ArgumentError):
            raise
        document.update(error=type(error).__name__, message=clip_for_log(str(error), SERVER_TEXT_LIMIT))
        failure = error
    finally:
        if args.trace and not as_json:
            print(format_table(client.timeline), file=sys.stderr)
    if as_json:
        document["timeline"] = _timeline_json(list(client.timeline))
        _print(document)
    if failure is not None:
        raise failure
    return status
