"""Strict decoding, alike with or without Thrift's C extension: UTF-8 checked, container elements typed.

Also reading past a value without building it (``skip_value``) and the method name of a message
header decoded last, so that its error still carries the seqid (``method_name``).
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, Dict, Optional, Tuple

from thrift.protocol.TProtocol import TProtocolBase, TProtocolException
from thrift.Thrift import TFrozenDict, TType

from ..thriftspec import IntegerType, SpecWalker
from .errors import UndecodableMethodName, UndecodableValue

__all__ = ["skip_value", "strict_decoder", "method_name"]


# -- strict decoding ---------------------------------------------------------------------------------
# Thrift's two decoders differ at two edges: the C extension reads invalid UTF-8 as U+FFFD (pure Python
# raises UnicodeDecodeError) and refuses container elements of another type than the IDL's (pure Python
# reads them as the IDL's type). Every generated ``read`` calls the protocol's ``_fast_decode``, so both
# ends install ``_StrictDecoder`` there: either decoder reads strings as bytes, refuses wrongly typed
# elements, and one walk decodes the strings strictly, so both answer the same bytes with the same error.

_WRONG_ELEMENTS = "a list, set or map holds elements of another type than the IDL declares"


def method_name(raw: bytes, seqid: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UndecodableMethodName(raw, seqid, error) from None


_Convert = Callable[[Any], Any]
_raw_specs: Dict[type, list] = {}
_raw_specs_lock = threading.Lock()
_text_fields: Dict[type, Tuple[Tuple[str, _Convert], ...]] = {}


def _raw_struct(cls: type) -> list:
    """``[cls, spec]`` for the C decoder, with every string read as bytes."""
    args = _raw_specs.get(cls)
    if args is None:
        with _raw_specs_lock:
            building: Dict[type, list] = {}
            args = _RAW_SPEC.struct(None, cls, "", building)
            _raw_specs.update(building)  # published whole: the C decoder must never see a half-built spec
    return args


class _RawSpec(SpecWalker[Any]):
    """A type's ``type_args`` with every string read as bytes (what the C decoder is given)."""

    def integer(self, value: Any, kind: IntegerType, *_: Any) -> None:
        return None  # scalars carry no type_args

    def boolean(self, *_: Any) -> None:
        return None

    double = unsupported = boolean

    def string(self, value: Any, path: str, building: Dict[type, list]) -> Any:
        return "BINARY"

    binary = string

    def struct(self, value: Any, cls: type, path: str, building: Dict[type, list]) -> list:
        args = _raw_specs.get(cls) or building.get(cls)
        if args is None:
            args = building[cls] = [cls, None]  # filled below; a recursive type refers to this same list
            args[1] = tuple(None if field is None else (*field[:3], self.walk(None, field[1], field[3], "", building),
                                                        *field[4:])
                            for field in cls.thrift_spec)
        return args

    def sequence(self, value: Any, is_set: bool, element: Tuple[int, Any], frozen: bool, path: str,
                 building: Dict[type, list]) -> Any:
        return (element[0], self.walk(None, *element, path, building), frozen)

    def map(self, value: Any, key: Tuple[int, Any], item: Tuple[int, Any], frozen: bool, path: str,
            building: Dict[type, list]) -> Any:
        return (key[0], self.walk(None, *key, path, building), item[0], self.walk(None, *item, path, building), frozen)


_RAW_SPEC = _RawSpec()


def _text(raw: Any) -> str:
    if raw.__class__ is str:  # the IDL's default value of a field that was not sent
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _not_utf8(error) from None


def _not_utf8(error: UnicodeDecodeError) -> UndecodableValue:
    return UndecodableValue(f"is not valid UTF-8 ({error.reason} at byte {error.start})")


def _same(value: Any) -> Any:
    return value


def _fields_with_text(cls: type, seen: Tuple[type, ...] = ()) -> Tuple[Tuple[str, _Convert], ...]:
    """(name, convert) for each field of ``cls`` that holds UTF-8 strings, read as bytes."""
    fields = _text_fields.get(cls)
    if fields is None:
        converters = ((field[2], _TEXT.walk(None, field[1], field[3], "", (*seen, cls)))
                      for field in cls.thrift_spec if field is not None)
        fields = _text_fields[cls] = tuple((name, convert) for name, convert in converters if convert is not None)
    return fields


