"""Telling a peer's dialect from its first bytes, over bytes alone: every message type, every framing."""

from __future__ import annotations

from typing import List, Optional

import pytest
from thrift.protocol import TBinaryProtocol, TCompactProtocol, THeaderProtocol
from thrift.Thrift import TMessageType
from thrift.transport import THeaderTransport, TTransport

from thrift_handshake import Wire
from thrift_handshake.wire import SNIFF_BYTES, Dialect, DialectKind, explain_reply, sniff
from thrift_handshake.wire.sniff import sniff_stream, thrift_start

MESSAGE_TYPES = {"call": TMessageType.CALL, "reply": TMessageType.REPLY, "exception": TMessageType.EXCEPTION,
                 "oneway": TMessageType.ONEWAY}
HTTP_STARTS = [b"GET / HTTP/1.1\r\n", b"POST /rpc HTTP/1.1\r\n", b"PUT /x HTTP/1.1\r\n", b"HEAD / HTTP/1.0\r\n",
               b"DELETE /x HTTP/1.1\r\n", b"OPTIONS * HTTP/1.1\r\n", b"PATCH /x HTTP/1.1\r\n",
               b"PRI * HTTP/2.0\r\n\r\nSM", b"CONNECT a:1 HTTP/1.1\r\n", b"TRACE / HTTP/1.1\r\n",
               b"HTTP/1.1 200 OK\r\n"]


def _message_start(protocol: str, transport: str, message_type: int) -> bytes:
    """The first bytes of a message of ``message_type``, written by Thrift's own protocol ("framed-header":
    THeader over TFramedTransport, as Apache's clients write ``-p header -t framed``)."""
    memory = TTransport.TMemoryBuffer()
    if transport in ("header", "framed-header"):
        ids = {"binary": THeaderTransport.THeaderSubprotocolID.BINARY,
               "compact": THeaderTransport.THeaderSubprotocolID.COMPACT}
        client_types = (THeaderTransport.THeaderClientType.HEADERS,)
        inner = TTransport.TFramedTransport(memory) if transport == "framed-header" else memory
        writer = THeaderProtocol.THeaderProtocol(inner, client_types, ids[protocol])
    else:
        trans = TTransport.TFramedTransport(memory) if transport == "framed" else memory
        writer = (TCompactProtocol.TCompactProtocol(trans) if protocol == "compact"
                  else TBinaryProtocol.TBinaryProtocol(trans))
    writer.writeMessageBegin("method", message_type, 5)
    writer.writeStructBegin("args")
    writer.writeFieldStop()
    writer.writeStructEnd()
    writer.writeMessageEnd()
    writer.trans.flush()
    return memory.getvalue()


#: A frame is told from its length and its first two bytes.
FRAME_TELLS = 6


def _shortest_telling(data: bytes) -> int:
    """How many of ``data``'s bytes ``sniff`` needs before it names a dialect."""
    return next(size for size in range(len(data) + 1) if sniff(data[:size]) is not None)


@pytest.mark.parametrize("message_type", MESSAGE_TYPES.values(), ids=MESSAGE_TYPES)
@pytest.mark.parametrize("protocol", ["binary", "compact"])
@pytest.mark.parametrize("transport", ["buffered", "framed"])
def test_every_thrift_message_type_is_told_in_every_framing(transport, protocol, message_type):
    data = _message_start(protocol, transport, message_type)
    assert sniff(data) == Dialect(DialectKind.THRIFT, Wire(protocol=protocol, transport=transport))
    assert sniff(data[:SNIFF_BYTES]) == sniff(data)
    assert _shortest_telling(data) == (2 if transport == "buffered" else FRAME_TELLS)


@pytest.mark.parametrize("message_type", MESSAGE_TYPES.values(), ids=MESSAGE_TYPES)
@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_theader_is_told_whatever_it_carries(protocol, message_type):
    data = _message_start(protocol, "header", message_type)
    assert sniff(data) == Dialect(DialectKind.HEADER)
    assert sniff(data[:FRAME_TELLS]) == Dialect(DialectKind.HEADER)
    assert _shortest_telling(data) == FRAME_TELLS


