"""The compiled argument check: it refuses exactly what the walk refuses, and the walk still names the field."""

from __future__ import annotations

import enum
import re

import pytest
from thrift.Thrift import TType

from thrift_handshake import Client, ClientOptions, Wire
from thrift_handshake.errors import RequestEncodingError
from thrift_handshake.values import argument_checker, fits
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import AllTypes, Point, Shape

from conftest import every_type_at_its_edges, generated

CHECK_TYPES = argument_checker(HandshakeService.echo_types_args, "echo_types")
ALL_TYPES_FITS = fits(TType.STRUCT, (AllTypes, None))


class Text(str):
    """A str subclass: a string as far as the walk is concerned."""


class Number(enum.IntEnum):
    ONE = 1


#: AllTypes fields -> the path the refusal names (None: the value fits). Each kind of value: exact and
#: subclassed scalars, ints out of range, bool where an int or double goes, None and wrong types inside
#: lists, sets and maps (keys and values), nested structs and unions, containers of the other kind.
CASES = [
    ({}, None),
    ({"real": float("nan")}, None),
    ({"real": 2**70}, None),
    ({"real": Number.ONE}, None),
    ({"number": Number.ONE}, None),
    ({"text": Text("t")}, None),
    ({"numbers": (1, Number.ONE, -2**31)}, None),
    ({"numbers": {2**31 - 1}}, None),
    ({"tags": [Text("a"), "b"]}, None),
    ({"layers": [{"k": [1, 2]}]}, None),
    ({"blobs": [bytearray(b"x"), b"y"]}, None),
    ({"shape": Shape(polygon=[Point(x=1)])}, None),
    ({"small": 128}, ".small: expected an i8"),
    ({"big_number": 2**63}, ".big_number: expected an i64"),
    ({"number": 1.0}, ".number: expected an i32"),
    ({"real": True}, ".real: expected a double"),
    ({"flag": 0}, ".flag: expected a bool"),
    ({"text": b"t"}, ".text: expected a string"),
    ({"data": memoryview(b"d")}, ".data: expected binary (bytes)"),
    ({"numbers": [1, None]}, ".numbers[1]: expected an i32"),
    ({"numbers": [True]}, ".numbers[0]: expected an i32"),
    ({"numbers": [2**31]}, ".numbers[0]: expected an i32"),
    ({"numbers": [-2**31 - 1, 0]}, ".numbers[0]: expected an i32"),
    ({"numbers": "123"}, ".numbers: expected a list or set"),
    ({"tags": {"a", None}}, ": expected a string"),
    ({"tags": ["a", b"b"]}, ".tags[1]: expected a string"),
    ({"counts": {"a": None}}, ".counts['a']: expected an i64"),
    ({"counts": {"a": True}}, ".counts['a']: expected an i64"),
    ({"counts": {b"a": 1}}, ".counts key b'a': expected a string"),
    ({"palette": {True: 1}}, ".palette key True: expected an i32"),
    ({"palette": {1: 2**31}}, ".palette[1]: expected an i32"),
    ({"groups": {"g": [Point(), None]}}, ".groups['g'][1]: expected a Point"),
    ({"groups": {"g": (Point(label=b"l"),)}}, ".groups['g'][0].label: expected a string"),
    ({"layers": [{"k": {1}}, {"k": {2**31}}]}, ".layers[1]['k']"),
    ({"layers": [{"k": 1}]}, ".layers[0]['k']: expected a list or set"),
    ({"blobs": [b"", bytearray(), "s"]}, ".blobs[2]: expected binary (bytes)"),
    ({"shape": Shape(point=Point(y=2**31))}, ".shape.point.y: expected an i32"),
    ({"shape": Point(x=1)}, ".shape: expected a Shape"),
    ({"id": None}, "parameter 'value': Required field id is unset"),
    ({"id": 1}, ".id: expected a string"),
]


@pytest.mark.parametrize("fields, names", CASES)
def test_the_compiled_check_refuses_what_the_walk_refuses_and_the_walk_names_it(fields, names):
    value = AllTypes(**{"id": "x", **fields})
    assert ALL_TYPES_FITS(value) is (names is None)
    if names is None:
        CHECK_TYPES([value])
    else:
        with pytest.raises(RequestEncodingError, match=re.escape(names) + ".*nothing was sent|Required field"):
            CHECK_TYPES([value])


def test_every_type_at_its_edges_fits():
    assert ALL_TYPES_FITS(every_type_at_its_edges())
    CHECK_TYPES([every_type_at_its_edges()])


def test_empty_containers_fit():
    assert ALL_TYPES_FITS(AllTypes(id="x", numbers=[], tags=set(), counts={}, groups={}, layers=[], blobs=[]))


RECURSIVE_IDL = """
namespace py tree_gen
struct Node {
  1: required i32 value,
  2: optional Node next,
  3: optional list<Node> children,
}
service Tree {
  Node echo_node(1: Node node),
}
"""


def test_a_recursive_struct_is_compiled_once_and_checked_at_every_depth(tmp_path):
    with generated(tmp_path, "tree.thrift", RECURSIVE_IDL, "tree_gen.Tree") as tree:
        from tree_gen.ttypes import Node

        check = argument_checker(tree.echo_node_args, "echo_node")
        check([Node(value=1, next=Node(value=2, children=[Node(value=3)]))])
        with pytest.raises(RequestEncodingError, match=re.escape("'node'.next.children[1].value: expected an i32")):
            check([Node(value=1, next=Node(value=2, children=[Node(value=3), Node(value=2**31)]))])
        with pytest.raises(RequestEncodingError, match=re.escape("'node'.next.next: Required field value is unset")):
            check([Node(value=1, next=Node(value=2, next=Node()))])


WIRES = [Wire(protocol=protocol, transport=transport, accelerated=accelerated)
         for protocol in ("binary", "compact") for transport in ("buffered", "framed", "header", "http")
         for accelerated in (True, False)] + [Wire(protocol="json", transport=transport)
                                             for transport in ("buffered", "framed", "http")]


@pytest.mark.parametrize("wire", WIRES, ids=str)
def test_on_every_wire_a_bad_value_is_named_and_nothing_is_written(start_server, wire):
    server = start_server()
    with Client("127.0.0.1", server.port, ClientOptions(wire=wire), service=HandshakeService) as client:
        sent = client._sock.bytes_out
        for bad, names in [(AllTypes(id="x", text=b"t"), ".text: expected a string"),
                           (AllTypes(id="x", numbers=[1, True]), ".numbers[1]: expected an i32"),
                           (AllTypes(id="x", groups={"g": [Point(label=None), Point()]}), None),
                           (AllTypes(), "Required field id is unset")]:
            if names is None:  # fits: a control that the wire carries what the check lets through
                assert client.echo_types(bad).groups == {"g": [Point(), Point()]}
                sent = client._sock.bytes_out
                continue
            with pytest.raises(RequestEncodingError, match=re.escape(names)):
                client.echo_types(bad)
            assert client._sock.bytes_out == sent, "part of the request went out"
        assert client.echo_types(AllTypes(id="ok", small=-128)).small == -128
