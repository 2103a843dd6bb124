"""The message framer over bytes alone: real messages of every dialect, split, dripped, at every limit."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path
from typing import Callable, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from thrift.protocol import TBinaryProtocol, TCompactProtocol, THeaderProtocol, TJSONProtocol
from thrift.protocol.TProtocol import TProtocolBase, TProtocolException
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport import THeaderTransport, TTransport
from thrift.transport.TTransport import TTransportException

from thrift_handshake import ServerLimits, Wire
from thrift_handshake.wire import BudgetExceeded, FramerLimits, FrameTooLarge, MessageFramer, frame_limit
from thrift_handshake.wire.price import STRING_PRICE, STRUCT_PRICE
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.session import SessionService
from thrift_handshake_gen.session.ttypes import ClientHello
from thrift_handshake_gen.ttypes import AllTypes, Color, Event, Point, Shape

WIRES = [Wire(protocol, transport) for protocol in ("binary", "compact")
         for transport in ("buffered", "framed", "header")]
UNFRAMED = [wire for wire in WIRES if wire.transport == "buffered"]
LIMITS = FramerLimits(max_message_bytes=1 << 20, max_container_items=1000)
#: The same, with a decoded price to keep: every message is walked (none cut by the C decoder's skip).
PRICED = FramerLimits(max_message_bytes=1 << 20, max_container_items=1000, max_decoded_bytes=1 << 40)
_HEADER_IDS = {"binary": THeaderTransport.THeaderSubprotocolID.BINARY,
               "compact": THeaderTransport.THeaderSubprotocolID.COMPACT}
_HEADERS_ONLY = (THeaderTransport.THeaderClientType.HEADERS,)

RICH = AllTypes(
    id="ä-id", flag=True, small=-8, short_number=-300, number=-70000, big_number=-(1 << 40), real=2.5,
    text="文字", data=b"\x00\xff", color=Color.BLUE, shape=Shape(polygon=[Point(1, 2, "a"), Point(-3, 4)]),
    note="n", maybe_number=1 << 62, numbers=list(range(-10, 10)), tags={"x", "y"}, counts={"k": -1, "l": 2},
    groups={"g": [Point(1, 2), Point(3, 4, "p")], "empty": []}, layers=[{"s": {1, 2}}, {}],
    palette={1: Color.RED, -5: Color.GREEN}, blobs=[b"", b"\x80" * 20])


class _Counting(TTransport.TTransportBase):
    """A memory transport that counts the bytes a decoder takes from it."""

    def __init__(self, data: bytes) -> None:
        self._buffer = TTransport.TMemoryBuffer(data)
        self.consumed = 0

    def isOpen(self) -> bool:
        return True

    def read(self, sz: int) -> bytes:
        data = self._buffer.read(sz)
        self.consumed += len(data)
        return data


def _protocol(wire: Wire, trans: TTransport.TTransportBase) -> TProtocolBase:
    """Thrift's own pure-Python protocol for ``wire`` over ``trans``."""
    if wire.transport == "header":
        transport = THeaderTransport.THeaderTransport(trans, _HEADERS_ONLY, _HEADER_IDS[wire.protocol])
        return THeaderProtocol.THeaderProtocol(transport, _HEADERS_ONLY, _HEADER_IDS[wire.protocol])
    transport = TTransport.TFramedTransport(trans) if wire.transport == "framed" else trans
    if wire.protocol == "json":  # (test_json_framer.py)
        return TJSONProtocol.TJSONProtocol(transport)
    if wire.protocol == "compact":
        return TCompactProtocol.TCompactProtocol(transport)
    return TBinaryProtocol.TBinaryProtocol(transport)


def _encode(wire: Wire, write: Callable[[TProtocolBase], None]) -> bytes:
    memory = TTransport.TMemoryBuffer()
    protocol = _protocol(wire, memory)
    write(protocol)  # ends with a flush (a framed flush writes a frame, an empty one too)
    return memory.getvalue()


def _reply(name: str, body: object, message_type: int = TMessageType.REPLY) -> Callable[[TProtocolBase], None]:
    def write(protocol: TProtocolBase) -> None:
        protocol.writeMessageBegin(name, message_type, 7)
        body.write(protocol)
        protocol.writeMessageEnd()
        protocol.trans.flush()
    return write


