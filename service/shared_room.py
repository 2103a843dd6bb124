"""Room for a newcomer across worker processes (``serve --workers``): a worker at the service-wide
``max_connections`` that has nothing of its own to evict asks its siblings to give one up.

``RoomExchange`` is made by the supervisor before it forks: per worker slot an inbox of requests and
an inbox of replies (datagram socket pairs, inherited by every worker), and a cell in shared memory
saying which slots have a worker answering. A full worker sends ``(its slot, request id, newcomer's
host)`` to each answering sibling in turn, each answer awaited at most ``ANSWER_WAIT`` seconds; the
sibling's answering thread runs its own eviction (``Admission.make_room_for_sibling``) and replies
whether it closed a connection. Only a newcomer that finds the service full costs this; the call path
and an accept below the limit are unchanged.
"""

from __future__ import annotations

import logging
import mmap
import os
import socket
import struct
import threading
import time
from typing import Callable

from .wire.sockets import wait_readable

__all__ = ["RoomExchange", "ANSWER_WAIT"]

logger = logging.getLogger(__name__)

#: How long a full worker waits for one sibling's answer (the sibling's eviction is a local look-up, but
#: a busy sibling, or an asyncio one whose loop hands it over, may take longer than 0.1 s to get to it).
ANSWER_WAIT = 0.3
_REQUEST = struct.Struct("<HId")  # the asking slot, the request id, when asked; the newcomer's host follows
_REPLY = struct.Struct("<I?")    # the request id, whether a connection was closed for it
_PID = struct.Struct("<q")       # per slot: the pid answering requests (0: none)
_MAX_HOST = 256


class RoomExchange:
    """The supervisor's channels through which ``slots`` workers ask each other for room."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._requests = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(slots)]
        self._replies = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(slots)]
        self._answering = mmap.mmap(-1, slots * _PID.size)  # anonymous, MAP_SHARED: seen after the fork
        self._lock = threading.Lock()  # one question at a time per worker (its replies share one inbox)
        self._next_id = 0

    def join(self, slot: int, make_room: Callable[[str], bool]) -> Callable[[str], bool]:
        """In worker ``slot``: answers the siblings' requests with ``make_room(host)`` (on a thread),
        and returns the function that asks the siblings for room for a newcomer from ``host``."""
        self._next_id = (os.getpid() << 16) % 2 ** 32  # unlike a dead predecessor's, whose replies may linger
        threading.Thread(target=self._answer, args=(slot, make_room), name=f"room-slot-{slot}",
                         daemon=True).start()
        _PID.pack_into(self._answering, slot * _PID.size, os.getpid())
        return lambda host: self.ask(slot, host)

    def retire(self, slot: int) -> None:
        """Supervisor: the worker of ``slot`` is gone (its successor joins again)."""
        _PID.pack_into(self._answering, slot * _PID.size, 0)

    def ask(self, slot: int, host: str) -> bool:
        """Asks each answering sibling of worker ``slot``, the next slots first, to close one of its
        connections for a newcomer from ``host``; whether one did."""
        inbox = self._replies[slot][0]
        with self._lock:
            for step in range(1, self.slots):
                sibling = (slot + step) % self.slots
                if not _PID.unpack_from(self._answering, sibling * _PID.size)[0]:
                    continue
                self._next_id = (self._next_id + 1) % 2 ** 32
                asked = self._next_id
                try:  # MSG_DONTWAIT: the ends are shared by every process, their blocking mode too
                    request = _REQUEST.pack(slot, asked, time.monotonic()) + host.encode()[:_MAX_HOST]
                    self._requests[sibling][1].send(request, socket.MSG_DONTWAIT)
                except OSError as error:  # its inbox is full: it is busy answering others
                    logger.debug("could not ask worker %d for room: %s", sibling, error)
                    continue
                if self._await(inbox, asked):
                    return True
        return False

    @staticmethod
    def _await(inbox: socket.socket, asked: int) -> bool:
        """The sibling's answer to request ``asked`` (False when none came within ANSWER_WAIT)."""
        deadline = time.monotonic() + ANSWER_WAIT
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not wait_readable(inbox, left):
                return False
            try:
                answered, evicted = _REPLY.unpack(inbox.recv(_REPLY.size, socket.MSG_DONTWAIT))
            except (BlockingIOError, struct.error):
                continue
            if answered == asked:  # an older request's late answer is dropped
                return evicted

    def _answer(self, slot: int, make_room: Callable[[str], bool]) -> None:
        inbox = self._requests[slot][0]
        while True:
            request = inbox.recv(_REQUEST.size + _MAX_HOST)
            try:
                asker, asked, when = _REQUEST.unpack_from(request)
            except struct.error:
                continue
            if time.monotonic() - when > ANSWER_WAIT:  # its asker stopped waiting (e.g. queued for a dead worker)
                continue
            host = request[_REQUEST.size:].decode(errors="replace")
            try:
                evicted = make_room(host)
            except Exception:  # never let one request end the answering thread
                logger.exception("making room for worker %d's newcomer failed", asker)
                evicted = False
            if evicted:
                logger.debug("closed a connection for worker %d's newcomer from %s", asker, host)
            try:
                self._replies[asker][1].send(_REPLY.pack(asked, evicted), socket.MSG_DONTWAIT)
            except OSError:  # the asker's inbox is full: it stopped waiting long ago
                pass
