"""JSON in, Thrift values out (and back), driven by the generated code's ``thrift_spec`` tuples.

Works for any service module made by ``thrift --gen py``, including services that ``extends`` another.
JSON accepted per Thrift type (checked here, before anything is sent): bool: true/false only;
i8/i16/i32/i64: integers in range (not true/false, not 1.0); double: a number or "NaN", "Infinity",
"-Infinity"; string: a string; binary: a base64 string; struct: an object keyed by field name (null
leaves a field unset); list/set: an array (a set refuses duplicates); map: an object (non-string keys
are read from the key text: {"1": "RED"}) or an array of [key, value] pairs.

The generated Python code does not record everything the IDL says:

* Enums: an enum field is a plain ``TType.I32`` whose spec holds no enum class. With ``fields`` (the
  IDL's own field types, e.g. from ``idlcache.LoadedIdl.type_hints``) an enum takes its member names
  ("RED" or "Color.RED") or their numbers, nothing else. Without it, a string given for any i32 is
  looked up among the enums of the module that defines the enclosing struct; integers are range
  checked only.
* Requiredness is not in the spec: the generated ``validate()`` is called on every struct built, and
  with ``fields`` a required parameter must be given.
* Unions are generated exactly like structs: pass their classes in ``unions`` to require one field.
"""

from __future__ import annotations

import base64
import binascii
import enum
import inspect
import json
import math
import shlex
import sys
from typing import Any, Collection, Dict, List, Mapping, Optional, Sequence, Tuple

from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TType

from .contract import describe_service, generated_class
from .errors import ArgumentError
from .thriftspec import IntegerType, SpecWalker, fields as _fields

__all__ = ["method_parameters", "parse_arguments", "to_jsonable"]

_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def method_parameters(service_module: Any, method: str) -> List[Tuple[str, int, Any]]:
    """Returns ``(name, ttype, type_args)`` for each parameter of ``method``, in IDL declaration order.

    ``type_args`` is the fourth element of the field's ``thrift_spec`` entry (e.g. ``'UTF8'``,
    ``[Request, spec]``, ``(TType.I32, None, False)``). Unknown method: ArgumentError listing the known ones.
    """
    return _parameters(_args_class(service_module, method))


def parse_arguments(
    service_module: Any, method: str, json_texts: Sequence[str], *, unions: Collection[type] = (),
    fields: Optional[Mapping[type, Mapping[str, Any]]] = None,
) -> List[Any]:
    """Converts one JSON text per parameter into the Thrift values ``Client.<method>(*values)`` takes.

    Every parameter needs an argument (JSON ``null`` leaves it unset on purpose); a missing one is an
    ArgumentError, so nothing half-formed is sent. ``unions`` names the generated
    classes that are IDL unions. ``fields`` maps generated classes (structs and ``<method>_args``) to
    their IDL fields by name (objects with ``type`` and ``requiredness``, see ``idlcache.IdlField``).
    Raises ArgumentError, naming the parameter and the path inside it.
    """
    if isinstance(json_texts, (str, bytes)):
        raise TypeError("json_texts must be a sequence of JSON texts, not a single text")
    args_class = _args_class(service_module, method)
    parameters = _parameters(args_class)
    if len(json_texts) > len(parameters):
        names = ", ".join(name for name, _, _ in parameters)
        takes = f"{len(parameters)} parameter(s) ({names})" if parameters else "no parameters"
        raise ArgumentError(f"{method}: takes {takes}, got {len(json_texts)} argument(s)")
    converter = _JsonToThrift(unions, fields)
    idl_params = converter.idl_fields(args_class)
    values: List[Any] = [None] * len(parameters)
    for index, (name, ttype, type_args) in enumerate(parameters):
        path = f"{method}: parameter {index + 1} '{name}'"
        idl_field = idl_params.get(name)
        value = None
        if index >= len(json_texts) and getattr(idl_field, "requiredness", None) == "required":
            raise ArgumentError(f"{path}: required parameter is missing")
        if index >= len(json_texts):
            names = ", ".join(n for n, _, _ in parameters)
            raise ArgumentError(f"{path} is missing: {method} takes {len(parameters)} argument(s) ({names}); "
                                "pass null to leave one unset")
        else:
            text = json_texts[index]
            try:
                value = json.loads(text)
            except ValueError as exc:
                hint = f"; to pass it as a string, quote it: {shlex.quote(json.dumps(text, ensure_ascii=False))}"
                raise ArgumentError(f"{path}: not valid JSON: {exc}{hint if ttype == TType.STRING else ''}") from None
            except RecursionError:
                raise ArgumentError(f"{path}: nested too deeply") from None
        if value is not None:
            try:
                values[index] = converter.convert(value, ttype, type_args, path, args_class,
                                                  getattr(idl_field, "type", None))
            except RecursionError:
                raise ArgumentError(f"{path}: nested too deeply") from None
        elif getattr(idl_field, "requiredness", None) == "required":
            raise ArgumentError(f"{path}: required parameter is missing")
    return values