def _messages(wire: Wire) -> List[bytes]:
    """One of each message type, written by the generated code and Thrift's protocols."""
    def call(send: Callable[[HandshakeService.Client], None]) -> Callable[[TProtocolBase], None]:
        return lambda protocol: send(HandshakeService.Client(protocol))
    writers = [
        call(lambda client: client.send_hello(ClientHello(client_name="c", min_version=1, max_version=2))),
        call(lambda client: client.send_echo_types(RICH)),
        call(lambda client: client.send_notify(Event("e", "payload"))),  # ONEWAY
        call(lambda client: client.send_ping()),  # empty arguments
        _reply("echo_types", HandshakeService.echo_types_result(success=RICH)),
        _reply("echo", TApplicationException(TApplicationException.INTERNAL_ERROR, "no"), TMessageType.EXCEPTION),
    ]
    return [_encode(wire, write) for write in writers]


def _decoded_lengths(wire: Wire, stream: bytes) -> List[int]:
    """How many bytes Thrift's own decoder takes for each message of ``stream``."""
    counting = _Counting(stream)
    protocol = _protocol(wire, counting)
    lengths = []
    while counting.consumed < len(stream):
        before = counting.consumed
        name, message_type, _ = protocol.readMessageBegin()
        if message_type == TMessageType.EXCEPTION:
            body = TApplicationException()
        else:
            suffix = "result" if message_type == TMessageType.REPLY else "args"
            module = HandshakeService if hasattr(HandshakeService, f"{name}_{suffix}") else SessionService
            body = getattr(module, f"{name}_{suffix}")()
        body.read(protocol)
        protocol.readMessageEnd()
        lengths.append(counting.consumed - before)
    return lengths


class _StepCounter(MessageFramer):
    """Counts the walk's steps (a step: one length, header or value the walk asks bytes for)."""

    steps = 0

    def _step(self, walk, at):  # noqa: ANN001, ANN202
        self.steps += 1
        return super()._step(walk, at)


def test_an_unframed_binary_message_whole_on_arrival_is_cut_without_a_walk():
    wire = Wire("binary", "buffered")
    messages = _messages(wire)
    framer = _StepCounter(wire, LIMITS)
    assert framer.feed(b"".join(messages)) == messages
    assert framer.steps == 0
    assert _StepCounter(Wire("binary", "buffered", accelerated=False), PRICED).feed(b"".join(messages)) == messages


@pytest.mark.parametrize("wire", WIRES, ids=str)
def test_the_framer_cuts_a_stream_where_thrifts_decoder_does(wire):
    messages = _messages(wire)
    stream = b"".join(messages)
    framer = MessageFramer(wire, LIMITS)
    assert framer.feed(stream) == messages
    assert [len(message) for message in messages] == _decoded_lengths(wire, stream)
    assert framer.pending == 0


@pytest.mark.parametrize("wire", WIRES, ids=str)
def test_a_stream_split_at_any_byte_gives_the_same_messages(wire):
    assert_split_anywhere(wire, _messages(wire))


def assert_split_anywhere(wire: Wire, messages: List[bytes]) -> None:
    """The stream of ``messages`` fed in two parts, cut at every byte, gives ``messages``."""
    stream = b"".join(messages)
    for offset in range(len(stream) + 1):
        framer = MessageFramer(wire, LIMITS)
        first = framer.feed(stream[:offset])
        assert first == messages[:len(first)]
        assert framer.pending == offset - sum(map(len, first))
        assert first + framer.feed(stream[offset:]) == messages, offset


@pytest.mark.parametrize("wire", WIRES, ids=str)
def test_dripped_input_resumes_the_walk_where_it_stopped(wire):
    messages = _messages(wire)
    stream = b"".join(messages)
    whole = _StepCounter(wire, PRICED)
    assert whole.feed(stream) == messages
    dripped = _StepCounter(wire, PRICED)
    received = []
    for index in range(len(stream)):
        received += dripped.feed(stream[index:index + 1])
    assert received == messages
    assert dripped.steps == whole.steps  # no step walked twice: dripping costs what one feed does


