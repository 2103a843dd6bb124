"""The message framer on TJSONProtocol's messages (``wire.json_framing``): where a JSON message ends,
split and dripped, with brackets and escapes inside strings, at every limit it judges."""

from __future__ import annotations

from typing import List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TType

from thrift_handshake import Wire
from thrift_handshake.wire import BudgetExceeded, FramerLimits, MessageFramer
from thrift_handshake.wire.json_framing import JsonMessageEnd
from thrift_handshake_gen import HandshakeService

from test_framer import (LIMITS, _decoded_lengths, _encode, _messages, _nested, assert_prefixes_or_refused,
                         assert_split_anywhere)

JSON = Wire(protocol="json", transport="buffered")
TRICKY = 'a]"}\\[{ \\"\\\\u00e9 文字 \\'  # closers, quotes and backslashes inside a string


def _tricky_echo(message: str = TRICKY) -> bytes:
    return _encode(JSON, lambda protocol: HandshakeService.Client(protocol).send_echo(message))


def _stream() -> List[bytes]:
    return _messages(JSON) + [_tricky_echo(), _tricky_echo("\\"), _tricky_echo("")]


def _refused(data: bytes, limits: FramerLimits = LIMITS) -> TProtocolException:
    with pytest.raises(TProtocolException) as refused:
        MessageFramer(JSON, limits).feed(data)
    return refused.value


@pytest.mark.parametrize("wire", [JSON, Wire(protocol="json", transport="framed")], ids=str)
def test_the_framer_cuts_a_json_stream_where_thrifts_decoder_does(wire):
    messages = _messages(wire) + [_encode(wire, lambda protocol: HandshakeService.Client(protocol).send_echo(TRICKY))]
    stream = b"".join(messages)
    framer = MessageFramer(wire, LIMITS)
    assert framer.feed(stream) == messages
    assert [len(message) for message in messages] == _decoded_lengths(wire, stream)
    assert framer.pending == 0


def test_a_json_stream_split_at_any_byte_gives_the_same_messages():
    assert_split_anywhere(JSON, _stream())


class _ScanCounter(JsonMessageEnd):
    scanned = 0

    def scan(self, buffer, position):  # noqa: ANN001, ANN201
        stopped, whole = super().scan(buffer, position)
        self.scanned += stopped - position
        return stopped, whole


def test_dripped_json_resumes_where_it_stopped():
    messages = _stream()
    stream = b"".join(messages)
    framer = MessageFramer(JSON, LIMITS)
    framer._json = counter = _ScanCounter(LIMITS.max_depth, LIMITS.max_container_items)
    received = []
    for index in range(len(stream)):
        received += framer.feed(stream[index:index + 1])
    assert received == messages
    assert counter.scanned == len(stream)  # every byte scanned once: dripping costs what one feed does


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='[]{}"\\,:0a é', max_size=40), st.lists(st.integers(0, 200), max_size=6))
def test_any_string_in_any_chunks_is_one_message(text, cuts):
    message = _tricky_echo(text)
    framer, received, start = MessageFramer(JSON, LIMITS), [], 0
    for cut in sorted(cuts) + [len(message) + 1]:
        received += framer.feed((message + message)[start:cut])
        start = max(start, cut)
    received += framer.feed((message + message)[start:])
    assert received == [message, message]


def test_a_json_message_of_max_message_bytes_passes_and_one_byte_more_is_refused():
    message = _messages(JSON)[1]  # echo_types(RICH)
    assert MessageFramer(JSON, FramerLimits(len(message))).feed(message) == [message]
    with pytest.raises(BudgetExceeded) as refused:
        MessageFramer(JSON, FramerLimits(len(message) - 1)).feed(message)
    assert "max_message_bytes" in str(refused.value)
    with pytest.raises(BudgetExceeded):  # an unending message is refused once past the budget, not awaited
        MessageFramer(JSON, FramerLimits(100)).feed(b'[1,"echo",1,1,{"1":{"str":"' + b"x" * 100)