def to_jsonable(value: Any) -> Any:
    """Converts a Thrift value (result, struct, exception, container) into what ``json.dumps`` accepts.

    Structs become objects in field-id order without their unset (None) fields; bytes become base64;
    NaN and infinities become "NaN", "Infinity", "-Infinity"; sets become sorted arrays (unsorted
    when the elements do not compare); maps with string or integer keys become objects (integer keys
    as text), other maps ``[[key, value], ...]``. Enum values stay integers.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)  # also turns IntEnum members (thrift --gen py:enum) into plain ints
    if isinstance(value, float):
        return _float_to_json(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(getattr(type(value), "thrift_spec", None), tuple):
        fields = ((entry[2], getattr(value, entry[2], None)) for entry in _fields(type(value)))
        return {name: to_jsonable(field) for name, field in fields if field is not None}
    if isinstance(value, dict):
        if all(isinstance(key, str) or type(key) is int for key in value):
            return {str(key): to_jsonable(item) for key, item in value.items()}
        return [[to_jsonable(key), to_jsonable(item)] for key, item in value.items()]
    if isinstance(value, (set, frozenset)):
        try:
            value = sorted(value)
        except TypeError:
            pass
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(item) for item in value]
    raise TypeError(f"cannot convert {type(value).__name__} to JSON")


def _args_class(service_module: Any, method: str) -> type:
    """The ``<method>_args`` class of ``method``; ArgumentError listing the known methods if there is none."""
    args_class = generated_class(service_module, method, "args")
    if args_class is None:
        known = ", ".join(sorted(describe_service(service_module)))
        raise ArgumentError(f"unknown method {method!r}; known methods: {known}")
    return args_class


def _parameters(args_class: type) -> List[Tuple[str, int, Any]]:
    """Parameters in declaration order (the ``__init__`` order); ``thrift_spec`` is ordered by field id."""
    by_name = {entry[2]: entry for entry in _fields(args_class)}
    try:
        order = [name for name in inspect.signature(args_class.__init__).parameters if name in by_name]
    except (TypeError, ValueError):
        order = []
    if len(order) != len(by_name):
        order = list(by_name)
    return [(name, by_name[name][1], by_name[name][3]) for name in order]


def _describe(value: Any) -> str:
    """A short JSON rendering of ``value`` for error messages."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _mismatch(path: str, expected: str, value: Any) -> ArgumentError:
    return ArgumentError(f"{path}: expected {expected}, got {_describe(value)}")


def _enums_of(module: Any) -> Dict[str, Dict[str, int]]:
    """Maps each enum class name defined in (or star-imported into) ``module`` to its members."""
    enums: Dict[str, Dict[str, int]] = {}
    for name, obj in vars(module).items() if module is not None else ():
        if not isinstance(obj, type):
            continue
        members = getattr(obj, "_NAMES_TO_VALUES", None)
        if members is None and issubclass(obj, enum.IntEnum) and obj is not enum.IntEnum:
            members = {member.name: member.value for member in obj}
        if isinstance(members, dict):
            enums[name] = members
    return enums