@pytest.mark.parametrize("wire", WIRES, ids=str)
def test_a_message_of_max_message_bytes_passes_and_one_byte_more_is_refused(wire):
    message = _messages(wire)[1]  # echo_types(RICH)
    assert MessageFramer(wire, FramerLimits(len(message))).feed(message) == [message]
    framer = MessageFramer(wire, FramerLimits(len(message) - 1))
    if wire.transport == "buffered":
        with pytest.raises(BudgetExceeded) as refused:
            framer.feed(message)
        assert type(refused.value) is BudgetExceeded
        assert refused.value.type == TTransportException.SIZE_LIMIT
    else:
        with pytest.raises(FrameTooLarge) as refused:
            framer.feed(message[:8])  # refused from the length field: the frame's bytes are never awaited
        assert (refused.value.size, refused.value.limit) == (len(message) - 4, len(message) - 5)


def test_a_servers_limits_make_the_framers():
    limits = ServerLimits(max_message_bytes=5000, max_container_items=7)
    assert FramerLimits.of(limits) == FramerLimits(max_message_bytes=5000, max_container_items=7, max_depth=64)


@pytest.mark.parametrize("wire", [Wire(protocol, "framed") for protocol in ("binary", "compact")], ids=str)
def test_a_frame_too_large_names_its_message_when_its_header_has_arrived(wire):
    message = _messages(wire)[1]
    with pytest.raises(FrameTooLarge) as refused:
        MessageFramer(wire, FramerLimits(100)).feed(message[:40])
    assert (refused.value.name, refused.value.seqid) == ("echo_types", 0)


def test_a_theader_frame_too_large_is_refused_without_its_name():
    message = _messages(Wire("binary", "header"))[1]
    with pytest.raises(FrameTooLarge) as refused:
        MessageFramer(Wire("binary", "header"), FramerLimits(100)).feed(message)
    assert (refused.value.name, refused.value.seqid) == ("", 0)


@pytest.mark.parametrize("wire", UNFRAMED, ids=str)
def test_a_container_of_max_container_items_passes_and_one_more_is_refused(wire):
    message = _messages(wire)[1]  # its largest container: numbers, 20 items
    assert MessageFramer(wire, FramerLimits(1 << 20, max_container_items=20)).feed(message) == [message]
    with pytest.raises(TProtocolException) as refused:
        MessageFramer(wire, FramerLimits(1 << 20, max_container_items=19)).feed(message)
    assert refused.value.type == TProtocolException.SIZE_LIMIT
    assert "20 items" in str(refused.value)


def _nested(wire: Wire, levels: int, kind: int) -> bytes:
    """A call whose one argument nests ``levels`` lists (or structs) around an i32."""
    def write(protocol: TProtocolBase) -> None:
        protocol.writeMessageBegin("echo", TMessageType.CALL, 3)
        protocol.writeStructBegin("args")
        protocol.writeFieldBegin("value", kind, 1)
        for level in range(levels):
            if kind == TType.LIST:
                protocol.writeListBegin(TType.LIST if level < levels - 1 else TType.I32, 1)
            else:
                protocol.writeStructBegin("inner")
                protocol.writeFieldBegin("inner", TType.STRUCT if level < levels - 1 else TType.I32, 1)
        protocol.writeI32(5)
        for _ in range(levels):
            if kind == TType.LIST:
                protocol.writeListEnd()
            else:
                protocol.writeFieldEnd()
                protocol.writeFieldStop()
                protocol.writeStructEnd()
        protocol.writeFieldEnd()
        protocol.writeFieldStop()
        protocol.writeStructEnd()
        protocol.writeMessageEnd()
        protocol.trans.flush()
    return _encode(wire, write)