@pytest.mark.parametrize("second", range(256))
def test_compact_is_told_by_its_version_whatever_the_message_type(second):
    """0x82, then three bits of message type over five of version: only version 1 is compact."""
    dialect = sniff(bytes([0x82, second]) + b"\x00" * 4)
    if second & 0x1F == 1:
        assert dialect == Dialect(DialectKind.THRIFT, Wire(protocol="compact", transport="buffered"))
    else:
        assert dialect == Dialect(DialectKind.UNKNOWN)


@pytest.mark.parametrize("first", range(256))
def test_only_0x82_starts_compact_and_only_0x80_binary(first):
    dialect = sniff(bytes([first, 0x21, 0, 0, 0, 0]))
    expected = {0x82: DialectKind.THRIFT, 0x80: DialectKind.BAD_VERSION}.get(first, DialectKind.UNKNOWN)
    assert dialect.kind is expected


def test_thrift_start_needs_two_bytes():
    assert [thrift_start(b""), thrift_start(b"\x82"), thrift_start(b"\x80")] == [None, None, None]
    assert [thrift_start(b"\x82\x21"), thrift_start(b"\x80\x01")] == ["compact", "binary"]


@pytest.mark.parametrize("length", [b"\x00\x00\x00\x01", b"\x7f\xff\xff\xff"], ids=["1", "2**31-1"])
def test_any_positive_frame_length_starts_a_frame(length):
    assert sniff(length + b"\x0f\xff") == Dialect(DialectKind.HEADER)
    assert sniff(length + b"\x80\x01") == Dialect(DialectKind.THRIFT, Wire(transport="framed"))


@pytest.mark.parametrize("version", [0, 2, 0x7F, 0xFF])
def test_binary_of_another_version_is_told_apart(version):
    dialect = sniff(bytes([0x80, version, 0, 1]))
    assert dialect.kind is DialectKind.BAD_VERSION
    assert str(dialect) == f"binary protocol version {version} (strict binary is version 1)"
    assert dialect.answer_wire == Wire()


@pytest.mark.parametrize("start", HTTP_STARTS, ids=lambda start: start.split(b" ")[0].decode())
def test_http_is_told_from_four_bytes(start):
    assert sniff(start) == Dialect(DialectKind.HTTP)
    assert _shortest_telling(start) == 4


def test_json_buffered_and_framed_are_told_from_its_message_start():
    message = b'[1,"echo",1,0,{}]'
    assert sniff(message) == Dialect(DialectKind.THRIFT, Wire(protocol="json", transport="buffered"))
    assert _shortest_telling(message) == 4
    framed = len(message).to_bytes(4, "big") + message
    assert sniff(framed) == Dialect(DialectKind.THRIFT, Wire(protocol="json", transport="framed"))
    assert _shortest_telling(framed) == 8
    assert str(sniff(framed)) == "framed json"


@pytest.mark.parametrize("start", [b"[2,\"echo\"", b"[ 1, \"echo\"", b"[{}]......"])
def test_other_json_is_not_a_thrift_message(start):
    assert sniff(start) is not None and sniff(start).kind is DialectKind.UNKNOWN


@pytest.mark.parametrize("record", [
    b"\x16\x03\x01\x02\x00\x01",  # a ClientHello record (TLS 1.0 record version, as clients send)
    b"\x16\x03\x03\x00\x7a\x02",  # a ServerHello record
    b"\x15\x03\x03\x00\x02\x02",  # a fatal alert
    b"\x15\x03\x01\x00\x02\x02",  # the protocol_version alert this server sends a TLS client
], ids=["client-hello", "server-hello", "alert", "alert-tls1.0"])
def test_tls_records_and_alerts_are_told_from_two_bytes(record):
    assert sniff(record) == Dialect(DialectKind.TLS)
    assert _shortest_telling(record) == 2


