"""Tests of thrift_handshake.jsonargs against the real generated code (no mocks)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.Thrift import TType
from thrift.transport.TTransport import TMemoryBuffer

from thrift_handshake import jsonargs
from thrift_handshake.errors import ArgumentError
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import AllTypes, Color, InvalidRequest, Point, Request, Response, Shape

SHAPE_IS_UNION = {Shape}


def parse(method, *texts, unions=SHAPE_IS_UNION):
    return jsonargs.parse_arguments(HandshakeService, method, list(texts), unions=unions)


def parse_all_types(**fields):
    """Parses one AllTypes for echo_types; ``id`` defaults to "x"."""
    return parse("echo_types", json.dumps({"id": "x", **fields}))[0]


def error_of(method, *texts, unions=SHAPE_IS_UNION) -> str:
    with pytest.raises(ArgumentError) as caught:
        parse(method, *texts, unions=unions)
    return str(caught.value)


FULL_ALL_TYPES = {
    "id": "全部-1",
    "flag": True,
    "small": -128,
    "short_number": 32767,
    "number": -2147483648,
    "big_number": 9223372036854775807,
    "real": 2.5,
    "text": "请求数据",
    "data": "AAEC/w==",
    "color": 3,
    "shape": {"polygon": [{"x": 0, "y": 0}, {"x": 1, "y": 2, "label": "p"}]},
    "note": "n",
    "maybe_number": 0,
    "greeting": "hi",
    "answer": 7,
    "numbers": [3, 1, 2],
    "tags": ["a", "b"],
    "counts": {"a": 1, "b": -1},
    "groups": {"g": [{"x": 1, "y": 1}], "empty": []},
    "layers": [{"k": [1, 2]}, {}],
    "palette": {"1": 1, "2": 3},
    "blobs": ["", "aGk="],
}


# ---------------------------------------------------------------------------------------------
# Methods and parameters
# ---------------------------------------------------------------------------------------------


def test_method_parameters_gives_name_ttype_and_type_args():
    assert jsonargs.method_parameters(HandshakeService, "echo") == [("message", TType.STRING, "UTF8")]
    [(name, ttype, type_args)] = jsonargs.method_parameters(HandshakeService, "process")
    assert (name, ttype, type_args[0]) == ("request", TType.STRUCT, Request)
    assert [p[:2] for p in jsonargs.method_parameters(HandshakeService, "get_result")] == [
        ("ticket", TType.STRING), ("wait_ms", TType.I32)]
    assert jsonargs.method_parameters(HandshakeService, "ping") == []


def test_unknown_method_lists_known_methods_sorted():
    with pytest.raises(ArgumentError) as caught:
        jsonargs.method_parameters(HandshakeService, "nope")
    message = str(caught.value)
    assert "unknown method 'nope'" in message
    known = message.split("known methods: ")[1].split(", ")
    assert known == sorted(known)
    assert {"hello", "ping", "echo", "process", "notify", "goodbye"} <= set(known)
    assert "send_echo" not in known and "echo_result" not in known


# ---------------------------------------------------------------------------------------------
# Arguments: count, JSON syntax
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ['"请求数据"', json.dumps("请求数据")])
def test_echo_chinese_text(text):
    assert parse("echo", text) == ["请求数据"]


def test_too_many_arguments():
    assert "echo: takes 1 parameter(s) (message), got 2" in error_of("echo", '"a"', '"b"')
    assert "ping: takes no parameters, got 1" in error_of("ping", "1")


def test_a_missing_argument_is_refused_and_null_leaves_it_unset():
    assert "parameter 2 'wait_ms' is missing: get_result takes 2 argument(s) (ticket, wait_ms)" in error_of(
        "get_result", '"t-1"')
    assert "parameter 1 'message' is missing" in error_of("echo")
    assert parse("get_result", "null", "5") == [None, 5]
    assert parse("get_result", '"t-1"', "null") == ["t-1", None]


def test_bad_json_names_the_parameter():
    message = error_of("get_result", '"t"', "{oops")
    assert message.startswith("get_result: parameter 2 'wait_ms': not valid JSON: ")
    assert "quote it" not in message


def test_bare_word_for_a_string_is_not_guessed_but_quoting_is_suggested():
    message = error_of("echo", "hi")
    assert message.startswith("echo: parameter 1 'message': not valid JSON: ")
    assert message.endswith("""quote it: '"hi"'""")


def test_single_text_instead_of_a_sequence_is_refused():
    with pytest.raises(TypeError):
        jsonargs.parse_arguments(HandshakeService, "echo", '"hi"')


# ---------------------------------------------------------------------------------------------
# Structs
# ---------------------------------------------------------------------------------------------


def test_process_request_object():
    [request] = parse("process", '{"request_id": "r1", "payload": "数据", "work_ms": 5, "headers": {"k": "v"}}')
    assert request == Request(request_id="r1", payload="数据", work_ms=5, headers={"k": "v"})


def test_error_path_names_the_field():
    assert error_of("process", '{"work_ms": "x"}').startswith(
        """process: parameter 1 'request'.work_ms: expected i32, got "x\"""")