@pytest.mark.parametrize("kind", [TType.LIST, TType.STRUCT], ids=["lists", "structs"])
@pytest.mark.parametrize("wire", UNFRAMED, ids=str)
def test_nesting_of_max_depth_passes_and_one_level_more_is_refused(wire, kind):
    deepest = _nested(wire, 63, kind)  # with the arguments struct: 64 levels
    assert MessageFramer(wire, LIMITS).feed(deepest) == [deepest]
    with pytest.raises(TProtocolException) as refused:
        MessageFramer(wire, LIMITS).feed(_nested(wire, 64, kind))
    assert refused.value.type == TProtocolException.DEPTH_LIMIT
    assert MessageFramer(wire, FramerLimits(1 << 20, max_depth=4)).feed(_nested(wire, 3, kind))
    with pytest.raises(TProtocolException):
        MessageFramer(wire, FramerLimits(1 << 20, max_depth=4)).feed(_nested(wire, 4, kind))


# -- hand-written bytes: lengths, varints, versions, garbage ------------------------------------

def _binary_call(body: bytes, name: bytes = b"echo") -> bytes:
    return struct.pack("!iI", -2147418111, len(name)) + name + struct.pack("!i", 1) + body


def _compact_call(body: bytes, name: bytes = b"echo", seqid: bytes = b"\x01") -> bytes:
    return b"\x82\x21" + seqid + bytes([len(name)]) + name + body


BINARY = Wire("binary")
COMPACT = Wire("compact")


def _refusal(wire: Wire, data: bytes, limits: FramerLimits = LIMITS) -> TProtocolException:
    with pytest.raises(TProtocolException) as refused:
        MessageFramer(wire, limits).feed(data)
    return refused.value


@pytest.mark.parametrize("data", [
    struct.pack("!iI", -2147418111, 0xFFFFFFFF),  # the method name's length
    struct.pack("!iIi", -2147418111, 0xFFFFFFFF, 0) + b"\x00",  # the same, whole as if the name were empty
    _binary_call(b"\x0b\x00\x01" + struct.pack("!i", -1)),  # a string field
    _binary_call(b"\x0f\x00\x01\x08" + struct.pack("!i", -1)),  # a list
    _binary_call(b"\x0d\x00\x01\x08\x08" + struct.pack("!i", -2)),  # a map
], ids=["name", "name-and-more", "string", "list", "map"])
def test_negative_binary_lengths_are_refused(data):
    assert _refusal(BINARY, data).type == TProtocolException.NEGATIVE_SIZE


@pytest.mark.parametrize("data", [
    _compact_call(b"\x18\xff\xff\xff\xff\x0f"),  # a string field of length 2**32 - 1, an i32 -1
    _compact_call(b"\x19\xf5\xff\xff\xff\xff\x0f"),  # a list of i32 with that size
], ids=["string", "list"])
def test_negative_compact_lengths_are_refused(data):
    assert _refusal(COMPACT, data).type == TProtocolException.NEGATIVE_SIZE


@pytest.mark.parametrize("wire", [wire for wire in WIRES if wire.transport != "buffered"], ids=str)
def test_a_negative_frame_length_is_refused(wire):
    with pytest.raises(TTransportException) as refused:
        MessageFramer(wire, LIMITS).feed(b"\xff\xff\xff\xfe")
    assert refused.value.type == TTransportException.NEGATIVE_SIZE


@pytest.mark.parametrize("wire, header", [
    (BINARY, _binary_call(b"\x0b\x00\x01" + struct.pack("!i", 1001))),
    (COMPACT, _compact_call(b"\x18\xe9\x07")),
], ids=["binary", "compact"])
def test_a_string_longer_than_max_message_bytes_is_refused_from_its_length(wire, header):
    assert _refusal(wire, header, FramerLimits(1000)).type == TProtocolException.SIZE_LIMIT


@pytest.mark.parametrize("wire, header", [
    (BINARY, _binary_call(b"\x0b\x00\x01" + struct.pack("!i", 990))),
    (COMPACT, _compact_call(b"\x18\xde\x07")),
], ids=["binary", "compact"])
def test_a_length_that_would_pass_max_message_bytes_is_refused_before_its_bytes(wire, header):
    with pytest.raises(BudgetExceeded):
        MessageFramer(wire, FramerLimits(1000)).feed(header)
    framer = MessageFramer(wire, FramerLimits(2000))
    assert framer.feed(header) == []  # within the limit: awaited
    assert framer.pending == len(header)


