"""The client's argument check, without sockets: every Thrift type at its edges, the path in the error."""

from __future__ import annotations

import re

import pytest

from conftest import generated
from thrift_handshake.errors import RequestEncodingError
from thrift_handshake.values import argument_checker
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import AllTypes, Point

CHECK_TYPES = argument_checker(HandshakeService.echo_types_args, "echo_types")
CHECK_ECHO = argument_checker(HandshakeService.echo_args, "echo")


def all_types(**fields) -> AllTypes:
    fields.setdefault("id", "x")
    return AllTypes(**fields)


@pytest.mark.parametrize("field, low, high", [
    ("small", -128, 127), ("short_number", -32768, 32767), ("number", -2**31, 2**31 - 1),
    ("big_number", -2**63, 2**63 - 1),
])
def test_integers_are_accepted_exactly_within_their_range(field, low, high):
    for fits in (low, high, 0):
        CHECK_TYPES([all_types(**{field: fits})])
    for outside in (low - 1, high + 1):
        with pytest.raises(RequestEncodingError, match=re.escape(f".{field}: expected an i")):
            CHECK_TYPES([all_types(**{field: outside})])
    for not_an_integer in (True, 1.0, "1"):
        with pytest.raises(RequestEncodingError, match=re.escape(f"in {low}..{high}")):
            CHECK_TYPES([all_types(**{field: not_an_integer})])


@pytest.mark.parametrize("fields, says", [
    ({"flag": 1}, "parameter 'value'.flag: expected a bool, got 1 (int); nothing was sent"),
    ({"real": True}, "parameter 'value'.real: expected a double, got True (bool)"),
    ({"real": "1.5"}, "parameter 'value'.real: expected a double"),
    ({"text": b"x"}, "parameter 'value'.text: expected a string (str; binary fields take bytes)"),
    ({"data": "x"}, "parameter 'value'.data: expected binary (bytes)"),
    ({"numbers": (1, 2**31)}, "parameter 'value'.numbers[1]: expected an i32"),
    ({"numbers": 5}, "parameter 'value'.numbers: expected a list or set"),
    ({"tags": {1}}, "parameter 'value'.tags[0]: expected a string"),
    ({"counts": [("a", 1)]}, "parameter 'value'.counts: expected a dict"),
    ({"counts": {1: 1}}, "parameter 'value'.counts key 1: expected a string"),
    ({"counts": {"a": 2**63}}, "parameter 'value'.counts['a']: expected an i64"),
    ({"groups": {"g": [Point(x=1), "p"]}}, "parameter 'value'.groups['g'][1]: expected a Point"),
    ({"groups": {"g": [Point(y=2**31)]}}, "parameter 'value'.groups['g'][0].y: expected an i32"),
    ({"layers": [{"k": {1, "2"}}]}, "parameter 'value'.layers[0]['k']"),
    ({"blobs": [b"ok", "text"]}, "parameter 'value'.blobs[1]: expected binary (bytes)"),
])
def test_a_value_its_type_cannot_carry_is_named_with_its_path(fields, says):
    with pytest.raises(RequestEncodingError, match=re.escape(says)):
        CHECK_TYPES([all_types(**fields)])


def test_every_type_filled_with_what_it_carries_passes():
    CHECK_TYPES([all_types(flag=False, small=1, short_number=2, number=3, big_number=4, real=1, text="t",
                           data=bytearray(b"d"), numbers=[1, 2], tags={"a"}, counts={"a": 1},
                           groups={"g": [Point(x=1, y=2, label="p")]}, layers=[{"k": {1}}], palette={1: 2},
                           blobs=[b""])])


def test_a_required_field_left_unset_is_refused():
    with pytest.raises(RequestEncodingError, match=re.escape("parameter 'value': Required field id is unset")):
        CHECK_TYPES([AllTypes()])


def test_a_struct_of_another_class_is_refused():
    with pytest.raises(RequestEncodingError, match=re.escape("parameter 'value': expected a AllTypes, got")):
        CHECK_TYPES([Point(x=1)])


def test_unset_arguments_and_fields_pass():
    CHECK_ECHO([None])
    CHECK_TYPES([all_types(flag=None, numbers=None)])


def test_long_values_are_clipped_in_the_message():
    with pytest.raises(RequestEncodingError) as caught:
        CHECK_ECHO([b"b" * 1000])
    assert "..." in str(caught.value) and len(str(caught.value)) < 200


@pytest.mark.parametrize("length", [60, 61])
def test_a_value_is_shown_whole_up_to_60_characters_then_cut_with_an_ellipsis(length):
    value = b"b" * (length - 3)  # its repr, b'...', is `length` characters
    assert len(repr(value)) == length
    with pytest.raises(RequestEncodingError) as caught:
        CHECK_ECHO([value])
    shown = repr(value) if length <= 60 else repr(value)[:60] + "..."
    assert str(caught.value) == (f"echo: parameter 'message': expected a string (str; binary fields take bytes), "
                                 f"got {shown} (bytes); nothing was sent")


def test_the_keys_of_a_binary_keyed_map_must_be_bytes(tmp_path):
    idl = "service Blobs { void put(1: map<binary, string> by_digest) }\n"
    with generated(tmp_path, "blobs.thrift", idl, "blobs.Blobs") as blobs:
        check = argument_checker(blobs.put_args, "put")
        check([{b"\x00\xff": "ok"}])
        with pytest.raises(RequestEncodingError) as caught:
            check([{"text": "no"}])
    assert str(caught.value) == ("put: parameter 'by_digest' key 'text': expected binary (bytes), got 'text' (str);"
                                 " nothing was sent")