@pytest.mark.parametrize("data", [b"\x00\x00\x00\x10\x00\x01", b"hello!", b"\x7f\xff\xff\xff\x80\x02",
                                  b"\x16\x02\x00\x00\x00\x00", b"\x16\x04\x00\x00\x00\x00",
                                  b"\x15\x04\x00\x00\x00\x00", b"\x00\x00\x00\x10\x0f\xfe"])
def test_six_bytes_of_nothing_known_are_unknown(data):
    assert sniff(data) == Dialect(DialectKind.UNKNOWN)
    assert str(sniff(data)) == "something that is not Thrift"
    assert sniff(data).answer_wire is None


def test_a_frame_length_with_the_high_bit_is_not_a_frame():
    assert sniff(b"\x81\x00\x00\x10\x80\x01") == Dialect(DialectKind.UNKNOWN)
    assert sniff(b"\x81\x00\x00\x10\x0f\xff") == Dialect(DialectKind.UNKNOWN)


@pytest.mark.parametrize("data", [b"", b"\x80", b"\x82", b"\x16", b"GE", b"GET", b"\x00\x00\x00\x10\x80"])
def test_too_few_bytes_tell_nothing_yet(data):
    assert sniff(data) is None


def test_the_names_and_answer_wires_of_the_dialects():
    framed = Dialect(DialectKind.THRIFT, Wire(protocol="compact", transport="framed"))
    assert [str(framed), str(Dialect(DialectKind.HEADER)), str(Dialect(DialectKind.HTTP)),
            str(Dialect(DialectKind.TLS))] == ["framed compact", "THeader", "HTTP", "TLS"]
    assert framed.answer_wire == Wire(protocol="compact", transport="framed")
    assert Dialect(DialectKind.HEADER).answer_wire == Wire(transport="header")
    assert Dialect(DialectKind.HTTP).answer_wire is None
    assert Dialect(DialectKind.TLS).answer_wire is None


def test_sniff_stream_asks_for_bytes_until_they_tell():
    chunks = [b"\x00", b"\x00\x00", b"\x2a", b"\x82\x21", b"rest"]
    asked: List[bytes] = []

    def more(data: bytes) -> Optional[bytes]:
        asked.append(data)
        return data + chunks.pop(0)

    data, dialect = sniff_stream(more)
    assert dialect == Dialect(DialectKind.THRIFT, Wire(protocol="compact", transport="framed"))
    assert data == b"\x00\x00\x00\x2a\x82\x21"
    assert asked == [b"", b"\x00", b"\x00\x00\x00", b"\x00\x00\x00\x2a"]


def test_sniff_stream_asks_no_more_once_two_bytes_tell():
    asked: List[bytes] = []

    def more(data: bytes) -> Optional[bytes]:
        asked.append(data)
        return data + b"\x80\x01"

    assert sniff_stream(more) == (b"\x80\x01", Dialect(DialectKind.THRIFT, Wire()))
    assert asked == [b""]


def test_sniff_stream_stops_when_the_peer_does():
    data, dialect = sniff_stream(lambda data: None if data else b"GE")
    assert (data, dialect) == (b"GE", None)


@pytest.mark.parametrize("reply, expected", [
    (b"", "the server closed the connection without answering"),
    (b"\x80", "the server's answer (80) ended before it could be read"),
    (b"\x82\x41\x00\x00\x00\x00", "the server speaks buffered compact; this client speaks buffered binary"),
    (b"\x00\x00\x00\x10\x80\x01", "the server speaks framed binary; this client speaks buffered binary"),
    (b"\x80\x01\x00\x02\x00\x00", "the server's answer is not a reply this client can decode"),
    (b"HTTP/1.1 400", "the server answered with HTTP"),
    (b"\x15\x03\x01\x00\x02\x02", "the server answered with TLS"),
    (b"\x80\x02\x00\x02\x00\x00", "the server answered with binary protocol version 2"),
], ids=["nothing", "cut", "other-protocol", "other-transport", "same-protocol", "http", "tls", "bad-version"])
def test_a_client_is_told_why_a_reply_cannot_be_read(reply, expected):
    assert explain_reply(reply, Wire()).startswith(expected)


