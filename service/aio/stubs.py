"""A service's methods as the AsyncClient calls them, written out as a typed interface for mypy and IDEs.

``thrift --gen py`` writes no type hints, so ``client.typed(Service.Iface)`` gives a type checker the
method names and arities only, and calls that look synchronous. This writes, from the generated code's
``thrift_spec``, an interface class whose methods are ``async def`` with the IDL's types, to pass to
``AsyncClient.typed`` (a class, not a ``Protocol``: mypy accepts no protocol where a class is expected):

    python -m thrift_handshake.aio.stubs thrift_handshake_gen.HandshakeService > handshake_async.py

    service = client.typed(HandshakeServiceAsync)   # from handshake_async import HandshakeServiceAsync
    reply: str = await service.echo("hi")           # mypy: an int argument, or a missing await, is an error
"""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType
from typing import Any, List, Set, Tuple

from ..client_methods import THRIFT_SERVICE
from ..contract import describe_service, generated_class
from ..thriftspec import IntegerType, SpecWalker, fields

__all__ = ["async_interface"]

class _Annotation(SpecWalker[str]):
    """The Python type of a Thrift type, as source text; collects the modules it names."""

    def __init__(self) -> None:
        self.modules: Set[str] = set()

    def integer(self, value: Any, kind: IntegerType, path: str, *context: Any) -> str:
        return "int"

    def boolean(self, value: Any, path: str, *context: Any) -> str:
        return "bool"

    def double(self, value: Any, path: str, *context: Any) -> str:
        return "float"

    def string(self, value: Any, path: str, *context: Any) -> str:
        return "str"

    def binary(self, value: Any, path: str, *context: Any) -> str:
        return "bytes"

    def struct(self, value: Any, struct_class: type, path: str, *context: Any) -> str:
        self.modules.add(struct_class.__module__)
        return f"{struct_class.__module__}.{struct_class.__qualname__}"

    def sequence(self, value: Any, is_set: bool, element: Tuple[int, Any], frozen: bool, path: str,
                 *context: Any) -> str:
        inner = self.walk(None, *element, path)
        return f"AbstractSet[{inner}]" if is_set else f"Sequence[{inner}]"

    def map(self, value: Any, key: Tuple[int, Any], item: Tuple[int, Any], frozen: bool, path: str,
            *context: Any) -> str:
        return f"Mapping[{self.walk(None, *key, path)}, {self.walk(None, *item, path)}]"


def async_interface(service: ModuleType, name: str = "") -> str:
    """Python source of an interface class with ``service``'s methods (those it extends included) as
    coroutines: arguments in IDL order, each Optional (Thrift lets any be unset), and the result type."""
    name = name or service.__name__.rsplit(".", 1)[-1] + "Async"
    annotation = _Annotation()
    methods: List[str] = []
    for method, info in sorted(describe_service(service).items()):
        args = generated_class(service, method, "args")
        parameters = "".join(f", {field[2]}: Optional[{annotation.walk(None, field[1], field[3], field[2])}]"
                             for field in fields(args))
        success = [field for field in fields(info.result) if field[0] == 0] if info.result is not None else []
        result = annotation.walk(None, success[0][1], success[0][3], method) if success else "None"
        methods.append(f"    async def {method}(self{parameters}) -> {result}:\n        raise NotImplementedError\n")
    imports = "".join(f"import {module}\n" for module in sorted(annotation.modules))
    body = "\n".join(methods)
    generics = ", ".join(generic for generic in ("AbstractSet", "Mapping", "Optional", "Sequence")
                         if f"{generic}[" in body)
    return (f'"""{service.__name__} as thrift_handshake.AsyncClient calls it; written by '
            f'`python -m thrift_handshake.aio.stubs {service.__name__}`."""\n\n'
            + (f"from typing import {generics}\n\n" if generics else "")
            + f"{imports}\n\n"
            f"class {name}:\n"
            f'    """What ``AsyncClient.typed({name})`` returns: the service\'s calls, awaited."""\n\n'
            f"    {THRIFT_SERVICE} = {service.__name__!r}\n\n"
            + body)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m thrift_handshake.aio.stubs",
                                     description="Writes a generated service's typed async interface to stdout.")
    parser.add_argument("service", help="the generated service module, e.g. thrift_handshake_gen.HandshakeService")
    parser.add_argument("--name", default="", help="the class's name (default: the service's name + Async)")
    args = parser.parse_args()
    print(async_interface(importlib.import_module(args.service), args.name), end="")


if __name__ == "__main__":
    main()