@pytest.mark.parametrize("data, long", [
    (_compact_call(b"\x00", seqid=b"\x81\x80\x80\x80\x00"), False),  # a seqid in 5 bytes
    (_compact_call(b"\x00", seqid=b"\x81\x80\x80\x80\x80\x00"), True),  # in 6
    (_compact_call(b"\x15\x81\x80\x80\x80\x00\x00"), False),  # an i32 field in 5
    (_compact_call(b"\x15\x81\x80\x80\x80\x80\x00\x00"), True),  # in 6
    (_compact_call(b"\x16" + b"\x81" * 9 + b"\x00\x00"), False),  # an i64 field in 10
    (_compact_call(b"\x16" + b"\x81" * 10 + b"\x00\x00"), True),  # in 11
    (_compact_call(b"\x05\x81\x80\x80\x80\x80\x00\x00\x00"), True),  # a field id in 6
], ids=["seqid-5", "seqid-6", "i32-5", "i32-6", "i64-10", "i64-11", "field-id-6"])
def test_compact_varints_longer_than_their_type_are_refused(data, long):
    if long:
        assert _refusal(COMPACT, data).type == TProtocolException.INVALID_DATA
    else:
        assert MessageFramer(COMPACT, LIMITS).feed(data) == [data]


@pytest.mark.parametrize("wire, data, message", [
    (BINARY, struct.pack("!i", -2147352575) + b"\x00" * 8, "Bad version in readMessageBegin: -2147352575"),
    (BINARY, struct.pack("!i", -2147352575) + b"\x00" * 9, "Bad version in readMessageBegin: -2147352575"),
    (BINARY, struct.pack("!i", -2147483647) + b"\x00" * 8, "Bad version in readMessageBegin: -2147483647"),
    (BINARY, struct.pack("!i", -2147483647) + b"\x00" * 9, "Bad version in readMessageBegin: -2147483647"),
    (BINARY, struct.pack("!i", -1) + b"\x00" * 8, "Bad version in readMessageBegin: -1"),
    (BINARY, struct.pack("!iI", 4, 1) + b"echo", "No protocol version header"),  # non-strict binary
    (BINARY, struct.pack("!i", 0) + b"\x00" * 8, "No protocol version header"),
    (COMPACT, b"\x82\x22\x01\x00\x00", "Bad version: 2 (expect 1)"),
    (COMPACT, b"\x82\x40\x01\x00\x00", "Bad version: 0 (expect 1)"),
    (COMPACT, b"\x82\x25\x01\x00\x00", "Bad version: 5 (expect 1)"),
    (COMPACT, b"\x83\x21\x01\x00\x00", "Bad protocol id in the message: 131"),
    (COMPACT, b"\x81\x21\x01\x00\x00", "Bad protocol id in the message: 129"),
], ids=["binary-2", "binary-2-whole", "binary-0", "binary-0-whole", "binary-minus-1", "binary-unversioned", "binary-zero", "compact-2", "compact-0",
        "compact-5", "compact-id-131", "compact-id-129"])
def test_a_version_this_end_does_not_speak_is_refused(wire, data, message):
    refused = _refusal(wire, data)
    assert (refused.type, refused.message) == (TProtocolException.BAD_VERSION, message)


def _uuid_list(element_type: int, count: int) -> bytes:
    return bytes([count << 4 | element_type]) + bytes(range(16)) * count


@pytest.mark.parametrize("wire, body", [
    (BINARY, b"\x10\x00\x01" + bytes(range(16)) + b"\x00"),  # a uuid field
    (BINARY, b"\x0f\x00\x01\x10\x00\x00\x00\x02" + bytes(range(16)) * 2 + b"\x00"),  # list<uuid>
    (COMPACT, b"\x1d" + bytes(range(16)) + b"\x00"),  # a uuid field
    (COMPACT, b"\x19" + _uuid_list(13, 2) + b"\x00"),  # list<uuid>
    (COMPACT, b"\x19\x31\x01\x01\x02\x00"),  # list<bool> as Thrift writes it (typed TRUE)
    (COMPACT, b"\x19\x32\x01\x01\x02\x00"),  # typed FALSE, as some writers type it
    (COMPACT, b"\x1b\x00\x15\x02\x00"),  # an empty map, then an i32 field
    (COMPACT, b"\x15\x7f\x00"),  # an i32 of one varint byte, 0x7f
], ids=["binary-uuid", "binary-uuids", "compact-uuid", "compact-uuids", "compact-bools", "compact-false-bools",
        "compact-empty-map", "compact-0x7f"])
