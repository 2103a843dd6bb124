"""The channels between workers (shared stats, room requests) work whatever their descriptors' numbers.

A process embedding the server may already hold more than 1024 descriptors when it builds them; select()
cannot wait on such a descriptor (ValueError), so the channels must not use it.
"""

from __future__ import annotations

import os
import resource
import socket
from typing import Iterator, List

import pytest

from thrift_handshake_gen.session.ttypes import ServerStats
from service.metrics import SharedStats
from service.shared_room import RoomExchange

PAST_SELECT = 1100  # FD_SETSIZE is 1024


@pytest.fixture
def high_descriptors() -> Iterator[None]:
    """Descriptors below PAST_SELECT are taken, so the next ones created are numbered past select()'s reach."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = PAST_SELECT + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted, hard))
    held = [os.open(os.devnull, os.O_RDONLY)]
    try:
        while held[-1] < PAST_SELECT:
            held.append(os.dup(held[0]))
        yield
    finally:
        for descriptor in held:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_worker_answers_a_stats_ring_on_a_descriptor_past_1024(high_descriptors: None) -> None:
    shared = SharedStats(2)
    assert shared._bells[0][0].fileno() > 1024
    published = iter(range(1, 1000))
    shared.publish_from(0, lambda: ServerStats(handshakes_ok=next(published)))
    assert shared.read(0).handshakes_ok == 1

    total = shared.total(1, ServerStats())

    assert total.handshakes_ok == 2  # answered fresh on the ring, not the first publication


def test_a_sibling_makes_room_when_asked_on_a_descriptor_past_1024(high_descriptors: None) -> None:
    rooms = RoomExchange(2)
    asked_hosts: List[str] = []

    def make_room(host: str) -> bool:
        asked_hosts.append(host)
        return True

    rooms.join(0, make_room)
    ask = rooms.join(1, lambda host: False)

    assert ask("198.51.100.7") is True
    assert asked_hosts == ["198.51.100.7"]