def test_unknown_field_lists_valid_fields():
    message = error_of("process", '{"requestid": "r"}')
    assert "Request has no field 'requestid'; fields: request_id, payload, work_ms, headers" in message


def test_struct_needs_an_object():
    assert "expected Request (a JSON object), got [1]" in error_of("process", "[1]")


def test_defaults_are_kept_and_null_unsets():
    value = parse_all_types()
    assert (value.color, value.greeting, value.answer) == (Color.RED, "hello", 42)
    assert parse_all_types(greeting=None).greeting is None


@pytest.mark.parametrize("fields", [{}, {"id": None}], ids=["absent", "null"])
def test_required_field_missing(fields):
    message = error_of("echo_types", json.dumps({"flag": True, **fields}))
    assert message == "echo_types: parameter 1 'value': AllTypes: required field id is unset"


def test_union_with_one_field():
    assert parse_all_types(shape={"name": "circle"}).shape == Shape(name="circle")


@pytest.mark.parametrize("shape, got", [({}, "none"), ({"name": "a", "id": 1}, "name, id"),
                                        ({"name": "a", "id": None}, None)])
def test_union_needs_exactly_one_field(shape, got):
    text = json.dumps({"id": "x", "shape": shape})
    if got is None:
        assert parse("echo_types", text)[0].shape == Shape(name="a")
        return
    message = error_of("echo_types", text)
    assert message == (f"echo_types: parameter 1 'value'.shape: Shape is a union: "
                       f"set exactly one of point, name, id, polygon (got {got})")


def test_union_is_not_detectable_without_the_hint():
    # The generated Python code of a union is identical to a struct's.
    text = json.dumps({"id": "x", "shape": {"name": "a", "id": 1}})
    assert parse("echo_types", text, unions=())[0].shape == Shape(name="a", id=1)


# ---------------------------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------------------------

RANGES = [("small", "i8", 8), ("short_number", "i16", 16), ("number", "i32", 32), ("big_number", "i64", 64)]


@pytest.mark.parametrize("field, kind, bits", RANGES)
def test_integer_range_edges(field, kind, bits):
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    assert getattr(parse_all_types(**{field: low}), field) == low
    assert getattr(parse_all_types(**{field: high}), field) == high
    for outside in (low - 1, high + 1):
        message = error_of("echo_types", json.dumps({"id": "x", field: outside}))
        assert message == f"echo_types: parameter 1 'value'.{field}: expected {kind} ({low}..{high}), got {outside}"


@pytest.mark.parametrize("field, kind, _", RANGES)
@pytest.mark.parametrize("bad", [True, False, 1.0, 1.5, "1", [1], {"v": 1}])
def test_integers_refuse_non_integers(field, kind, _, bad):
    # For an i32 a string is looked up as an enum name; the message still starts the same way.
    assert f".{field}: expected {kind}, got {json.dumps(bad)}" in error_of(
        "echo_types", json.dumps({"id": "x", field: bad}))


def test_bool_only_true_and_false():
    assert parse_all_types(flag=False).flag is False
    for bad in (1, 0, "true", 1.0):
        assert f".flag: expected bool, got {json.dumps(bad)}" in error_of(
            "echo_types", json.dumps({"id": "x", "flag": bad}))


@pytest.mark.parametrize("given, expected", [(1, 1.0), (-0.5, -0.5), (1e308, 1e308), ("Infinity", math.inf),
                                             ("-Infinity", -math.inf)])
def test_double_accepts_numbers_and_infinities(given, expected):
    real = parse_all_types(real=given).real
    assert isinstance(real, float) and real == expected


def test_double_nan():
    assert math.isnan(parse_all_types(real="NaN").real)
    assert math.isnan(parse("echo_types", '{"id": "x", "real": NaN}')[0].real)  # Python's json also reads NaN


