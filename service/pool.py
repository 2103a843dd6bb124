"""What lets a server hold many connections on few threads: a watch where idle connections wait for
their next bytes, and a bounded pool of reused threads that serves the connections that have some.

Both are plain mechanisms with no Thrift in them; ``server.HandshakeServer`` decides what a connection
does when it is reported ready and when it goes back to wait.
"""

from __future__ import annotations

import logging
import select
import selectors
import socket
import threading
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

__all__ = ["ReadinessWatch", "WorkerPool"]

logger = logging.getLogger(__name__)


class _Idle:
    """An idle pool thread: woken by releasing ``wake`` once ``task`` holds what it is handed."""

    __slots__ = ("wake", "task")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.task: Optional[Tuple[Callable[[Any], None], Any]] = None


_CLOSED = (lambda _: None, None)  # handed to an idle thread by close(): it ends


class WorkerPool:
    """Runs submitted tasks on up to ``maximum`` threads (more only through ``relieve``, when every
    thread is stuck), started when needed and reused after; a thread without a task for
    ``idle_seconds`` ends.

    A task waits in order when every thread is busy; a thread that finishes one takes the next.
    A task submitted while threads are idle wakes one of them only, the one idle the shortest time
    (the others sleep on, and end once idle long enough). Threads are daemons: a task stuck past a
    server's grace period must not keep the process alive.
    """

    def __init__(self, name: str, maximum: int, idle_seconds: float = 5.0) -> None:
        self._name = name
        self._maximum = maximum
        self._idle_seconds = idle_seconds
        self._tasks: Deque[Tuple[Callable[[Any], None], Any]] = deque()  # waiting for a thread, in order
        self._waiting: List[_Idle] = []  # idle threads, the last one idle the shortest time
        self._lock = threading.Lock()  # guards the queue, the idle threads and the counts below
        self._threads = 0
        self._closed = False
        self._completed = 0  # tasks finished (a progress count, read by relieve())
        self._completed_seen = 0

    @property
    def threads(self) -> int:
        """Threads started and not ended."""
        return self._threads

    @property
    def idle(self) -> int:
        """Threads waiting for a task."""
        return len(self._waiting)

    @property
    def saturated(self) -> bool:
        """Every thread the pool may start is running and tasks wait for one."""
        return self._threads >= self._maximum and bool(self._tasks)

    def submit(self, task: Callable[[Any], None], argument: Any) -> None:
        """Runs ``task(argument)`` on a pool thread, now or once one is free."""
        if self._closed:
            raise RuntimeError("the pool is closed")
        with self._lock:
            if self._waiting:  # handed to one idle thread: the only one woken
                idle = self._waiting.pop()
                idle.task = (task, argument)
                idle.wake.release()
                return
            self._tasks.append((task, argument))
            if self._threads >= self._maximum:
                return  # a busy thread takes it when done
        self._start_thread()

    def relieve(self, ceiling: int) -> None:
        """Call periodically: when tasks wait and no task finished since the last call, every thread is
        stuck (e.g. on peers that send or read too slowly), so threads are added, up to ``ceiling``,
        for the waiting tasks. They end like the others once idle."""
        completed, waiting = self._completed, len(self._tasks)
        stuck = waiting and completed == self._completed_seen
        self._completed_seen = completed
        if not stuck:
            return
        for _ in range(waiting):
            with self._lock:
                if self._threads >= ceiling:
                    return
            self._start_thread()

    def _start_thread(self) -> None:
        with self._lock:
            self._threads += 1
            number = self._threads
        try:
            threading.Thread(target=self._work, name=f"{self._name} {number}", daemon=True).start()
        except RuntimeError as error:  # the system refused another thread: the others take the task
            with self._lock:
                self._threads -= 1
                alone = self._threads == 0
            if alone:
                raise
            logger.warning("cannot start another pool thread (%s); %d serve the queue", error, self._threads)

    def close(self) -> None:
        """Ends every thread once it is free; tasks still queued are dropped."""
        with self._lock:
            self._closed = True
            self._tasks.clear()
            waiting, self._waiting = self._waiting, []
            for idle in waiting:
                idle.task = _CLOSED
                idle.wake.release()

    def _work(self) -> None:
        lock, tasks, me = self._lock, self._tasks, _Idle()
        item: Optional[Tuple[Callable[[Any], None], Any]]
        while True:
            with lock:
                if self._closed:
                    self._threads -= 1
                    return
                if tasks:
                    item = tasks.popleft()
                else:
                    self._waiting.append(me)
                    item = None
            if item is None:
                if not me.wake.acquire(timeout=self._idle_seconds):
                    with lock:
                        if me.task is None:  # nothing handed meanwhile: the thread ends
                            self._waiting.remove(me)
                            self._threads -= 1
                            return
                    me.wake.acquire()  # handed a task as the wait ended: its release is done or comes now
                item, me.task = me.task, None
                if item is _CLOSED:
                    with lock:
                        self._threads -= 1
                    return
            task, argument = item  # type: ignore[misc]  # handed or taken: never None here
            try:
                task(argument)
            except BaseException:  # a task's own errors are its business; the thread must survive them
                logger.exception("a pool task failed")
            item = task = argument = None  # an idle thread must not keep the last task's objects alive
            self._completed += 1


