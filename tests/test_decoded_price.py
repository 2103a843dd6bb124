"""Pricing a request before it is decoded, and the budget its price is reserved from (no sockets)."""

from __future__ import annotations

import struct

import pytest

from conftest import encode_call, every_type_at_its_edges

from thrift_handshake.decoded_budget import DecodedBudget
from thrift_handshake.wire.price import WORST_FACTOR, decoded_price
from thrift_handshake_gen import HandshakeService


def _args(message: bytes) -> memoryview:
    """The arguments struct of a strict-binary message (after its header)."""
    name_length, = struct.unpack_from("!i", message, 4)
    return memoryview(message)[12 + name_length:]


def test_a_list_of_empty_structs_is_priced_at_what_python_holds_and_the_walk_stops_at_the_limit():
    empty_structs = struct.pack("!bhbi", 15, 1, 12, 100_000) + b"\0" * 100_000 + b"\0"  # field 1: list<struct>
    price = decoded_price(empty_structs, 10**12)
    assert 100_000 * 150 < price < 100_000 * WORST_FACTOR
    assert 1_000_000 < decoded_price(empty_structs, 1_000_000) < 1_000_000 + 200  # stopped just past the limit


def test_strings_and_fixed_width_containers_are_priced_from_their_lengths():
    echo = _args(encode_call("echo", HandshakeService.echo_args(message="Z" * 1_000_000)))
    assert 1_000_000 < decoded_price(echo, 10**12) < 1_001_000
    ints = struct.pack("!bhbi", 15, 1, 8, 10**9) + b"\0"  # a list of a billion i32, its elements absent
    assert decoded_price(ints, 10**6) > 10**6  # refused from the header alone


def test_an_honest_struct_costs_its_size():
    every_type = _args(encode_call("echo_types", HandshakeService.echo_types_args(value=every_type_at_its_edges())))
    assert 0 < decoded_price(every_type, 10**12) < 100 * len(every_type)


def test_malformed_bytes_are_priced_as_far_as_they_go():
    assert decoded_price(b"\x0b\x00\x01\xff\xff\xff\xff", 10**6) < 10**6  # a negative length: the decoder refuses it


def test_the_budget_keeps_each_host_to_its_share_and_the_server_to_its_total():
    budget = DecodedBudget(total=1000, host_share=0.5)
    assert budget.reserve("a", 400) is None
    assert "this client host's requests in flight hold" in budget.reserve("a", 200)
    assert "one client host may hold" in budget.reserve("b", 600)
    assert budget.reserve("b", 500) is None
    assert "the server's requests in flight hold" in budget.reserve("c", 200)
    assert budget.allowance("c") == 100
    budget.release("a", 400)
    budget.release("b", 500)
    assert budget.used == 0 and budget.allowance("a") == 500


def test_compact_and_binary_price_a_message_alike():
    from thrift.protocol.TBinaryProtocol import TBinaryProtocol
    from thrift.protocol.TCompactProtocol import TCompactProtocol
    from thrift.transport.TTransport import TMemoryBuffer

    from thrift_handshake.wire.price import decoded_price_compact
    from thrift_handshake_gen.ttypes import Point

    def encoded(value, protocol_class) -> bytes:
        buffer = TMemoryBuffer()
        HandshakeService.echo_types_args(value=value).write(protocol_class(buffer))
        return buffer.getvalue()

    value = every_type_at_its_edges()
    value.numbers = [-(2**31), 0, 1, 2**31 - 1] * 50_000  # varints of 1 to 5 bytes, skipped without a walk
    value.groups = {"a": [Point() for _ in range(1000)], "b": [Point(x=1, label="q")] * 5}
    binary, compact = encoded(value, TBinaryProtocol), encoded(value, TCompactProtocol)
    assert decoded_price_compact(compact, 10**12) == decoded_price(binary, 10**12) > 200_000 * 36
    assert decoded_price_compact(compact, 10**6) > 10**6  # the list of ints passes it from its header