def _enum_value(text: str, path: str, owner: type) -> int:
    """Resolves ``"RED"`` or ``"Color.RED"`` among the enums of ``owner``'s module."""
    enums = _enums_of(sys.modules.get(owner.__module__))
    enum_name, _, member = text.rpartition(".")
    matches = {f"{name}.{member}": members[member] for name, members in enums.items()
               if member in members and enum_name in ("", name)}
    if len(set(matches.values())) == 1:
        return next(iter(matches.values()))
    if matches:
        raise ArgumentError(f"{path}: enum name {text!r} is ambiguous: {', '.join(sorted(matches))}")
    known = ", ".join(f"{name}.{member}" for name, members in sorted(enums.items()) for member in members)
    only = f" (a string is accepted only as an enum name: {known})" if known else ""
    raise ArgumentError(f"{path}: expected i32, got {_describe(text)}{only}")


def _idl_enum_value(value: Any, idl_type: Any, path: str) -> int:
    """An enum member given by name ("RED", "Color.RED") or by number, checked against the IDL's members."""
    members = dict(idl_type.members)
    enum_name = idl_type.name.rpartition(".")[2]
    listing = ", ".join(f"{name} = {number}" for name, number in idl_type.members)
    if isinstance(value, str):
        prefix, _, member = value.rpartition(".")
        if prefix in ("", enum_name, idl_type.name) and member in members:
            return members[member]
    elif isinstance(value, int) and not isinstance(value, bool) and value in members.values():
        return value
    raise _mismatch(path, f"enum {enum_name} (one of {listing})", value)


