"""TZlibTransport's stream over bytes alone: inflation never runs past what is asked for."""

from __future__ import annotations

import zlib

import pytest
from thrift.protocol.TProtocol import TProtocolException
from thrift.transport.TTransport import TTransportException

from thrift_handshake.wire.compression import Deflater, Inflater


def _flushed(*messages: bytes) -> bytes:
    stream = zlib.compressobj(9)
    return b"".join(stream.compress(message) + stream.flush(zlib.Z_SYNC_FLUSH) for message in messages)


def test_a_read_never_inflates_more_than_it_asks_for():
    inflater = Inflater(_flushed(bytes(64 << 20)))  # 64 MiB of zeros in about 64 KiB
    assert [len(inflater.read(1000, bytes)) for _ in range(3)] == [1000, 1000, 1000]
    assert len(inflater._zlib.unconsumed_tail) > 60_000  # the rest still compressed: nothing inflated ahead


def test_compressed_bytes_are_asked_for_only_when_none_are_left():
    chunks = [_flushed(b"abc")]
    inflater = Inflater()
    assert inflater.read(10, chunks.pop) == b"abc"
    with pytest.raises(IndexError):  # nothing left: asks, and what ``more`` raises propagates
        inflater.read(10, chunks.pop)


def test_pending_tells_a_pipelined_message_from_a_flush_marker_alone():
    stream = zlib.compressobj()
    first = stream.compress(b"one") + stream.flush(zlib.Z_SYNC_FLUSH)
    marker = stream.flush(zlib.Z_SYNC_FLUSH)  # an empty flush: 00 00 ff ff, inflates to nothing
    second = stream.compress(b"two") + stream.flush(zlib.Z_SYNC_FLUSH)
    inflater = Inflater(first + marker)
    assert inflater.read(3, bytes) == b"one"
    assert not inflater.pending
    inflater = Inflater(first + second)
    assert inflater.read(3, bytes) == b"one"
    assert inflater.pending  # it inflated one byte to tell: a short read, as a socket's may be
    assert [inflater.read(100, bytes), inflater.read(100, bytes)] == [b"t", b"wo"]


def test_a_corrupt_stream_is_invalid_data_and_an_ended_one_is_the_end_of_file():
    with pytest.raises(TProtocolException) as corrupt:
        Inflater(b"\x78\xda\xff\xff\xff\xff").read(10, bytes)
    assert corrupt.value.type == TProtocolException.INVALID_DATA
    ended = Inflater(zlib.compress(b"last"))
    assert ended.read(10, bytes) == b"last"
    with pytest.raises(TTransportException) as end:
        ended.read(10, bytes)
    assert end.value.type == TTransportException.END_OF_FILE


def test_each_write_is_whole_for_the_peer_as_soon_as_it_arrives():
    deflater, peer = Deflater(), zlib.decompressobj()
    assert [peer.decompress(deflater.compress(message)) for message in (b"a" * 100, b"b")] == [b"a" * 100, b"b"]


def test_a_corrupt_stream_is_pending_and_then_raised_on_every_read():
    """The message loop asks ``pending`` outside any decoding: the error waits for the read that answers it."""
    inflater = Inflater(b"\x78\xda\xff\xff\xff\xff")
    assert inflater.pending
    for _ in range(2):
        with pytest.raises(TProtocolException) as corrupt:
            inflater.read(10, bytes)
        assert corrupt.value.type == TProtocolException.INVALID_DATA