def test_the_framer_prices_arguments_as_the_walks_do_and_refuses_past_its_limit():
    # An unframed request is priced by the framer that finds its end (wire.whole_arguments), a frame by
    # decoded_price: the same request must cost the same either way, in both protocols.
    from thrift.protocol.TBinaryProtocol import TBinaryProtocol
    from thrift.protocol.TCompactProtocol import TCompactProtocol
    from thrift.transport.TTransport import TMemoryBuffer

    from thrift_handshake import Wire
    from thrift_handshake.wire import DecodedSizeRefused
    from thrift_handshake.wire.framer import FramerLimits
    from thrift_handshake.wire.whole_arguments import ArgumentsFramer
    from thrift_handshake.wire.price import decoded_price_compact
    from thrift_handshake_gen.ttypes import Point

    value = every_type_at_its_edges()
    value.numbers = [-(2**31), 0, 1, 2**31 - 1] * 5_000
    value.groups = {"a": [Point() for _ in range(1000)], "b": [Point(x=1, label="q")] * 5}
    for protocol_class, name, walk in ((TBinaryProtocol, "binary", decoded_price),
                                       (TCompactProtocol, "compact", decoded_price_compact)):
        buffer = TMemoryBuffer()
        HandshakeService.echo_types_args(value=value).write(protocol_class(buffer))
        arguments = buffer.getvalue()
        framer = ArgumentsFramer(Wire(protocol=name), FramerLimits(2**30, max_decoded_bytes=10**9))
        framer.receive(arguments + b"next")
        assert framer.whole() == len(arguments)
        assert framer.price == walk(arguments, 10**12) > 20_000 * 28
        limited = ArgumentsFramer(Wire(protocol=name), FramerLimits(2**30, max_decoded_bytes=100_000))
        limited.receive(arguments)
        with pytest.raises(DecodedSizeRefused) as refused:
            limited.whole()
        assert 100_000 < refused.value.price < 300_000 and not refused.value.stream_intact


def test_the_arguments_framer_finds_the_same_end_and_price_dripped_or_whole_and_keeps_the_depth_limit():
    # ArgumentsFramer walks container elements already received with wire.price's faster walk: it must
    # end where the slow walk ends, price alike however the bytes arrive, and refuse what nests too deep.
    from thrift.protocol.TProtocol import TProtocolException
    from thrift.Thrift import TType
    from test_framer import _nested

    from thrift_handshake import Wire
    from thrift_handshake.wire.framer import FramerLimits
    from thrift_handshake.wire.whole_arguments import ArgumentsFramer
    from thrift_handshake_gen.ttypes import Point

    value = every_type_at_its_edges()
    value.groups = {f"g{index}": [Point(x=index, label="p" * index)] * 40 for index in range(40)}
    arguments = bytes(_args(encode_call("echo_types", HandshakeService.echo_types_args(value=value))))
    limits = FramerLimits(1 << 24, max_decoded_bytes=10**9)
    whole = ArgumentsFramer(Wire(), limits)
    whole.receive(arguments + b"\x80next")
    dripped = ArgumentsFramer(Wire(), limits)
    ends = []
    for index in range(len(arguments)):
        dripped.receive(arguments[index:index + 1])
        ends.append(dripped.whole())
    assert whole.whole() == len(arguments) and ends == [None] * (len(arguments) - 1) + [len(arguments)]
    assert dripped.price == whole.price == decoded_price(arguments, 10**12)
    for kind in (TType.LIST, TType.STRUCT):
        deepest = ArgumentsFramer(Wire(), limits)
        deepest.receive(bytes(_args(_nested(Wire(), 63, kind))))
        assert deepest.whole() is not None
        too_deep = ArgumentsFramer(Wire(), limits)
        too_deep.receive(bytes(_args(_nested(Wire(), 64, kind))))
        with pytest.raises(TProtocolException) as refused:
            too_deep.whole()
        assert refused.value.type == TProtocolException.DEPTH_LIMIT
