"""What a value may hold for its IDL type, checked before anything is written.

Thrift's Python code writes what it is given: bytes for a ``string`` go out as they are (the C
extension) or fail half-way through a message (pure Python), an i8 of 300 fails mid-message, a
required field left unset is sent anyway. The client checks each call's arguments against the
generated ``thrift_spec`` first, so a wrong value is a ``RequestEncodingError`` naming the field and the
connection stays as it was. (Python's generated code does not mark unions; "exactly one member set"
is left to the server.)
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TType

from .errors import RequestEncodingError

__all__ = ["argument_checker"]

_INTEGERS = {TType.BYTE: ("i8", 8), TType.I16: ("i16", 16), TType.I32: ("i32", 32), TType.I64: ("i64", 64)}
_SEQUENCES = (list, tuple, set, frozenset)


def argument_checker(args_class: type, method: str) -> Callable[[Sequence[Any]], None]:
    """A function that raises RequestEncodingError unless every value it is given fits its parameter's
    IDL type (None: unset, allowed)."""
    parameters = tuple((spec[1], spec[3], f"{method}: parameter '{spec[2]}'")
                       for spec in args_class.thrift_spec if spec is not None)

    def check(values: Sequence[Any]) -> None:
        for (ttype, type_args, path), value in zip(parameters, values):
            if value is not None:
                _check(value, ttype, type_args, path)

    return check


def _check(value: Any, ttype: int, type_args: Any, path: str) -> None:
    if ttype in _INTEGERS:
        name, bits = _INTEGERS[ttype]
        low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            _refuse(path, f"an {name} in {low}..{high}", value)
    elif ttype == TType.STRING:
        if type_args == "BINARY":
            if not isinstance(value, (bytes, bytearray)):
                _refuse(path, "binary (bytes)", value)
        elif not isinstance(value, str):
            _refuse(path, "a string (str; binary fields take bytes)", value)
    elif ttype == TType.BOOL:
        if not isinstance(value, bool):
            _refuse(path, "a bool", value)
    elif ttype == TType.DOUBLE:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _refuse(path, "a double", value)
    elif ttype == TType.STRUCT:
        _check_struct(value, type_args[0], path)
    elif ttype in (TType.LIST, TType.SET):
        if not isinstance(value, _SEQUENCES):
            _refuse(path, "a list or set", value)
        element_type, element_args = type_args[0], type_args[1]
        for index, element in enumerate(value):
            _check(element, element_type, element_args, f"{path}[{index}]")
    elif ttype == TType.MAP:
        if not isinstance(value, dict):
            _refuse(path, "a dict", value)
        key_type, key_args, value_type, value_args = type_args[:4]
        for key, element in value.items():
            _check(key, key_type, key_args, f"{path} key {key!r}")
            _check(element, value_type, value_args, f"{path}[{key!r}]")


def _check_struct(value: Any, struct_class: type, path: str) -> None:
    if not isinstance(value, struct_class):
        _refuse(path, f"a {struct_class.__name__}", value)
    for spec in struct_class.thrift_spec or ():
        if spec is not None:
            field_value = getattr(value, spec[2], None)
            if field_value is not None:
                _check(field_value, spec[1], spec[3], f"{path}.{spec[2]}")
    try:
        value.validate()  # the generated check of required fields
    except TProtocolException as error:
        raise RequestEncodingError(f"{path}: {error.message}") from None


def _refuse(path: str, expected: str, value: Any) -> None:
    shown = repr(value)
    raise RequestEncodingError(f"{path}: expected {expected}, got {shown[:60]}{'...' if len(shown) > 60 else ''} "
                        f"({type(value).__name__}); nothing was sent")