def test_a_json_container_of_max_container_items_passes_and_one_more_is_refused():
    message = _messages(JSON)[1]  # its largest container: numbers, 20 items
    assert MessageFramer(JSON, FramerLimits(1 << 20, max_container_items=20)).feed(message) == [message]
    refused = _refused(message, FramerLimits(1 << 20, max_container_items=19))
    assert refused.type == TProtocolException.SIZE_LIMIT and "20 items" in str(refused)


@pytest.mark.parametrize("body, size", [(b'{"lst":["i32",3,1,2,3]}', 3), (b'{"set":["str",3,"a","b","c"]}', 3),
                                        (b'{"map":["str","i32",3,{"a":1,"b":2,"c":3}]}', 3),
                                        (b'{"map":["str","i32",-1,{}]}', -1), (b'{"lst":["i32",-7]}', -7)])
def test_a_json_container_is_judged_by_the_count_in_its_header(body, size):
    data = b'[1,"echo",1,1,{"1":' + body + b"}]"
    refused = _refused(data, FramerLimits(1 << 20, max_container_items=2))
    if size < 0:
        assert refused.type == TProtocolException.NEGATIVE_SIZE and str(size) in str(refused)
        return
    assert refused.type == TProtocolException.SIZE_LIMIT and f"{size} items" in str(refused)
    assert MessageFramer(JSON, FramerLimits(1 << 20, max_container_items=3)).feed(data) == [data]
    for cut in range(len(data)):  # the count is judged once whole, however the bytes come
        framer = MessageFramer(JSON, FramerLimits(1 << 20, max_container_items=2))
        with pytest.raises(TProtocolException) as refused_late:
            framer.feed(data[:cut])
            framer.feed(data[cut:])
        assert refused_late.value.type == TProtocolException.SIZE_LIMIT, cut


def test_json_structs_nested_to_max_depth_pass_and_one_level_more_is_refused():
    deepest = _nested(JSON, 63, TType.STRUCT)  # with the arguments struct: 64 levels
    assert MessageFramer(JSON, LIMITS).feed(deepest) == [deepest]
    refused = _refused(_nested(JSON, 64, TType.STRUCT))
    assert refused.type == TProtocolException.DEPTH_LIMIT
    lists = _nested(JSON, 200, TType.LIST)  # a list level takes one bracket: refused past the brackets' bound
    assert _refused(lists).type == TProtocolException.DEPTH_LIMIT


@pytest.mark.parametrize("data", [b' [1,"echo"', b'{"1":2}', b"\x00", b'[1,"echo",1,1,{"1":{"i32":5]}]',
                                  b'[1,"echo",1,1,{}}'])
def test_json_that_is_not_a_message_is_refused(data):
    refused = _refused(data)
    assert refused.type == TProtocolException.INVALID_DATA


def test_a_refused_json_stream_stays_refused_and_messages_before_it_come_first():
    good = _tricky_echo()
    framer = MessageFramer(JSON, LIMITS)
    assert framer.feed(good + b"]") == [good]
    for _ in range(2):
        with pytest.raises(TProtocolException):
            framer.feed(b"")


def test_http_is_still_not_cut_by_the_framer():
    with pytest.raises(ValueError, match="HTTP"):
        MessageFramer(Wire(protocol="json", transport="http"), LIMITS)


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.sampled_from([bytes([c]) for c in b'[]{}",\\:-01a \xc3']), max_size=120).map(b"".join),
       cut=st.integers(min_value=0, max_value=200))
def test_json_like_garbage_is_refused_with_the_wires_errors_or_awaited(data, cut):
    """Any bytes of JSON's alphabet after a message: whole messages that are prefixes of the input, more
    awaited, or a wire error (never another exception)."""
    assert_prefixes_or_refused(MessageFramer(JSON, FramerLimits(4096, max_container_items=50, max_depth=8)),
                               _tricky_echo() + b"[" + data, cut)


@pytest.mark.parametrize("data, seen", [(b' [1,"echo"', "b' '"), (b'{"1":2}', "b'{'"), (b"\x00[", "b'\\x00'")])
def test_a_json_message_not_starting_with_a_bracket_is_refused_naming_its_first_byte(data, seen):
    refused = _refused(data)
    assert str(refused) == f"a JSON message starts with '[', not {seen}"