class ReadinessWatch:
    """File descriptors to watch for input. A descriptor added with ``once=True`` is reported once and
    then ignored until ``rearm``; ``rearm`` may be called from any thread while ``wait`` runs."""

    def __init__(self, use_epoll: bool = hasattr(select, "epoll")) -> None:
        self._objects: Dict[int, Any] = {}
        self._epoll = select.epoll() if use_epoll else None
        self._selector = None if use_epoll else selectors.DefaultSelector()
        self._once: Dict[int, bool] = {}
        self._lock = threading.Lock()  # orders add and remove (and, for the selector, every change)
        self._wake_reader, self._wake_writer = socket.socketpair()
        for end in (self._wake_reader, self._wake_writer):
            end.setblocking(False)
        self.add(self._wake_reader.fileno(), self._wake_reader, once=False)

    def add(self, fd: int, obj: Any, once: bool = True) -> None:
        """Starts watching ``fd``; ``wait`` reports ``obj`` when it has input (or is closed)."""
        with self._lock:
            self._objects[fd] = obj
            if self._epoll is not None:
                self._epoll.register(fd, select.EPOLLIN | (select.EPOLLONESHOT if once else 0))
                return
            self._once[fd] = once
            self._selector.register(fd, selectors.EVENT_READ)
        self.wake()

    def rearm(self, fd: int) -> None:
        """Reports ``fd`` again the next time it has input (after it was reported once)."""
        if self._epoll is not None:
            self._epoll.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)
        else:
            with self._lock:
                self._selector.register(fd, selectors.EVENT_READ)
            self.wake()

    def remove(self, fd: int, obj: Any) -> None:
        """Stops watching ``fd`` for ``obj``. Nothing happens when ``fd`` now stands for another
        object: the descriptor was closed behind our back and its number already reused."""
        with self._lock:
            if self._objects.get(fd) is not obj:
                return
            del self._objects[fd]
            try:
                if self._epoll is not None:
                    self._epoll.unregister(fd)
                else:
                    self._once.pop(fd, None)
                    self._selector.unregister(fd)
            except (KeyError, OSError, ValueError):  # reported once and not re-armed, or already closed
                pass

    def wake(self) -> None:
        """Makes a running ``wait`` return (safe in a signal handler: takes no lock)."""
        try:
            self._wake_writer.send(b"\0")
        except OSError:  # full (a wake-up is pending anyway) or closed
            pass

    def wait(self, timeout: Optional[float]) -> List[Any]:
        """The objects whose descriptors have input, waiting at most ``timeout`` seconds for one."""
        ready: List[Any] = []
        if self._epoll is not None:
            events = [fd for fd, _ in self._epoll.poll(-1 if timeout is None else timeout)]
        else:
            with self._lock:
                selector = self._selector
            events = [key.fd for key, _ in selector.select(timeout)]
            with self._lock:
                for fd in events:
                    if self._once.get(fd):
                        try:
                            self._selector.unregister(fd)
                        except KeyError:  # removed meanwhile
                            pass
        for fd in events:
            obj = self._objects.get(fd)
            if obj is self._wake_reader:
                _drain(self._wake_reader)
            elif obj is not None:
                ready.append(obj)
        return ready

    def close(self) -> None:
        self._objects.clear()
        if self._epoll is not None:
            self._epoll.close()
        else:
            self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()


def _drain(reader: socket.socket) -> None:
    try:
        while reader.recv(4096):
            pass
    except OSError:  # BlockingIOError: nothing left
        pass
