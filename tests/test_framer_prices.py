"""The framer's decoded price of an unframed message, its refusal at ``max_decoded_bytes``, the bytes it
shows of a message not yet whole, and the wires it does not frame (no sockets)."""

from __future__ import annotations

from typing import Callable

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.protocol.TProtocol import TProtocolBase
from thrift.Thrift import TType
from thrift.transport.TTransport import TMemoryBuffer

from test_framer import RICH, _binary_call, _compact_call

from thrift_handshake import Wire
from thrift_handshake.wire import DecodedSizeRefused, FramerLimits, MessageFramer
from thrift_handshake.wire.price import decoded_price, decoded_price_compact
from thrift_handshake_gen import HandshakeService

PROTOCOLS = {"binary": (TBinaryProtocol, decoded_price), "compact": (TCompactProtocol, decoded_price_compact)}
UNCAPPED = 10**12


def _write(protocol_class: type, write: Callable[[TProtocolBase], None]) -> bytes:
    memory = TMemoryBuffer()
    write(protocol_class(memory))
    return memory.getvalue()


def _call(protocol: str, arguments: Callable[[TProtocolBase], None]) -> tuple:
    """(a whole call of ``protocol`` whose arguments ``arguments`` writes, those arguments' bytes)."""
    protocol_class, _ = PROTOCOLS[protocol]
    body = _write(protocol_class, arguments)

    def message(out: TProtocolBase) -> None:
        out.writeMessageBegin("echo_types", 1, 7)
        arguments(out)
        out.writeMessageEnd()
    return _write(protocol_class, message), body


def _rich_arguments(out: TProtocolBase) -> None:
    HandshakeService.echo_types_args(value=RICH).write(out)


def _bools_in_a_map(out: TProtocolBase) -> None:
    """Arguments {1: map<string, bool>, 2: list<binary>, 3: map<i32, i32> (empty), 4: list<bool>}: a
    compact bool walked as a container element and skipped as one, a list of values of no fixed width, an
    empty map."""
    out.writeStructBegin("args")
    out.writeFieldBegin("flags", TType.MAP, 1)
    out.writeMapBegin(TType.STRING, TType.BOOL, 2)
    for key, value in (("a", True), ("b", False)):
        out.writeString(key)
        out.writeBool(value)
    out.writeMapEnd()
    out.writeFieldEnd()
    out.writeFieldBegin("blobs", TType.LIST, 2)
    out.writeListBegin(TType.STRING, 2)
    out.writeBinary(b"xy")
    out.writeBinary(b"")
    out.writeListEnd()
    out.writeFieldEnd()
    out.writeFieldBegin("empty", TType.MAP, 3)
    out.writeMapBegin(TType.I32, TType.I32, 0)
    out.writeMapEnd()
    out.writeFieldEnd()
    out.writeFieldBegin("votes", TType.LIST, 4)
    out.writeListBegin(TType.BOOL, 3)
    for vote in (True, False, True):
        out.writeBool(vote)
    out.writeListEnd()
    out.writeFieldEnd()
    out.writeFieldStop()
    out.writeStructEnd()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("arguments", [_rich_arguments, _bools_in_a_map], ids=["rich", "bools_in_a_map"])
def test_an_unframed_call_costs_what_its_arguments_cost_priced_as_a_frame(protocol, arguments):
    message, body = _call(protocol, arguments)
    assert message.endswith(body)
    framer = MessageFramer(Wire(protocol), FramerLimits(1 << 20, max_decoded_bytes=UNCAPPED))
    assert framer.price == 0
    assert framer.feed(message) == [message]
    assert framer.price == PROTOCOLS[protocol][1](body, UNCAPPED) > 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_call_priced_at_max_decoded_bytes_passes_and_one_byte_less_refuses_it(protocol):
    message, body = _call(protocol, _rich_arguments)
    price = PROTOCOLS[protocol][1](body, UNCAPPED)
    assert MessageFramer(Wire(protocol), FramerLimits(1 << 20, max_decoded_bytes=price)).feed(message) == [message]
    refusing = MessageFramer(Wire(protocol), FramerLimits(1 << 20, max_decoded_bytes=price - 1))
    with pytest.raises(DecodedSizeRefused):
        refusing.feed(message)


def test_an_http_wire_is_not_framed_whatever_its_protocol():
    for protocol in ("binary", "json"):
        with pytest.raises(ValueError, match="cut by wire.http's parsers"):
            MessageFramer(Wire(protocol, "http"), FramerLimits(1 << 20))


def test_head_shows_the_first_bytes_of_the_message_not_yet_whole():
    first, _ = _call("binary", _rich_arguments)
    second, _ = _call("binary", _bools_in_a_map)
    framer = MessageFramer(Wire(), FramerLimits(1 << 20))
    assert framer.feed(first + second[:10]) == [first]
    assert framer.head(6) == second[:6]
    assert framer.head(100) == second[:10]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_container_whose_elements_cannot_fit_is_refused_from_its_header_before_they_arrive(protocol):
    def many_strings(out: TProtocolBase) -> None:
        out.writeStructBegin("args")
        out.writeFieldBegin("blobs", TType.LIST, 1)
        out.writeListBegin(TType.STRING, 10_000)  # at least 33 bytes each decoded: over 100 000
        for _ in range(10_000):
            out.writeBinary(b"")
        out.writeListEnd()
        out.writeFieldEnd()
        out.writeFieldStop()
        out.writeStructEnd()
    message, body = _call(protocol, many_strings)
    header_end = len(message) - len(body) + 3 + (4 if protocol == "binary" else 2)  # the list's header
    framer = MessageFramer(Wire(protocol), FramerLimits(1 << 20, max_decoded_bytes=100_000))
    with pytest.raises(DecodedSizeRefused):
        framer.feed(message[:header_end + 1])


def _empty_strings_last(out: TProtocolBase) -> None:
    """Arguments {1: list<binary> of three empty strings}: the message's price is reached by its last
    container exactly at the least its elements can cost."""
    out.writeStructBegin("args")
    out.writeFieldBegin("blobs", TType.LIST, 1)
    out.writeListBegin(TType.STRING, 3)
    for _ in range(3):
        out.writeBinary(b"")
    out.writeListEnd()
    out.writeFieldEnd()
    out.writeFieldStop()
    out.writeStructEnd()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_container_that_reaches_max_decoded_bytes_exactly_at_its_least_price_is_charged_once(protocol):
    message, body = _call(protocol, _empty_strings_last)
    price = PROTOCOLS[protocol][1](body, UNCAPPED)
    framer = MessageFramer(Wire(protocol), FramerLimits(1 << 20, max_decoded_bytes=price))
    assert framer.feed(message) == [message]
    assert framer.price == price
    with pytest.raises(DecodedSizeRefused):
        MessageFramer(Wire(protocol), FramerLimits(1 << 20, max_decoded_bytes=price - 1)).feed(message)


def test_a_uuid_costs_nothing_decoded_in_either_protocol_as_wire_price_has_no_price_for_it():
    uuid = bytes(range(16))
    prices = []
    for wire, call in ((Wire("binary"), _binary_call), (Wire("compact"), _compact_call)):
        empty = call(b"\x00")
        with_uuid = call(b"\x10\x00\x01" + uuid + b"\x00" if wire.protocol == "binary" else b"\x1d" + uuid + b"\x00")
        for message in (empty, with_uuid):
            framer = MessageFramer(wire, FramerLimits(1 << 20, max_decoded_bytes=UNCAPPED))
            assert framer.feed(message) == [message]
            prices.append(framer.price)
    assert len(set(prices)) == 1, prices
