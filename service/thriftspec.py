"""The one walker over the generated code's ``thrift_spec``: what each Thrift type is and where to go next.

``thrift --gen py`` describes every struct (arguments and results included) as ``thrift_spec`` tuples
``(id, ttype, name, type_args, default)``; ``type_args`` says what a container holds or which struct a
field is. ``SpecWalker`` dispatches a value on its ttype to one method per kind of type (integer,
boolean, double, string, binary, struct, sequence, map), so every module that checks or converts
values by their IDL type (``values``, ``jsonargs``) or reads and rewrites specs (``wire.strict``)
walks the spec the same way and only says what it does at each kind.
"""

from __future__ import annotations

from typing import Any, Dict, Generic, List, NamedTuple, Tuple, TypeVar

from thrift.Thrift import TType

__all__ = ["INTEGERS", "IntegerType", "SpecWalker", "fields"]


class IntegerType(NamedTuple):
    """One of Thrift's integer types: its IDL name and its range."""

    name: str
    low: int
    high: int


def _integer(name: str, bits: int) -> IntegerType:
    return IntegerType(name, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


INTEGERS: Dict[int, IntegerType] = {TType.BYTE: _integer("i8", 8), TType.I16: _integer("i16", 16),
                                    TType.I32: _integer("i32", 32), TType.I64: _integer("i64", 64)}


def fields(struct_class: type) -> List[tuple]:
    """The non-empty ``thrift_spec`` entries ``(id, ttype, name, type_args, default)`` of a generated class."""
    return [entry for entry in (getattr(struct_class, "thrift_spec", None) or ()) if entry]


T = TypeVar("T")


class SpecWalker(Generic[T]):
    """Dispatches ``walk(value, ttype, type_args, path, *context)`` to one method per kind of Thrift type.

    Subclasses implement the kinds they meet; ``context`` is passed through unchanged (a converter may
    need to know the enclosing struct, for example). ``path`` names the value for error messages.
    """

    def walk(self, value: Any, ttype: int, type_args: Any, path: str, *context: Any) -> T:
        if ttype in INTEGERS:
            return self.integer(value, INTEGERS[ttype], path, *context)
        if ttype == TType.STRING:
            if type_args == "BINARY":
                return self.binary(value, path, *context)
            return self.string(value, path, *context)
        if ttype == TType.BOOL:
            return self.boolean(value, path, *context)
        if ttype == TType.DOUBLE:
            return self.double(value, path, *context)
        if ttype == TType.STRUCT:
            return self.struct(value, type_args[0], path, *context)
        if ttype in (TType.LIST, TType.SET):
            return self.sequence(value, ttype == TType.SET, (type_args[0], type_args[1]), type_args[2], path,
                                 *context)
        if ttype == TType.MAP:
            return self.map(value, (type_args[0], type_args[1]), (type_args[2], type_args[3]), type_args[4], path,
                            *context)
        return self.unsupported(value, ttype, path, *context)

    def integer(self, value: Any, kind: IntegerType, path: str, *context: Any) -> T:
        raise NotImplementedError

    def boolean(self, value: Any, path: str, *context: Any) -> T:
        raise NotImplementedError

    def double(self, value: Any, path: str, *context: Any) -> T:
        raise NotImplementedError

    def string(self, value: Any, path: str, *context: Any) -> T:
        raise NotImplementedError

    def binary(self, value: Any, path: str, *context: Any) -> T:
        raise NotImplementedError

    def struct(self, value: Any, struct_class: type, path: str, *context: Any) -> T:
        raise NotImplementedError

    def sequence(self, value: Any, is_set: bool, element: Tuple[int, Any], frozen: bool, path: str,
                 *context: Any) -> T:
        """A list or set; ``element`` is the elements' ``(ttype, type_args)``; ``frozen``: the generated
        code builds it immutable (tuple, frozenset)."""
        raise NotImplementedError

    def map(self, value: Any, key: Tuple[int, Any], item: Tuple[int, Any], frozen: bool, path: str,
            *context: Any) -> T:
        """``key`` and ``item`` are the keys' and values' ``(ttype, type_args)``; ``frozen``: immutable."""
        raise NotImplementedError

    def unsupported(self, value: Any, ttype: int, path: str, *context: Any) -> T:
        raise TypeError(f"{path}: unsupported Thrift type {ttype}")