def test_values_the_idl_of_the_tests_lacks_are_walked_to_their_end(wire, body):
    call = _binary_call(body) if wire.protocol == "binary" else _compact_call(body, seqid=b"\x7f")
    assert MessageFramer(wire, LIMITS).feed(call + call) == [call, call]


def test_a_negative_compact_map_is_refused_from_its_size():
    assert _refusal(COMPACT, _compact_call(b"\x1b\xff\xff\xff\xff\x0f")).type == TProtocolException.NEGATIVE_SIZE


@pytest.mark.parametrize("size, kind, message", [
    (b"\xff\xff\xff\xff\x07", TProtocolException.SIZE_LIMIT, "Length 2147483647 exceeded max_message_bytes (1000)"),
    (b"\x80\x80\x80\x80\x08", TProtocolException.NEGATIVE_SIZE, "Negative length: -2147483648"),
    (b"\xff\xff\xff\xff\x0f", TProtocolException.NEGATIVE_SIZE, "Negative length: -1"),
], ids=["2**31-1", "2**31", "2**32-1"])
def test_compact_lengths_are_i32(size, kind, message):
    refused = _refusal(COMPACT, _compact_call(b"\x18" + size), FramerLimits(1000))
    assert (refused.type, refused.message) == (kind, message)


def test_a_string_of_max_message_bytes_cannot_fit_a_message_of_them():
    with pytest.raises(BudgetExceeded):
        MessageFramer(BINARY, FramerLimits(1000)).feed(_binary_call(b"\x0b\x00\x01" + struct.pack("!i", 1000)))


@pytest.mark.parametrize("name_bytes, named", [(65_530, True), (65_531, False)], ids=["64KiB", "64KiB+1"])
def test_a_frame_too_large_is_named_from_its_first_64_kib(name_bytes, named):
    name = b"n" * name_bytes
    header = b"\x82\x21\x05" + bytes([name_bytes & 0x7F | 0x80, name_bytes >> 7 & 0x7F | 0x80, name_bytes >> 14])
    frame = struct.pack("!i", 100_000) + header + name + b"\x00"  # seqid 5, then the name: 6 + name bytes
    with pytest.raises(FrameTooLarge) as refused:
        MessageFramer(Wire("compact", "framed"), FramerLimits(1000)).feed(frame)
    assert (refused.value.name, refused.value.seqid) == (("n" * name_bytes, 5) if named else ("", 0))


def test_an_empty_frame_is_a_message_of_four_bytes():
    """Thrift's framed reader skips it; the framer hands it out as it is, the next frame after it."""
    frame = _messages(Wire("binary", "framed"))[3]
    assert MessageFramer(Wire("binary", "framed"), LIMITS).feed(b"\x00" * 4 + frame) == [b"\x00" * 4, frame]


def test_a_fresh_framer_holds_nothing_and_hands_out_nothing():
    framer = MessageFramer(BINARY, LIMITS)
    assert (framer.pending, framer.next_message(), framer.feed(b"")) == (0, None, [])


def test_bytes_handed_out_are_let_go():
    message = _messages(BINARY)[3]
    framer = MessageFramer(BINARY, LIMITS)
    for _ in range(100):
        assert framer.feed(message) == [message]
    framer.receive(message[:5])
    assert len(framer._buffer) == 5  # what is buffered is the pending bytes only


