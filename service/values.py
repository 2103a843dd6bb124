"""What a value may hold for its IDL type, checked before anything is written.

Thrift's Python code writes what it is given: bytes for a ``string`` go out as they are (the C
extension) or fail half-way through a message (pure Python), an i8 of 300 fails mid-message, a
required field left unset is sent anyway. The client checks each call's arguments against the
generated ``thrift_spec`` first, so a wrong value is a ``RequestEncodingError`` naming the field and the
connection stays as it was. (Python's generated code does not mark unions; "exactly one member set"
is left to the server.)

The check runs on every call, so it is compiled: once per generated class (and ``thrift_spec``), each type
becomes a predicate specialised to it (a list of i32 is one ``min``/``max`` once its elements are known to be
ints), which answers only "fits or not" and builds no paths. Only when it says no does the walk below run
again over that argument to name the field; the two refuse exactly the same values (tests/test_values_compiled.py).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Iterable, List, Sequence, Tuple, cast

from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TType

from .errors import RequestEncodingError
from .thriftspec import INTEGERS, IntegerType, SpecWalker, fields

__all__ = ["argument_checker", "fits"]

_SEQUENCES = (list, tuple, set, frozenset)
_Fits = Callable[[Any], bool]


def argument_checker(args_class: type, method: str) -> Callable[[Sequence[Any]], None]:
    """A function that raises RequestEncodingError unless every value it is given fits its parameter's
    IDL type (None: unset, allowed)."""
    parameters = tuple((fits(spec[1], spec[3]), spec[1], spec[3], f"{method}: parameter '{spec[2]}'")
                       for spec in args_class.thrift_spec if spec is not None)

    def check(values: Sequence[Any]) -> None:
        for (value_fits, ttype, type_args, path), value in zip(parameters, values):
            if value is not None and not value_fits(value):
                _CHECKER.walk(value, ttype, type_args, path)  # raises, naming the field
                raise RequestEncodingError(f"{path}: a value its IDL type cannot carry; nothing was sent")

    return check


def fits(ttype: int, type_args: Any) -> _Fits:
    """A predicate: whether a value (not None) fits the IDL type ``(ttype, type_args)``, as the walk judges."""
    return _Compiler().walk(None, ttype, type_args, "")


class _Compiler(SpecWalker[_Fits]):
    """Builds the predicate of a type (the walk's ``value`` is unused: types, not values, are walked)."""

    def integer(self, value: Any, kind: IntegerType, path: str) -> _Fits:
        low, high = kind.low, kind.high

        def integer_fits(item: Any) -> bool:
            if type(item) is not int and (isinstance(item, bool) or not isinstance(item, int)):
                return False
            return low <= item <= high

        return integer_fits

    def binary(self, value: Any, path: str) -> _Fits:
        return lambda item: isinstance(item, (bytes, bytearray))

    def string(self, value: Any, path: str) -> _Fits:
        return lambda item: isinstance(item, str)

    def boolean(self, value: Any, path: str) -> _Fits:
        return lambda item: isinstance(item, bool)

    def double(self, value: Any, path: str) -> _Fits:
        return lambda item: not isinstance(item, bool) and isinstance(item, (int, float))

    def struct(self, value: Any, struct_class: type, path: str) -> _Fits:
        return _struct_fits(struct_class)

    def sequence(self, value: Any, is_set: bool, element: Tuple[int, Any], frozen: bool, path: str) -> _Fits:
        all_fit = _all_fit(*element)
        return lambda items: isinstance(items, _SEQUENCES) and all_fit(items)

    def map(self, value: Any, key: Tuple[int, Any], item: Tuple[int, Any], frozen: bool, path: str) -> _Fits:
        keys_fit, items_fit = _all_fit(*key), _all_fit(*item)
        return lambda items: isinstance(items, dict) and keys_fit(items.keys()) and items_fit(items.values())

    def unsupported(self, value: Any, ttype: int, path: str) -> _Fits:
        return lambda item: True  # as the walk: the generated writer decides


#: Element types whose exact classes alone decide: a container of only these needs no per-element call.
_EXACT = {TType.STRING: frozenset({str}), TType.BOOL: frozenset({bool}), TType.DOUBLE: frozenset({int, float})}


def _all_fit(ttype: int, type_args: Any) -> Callable[[Iterable[Any]], bool]:
    """Whether every element of a container fits ``(ttype, type_args)``: the common exact types in C loops."""
    one_fits = fits(ttype, type_args)
    if ttype in INTEGERS:
        low, high = INTEGERS[ttype].low, INTEGERS[ttype].high

        def integers_fit(items: Any) -> bool:
            if not items:
                return True
            if set(map(type, items)) == {int}:
                return low <= min(items) and max(items) <= high
            return all(map(one_fits, items))

        return integers_fit
    exact = frozenset({bytes, bytearray}) if ttype == TType.STRING and type_args == "BINARY" else _EXACT.get(ttype)
    if exact is None:
        return lambda items: all(map(one_fits, items))
    return lambda items: exact.issuperset(map(type, items)) or all(map(one_fits, items))


_STRUCTS: Dict[type, Tuple[Any, _Fits]] = {}  # class -> (its thrift_spec, its predicate)
_COMPILING = threading.RLock()  # another thread must not find a predicate whose fields are not all known yet


def _struct_fits(struct_class: type) -> _Fits:
    """The predicate of a generated struct, built once per class and ``thrift_spec`` (recursive types too)."""
    with _COMPILING:
        spec = getattr(struct_class, "thrift_spec", None)
        known = _STRUCTS.get(struct_class)
        if known is not None and known[0] is spec:
            return known[1]
        return _compile_struct(struct_class, spec)


def _compile_struct(struct_class: type, spec: Any) -> _Fits:
    checked: List[Tuple[str, _Fits]] = []  # filled below, after the predicate is known (a field may be this type)

    def struct_fits(item: Any) -> bool:
        if not isinstance(item, struct_class):
            return False
        for name, field_fits in checked:
            field_value = getattr(item, name, None)
            if field_value is not None and not field_fits(field_value):
                return False
        try:
            cast(Any, item).validate()  # the generated check of required fields
        except TProtocolException:
            return False
        return True

    _STRUCTS[struct_class] = (spec, struct_fits)
    checked.extend((name, fits(ttype, type_args)) for _, ttype, name, type_args, _ in fields(struct_class))
    return struct_fits


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