@pytest.mark.parametrize("bad", [True, "nan", "1.5", 10 ** 400])
def test_double_refuses(bad):
    assert ".real: expected double" in error_of("echo_types", json.dumps({"id": "x", "real": bad}))


@pytest.mark.parametrize("bad", [5, True, ["a"]])
def test_string_refuses_non_strings(bad):
    assert f"echo: parameter 1 'message': expected string, got {json.dumps(bad)}" == error_of(
        "echo", json.dumps(bad))


def test_string_refuses_lone_surrogates():
    assert "not valid Unicode" in error_of("echo", '"\\ud800"')


# ---------------------------------------------------------------------------------------------
# Enums
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given, expected", [("GREEN", Color.GREEN), ("Color.BLUE", Color.BLUE), (3, Color.BLUE),
                                             ("UNKNOWN_COLOR", -1), ("MAX_COLOR", 2147483647)])
def test_enum_by_name_or_number(given, expected):
    assert parse_all_types(color=given).color == expected


@pytest.mark.parametrize("bad", ["PURPLE", "red", "Shape.RED"])
def test_enum_bad_name(bad):
    message = error_of("echo_types", json.dumps({"id": "x", "color": bad}))
    assert message.startswith(f"echo_types: parameter 1 'value'.color: expected i32, got \"{bad}\"")
    assert "enum name: Color.UNKNOWN_COLOR, Color.RED, Color.GREEN, Color.BLUE, Color.MAX_COLOR" in message


# ---------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------


def test_nested_map_of_lists_of_points():
    groups = parse_all_types(groups={"a": [{"x": 1, "y": 2}, {"x": 3, "y": 4, "label": "四"}], "b": []}).groups
    assert groups == {"a": [Point(x=1, y=2), Point(x=3, y=4, label="四")], "b": []}
    message = error_of("echo_types", json.dumps({"id": "x", "groups": {"a": [{"x": 1}, {"x": "1"}]}}))
    assert message.startswith("""echo_types: parameter 1 'value'.groups["a"][1].x: expected i32, got "1\"""")


def test_list_of_maps_of_sets():
    assert parse_all_types(layers=[{"k": [1, 2]}]).layers == [{"k": {1, 2}}]


def test_set_duplicates():
    assert parse_all_types(tags=["b", "a"]).tags == {"a", "b"}
    assert error_of("echo_types", json.dumps({"id": "x", "tags": ["a", "b", "a"]})) == (
        """echo_types: parameter 1 'value'.tags[2]: duplicate set element "a\"""")
    assert """.layers[0]["k"][1]: duplicate set element 7""" in error_of(
        "echo_types", json.dumps({"id": "x", "layers": [{"k": [7, 7]}]}))


def test_containers_need_arrays_and_no_null_elements():
    assert ".numbers: expected list (a JSON array), got {}" in error_of("echo_types", '{"id": "x", "numbers": {}}')
    assert ".numbers[1]: expected i32, got null" in error_of("echo_types", '{"id": "x", "numbers": [1, null]}')


@pytest.mark.parametrize("palette", [{"1": "RED", "-5": 3}, [[1, "RED"], [-5, "Color.BLUE"]], {"1": 1, "-5": 3}])
def test_map_with_i32_keys(palette):
    assert parse_all_types(palette=palette).palette == {1: Color.RED, -5: Color.BLUE}


@pytest.mark.parametrize("palette, error", [
    ({"x": 1}, """.palette["x"]: expected i32, got "x\""""),
    ({"1.0": 1}, """.palette["1.0"]: expected i32, got 1.0"""),
    ({"1": "PINK"}, """.palette["1"]: expected i32, got "PINK\""""),
    ([[1, 1], [1, 2]], ".palette[1][0]: duplicate map key 1"),
    ([[1, 1, 1]], ".palette[0]: expected a [key, value] pair, got [1, 1, 1]"),
    ([[1, "PINK"]], """.palette[0][1]: expected i32, got "PINK\""""),
    ("1", """.palette: expected map (a JSON object or an array of [key, value] pairs), got "1\""""),
])
def test_map_errors(palette, error):
    assert error in error_of("echo_types", json.dumps({"id": "x", "palette": palette}))


def test_map_with_string_keys_keeps_key_text():
    assert parse_all_types(counts={"1": 1, "": 2}).counts == {"1": 1, "": 2}


def test_binary_base64_round_trip():
    value = parse_all_types(data="AAEC/w==", blobs=["", "aGk="])
    assert value.data == b"\x00\x01\x02\xff" and value.blobs == [b"", b"hi"]
    assert jsonargs.to_jsonable(value)["data"] == "AAEC/w=="
    assert jsonargs.to_jsonable(value)["blobs"] == ["", "aGk="]