@pytest.mark.parametrize("wire, data, message", [
    (BINARY, _binary_call(b"\x01\x00\x01"), "Unknown type id 1"),  # VOID
    (BINARY, _binary_call(b"\x0f\x00\x01\x14\x00\x00\x00\x01"), "Unknown type id 20"),  # list<20>
    (BINARY, _binary_call(b"\x0d\x00\x01\x0b\x00\x00\x00\x00\x01\x00\x00\x00\x00"), "Unknown type id 0"),
    (COMPACT, _compact_call(b"\x1e"), "Unknown compact type id 14"),
    (COMPACT, _compact_call(b"\x10"), "Unknown compact type id 0"),  # field 1 of type 0 (not a STOP)
    (COMPACT, _compact_call(b"\x19\x1e"), "Unknown compact type id 14"),  # list<14>
], ids=["binary-void", "binary-element", "binary-map-value", "compact", "compact-0", "compact-element"])
def test_an_unknown_type_is_refused(wire, data, message):
    refused = _refusal(wire, data)
    assert (refused.type, refused.message) == (TProtocolException.INVALID_DATA, message)


def test_frame_limit_leaves_room_for_the_length_field():
    assert [frame_limit(1000), frame_limit(5), frame_limit(4), frame_limit(1)] == [996, 1, 1, 1]


def test_framer_limits_are_a_value():
    with pytest.raises(dataclasses.FrozenInstanceError):
        LIMITS.max_depth = 3


@pytest.mark.parametrize("wire", WIRES, ids=str)
def test_each_message_of_a_feed_gets_the_whole_budget(wire):
    message = _messages(wire)[1]
    assert MessageFramer(wire, FramerLimits(len(message))).feed(message * 3) == [message] * 3


@pytest.mark.parametrize("wire", WIRES, ids=str)
def test_messages_before_a_refusal_are_handed_out_first(wire):
    messages = _messages(wire)[:2]
    garbage = b"\xff\xff\xff\xff" if wire.transport != "buffered" else b"\x80\x02\x00\x01"
    framer = MessageFramer(wire, LIMITS)
    assert framer.feed(b"".join(messages) + garbage) == messages
    with pytest.raises((TProtocolException, TTransportException)) as refused:
        framer.feed(b"")
    with pytest.raises(type(refused.value)):
        framer.next_message()


def test_messages_one_at_a_time():
    first, second = _messages(COMPACT)[:2]
    framer = MessageFramer(COMPACT, LIMITS)
    framer.receive(first + second[:-1])
    assert framer.next_message() == first
    assert framer.next_message() is None
    assert framer.pending == len(second) - 1
    framer.receive(second[-1:] + first)
    assert [framer.next_message(), framer.next_message(), framer.next_message()] == [second, first, None]
    assert framer.pending == 0


def test_a_refused_stream_stays_refused():
    framer = MessageFramer(BINARY, LIMITS)
    with pytest.raises(TProtocolException):
        framer.feed(b"\x80\x02\x00\x01")
    with pytest.raises(TProtocolException):
        framer.feed(_messages(BINARY)[0])


@settings(max_examples=300, deadline=None)
@given(wire=st.sampled_from(WIRES), data=st.binary(max_size=200), cut=st.integers(min_value=0, max_value=200))
def test_garbage_is_refused_with_the_wires_errors_or_awaited(wire, data, cut):
    """Any bytes: whole messages that are prefixes of the input, more awaited, or a wire error."""
    assert_prefixes_or_refused(MessageFramer(wire, FramerLimits(4096, max_container_items=50)),
                               _messages(wire)[3] + data, cut)  # a real message, then garbage


def assert_prefixes_or_refused(framer: MessageFramer, stream: bytes, cut: int) -> None:
    """``stream`` fed in two parts cut at ``cut``: whole messages that are its prefixes, the rest pending,
    or a wire error (never another exception)."""
    try:
        messages = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
    except (TProtocolException, TTransportException):
        return
    joined = b"".join(messages)
    assert stream.startswith(joined)
    assert framer.pending == len(stream) - len(joined)


