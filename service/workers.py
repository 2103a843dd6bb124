"""Pre-forked worker processes on one listening socket, and the supervisor that owns them.

    Supervisor(build, config, workers=2).run()      # what ``serve --workers 2`` does

The supervisor listens once, makes the shared stats area (``metrics.SharedStats``) and that of the
decoded-size budget (``shared_budget.DecodedArea``: one ``max_decoded_bytes`` for all), then forks the
workers; each builds its own server with ``build()`` (after the fork: no thread, pool or SQLite
connection crosses it), serves the inherited socket and publishes its counts into its slot.

Signals belong to the supervisor. SIGINT/SIGTERM: every worker is told to drain (SIGTERM) within the
grace period; a second one ends the grace period (SIGUSR1 to the workers), however soon after the
first it comes (each delivery is counted, from the wake-up fd); workers still there
``UNWIND`` seconds after the grace period are killed. Workers ignore SIGINT, so a terminal's Ctrl-C
(sent to the whole process group) counts once. A worker that dies is logged and restarted, at once
if it had run ``STABLE`` seconds, else after a delay that doubles per quick death up to ``MAX_DELAY``
(a crash loop does not spin). When every worker has failed before serving, and none ever served,
the supervisor stops (a bad configuration; a worker that fails while a sibling is still starting waits
for it, and restarts once one serves); so do ``MAX_START_FAILURES`` failed starts in a row while no
worker serves (nothing can serve: the port is closed and the supervisor exits 1 instead of keeping a
port that answers nobody). Each worker stops if the supervisor disappears (a pipe whose write end
only the supervisor holds).
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Set

from .config import ServerConfig
from .metrics import SharedStats
from .shared_budget import DecodedArea, SharedDecodedBudget
from .shared_room import RoomExchange
from .wire.sockets import wait_readable
from .server import HandshakeServer

__all__ = ["Supervisor", "cpu_count", "joining_a_running_service"]

logger = logging.getLogger(__name__)

#: A worker that ran this long before dying is restarted at once.
STABLE = 10.0
#: The first and the longest delay before a worker that keeps dying quickly is restarted.
FIRST_DELAY, MAX_DELAY = 0.5, 30.0
#: After the grace period, workers get this long to unwind before they are killed.
UNWIND = 3.0
#: Failed starts in a row (workers that died before serving) while no worker serves: the supervisor gives up.
MAX_START_FAILURES = 3
#: Workers are told to end their grace period with this signal (SIGTERM: drain).
END_GRACE = signal.SIGUSR1
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_MASKED = {signal.SIGINT, signal.SIGTERM, END_GRACE, signal.SIGCHLD}


_joining = False  # set in a worker forked after another one served


def joining_a_running_service() -> bool:
    """Whether this process is a worker started after another worker served: what the service made
    when it started (e.g. a shared ticket store) must exist, and a missing one is an error."""
    return _joining


def cpu_count() -> int:
    """The cores this process may run on (``--workers auto``)."""
    return len(os.sched_getaffinity(0))


@dataclass
class _Worker:
    slot: int
    pid: int
    started: float
    serving: bool = False


class Supervisor:
    """Forks ``workers`` processes that each serve ``build()``'s server on the supervisor's socket.

    ``reuse_port``: each worker listens on its own SO_REUSEPORT socket instead (the kernel spreads
    new connections evenly, but a dying worker drops the connections still queued on its socket).
    ``orphaned``: what a worker does last when it stopped because the supervisor disappeared (what
    the supervisor would have cleaned up, e.g. a temporary directory). ``worker_gone(pid)``: told in
    the supervisor of each worker that ended (e.g. to drop its live metrics, ``admin.multiprocess``).
    """

    def __init__(self, build: Callable[[], HandshakeServer], config: ServerConfig, workers: int,
                 reuse_port: bool = False, orphaned: Optional[Callable[[], None]] = None,
                 worker_gone: Optional[Callable[[int], None]] = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        if config.unix_socket is not None:
            raise ValueError("workers share a TCP port: a unix_socket is served by one HandshakeServer")
        self._build = build
        self._orphaned = orphaned   # run by each worker that stopped because the supervisor was gone
        self._worker_gone = worker_gone
        self._supervisor_gone = False
        self._config = config
        self._count = workers
        self._reuse_port = reuse_port
        self._workers: Dict[int, _Worker] = {}       # pid -> worker
        self._quick_deaths = [0] * workers           # per slot, consecutive deaths before STABLE
        self._restart_at: Dict[int, float] = {}      # slot -> when to start it again
        self._signals = 0                            # stop signals received (bytes on the wake-up fd)
        self._giving_up = False                      # stopping because no worker can serve
        self._start_failures = 0                     # workers in a row that died before serving
        self._ever_served = False
        self._unstarted: Set[int] = set()            # slots whose worker died before any worker served
        self._unclean = False                        # a worker failed to start, or did not stop by itself

    # -- supervisor ---------------------------------------------------------------------------

    def run(self) -> int:
        """Serves until SIGINT/SIGTERM; returns 0 once every worker stopped by itself, else 1."""
        sock = self._listen()
        self._stats = SharedStats(self._count)
        self._decoded = DecodedArea(self._count)  # one max_decoded_bytes for all workers
        self._room = RoomExchange(self._count)  # a full worker asks its siblings to evict
        self._ready_r, self._ready_w = os.pipe()         # workers write their slot once serving
        self._lifeline_r, self._lifeline_w = os.pipe()   # EOF in a worker: the supervisor is gone
        wake_r, wake_w = socket.socketpair()
        for end in (wake_r, wake_w):
            end.setblocking(False)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in (*_STOP_SIGNALS, signal.SIGCHLD)}
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno())
        try:
            for slot in range(self._count):
                self._spawn(slot, sock)
            return self._supervise(sock, wake_r)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for fd in (self._ready_r, self._ready_w, self._lifeline_r, self._lifeline_w):
                os.close(fd)
            wake_r.close()
            wake_w.close()
            sock.close()

    def _listen(self) -> socket.socket:
        """The shared listening socket, or (``reuse_port``) a bound one that only holds the port."""
        host, port = self._config.host, self._config.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self._reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if not self._reuse_port:
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)  # the workers' accept loops expect it (it is shared by all of them)
        logger.info("listening on %s:%d with %d workers (%s)", host, sock.getsockname()[1], self._count,
                    "SO_REUSEPORT" if self._reuse_port else "one shared socket")
        return sock

    @staticmethod
    def _on_signal(signum: int, _frame: object) -> None:
        """Nothing: signals are counted from the wake-up fd, which gets a byte per delivery, whereas
        Python runs this handler once for however many deliveries came since it last ran."""

    def _supervise(self, sock: socket.socket, wake_r: socket.socket) -> int:
        acted_on = 0
        kill_at: Optional[float] = None
        with selectors.DefaultSelector() as selector:
            selector.register(wake_r, selectors.EVENT_READ)
            selector.register(self._ready_r, selectors.EVENT_READ)
            while True:
                self._reap()
                while acted_on < self._signals + self._giving_up:  # each one: two at once are two
                    acted_on += 1
                    if acted_on == 1:
                        logger.info("stopping %d workers, grace %.1fs", len(self._workers), self._config.grace)
                        self._restart_at.clear()
                        self._tell_workers(signal.SIGTERM)
                        sock.close()  # the workers hold the port now: it closes when the last stops listening
                        kill_at = time.monotonic() + self._config.grace + UNWIND
                    elif acted_on == 2:
                        logger.info("second signal: the workers' grace period ends now")
                        self._tell_workers(END_GRACE)
                        kill_at = min(kill_at or 0, time.monotonic() + UNWIND)
                if acted_on and not self._workers:
                    return 1 if self._unclean else 0
                now = time.monotonic()
                if kill_at is not None and now >= kill_at:
                    for pid, worker in self._workers.items():
                        logger.warning("worker %d (pid %d) still running after its grace period: killed",
                                       worker.slot, pid)
                        os.kill(pid, signal.SIGKILL)
                    self._unclean, kill_at = True, None
                for slot, when in list(self._restart_at.items()):
                    if when <= now:
                        del self._restart_at[slot]
                        self._spawn(slot, sock)
                due = [when for when in (kill_at, *self._restart_at.values()) if when is not None]
                for key, _ in selector.select(max(0.0, min(due) - time.monotonic()) if due else None):
                    if key.fileobj is wake_r:
                        try:
                            while True:
                                received = wake_r.recv(64)
                                if not received:
                                    break
                                self._signals += sum(signum in _STOP_SIGNALS for signum in received)
                        except BlockingIOError:
                            pass
                    else:
                        self._note_serving(os.read(self._ready_r, 64))

    def _give_up(self, why: str) -> None:
        """Stops the service because nothing can serve: the port closes, the supervisor exits 1."""
        logger.error("%s: stopping", why)
        self._unclean = self._giving_up = True

    def _note_ready(self) -> None:
        """Notes what workers have written to the ready pipe and not yet been read (without waiting)."""
        while wait_readable(self._ready_r, 0):
            slots = os.read(self._ready_r, 64)
            if not slots:
                return
            self._note_serving(slots)

    def _note_serving(self, slots: bytes) -> None:
        for worker in self._workers.values():
            if worker.slot in slots:
                worker.serving = self._ever_served = True
                self._start_failures = 0
        if self._ever_served and self._unstarted and not (self._signals or self._giving_up):
            # slots whose worker died before any served (not once stopping: the port is closed)
            for slot in self._unstarted:
                self._restart_at[slot] = time.monotonic()
            self._unstarted.clear()

    def _tell_workers(self, signum: int) -> None:
        for pid in self._workers:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:  # died meanwhile: reaped next
                pass

    def _reap(self) -> None:
        """Collects dead workers and schedules their restarts (or the stop, if none ever served)."""
        while self._workers:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            worker = self._workers.pop(pid, None)
            if worker is None:
                continue
            self._stats.retire(worker.slot)
            self._decoded.retire(worker.slot)
            self._room.retire(worker.slot)
            if self._worker_gone is not None:
                self._worker_gone(pid)
            lived = time.monotonic() - worker.started
            how = (f"exited with code {os.WEXITSTATUS(status)}" if os.WIFEXITED(status)
                   else f"killed by {signal.Signals(os.WTERMSIG(status)).name}")
            if self._signals or self._giving_up:
                clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
                self._unclean = self._unclean or not clean
                (logger.info if clean else logger.warning)("worker %d (pid %d) %s", worker.slot, pid, how)
                continue
            if not worker.serving and not self._ever_served:
                self._note_ready()  # a sibling may have said it serves since the last look
            if not worker.serving and not self._ever_served:
                if self._workers:  # a sibling may still serve: this slot restarts once one does
                    logger.warning("worker %d (pid %d) %s before serving; waiting for the other workers to start",
                                   worker.slot, pid, how)
                    self._unstarted.add(worker.slot)
                    continue
                self._give_up(f"worker {worker.slot} (pid {pid}) {how} before serving, and no worker ever served")
                continue
            if not worker.serving:
                self._start_failures += 1
                if self._start_failures >= MAX_START_FAILURES and not any(w.serving for w in self._workers.values()):
                    self._give_up(f"no worker can serve: {self._start_failures} starts failed in a row (the "
                                  f"workers' errors above say why; the last: worker {worker.slot} {how})")
                    continue
            quick = self._quick_deaths[worker.slot] = self._quick_deaths[worker.slot] + 1 if lived < STABLE else 0
            delay = 0.0 if quick == 0 else min(FIRST_DELAY * 2 ** (quick - 1), MAX_DELAY)
            logger.warning("worker %d (pid %d) %s after %.1fs; restarting it in %.1fs", worker.slot, pid, how,
                           lived, delay)
            self._restart_at[worker.slot] = time.monotonic() + delay

    def _spawn(self, slot: int, sock: socket.socket) -> None:
        # Signals wait until the child has its own handlers (and the parent has recorded the child).
        signal.pthread_sigmask(signal.SIG_BLOCK, _MASKED)
        try:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = self._work(slot, sock, self._ever_served)
                except BaseException:  # os._exit below would drop it unsaid
                    logger.exception("worker %d failed", slot)
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            self._workers[pid] = _Worker(slot, pid, time.monotonic())
            logger.info("worker %d started: pid %d", slot, pid)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _MASKED)

    # -- worker -------------------------------------------------------------------------------

    def _work(self, slot: int, sock: socket.socket, joining: bool) -> int:
        """The worker's life, in the forked child: returns its exit code."""
        global _joining
        _joining = joining
        signal.set_wakeup_fd(-1)
        os.close(self._lifeline_w)
        os.close(self._ready_r)
        server: Optional[HandshakeServer] = None
        early: List[int] = []  # signals before the server exists

        def on_signal(signum: int, _frame: object) -> None:
            if server is None:
                early.append(signum)
            else:
                server.request_stop(0.0 if signum == END_GRACE else None)

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for signum in (signal.SIGTERM, END_GRACE):
            signal.signal(signum, on_signal)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _MASKED)
        try:
            built = self._build()
            built.metrics.share(self._stats, slot)
            limits = built.config.limits
            built.processor.decoded_budget = SharedDecodedBudget(limits.max_decoded_bytes, limits.decoded_host_share,
                                                                 self._decoded, slot)
            if self._reuse_port:
                own = socket.create_server(sock.getsockname()[:2], family=sock.family, backlog=socket.SOMAXCONN,
                                           reuse_port=True)
                sock.close()
                own.setblocking(False)
                sock = own
            built.listen(sock)
            admission = built.admission
            admission.ask_siblings = self._room.join(slot, admission.make_room_for_sibling)
        except Exception as error:
            logger.error("worker %d could not start: %s", slot, error)
            return 1
        server = built
        for signum in early:
            on_signal(signum, None)
        try:
            os.write(self._ready_w, bytes([slot]))
        except BrokenPipeError:  # the supervisor is gone already: the lifeline says so at once
            pass
        threading.Thread(target=self._watch_supervisor, args=(server,), name="lifeline", daemon=True).start()
        server.serve()
        if self._supervisor_gone and self._orphaned is not None:
            self._orphaned()
        return 0

    def _watch_supervisor(self, server: HandshakeServer) -> None:
        os.read(self._lifeline_r, 1)  # returns (empty) only when the supervisor has gone
        logger.warning("the supervisor is gone; stopping")
        self._supervisor_gone = True
        server.request_stop()