class _TextConverter(SpecWalker[Optional[_Convert]]):
    """What turns a value of a type, read with raw strings, into text; None if it holds no text."""

    def integer(self, value: Any, kind: IntegerType, *_: Any) -> None:
        return None  # no text inside

    def boolean(self, *_: Any) -> None:
        return None

    double = binary = unsupported = boolean

    def string(self, value: Any, path: str, seen: Tuple[type, ...]) -> _Convert:
        return _text

    def struct(self, value: Any, cls: type, path: str, seen: Tuple[type, ...]) -> Optional[_Convert]:
        if cls in seen:  # a recursive type: its fields are known by the time a value arrives
            return lambda value: _struct_text(value, _text_fields[cls])
        fields = _fields_with_text(cls, seen)
        return (lambda value: _struct_text(value, fields)) if fields else None

    def sequence(self, value: Any, is_set: bool, element: Tuple[int, Any], frozen: bool, path: str,
                 seen: Tuple[type, ...]) -> Optional[_Convert]:
        convert = self.walk(None, *element, path, seen)
        if convert is None:
            return None
        build = (frozenset if frozen else set) if is_set else (tuple if frozen else list)
        return lambda values: build(map(convert, values))

    def map(self, value: Any, key: Tuple[int, Any], item: Tuple[int, Any], frozen: bool, path: str,
            seen: Tuple[type, ...]) -> Optional[_Convert]:
        convert_key, convert_value = self.walk(None, *key, path, seen), self.walk(None, *item, path, seen)
        if convert_key is None and convert_value is None:
            return None
        convert_key, convert_value, build = convert_key or _same, convert_value or _same, TFrozenDict if frozen else dict
        return lambda items: build((convert_key(k), convert_value(v)) for k, v in items.items())


_TEXT = _TextConverter()


def _struct_text(obj: Any, fields: Tuple[Tuple[str, _Convert], ...]) -> Any:
    for name, convert in fields:
        value = getattr(obj, name)
        if value is not None:
            try:
                if convert is _text and value.__class__ is bytes:  # a string field: ``_text`` without its frame
                    value = value.decode("utf-8")
                else:
                    value = convert(value)
            except UnicodeDecodeError as error:
                raise _not_utf8(error).within(name) from None
            except UndecodableValue as error:
                raise error.within(name) from None
            object.__setattr__(obj, name, value)  # as generated __init__s do, so immutable structs too
    return obj


_INTEGER_READERS = {"i8": "readByte", "i16": "readI16", "i32": "readI32", "i64": "readI64"}


class _PureReader(SpecWalker[Any]):
    """One value read in pure Python the way the C extension reads it (strings as bytes); the walked
    "value" is the input protocol."""

    def integer(self, iprot: TProtocolBase, kind: IntegerType, path: str) -> int:
        return getattr(iprot, _INTEGER_READERS[kind.name])()

    def boolean(self, iprot: TProtocolBase, path: str) -> bool:
        return iprot.readBool()

    def double(self, iprot: TProtocolBase, path: str) -> float:
        return iprot.readDouble()

    def string(self, iprot: TProtocolBase, path: str) -> bytes:
        return iprot.readBinary()

    binary = string

    def struct(self, iprot: TProtocolBase, cls: type, path: str) -> Any:
        return _read_struct(iprot, None, cls, cls.thrift_spec)

    def sequence(self, iprot: TProtocolBase, is_set: bool, element: Tuple[int, Any], frozen: bool, path: str) -> Any:
        got, size = iprot.readSetBegin() if is_set else iprot.readListBegin()
        if size and got != element[0]:
            raise UndecodableValue(_WRONG_ELEMENTS)
        values = [self.walk(iprot, *element, path) for _ in range(size)]
        iprot.readSetEnd() if is_set else iprot.readListEnd()
        return ((frozenset if frozen else set) if is_set else (tuple if frozen else list))(values)

    def map(self, iprot: TProtocolBase, key: Tuple[int, Any], item: Tuple[int, Any], frozen: bool, path: str) -> Any:
        got_key, got_value, size = iprot.readMapBegin()
        if size and (got_key, got_value) != (key[0], item[0]):
            raise UndecodableValue(_WRONG_ELEMENTS)
        items = {}
        for _ in range(size):
            read_key = self.walk(iprot, *key, path)
            items[read_key] = self.walk(iprot, *item, path)
        iprot.readMapEnd()
        return TFrozenDict(items) if frozen else items

    def unsupported(self, iprot: TProtocolBase, ttype: int, path: str) -> Any:
        if ttype == TType.UUID:
            return iprot.readUuid()
        raise UndecodableValue(f"holds a value of Thrift type {ttype}, which this reader does not know")