@pytest.mark.parametrize("bad", ["AAE", "not base64!", "aGk=aGk="])
def test_binary_invalid_base64(bad):
    assert ".data: not valid base64: " in error_of("echo_types", json.dumps({"id": "x", "data": bad}))


def test_binary_needs_a_string():
    assert ".blobs[0]: expected binary (a base64 string), got 1" in error_of(
        "echo_types", json.dumps({"id": "x", "blobs": [1]}))


# ---------------------------------------------------------------------------------------------
# to_jsonable and serialization
# ---------------------------------------------------------------------------------------------


def test_all_types_round_trip_through_to_jsonable():
    [value] = parse("echo_types", json.dumps(FULL_ALL_TYPES))
    jsonable = jsonargs.to_jsonable(value)
    assert jsonable == FULL_ALL_TYPES
    assert list(jsonable) == list(FULL_ALL_TYPES)  # field-id order
    assert json.loads(json.dumps(jsonable, allow_nan=False)) == FULL_ALL_TYPES


def test_all_types_round_trip_through_accelerated_binary_protocol():
    values = parse("echo_types", json.dumps(FULL_ALL_TYPES))
    sent = HandshakeService.echo_types_args(*values)
    out = TMemoryBuffer()
    sent.write(TBinaryProtocolAccelerated(out))
    received = HandshakeService.echo_types_args()
    received.read(TBinaryProtocolAccelerated(TMemoryBuffer(out.getvalue())))
    assert received == sent
    assert jsonargs.to_jsonable(received.value) == FULL_ALL_TYPES


def test_to_jsonable_special_values():
    value = AllTypes(id="x", real=math.nan, tags={"b", "a", "c"}, palette={2: 3, 1: 1}, color=None, greeting=None,
                     answer=None, counts={}, layers=[{"k": {3, 1}}])
    assert jsonargs.to_jsonable(value) == {
        "id": "x", "real": "NaN", "tags": ["a", "b", "c"], "counts": {}, "layers": [{"k": [1, 3]}],
        "palette": {"2": 3, "1": 1}}
    assert jsonargs.to_jsonable([math.inf, -math.inf, 1.5]) == ["Infinity", "-Infinity", 1.5]


def test_to_jsonable_results_and_exceptions():
    assert jsonargs.to_jsonable(Response(request_id="r", sequence=1)) == {"request_id": "r", "sequence": 1}
    assert jsonargs.to_jsonable(InvalidRequest(message="bad", field="work_ms")) == {
        "message": "bad", "field": "work_ms"}
    assert jsonargs.to_jsonable(None) is None
    assert jsonargs.to_jsonable("请求数据") == "请求数据"


def test_to_jsonable_maps_with_other_keys_become_pairs():
    assert jsonargs.to_jsonable({True: 1}) == [[True, 1]]
    assert jsonargs.to_jsonable({1.5: b"\x00"}) == [[1.5, "AA=="]]
    assert jsonargs.to_jsonable({frozenset({2, 1}): 1}) == [[[1, 2], 1]]


def test_to_jsonable_refuses_unknown_objects():
    with pytest.raises(TypeError):
        jsonargs.to_jsonable(object())


# ---------------------------------------------------------------------------------------------
# Any generated service: extends, declaration order (needs the Thrift compiler)
# ---------------------------------------------------------------------------------------------

EXTENDS_IDL = """
namespace py jsonargs_extends_gen
enum Mode { FAST = 1, SLOW = 2 }
service Parent { i32 parent_method(1: Mode mode, 2: list<i16> values) }
service Child extends Parent { void child_method(5: i32 late, 2: string early), void nothing() }
"""