def test_a_compact_client_is_told_the_server_speaks_binary():
    assert explain_reply(b"\x80\x01\x00\x02\x00\x00", Wire(protocol="compact")).startswith(
        "the server speaks buffered binary; this client speaks buffered compact")


@pytest.mark.parametrize("transport, expected", [
    ("http", "the server's HTTP answer holds no Thrift reply"),
    ("buffered", "the server answered with HTTP: it is not a Thrift server (wrong port?)"),
    ("header", "the server answered with HTTP: it is not a Thrift server (wrong port?)")])
def test_only_a_client_not_speaking_http_is_told_the_server_is_not_thrift(transport, expected):
    assert explain_reply(b"HTTP/1.1 200 OK\r\n", Wire(transport=transport)) == expected


@pytest.mark.parametrize("length", range(4), ids=lambda n: f"length-{n}")
def test_a_frame_length_too_short_to_hold_a_frame_is_unknown(length):
    """Its inner THeader length would be negative: no frame in a frame."""
    assert sniff(length.to_bytes(4, "big") + b"\x00" * 6) == Dialect(DialectKind.UNKNOWN)


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_theader_inside_a_framed_transport_is_told_from_ten_bytes(protocol):
    """Two lengths, the inner 4 less than the outer, then THeader's magic: Apache's header x framed cells."""
    data = _message_start(protocol, "framed-header", TMessageType.CALL)
    assert int.from_bytes(data[:4], "big") == int.from_bytes(data[4:8], "big") + 4
    assert sniff(data) == Dialect(DialectKind.FRAMED_HEADER)
    assert _shortest_telling(data) == SNIFF_BYTES == 10
    assert str(sniff(data)) == "THeader inside a framed transport"
    assert sniff(data).answer_wire == Wire(transport="header")


@pytest.mark.parametrize("data", [b"\x00\x00\x00\x10\x00\x00\x00\x0c\x0f\xfe",  # the lengths, not the magic
                                  b"\x00\x00\x00\x10\x00\x00\x00\x0c\x10\x00",  # the lengths, bytes past the magic
                                  b"\x00\x00\x00\x10\x00\x00\x00\x0b\x0f\xff"],  # the magic, lengths that disagree
                         ids=["no-magic", "over-the-magic", "lengths-disagree"])
def test_a_frame_in_a_frame_needs_both_lengths_and_the_magic(data):
    assert sniff(data[:6]) is None  # could still be THeader inside a frame
    assert sniff(data) == Dialect(DialectKind.UNKNOWN)


def test_six_bytes_that_cannot_start_a_frame_in_a_frame_are_unknown_at_once():
    assert sniff(b"\x00\x00\x00\x10\x00\x01") == Dialect(DialectKind.UNKNOWN)  # the inner length would be 0x0c
    assert sniff(b"\x00\x00\x00\x10\x00\x00") is None


@pytest.mark.parametrize("level", [1, 2, 6, 9])
def test_a_zlib_stream_is_told_from_two_bytes_at_every_level(level):
    """TZlibTransport: Python and Go write level 9 (78 da), C++ the default (78 9c), others 78 01 or 78 5e."""
    import zlib

    stream = zlib.compressobj(level)
    data = stream.compress(_message_start("binary", "buffered", TMessageType.CALL)) + stream.flush(zlib.Z_SYNC_FLUSH)
    assert sniff(data) == Dialect(DialectKind.ZLIB)
    assert _shortest_telling(data) == 2
    assert str(sniff(data)) == "zlib (TZlibTransport)"
    assert sniff(data).answer_wire is None


@pytest.mark.parametrize("second", range(256))
def test_only_a_zlib_header_with_its_check_bits_is_zlib(second):
    expected = second in (0x01, 0x5E, 0x9C, 0xDA)  # the four levels' headers; with FDICT (0x20) not served
    assert (sniff(bytes([0x78, second]) + b"\x00" * 8) == Dialect(DialectKind.ZLIB)) is expected