_PURE = _PureReader()


def skip_value(protocol: TProtocolBase, ttype: int, depth: int = 64) -> None:
    """Reads past one value without building it: strings stay bytes (invalid UTF-8 is no error, as in
    the C extension's skip)."""
    if depth <= 0:
        raise TProtocolException(TProtocolException.DEPTH_LIMIT, "nesting too deep")
    if ttype == TType.STRING:
        if getattr(protocol, "strings_are_text", False):  # JSON: readBinary would decode base64
            protocol.readString()
        else:
            protocol.readBinary()
    elif ttype == TType.STRUCT:
        protocol.readStructBegin()
        while True:
            _, field_type, _ = protocol.readFieldBegin()
            if field_type == TType.STOP:
                break
            skip_value(protocol, field_type, depth - 1)
            protocol.readFieldEnd()
        protocol.readStructEnd()
    elif ttype == TType.MAP:
        key_type, value_type, size = protocol.readMapBegin()
        for _ in range(size):
            skip_value(protocol, key_type, depth - 1)
            skip_value(protocol, value_type, depth - 1)
        protocol.readMapEnd()
    elif ttype in (TType.LIST, TType.SET):
        element_type, size = protocol.readListBegin() if ttype == TType.LIST else protocol.readSetBegin()
        for _ in range(size):
            skip_value(protocol, element_type, depth - 1)
        protocol.readListEnd() if ttype == TType.LIST else protocol.readSetEnd()
    else:
        protocol.skip(ttype)


def _read_struct(iprot: TProtocolBase, obj: Any, cls: type, spec: tuple) -> Any:
    """Fills ``obj`` (or, when None, builds a ``cls``) from the fields ``spec`` knows; skips the rest."""
    fields = {}
    iprot.increment_recursion_depth()
    try:
        iprot.readStructBegin()
        while True:
            _, field_type, field_id = iprot.readFieldBegin()
            if field_type == TType.STOP:
                break
            field = spec[field_id] if 0 <= field_id < len(spec) else None
            if field is not None and field[1] == field_type:
                fields[field[2]] = _PURE.walk(iprot, field_type, field[3], "")
            else:
                skip_value(iprot, field_type)
            iprot.readFieldEnd()
        iprot.readStructEnd()
    finally:
        iprot.decrement_recursion_depth()
    if obj is None:
        return cls(**fields)
    for name, value in fields.items():
        setattr(obj, name, value)
    return obj


class _StrictDecoder:
    """A protocol's ``_fast_decode`` (what generated structs call to read themselves): the C decoder
    when given one (``c_decode``), else pure Python, then strict UTF-8 for every string field."""

    def __init__(self, c_decode: Optional[Callable[..., Any]]) -> None:
        self.c_decode = c_decode

    def __call__(self, obj: Any, iprot: TProtocolBase, spec: list) -> Any:
        cls, thrift_spec = spec
        if self.c_decode is None:
            obj = _read_struct(iprot, obj, cls, thrift_spec)
        else:
            try:
                decoded = self.c_decode(obj, iprot, _raw_specs.get(cls) or _raw_struct(cls))
            except TypeError as error:
                if "got wrong ttype" not in str(error):
                    raise
                cut_short = getattr(iprot.trans, "refill_error", None)
                if cut_short is not None:
                    raise cut_short from None
                raise UndecodableValue(_WRONG_ELEMENTS) from None
            obj = decoded if obj is None else obj
        fields = _text_fields.get(cls)
        return _struct_text(obj, _fields_with_text(cls) if fields is None else fields)


@functools.lru_cache(maxsize=None)
def strict_decoder(c_decode: Optional[Callable[..., Any]]) -> _StrictDecoder:
    return _StrictDecoder(c_decode)
