"""JSON <-> Thrift edges the mutation run found untested (docs/mutation.md): the messages' wording and
truncation, hints, sets and maps of unhashable values, enum lookup in modules of IntEnum classes, args
classes without a usable signature, and the keyword-only options of parse_arguments."""

from __future__ import annotations

import enum
import types

import pytest
from thrift.Thrift import TType

from thrift_handshake.errors import ArgumentError
from thrift_handshake.jsonargs import (
    _describe,
    _enum_value,
    _enums_of,
    _JsonToThrift,
    _parameters,
    parse_arguments,
    to_jsonable,
)
from thrift_handshake_gen import HandshakeService

LIST_OF_I32 = (TType.I32, None, False)


def test_values_in_messages_are_cut_at_60_characters_and_keep_their_script():
    assert _describe("x" * 58) == '"' + "x" * 58 + '"'  # 60 with the quotes: whole
    assert _describe("x" * 59) == '"' + "x" * 56 + "..."  # 61: cut to 57 + "..."
    assert len(_describe("y" * 500)) == 60
    assert _describe("请求数据") == '"请求数据"'


def test_not_valid_json_hints_at_quoting_only_for_strings():
    with pytest.raises(ArgumentError) as caught:
        parse_arguments(HandshakeService, "echo", ["请求 数据"])
    assert "quote it: '\"请求 数据\"'" in str(caught.value)
    with pytest.raises(ArgumentError) as caught:
        parse_arguments(HandshakeService, "process", ["{request_id: 1}"])
    assert "not valid JSON" in str(caught.value) and "quote it" not in str(caught.value)


def test_options_are_keyword_only_and_the_rest_may_be_named():
    assert parse_arguments(service_module=HandshakeService, method="echo", json_texts=['"x"']) == ["x"]
    with pytest.raises(TypeError):
        parse_arguments(HandshakeService, "echo", ['"x"'], ())  # unions only by name


def test_a_set_is_called_a_set_in_messages():
    convert = _JsonToThrift(()).convert
    with pytest.raises(ArgumentError) as caught:
        convert({"a": 1}, TType.SET, LIST_OF_I32, "p", object)
    assert "expected set (a JSON array)" in str(caught.value)
    with pytest.raises(ArgumentError) as caught:
        convert({"a": 1}, TType.LIST, LIST_OF_I32, "p", object)
    assert "expected list (a JSON array)" in str(caught.value)


def test_sets_of_unhashable_elements_stay_lists_and_unorderable_sets_still_convert():
    convert = _JsonToThrift(()).convert
    set_of_lists = (TType.LIST, LIST_OF_I32, False)
    assert convert([[1, 2], [3]], TType.SET, set_of_lists, "p", object) == [[1, 2], [3]]
    assert sorted(to_jsonable({1, "a"}), key=str) == [1, "a"]


def test_map_pairs_must_be_pairs_and_keys_hashable():
    convert = _JsonToThrift(()).convert
    map_of_strings = (TType.I32, None, TType.STRING, "UTF8", False)
    with pytest.raises(ArgumentError) as caught:
        convert([[1]], TType.MAP, map_of_strings, "m", object)
    assert "m[0]: expected a [key, value] pair" in str(caught.value)
    list_keys = (TType.LIST, LIST_OF_I32, TType.STRING, "UTF8", False)
    with pytest.raises(ArgumentError) as caught:  # an object key is read as JSON for non-string key types
        convert({"[1, 2]": "a"}, TType.MAP, list_keys, "m", object)
    assert "this key type cannot be a Python dict key" in str(caught.value)


class Color(enum.IntEnum):
    RED = 1
    GREEN = 2


class Signal(enum.IntEnum):
    RED = 7


def test_enum_names_are_found_in_modules_of_int_enums_and_ambiguity_is_refused():
    module = types.ModuleType("generated_with_py_enum")
    module.IntEnum = enum.IntEnum  # `from enum import IntEnum`, as `thrift --gen py:enum` writes
    module.Color = Color
    assert _enums_of(module) == {"Color": {"RED": 1, "GREEN": 2}}
    assert _enum_value("GREEN", "p", Color) == 2
    assert _enum_value("Color.RED", "p", Color) == 1
    with pytest.raises(ArgumentError) as caught:  # Color.RED = 1 and Signal.RED = 7, both in this module
        _enum_value("RED", "p", Color)
    assert "ambiguous" in str(caught.value)


class _Unsignable:
    """An __init__ whose signature cannot be read (as with some builtins)."""

    def __init__(self, error: type) -> None:
        self.error = error

    @property
    def __signature__(self):
        raise self.error("no signature")

    def __call__(self, *args, **kwargs):
        return None


@pytest.mark.parametrize("error", [TypeError, ValueError])
def test_parameters_fall_back_to_field_order_without_a_signature(error):
    args_class = type("odd_args", (), {
        "thrift_spec": (None, (1, TType.STRING, "first", "UTF8", None), (2, TType.I32, "second", None, None)),
        "__init__": _Unsignable(error),
    })
    assert [name for name, _, _ in _parameters(args_class)] == ["first", "second"]
