"""Refusals on the wire (wire/answers.py) over socket pairs: what the peer reads, and how long the rest
of its input is read and dropped."""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator, Tuple

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TMemoryBuffer

from thrift_handshake.wire import ConnectionSocket, answers, sniff
from thrift_handshake.wire.answers import answer_refusal, discard_input, http_refusal


@pytest.fixture
def pair() -> Iterator[Tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    theirs.settimeout(5)
    yield ours, theirs
    ours.close()
    theirs.close()


def test_the_http_refusal_says_why_with_its_exact_length():
    body = b"This is a Thrift server (thrift-handshake), not an HTTP server: no.\nConnect with a Thrift client.\n"
    assert http_refusal("no") == (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                  b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert http_refusal("no").count(b"HTTP/1.1") == 1


def test_a_binary_peer_of_an_unknown_version_is_answered_to_seqid_0(pair):
    ours, theirs = pair
    first = b"\x80\x07\x00\x01" + b"\x00" * 12  # binary, version 7
    theirs.sendall(first)
    theirs.shutdown(socket.SHUT_WR)
    sock = ConnectionSocket()
    sock.setHandle(ours)
    answer_refusal(sock, sniff(first), TApplicationException.PROTOCOL_ERROR, "bad version", 1 << 20, None)
    reply = TBinaryProtocol(TMemoryBuffer(theirs.recv(4096)))
    assert reply.readMessageBegin() == ("", TMessageType.EXCEPTION, 0)


def test_discarding_stops_at_the_peers_end_of_input(pair):
    ours, theirs = pair
    theirs.sendall(b"rest of a message")
    theirs.shutdown(socket.SHUT_WR)
    discard_input(ours)
    assert theirs.recv(1) == b""  # our end is shut for writing


@pytest.mark.parametrize("sent", [4, 5])
def test_discarding_stops_once_the_byte_bound_is_reached(pair, monkeypatch, sent):
    monkeypatch.setattr(answers, "_DISCARD_BYTES", 4)
    ours, theirs = pair
    theirs.sendall(b"x" * sent)  # and the peer stays: only the bound ends the discarding at once
    started = time.monotonic()
    discard_input(ours)
    assert time.monotonic() - started < 0.5


def test_a_peer_that_sends_nothing_more_times_the_discarding_out_after_its_second(pair):
    ours, _ = pair
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        discard_input(ours)
    assert 0.9 <= time.monotonic() - started < 2.0  # its one second, not two


_BOUND = 64 * 1024 * 1024  # the bytes dropped at most, the module's _DISCARD_BYTES


def _send_in_the_background(sock: socket.socket, data: bytes) -> threading.Thread:
    sender = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
    sender.start()
    return sender


def test_a_peer_that_sent_one_byte_less_than_64_mib_and_stays_is_waited_for_until_the_second_is_over(pair):
    ours, theirs = pair
    sender = _send_in_the_background(theirs, b"x" * (_BOUND - 1))
    with pytest.raises(TimeoutError):  # all read, and the bound not reached: it waits for more
        discard_input(ours)
    sender.join(5)
    assert not sender.is_alive()


def test_a_peer_that_sent_exactly_64_mib_and_stays_is_read_no_further(pair):
    ours, theirs = pair
    sender = _send_in_the_background(theirs, b"x" * _BOUND)
    discard_input(ours)  # returns at the bound, without waiting for the peer's next byte
    sender.join(5)
    assert not sender.is_alive()
    ours.setblocking(False)
    with pytest.raises(BlockingIOError):  # every byte was read, none more
        ours.recv(1)


def test_discarding_past_its_deadline_stops_quietly_though_input_still_waits(pair, monkeypatch):
    monkeypatch.setattr(answers, "_DISCARD_SECONDS", 0.0)  # the deadline has passed at the first look
    ours, theirs = pair
    theirs.sendall(b"x" * 1000)
    discard_input(ours)
    assert ours.recv(1000) == b"x" * 1000  # nothing was read

