"""What a value may hold for its IDL type, checked before anything is written.

Thrift's Python code writes what it is given: bytes for a ``string`` go out as they are (the C
extension) or fail half-way through a message (pure Python), an i8 of 300 fails mid-message, a
required field left unset is sent anyway. The client checks each call's arguments against the
generated ``thrift_spec`` first, so a wrong value is a ``RequestEncodingError`` naming the field and the
connection stays as it was. (Python's generated code does not mark unions; "exactly one member set"
is left to the server.)
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Tuple

from thrift.protocol.TProtocol import TProtocolException

from .errors import RequestEncodingError
from .thriftspec import IntegerType, SpecWalker, fields

__all__ = ["argument_checker"]

_SEQUENCES = (list, tuple, set, frozenset)


def argument_checker(args_class: type, method: str) -> Callable[[Sequence[Any]], None]:
    """A function that raises RequestEncodingError unless every value it is given fits its parameter's
    IDL type (None: unset, allowed)."""
    parameters = tuple((spec[1], spec[3], f"{method}: parameter '{spec[2]}'")
                       for spec in args_class.thrift_spec if spec is not None)

    def check(values: Sequence[Any]) -> None:
        for (ttype, type_args, path), value in zip(parameters, values):
            if value is not None:
                _CHECKER.walk(value, ttype, type_args, path)

    return check


class _Checker(SpecWalker[None]):
    """Raises RequestEncodingError at the first value its IDL type cannot carry."""

    def integer(self, value: Any, kind: IntegerType, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not kind.low <= value <= kind.high:
            _refuse(path, f"an {kind.name} in {kind.low}..{kind.high}", value)

    def binary(self, value: Any, path: str) -> None:
        if not isinstance(value, (bytes, bytearray)):
            _refuse(path, "binary (bytes)", value)

    def string(self, value: Any, path: str) -> None:
        if not isinstance(value, str):
            _refuse(path, "a string (str; binary fields take bytes)", value)

    def boolean(self, value: Any, path: str) -> None:
        if not isinstance(value, bool):
            _refuse(path, "a bool", value)

    def double(self, value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _refuse(path, "a double", value)

    def struct(self, value: Any, struct_class: type, path: str) -> None:
        if not isinstance(value, struct_class):
            _refuse(path, f"a {struct_class.__name__}", value)
        for _, ttype, name, type_args, _ in fields(struct_class):
            field_value = getattr(value, name, None)
            if field_value is not None:
                self.walk(field_value, ttype, type_args, f"{path}.{name}")
        try:
            value.validate()  # the generated check of required fields
        except TProtocolException as error:
            raise RequestEncodingError(f"{path}: {error.message}") from None

    def sequence(self, value: Any, is_set: bool, element: Tuple[int, Any], frozen: bool, path: str) -> None:
        if not isinstance(value, _SEQUENCES):
            _refuse(path, "a list or set", value)
        for index, item in enumerate(value):
            self.walk(item, *element, f"{path}[{index}]")

    def map(self, value: Any, key: Tuple[int, Any], item: Tuple[int, Any], frozen: bool, path: str) -> None:
        if not isinstance(value, dict):
            _refuse(path, "a dict", value)
        for key_value, item_value in value.items():
            self.walk(key_value, *key, f"{path} key {key_value!r}")
            self.walk(item_value, *item, f"{path}[{key_value!r}]")

    def unsupported(self, value: Any, ttype: int, path: str) -> None:
        pass  # nothing to check: the generated writer decides


_CHECKER = _Checker()


def _refuse(path: str, expected: str, value: Any) -> None:
    shown = repr(value)
    raise RequestEncodingError(f"{path}: expected {expected}, got {shown[:60]}{'...' if len(shown) > 60 else ''} "
                        f"({type(value).__name__}); nothing was sent")
