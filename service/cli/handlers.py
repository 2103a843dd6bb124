"""``serve --handler MODULE:CLASS``: import and make the handler, and catch at start-up the mistakes that
would otherwise show only on the first call.

* an import that fails (missing module, syntax error, an exception at import) or a class that cannot be
  made without arguments: one line, exit 2;
* a service that does not extend ``session.SessionService`` served with the handshake on: its clients,
  generated from its IDL, cannot say hello, so every call would be refused; refused with the fix;
* a method of the service that the handler does not implement: named at start-up in a WARNING; a call
  to it is answered ``TApplicationException`` UNKNOWN_METHOD ("not implemented") and logged in one line,
  instead of the generated stub's ``None`` that reaches the client as "unknown result".
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from types import ModuleType
from typing import Any, Callable, List, Sequence

from thrift.Thrift import TApplicationException

from thrift_handshake_gen.session import SessionService

from ..contract import describe_service, service_of
from ..errors import ArgumentError

__all__ = ["load_handler", "add_import_paths", "service_module", "check_contract", "unimplemented_methods",
           "answer_unimplemented", "NotImplementedByHandler"]

logger = logging.getLogger(__name__)


class NotImplementedByHandler(TApplicationException):
    """A call to a method the handler does not implement (the peer sees UNKNOWN_METHOD)."""

    def __init__(self, method: str, handler: str) -> None:
        super().__init__(TApplicationException.UNKNOWN_METHOD, f"{method}() is not implemented by this server")
        self.method, self.handler = method, handler


def add_import_paths(paths: Sequence[str]) -> None:
    """Puts the --path folders first on the import path, in the order given."""
    for path in reversed(paths):
        if not os.path.isdir(path):
            raise ArgumentError(f"--path {path}: no such directory")
        sys.path.insert(0, os.path.abspath(path))


def load_handler(spec: str, paths: Sequence[str]) -> Any:
    """Imports MODULE (from the --path dirs first) and makes CLASS(); every failure is one ArgumentError."""
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise ArgumentError(f"--handler must look like MODULE:CLASS, not {spec!r}")
    add_import_paths(paths)
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as error:
        raise ArgumentError(f"--handler {spec}: syntax error in {error.filename} line {error.lineno}: "
                            f"{error.msg}") from None
    except ImportError as error:
        hint = " (generated code and the handler's folder need --path DIR)" if not paths else ""
        raise ArgumentError(f"--handler {spec}: {error}{hint}") from None
    except Exception as error:  # the module itself failed at import: report it, not a traceback
        raise ArgumentError(f"--handler {spec}: importing {module_name} failed: "
                            f"{type(error).__name__}: {error}") from None
    handler_class = getattr(module, class_name, None)
    if not isinstance(handler_class, type):
        raise ArgumentError(f"--handler {spec}: {module_name} has no class {class_name}")
    try:
        return handler_class()
    except Exception as error:  # e.g. a constructor that needs arguments
        # the error's own words first: under --workers the supervisor reports "could not start: <them>"
        raise ArgumentError(f"{error} (--handler {spec}: {class_name}() raised {type(error).__name__}; "
                            "the CLI makes the handler with no arguments)") from None


def service_module(handler: Any, spec: str) -> ModuleType:
    try:
        return service_of(handler)
    except TypeError as error:
        raise ArgumentError(f"--handler {spec}: {error}") from None


def check_contract(service: ModuleType, handshake: bool) -> None:
    """Refuses a service without hello() served with the handshake on: its own clients could call nothing."""
    if handshake and "hello" not in describe_service(service):
        name = f"{service.__name__.rsplit('.', 1)[-1]}"
        raise ArgumentError(f"service {name} ({service.__name__}) does not extend session.SessionService, so its "
                            "clients cannot say hello and every call would be refused: serve it with "
                            "--no-hello (a plain service) or --hello optional (its clients served without "
                            f"hello), or declare `service {name} extends session.SessionService` in its IDL")


def _defined_by_iface(handler: Any, method: str) -> bool:
    """Whether ``method`` resolves to a generated Iface's stub rather than the handler's own code."""
    for cls in type(handler).__mro__:
        if method in cls.__dict__:
            module = sys.modules.get(cls.__module__)
            return cls.__name__ == "Iface" and module is not None and hasattr(module, "Processor")
    return True


def unimplemented_methods(handler: Any, service: ModuleType, handshake: bool) -> List[str]:
    """The service's methods the handler leaves to the generated stub (the gate answers the session's
    own methods when the handshake is on)."""
    answered_by_gate = set(describe_service(SessionService)) if handshake else set()
    return sorted(name for name in describe_service(service)
                  if name not in answered_by_gate and _defined_by_iface(handler, name))


def _unimplemented(method: str, spec: str) -> Callable[..., Any]:
    def not_implemented(*_: Any, **__: Any) -> Any:
        raise NotImplementedByHandler(method, spec)

    return not_implemented


def answer_unimplemented(handler: Any, methods: Sequence[str], spec: str) -> None:
    """Warns about ``methods`` now, and makes each answer 'not implemented' (one log line per call)."""
    if not methods:
        return
    logger.warning("%s does not implement %s: calls to %s will be answered 'not implemented'",
                   spec, ", ".join(f"{m}()" for m in methods), "it" if len(methods) == 1 else "them")
    for method in methods:
        setattr(handler, method, _unimplemented(method, spec))
    root = logging.getLogger()
    if not any(isinstance(f, _OneLine) for f in root.filters):
        root.addFilter(_OneLine())


class _OneLine(logging.Filter):
    """The generated processor logs a handler's TApplicationException with a traceback: for a method
    that is simply not implemented, one WARNING line says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, NotImplementedByHandler):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = f"call to {error.method}(): not implemented by {error.handler}", ()
            record.exc_info, record.exc_text = None, None
        return True