@pytest.fixture
def child_service(tmp_path, monkeypatch):
    compiler = shutil.which("thrift")
    assert compiler, "the Thrift compiler is needed (scripts/test installs thrift-compiler)"
    (tmp_path / "extends.thrift").write_text(EXTENDS_IDL)
    subprocess.run([compiler, "--gen", "py", "-out", str(tmp_path), str(tmp_path / "extends.thrift")], check=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    from jsonargs_extends_gen import Child  # noqa: PLC0415 (generated at test time)

    yield Child
    for name in [name for name in sys.modules if name.startswith("jsonargs_extends_gen")]:
        del sys.modules[name]


def test_service_that_extends_another(child_service):
    known = str(pytest.raises(ArgumentError, jsonargs.method_parameters, child_service, "x").value)
    assert known.endswith("known methods: child_method, nothing, parent_method")
    assert jsonargs.parse_arguments(child_service, "parent_method", ['"SLOW"', "[1, -32768]"]) == [2, [1, -32768]]
    assert "parent_method: parameter 2 'values'[0]: expected i16" in str(
        pytest.raises(ArgumentError, jsonargs.parse_arguments, child_service, "parent_method", ["1", "[32768]"]).value)


def test_parameters_follow_declaration_order_not_field_ids(child_service):
    assert [p[0] for p in jsonargs.method_parameters(child_service, "child_method")] == ["late", "early"]
    assert jsonargs.parse_arguments(child_service, "child_method", ["7", '"e"']) == [7, "e"]
    assert jsonargs.parse_arguments(child_service, "nothing", []) == []


# ---------------------------------------------------------------------------------------------
# With the IDL's own types (idlcache's model from the compiler): enums per field, required parameters
# ---------------------------------------------------------------------------------------------

TYPED_IDL = """
namespace py jsonargs_typed_gen
enum Mode { FAST = 1, SLOW = 2 }
enum Other { FAST = 10 }
typedef Mode Speed
union Pick { 1: Mode mode, 2: string name }
struct Box { 1: required Speed speed, 2: optional map<Mode, list<Other>> table, 3: optional Pick pick }
service Typed {
  Mode run(1: required Mode mode, 2: Box box, 3: set<Speed> speeds),
}
"""


@pytest.fixture(scope="module")
def typed_idl(tmp_path_factory):
    from thrift_handshake import idlcache  # noqa: PLC0415

    folder = tmp_path_factory.mktemp("typed")
    (folder / "typed.thrift").write_text(TYPED_IDL)
    cache = folder / "cache"
    previous = os.environ.get("THRIFT_HANDSHAKE_CACHE")
    os.environ["THRIFT_HANDSHAKE_CACHE"] = str(cache)
    try:
        idl = idlcache.load_idl(folder / "typed.thrift")
        service = idl.service()
        fields, unions = idl.type_hints(service)
        module = idl.service_module(service)
    finally:
        if previous is None:
            os.environ.pop("THRIFT_HANDSHAKE_CACHE", None)
        else:
            os.environ["THRIFT_HANDSHAKE_CACHE"] = previous
    return module, fields, unions


def typed_parse(typed_idl, *texts):
    module, fields, unions = typed_idl
    return jsonargs.parse_arguments(module, "run", list(texts), unions=unions, fields=fields)


def typed_error(typed_idl, *texts) -> str:
    with pytest.raises(ArgumentError) as caught:
        typed_parse(typed_idl, *texts)
    return str(caught.value)


def test_idl_enums_take_their_own_names_or_member_numbers(typed_idl):
    mode, box, speeds = typed_parse(typed_idl, '"FAST"', '{"speed": "Mode.SLOW", "table": {"FAST": ["FAST", 10]}}',
                                    '["SLOW", 1]')
    assert mode == 1 and box.speed == 2 and box.table == {1: [10, 10]} and speeds == {1, 2}
    assert typed_parse(typed_idl, "2", "null", "null")[0] == 2


def test_idl_enums_refuse_other_enums_names_and_unknown_numbers(typed_idl):
    assert "parameter 1 'mode': expected enum Mode (one of FAST = 1, SLOW = 2), got 10" in typed_error(typed_idl, "10")
    assert "expected enum Mode" in typed_error(typed_idl, '"Other.FAST"')
    assert "'box'.table[\"FAST\"][0]: expected enum Other (one of FAST = 10), got 1" in typed_error(
        typed_idl, '"FAST"', '{"speed": 1, "table": {"FAST": [1]}}')
    assert "'box'.speed: expected enum Mode" in typed_error(typed_idl, "1", '{"speed": true}')


def test_idl_union_and_required_parameter(typed_idl):
    assert "parameter 1 'mode': required parameter is missing" in typed_error(typed_idl)
    assert "parameter 1 'mode': required parameter is missing" in typed_error(typed_idl, "null", "null")
    assert "Pick is a union: set exactly one of mode, name (got mode, name)" in typed_error(
        typed_idl, "1", '{"speed": 1, "pick": {"mode": "SLOW", "name": "x"}}')
    assert typed_parse(typed_idl, "1", '{"speed": 1, "pick": {"mode": "SLOW"}}', "null")[1].pick.mode == 2
    assert "Box: required field speed is unset" in typed_error(typed_idl, "1", "{}")