def _wire_imports(module: str) -> set:
    """What ``wire/<module>.py`` imports, following the wire's own modules: top-level names and
    ``wire.<name>`` for the package's modules."""
    import ast
    import thrift_handshake.wire

    folder = Path(thrift_handshake.wire.__file__).parent
    seen, todo = set(), [module]
    while todo:
        tree = ast.parse((folder / f"{todo.pop()}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                seen.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 1 and f"wire.{node.module}" not in seen:
                seen.add(f"wire.{node.module}")
                todo.append(node.module)
    return seen


@pytest.mark.parametrize("module", ["framer", "sniff"])
def test_the_framer_and_sniff_need_no_socket(module):
    assert not {"socket", "select", "ssl", "wire.sockets", "wire.connection_socket", "wire.stack", "wire.tls",
                "wire.answers"} & _wire_imports(module)


def _string_arguments(size: int) -> bytes:
    """A binary call's arguments of ``size`` bytes in all: one string field, then STOP."""
    return b"\x0b\x00\x01" + struct.pack("!i", size - 8) + b"s" * (size - 8) + b"\x00"


@pytest.mark.parametrize("arguments, walked", [(64 * 1024, False), (64 * 1024 + 1, True)], ids=["window", "past-it"])
def test_arguments_within_the_c_window_are_cut_unpriced_and_longer_ones_walked(arguments, walked):
    """The C decoder is handed 64 KiB of arguments at most; a longer message is walked, to the same end."""
    message = _binary_call(_string_arguments(arguments))
    framer = _StepCounter(BINARY, LIMITS)
    assert framer.feed(message) == [message]
    assert (framer.steps > 0) is walked
    assert framer.price == (STRING_PRICE + STRUCT_PRICE + arguments - 8 if walked else 0)


@pytest.mark.parametrize("spare", [0, 1], ids=["exactly-the-limit", "a-byte-under"])
def test_a_message_of_exactly_max_message_bytes_is_cut_in_c(spare):
    message = _binary_call(_string_arguments(100))
    framer = _StepCounter(BINARY, FramerLimits(max_message_bytes=len(message) + spare))
    assert framer.feed(message * 3) == [message] * 3, "each message within the limit, wherever it starts"
    assert framer.steps == 0


def test_the_least_binary_message_is_cut_in_c():
    least = struct.pack("!iIi", -2147418111, 0, 1) + b"\x00"  # no name, no arguments: 13 bytes
    framer = _StepCounter(BINARY, LIMITS)
    assert framer.feed(least) == [least]
    assert framer.steps == 0


def _nested_lists(levels: int) -> bytes:
    """A binary call whose one field is a list of a list ... (``levels`` lists) of no i32."""
    return _binary_call(b"\x0f\x00\x01" + b"\x0f\x00\x00\x00\x01" * (levels - 1) + b"\x08\x00\x00\x00\x00" + b"\x00")


def test_a_depth_limit_under_the_c_decoders_own_is_held_by_the_walk():
    """The C decoder allows 64 levels: a lower max_depth is not left to it."""
    within = _nested_lists(62)  # the arguments struct and 62 lists: 63 levels
    assert MessageFramer(BINARY, FramerLimits(1 << 20, max_depth=63)).feed(within) == [within]
    refused = _refusal(BINARY, _nested_lists(63), FramerLimits(1 << 20, max_depth=63))
    assert (refused.type, refused.message) == (TProtocolException.DEPTH_LIMIT,
                                               "nested deeper than 63 structs and containers")


def test_a_binary_message_is_never_cut_in_c_from_a_framed_or_a_compact_stream():
    message = _binary_call(_string_arguments(100))
    with pytest.raises(TTransportException) as framed:
        MessageFramer(Wire("binary", "framed"), LIMITS).feed(message)
    assert (framed.value.type, framed.value.message) == (
        TTransportException.NEGATIVE_SIZE, f"Read a negative frame size ({struct.unpack('!i', message[:4])[0]})")
    refused = _refusal(COMPACT, message)
    assert (refused.type, refused.message) == (TProtocolException.BAD_VERSION, "Bad protocol id in the message: 128")


def test_a_depth_limit_over_the_c_decoders_own_leaves_it_the_shallow_messages_and_the_walk_the_deep():
    shallow, deep = _binary_call(_string_arguments(100)), _nested_lists(65)  # 66 levels: past the C decoder's 64
    framer = _StepCounter(BINARY, FramerLimits(1 << 20, max_depth=100))
    assert framer.feed(shallow) == [shallow] and framer.steps == 0
    assert framer.feed(deep) == [deep] and framer.steps > 0