def _float_to_json(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


class _JsonToThrift(SpecWalker[Any]):
    """Converts parsed JSON into Thrift values of a given ttype, raising ArgumentError with the path.

    ``convert`` walks the spec with two things of context: ``owner``, the innermost struct (or args)
    class, whose module is searched for enum names unless ``idl`` (the IDL's type of this value, see
    ``idlcache.IdlType``) says which enum it is."""

    def __init__(self, unions: Collection[type], fields: Optional[Mapping[type, Mapping[str, Any]]] = None) -> None:
        self.unions = frozenset(unions)
        self.fields = fields or {}

    def idl_fields(self, cls: type) -> Mapping[str, Any]:
        return self.fields.get(cls, {})

    def convert(self, value: Any, ttype: int, type_args: Any, path: str, owner: type, idl: Any = None) -> Any:
        return self.walk(value, ttype, type_args, path, owner, idl)

    def boolean(self, value: Any, path: str, owner: type, idl: Any) -> bool:
        if not isinstance(value, bool):
            raise _mismatch(path, "bool", value)
        return value

    def integer(self, value: Any, kind: IntegerType, path: str, owner: type, idl: Any) -> int:
        if kind.name == "i32" and getattr(idl, "kind", None) == "enum":
            return _idl_enum_value(value, idl, path)
        if kind.name == "i32" and isinstance(value, str):
            return _enum_value(value, path, owner)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _mismatch(path, kind.name, value)
        if not kind.low <= value <= kind.high:
            raise _mismatch(path, f"{kind.name} ({kind.low}..{kind.high})", value)
        return value

    def double(self, value: Any, path: str, owner: type, idl: Any) -> float:
        if isinstance(value, str) and value in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[value]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _mismatch(path, 'double (a number, "NaN", "Infinity" or "-Infinity")', value)
        try:
            return float(value)
        except OverflowError:
            raise _mismatch(path, "double (too large)", value) from None

    def string(self, value: Any, path: str, owner: type, idl: Any) -> str:
        if not isinstance(value, str):
            raise _mismatch(path, "string", value)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ArgumentError(f"{path}: string is not valid Unicode: {exc.reason}") from None
        return value

    def binary(self, value: Any, path: str, owner: type, idl: Any) -> bytes:
        if not isinstance(value, str):
            raise _mismatch(path, "binary (a base64 string)", value)
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ArgumentError(f"{path}: not valid base64: {exc}") from None

    def unsupported(self, value: Any, ttype: int, path: str, owner: type, idl: Any) -> Any:
        raise ArgumentError(f"{path}: unsupported Thrift type {ttype}")

    def struct(self, value: Any, struct_class: type, path: str, owner: type, idl: Any) -> Any:
        type_name = struct_class.__name__
        if not isinstance(value, dict):
            raise _mismatch(path, f"{type_name} (a JSON object)", value)
        fields = {entry[2]: entry for entry in _fields(struct_class)}
        for name in value:
            if name not in fields:
                raise ArgumentError(f"{path}: {type_name} has no field {name!r}; fields: {', '.join(fields)}")
        instance = struct_class()
        idl_fields = self.idl_fields(struct_class)
        for name, item in value.items():
            _, ttype, _, type_args, _ = fields[name]
            idl = getattr(idl_fields.get(name), "type", None)
            converted = None if item is None else self.convert(item, ttype, type_args, f"{path}.{name}",
                                                               struct_class, idl)
            setattr(instance, name, converted)
        if struct_class in self.unions:
            chosen = [name for name in fields if getattr(instance, name) is not None]
            if len(chosen) != 1:
                got = ", ".join(chosen) if chosen else "none"
                raise ArgumentError(
                    f"{path}: {type_name} is a union: set exactly one of {', '.join(fields)} (got {got})")
        try:
            getattr(instance, "validate", lambda: None)()
        except TProtocolException as exc:
            message = str(exc.message).rstrip("!")
            raise ArgumentError(f"{path}: {type_name}: {message[:1].lower()}{message[1:]}") from None
        return instance

    def sequence(self, value: Any, is_set: bool, element: Tuple[int, Any], frozen: bool, path: str, owner: type,
                 idl: Any) -> Any:
        kind = "set" if is_set else "list"
        if not isinstance(value, list):
            raise _mismatch(path, f"{kind} (a JSON array)", value)
        idl_elem = getattr(idl, "elem", None)
        items: List[Any] = []
        for index, item in enumerate(value):
            converted = self.convert(item, *element, f"{path}[{index}]", owner, idl_elem)
            if is_set and converted in items:
                raise ArgumentError(f"{path}[{index}]: duplicate set element {_describe(item)}")
            items.append(converted)
        if not is_set:
            return items
        try:
            return set(items)
        except TypeError:  # unhashable elements (structs, containers): the generated writer takes any iterable
            return items

    def map(self, value: Any, key: Tuple[int, Any], item: Tuple[int, Any], frozen: bool, path: str, owner: type,
            idl: Any) -> Dict[Any, Any]:
        (key_type, key_args), (value_type, value_args) = key, item
        if isinstance(value, dict):
            entries = [(self._key_from_text(key, key_type), item, f"{path}[{_describe(key)}]", None)
                       for key, item in value.items()]
        elif isinstance(value, list):
            entries = []
            for index, pair in enumerate(value):
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise _mismatch(f"{path}[{index}]", "a [key, value] pair", pair)
                entries.append((pair[0], pair[1], f"{path}[{index}][0]", f"{path}[{index}][1]"))
        else:
            raise _mismatch(path, "map (a JSON object or an array of [key, value] pairs)", value)
        result: Dict[Any, Any] = {}
        for raw_key, raw_value, key_path, value_path in entries:
            key = self.convert(raw_key, key_type, key_args, key_path, owner, getattr(idl, "key", None))
            try:
                duplicate = key in result
            except TypeError:
                raise ArgumentError(f"{key_path}: this key type cannot be a Python dict key") from None
            if duplicate:
                raise ArgumentError(f"{key_path}: duplicate map key {_describe(raw_key)}")
            result[key] = self.convert(raw_value, value_type, value_args, value_path or key_path, owner,
                                       getattr(idl, "value", None))
        return result

    @staticmethod
    def _key_from_text(text: str, key_type: int) -> Any:
        """An object key is text; for non-string key types it is read as JSON (``"1"`` -> 1), else kept."""
        if key_type == TType.STRING:
            return text
        try:
            return json.loads(text)
        except ValueError:
            return text  # enum names, "NaN"