def test_too_deep_json_is_refused_naming_the_bound_in_brackets_and_levels():
    refused = _refused(_nested(JSON, 64, TType.STRUCT))
    assert str(refused) == "JSON nested deeper than 129 brackets (64 structs and containers)"
    assert MessageFramer(JSON, FramerLimits(1 << 20, max_depth=3)).feed(b"[" * 7) == []  # awaited
    refused = _refused(b"[" * 8, FramerLimits(1 << 20, max_depth=3))
    assert str(refused) == "JSON nested deeper than 7 brackets (3 structs and containers)"


def test_a_scanner_made_alone_holds_the_framers_default_depth():
    deepest = _nested(JSON, 63, TType.STRUCT)
    assert JsonMessageEnd().scan(deepest, 0) == (len(deepest), True)
    with pytest.raises(TProtocolException) as refused:
        JsonMessageEnd().scan(_nested(JSON, 64, TType.STRUCT), 0)
    assert refused.value.type == TProtocolException.DEPTH_LIMIT


@pytest.mark.parametrize("body", [b'{"lst":["i32"]}', b'{"map":["str","i32"]}', b'{"lst":["i32","x"]}',
                                  b'{"lst":["i32",]}', b'{"map":["str","i32","x",5000,{}]}'])
def test_a_container_header_without_a_count_is_left_to_the_decoder(body):
    """A malformed header (no count after the type names) is not awaited: the message is cut at its
    closing bracket, whole, and the decoder refuses it."""
    data = b'[1,"echo",1,1,{"1":' + body + b"}]"
    assert MessageFramer(JSON, LIMITS).feed(data) == [data]


def test_only_an_arrays_first_strings_are_type_names_an_objects_keys_are_not():
    """``{"1",5,"2"}`` is not JSON, and not a container's header either: its 5 is not a count."""
    data = b'[1,"echo",1,1,{"1",5,"2"}]'
    assert MessageFramer(JSON, FramerLimits(1 << 20, max_container_items=2)).feed(data) == [data]
    data = b'[1,"echo",1,1,{"1",-5,"2"}]'
    assert MessageFramer(JSON, LIMITS).feed(data) == [data]


@pytest.mark.parametrize("header", [b'"str","', b'"'], ids=["map", "list"])
@pytest.mark.parametrize("type_name", [b"", b"i", b"i32"])
def test_a_type_name_of_any_length_is_read_to_its_quote_and_the_count_judged(header, type_name):
    data = b'[1,"echo",1,1,{"1":{"map":[' + header + type_name + b'",2,{}]}}]'
    assert MessageFramer(JSON, LIMITS).feed(data) == [data]
    refused = _refused(data, FramerLimits(1 << 20, max_container_items=1))
    assert refused.type == TProtocolException.SIZE_LIMIT and "2 items" in str(refused)


def test_a_count_of_twenty_digits_and_a_sign_is_awaited_whole_however_the_bytes_come():
    data = b'[1,"echo",1,1,{"1":{"lst":["i32",-12345678901234567890,1]}}]'
    for cut in range(len(data)):
        framer = MessageFramer(JSON, LIMITS)
        with pytest.raises(TProtocolException) as refused:
            framer.feed(data[:cut])
            framer.feed(data[cut:])
        assert refused.value.type == TProtocolException.NEGATIVE_SIZE, cut


def test_scanning_no_bytes_finds_no_end():
    assert JsonMessageEnd().scan(b"", 0) == (0, False)
    assert JsonMessageEnd().scan(b"[1", 2) == (2, False)


def test_json_with_spaces_between_its_tokens_is_cut_at_its_closing_bracket():
    """TJSONProtocol writes no spaces (its decoder refuses them), but the cut does not depend on that."""
    data = b'[1,"echo",1,1,{"1":{"lst":[ "i32",3,1,2,3]}}]'
    assert MessageFramer(JSON, LIMITS).feed(data + data) == [data, data]


def test_each_json_message_of_a_feed_gets_the_whole_budget():
    message = _messages(JSON)[1]
    assert MessageFramer(JSON, FramerLimits(len(message))).feed(message * 3) == [message] * 3
