"""``serve --workers N`` on real processes: a supervisor and pre-forked workers on one loopback port.

Which worker served a connection is read from the workers' own log lines (each carries its pid):
"handshake ok ... session=ID" (at DEBUG) names the session the client got in hello.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Sequence

import pytest
from conftest import eventually

from thrift_handshake import Client, ClientOptions, HandshakeServer, ServerConfig, ServerFull, Timeouts
from thrift_handshake.workers import Supervisor
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import NotReady, Request

START_TIMEOUT = 30.0
SERVE = ("-m", "thrift_handshake", "serve", "--port", "0", "--log-level", "DEBUG")


class Workers:
    """A ``serve --workers`` process and the lines it logs."""

    def __init__(self, *flags: str, wait: bool = True, program: Sequence[str] = SERVE) -> None:
        """``wait``: until every worker listens (else only until the supervisor does); ``program``: what
        Python runs, before the flags."""
        self.lines: List[str] = []
        self._changed = threading.Condition()
        self.clients: List[Client] = []
        self.process = subprocess.Popen([sys.executable, *program, *flags],
                                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                        start_new_session=True)  # its own process group, as under a shell
        threading.Thread(target=self._read, daemon=True).start()
        self.pids: List[int] = []
        try:
            self.port = int(self.wait_for(r"listening on 127\.0\.0\.1:(\d+) with").group(1))
            if wait:
                workers = int(flags[flags.index("--workers") + 1])
                self.wait_for(r"thrift_handshake\.(server|aio)\[\d+\]: listening on", count=workers)
                self.pids = [int(m.group(1)) for m in self.matches(r"worker \d+ started: pid (\d+)")]
        except BaseException:  # a start that failed leaves nothing running (the fixture never gets it)
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # its group: the supervisor and its workers
            except ProcessLookupError:
                pass
            self.process.wait(10)
            raise

    def _read(self) -> None:
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<EOF>")
            self._changed.notify_all()

    def matches(self, pattern: str) -> List["re.Match[str]"]:
        with self._changed:
            return [m for m in map(re.compile(pattern).search, self.lines) if m]

    def wait_for(self, pattern: str, count: int = 1, timeout: float = START_TIMEOUT) -> "re.Match[str]":
        """The ``count``-th line matching ``pattern``, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m for m in map(re.compile(pattern).search, self.lines) if m]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                assert left > 0 and "<EOF>" not in self.lines, \
                    f"no {count} lines like {pattern!r}; the log:\n" + "\n".join(self.lines[-30:])
                self._changed.wait(left)

    def connect(self, **options) -> Client:
        options.setdefault("timeouts", Timeouts(connect=5, call=10))
        client = Client("127.0.0.1", self.port, ClientOptions(**options), service=HandshakeService)
        self.clients.append(client)
        client.connect()
        return client

    def pid_of(self, client: Client) -> int:
        """The worker that serves ``client``'s connection."""
        return int(self.wait_for(r"\[(\d+)\]: handshake ok .* session=%s" % client.session_id).group(1))

    def clients_on_each_worker(self) -> "dict[int, Client]":
        """Opens connections (kept open) until every worker serves one; one client per worker pid."""
        found: "dict[int, Client]" = {}
        for _ in range(60):
            client = self.connect()
            found.setdefault(self.pid_of(client), client)
            if len(found) == len(self.pids):
                return found
        raise AssertionError(f"60 connections, all served by {sorted(found)}; workers {self.pids}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        for client in self.clients:
            client.close()
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """Never leaves a process behind, whatever the test did."""
        for client in self.clients:
            client.close()
        for pid in self.pids:
            _kill(pid)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


@pytest.fixture
def serve() -> Iterator[Callable[..., Workers]]:
    started: List[Workers] = []

    def start(*flags: str, wait: bool = True, program: Sequence[str] = SERVE) -> Workers:
        workers = Workers(*flags, wait=wait, program=program)
        started.append(workers)
        return workers

    yield start
    for workers in started:
        workers.kill()


def test_both_workers_serve_and_the_supervisor_stops_cleanly(serve):
    workers = serve("--workers", "2")
    assert len(set(workers.pids)) == 2 and workers.process.pid not in workers.pids
    with pytest.raises(OSError) as taken:  # one shared socket: no other one may join the port (SO_REUSEPORT)
        socket.create_server(("127.0.0.1", workers.port), reuse_port=True).close()
    assert taken.value.errno == errno.EADDRINUSE
    for pid, client in workers.clients_on_each_worker().items():
        assert client.echo(f"from {pid}") == f"from {pid}"
    assert workers.stop() == 0
    for pid in workers.pids:
        assert not _alive(pid), f"worker {pid} outlived its supervisor"
    workers.wait_for(r"worker 0 \(pid \d+\) exited with code 0")
    workers.wait_for(r"worker 1 \(pid \d+\) exited with code 0")


def test_a_ticket_from_one_worker_is_answered_by_another(serve):
    workers = serve("--workers", "2")
    first, second = workers.clients_on_each_worker().values()
    ack = first.submit(Request(request_id="across", payload="abc", work_ms=400))
    with pytest.raises(NotReady, match="still running"):
        second.get_result(ack.ticket, 0)
    started = time.monotonic()
    result = second.get_result(ack.ticket, 10_000)  # waits on the other worker's work
    assert result.request_id == "across" and result.processing_us >= 400_000
    assert time.monotonic() - started < 5
    assert first.get_result(ack.ticket, 0).digest == result.digest
    assert workers.stop() == 0


def test_stats_sum_every_worker(serve):
    workers = serve("--workers", "2")
    clients = workers.clients_on_each_worker()
    for count, client in enumerate(clients.values(), start=1):
        for _ in range(count * 3):  # 3 on one worker, 6 on the other
            client.echo("x")
    for client in clients.values():
        stats = client.stats()
        assert stats.calls["echo"] == 9
        assert stats.connections_total == stats.handshakes_ok == len(workers.clients)
        assert stats.sessions_active == len(workers.clients)
    assert workers.stop() == 0


@pytest.mark.parametrize("stop", ["SIGTERM", "Ctrl-C"])
def test_a_stop_drains_every_worker_and_answers_calls_in_flight(serve, stop):
    """SIGTERM to the supervisor, or SIGINT to the whole process group (a terminal's Ctrl-C): one stop."""
    workers = serve("--workers", "2", "--grace", "10")
    answers: "dict[int, object]" = {}

    def work(pid: int, client: Client) -> None:
        try:
            answers[pid] = client.process(Request(request_id=f"r{pid}", payload="abc", work_ms=1500))
        except Exception as error:  # the assertion below names it
            answers[pid] = error

    threads = [threading.Thread(target=work, args=item) for item in workers.clients_on_each_worker().items()]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # both calls in flight
    started = time.monotonic()
    if stop == "SIGTERM":
        workers.process.send_signal(signal.SIGTERM)
    else:
        os.killpg(workers.process.pid, signal.SIGINT)
    for thread in threads:
        thread.join(10)
    assert workers.process.wait(10) == 0
    assert time.monotonic() - started < 5  # within the grace period, not at its end
    assert sorted(answers) == sorted(workers.pids)
    for pid, answer in answers.items():
        assert getattr(answer, "request_id", answer) == f"r{pid}"
    assert not any(map(_alive, workers.pids))


def test_a_second_signal_ends_the_grace_period(serve):
    workers = serve("--workers", "2", "--grace", "30")
    client = workers.connect()
    outcome: List[object] = []
    thread = threading.Thread(target=lambda: outcome.append(_try(client.process, Request(request_id="long",
                                                                                        work_ms=10_000))))
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    workers.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    workers.process.send_signal(signal.SIGINT)
    assert workers.process.wait(10) == 0  # the workers ended by themselves, not killed after the grace period
    thread.join(10)
    assert time.monotonic() - started < 5, "the grace period did not end at the second signal"
    assert isinstance(outcome[0], Exception), f"the 10 s call was not aborted: {outcome}"
    assert not any(map(_alive, workers.pids))


def _try(call, *args):
    try:
        return call(*args)
    except Exception as error:
        return error


def test_a_killed_worker_is_restarted_and_the_service_keeps_answering(serve):
    workers = serve("--workers", "2")
    workers.clients_on_each_worker()  # each has served: a kill before its "serving" note is not restarted so
    victim = workers.pids[0]
    os.kill(victim, signal.SIGKILL)
    restarted = workers.wait_for(r"worker (\d) \(pid %d\) killed by SIGKILL .*restarting" % victim)
    slot = restarted.group(1)
    new_pid = int(workers.wait_for(r"worker %s started: pid (\d+)" % slot, count=2).group(1))
    assert new_pid != victim and _alive(new_pid)
    workers.pids.append(new_pid)
    workers.pids.remove(victim)
    workers.wait_for(r"\[%d\]: listening on" % new_pid)
    for pid, client in workers.clients_on_each_worker().items():  # the new worker serves too
        assert client.echo("still here") == "still here"
    assert workers.stop() == 0
    assert not any(map(_alive, workers.pids))


def test_a_worker_that_cannot_start_stops_the_supervisor(serve, tmp_path):
    (tmp_path / "broken_service.py").write_text("class Handler:\n    def __init__(self):\n"
                                               "        raise RuntimeError('no database')\n")
    process = subprocess.run([sys.executable, "-m", "thrift_handshake", "serve", "--port", "0", "--workers", "2",
                              "--service", "broken_service:Handler", "--path", str(tmp_path)],
                             stderr=subprocess.PIPE, text=True, timeout=30)
    assert process.returncode == 1
    assert "could not start: no database" in process.stderr
    assert re.search(r"worker \d \(pid \d+\) exited with code 1 before serving", process.stderr), process.stderr
    assert "restarting" not in process.stderr


def flaky_service(path: Path) -> Path:
    """Writes ``flaky_service:Handler`` (the demo service) into ``path``; its workers fail to start
    while the returned file exists."""
    flag = path / "crash"
    (path / "flaky_service.py").write_text(
        "import os\nfrom thrift_handshake.demo import HandshakeHandler\n"
        "class Handler(HandshakeHandler):\n    def __init__(self):\n"
        f"        if os.path.exists({str(flag)!r}):\n            raise RuntimeError('crashing')\n"
        "        super().__init__()\n")
    return flag


def test_a_crash_loop_is_restarted_ever_more_slowly(serve, tmp_path):
    """Once a worker has served, its crashes are restarted, with a delay that doubles per quick death."""
    flag = flaky_service(tmp_path)
    workers = serve("--workers", "2", "--service", "flaky_service:Handler", "--path", str(tmp_path))
    workers.clients_on_each_worker()  # each has served (see test_a_killed_worker_is_restarted_...)
    flag.touch()
    os.kill(workers.pids[0], signal.SIGKILL)
    delays = [float(workers.wait_for(r"worker 0 .* restarting it in ([\d.]+)s", count=n, timeout=10).group(1))
              for n in (1, 2, 3)]
    assert delays == [0.5, 1.0, 2.0]
    assert workers.connect().echo("the other worker") == "the other worker"
    assert workers.stop() == 0


def test_max_connections_holds_for_all_workers_together(serve):
    # Each worker used to count only its own connections: 2 workers admitted up to twice the limit.
    workers = serve("--workers", "2", "--max-connections", "3")
    admitted, refused = [], []
    for _ in range(6):
        try:
            admitted.append(workers.connect())
        except ServerFull as error:
            refused.append(str(error))
    assert len(admitted) == 3 and len(refused) == 3, (len(admitted), refused)
    assert all("server full: 3 connections" in message for message in refused)
    admitted[0].close()  # room again, whichever worker takes the next one
    workers.wait_for(r"closed peer=.* calls=0")
    assert eventually(lambda: _admits(workers))
    assert workers.stop() == 0


def _admits(workers: Workers) -> bool:
    try:
        workers.connect()
        return True
    except ServerFull:
        return False


def test_workers_stop_when_their_supervisor_is_killed(serve):
    workers = serve("--workers", "2", "--grace", "1")
    store = workers.wait_for(r"tickets shared by the workers in (\S+)").group(1)
    assert os.path.exists(store)
    workers.process.kill()
    workers.process.wait(10)
    deadline = time.monotonic() + 10
    while any(map(_alive, workers.pids)):
        assert time.monotonic() < deadline, "workers outlived their supervisor"
        time.sleep(0.05)
    assert not os.path.exists(os.path.dirname(store)), "the temporary ticket store outlived the service"


def test_a_worker_that_stops_first_leaves_the_shared_ticket_store_to_its_siblings(serve):
    """Only an orphaned worker removes what the supervisor would (the store): not one that was told to stop."""
    workers = serve("--workers", "2", "--grace", "20")
    store = workers.wait_for(r"tickets shared by the workers in (\S+)").group(1)
    (busy_pid, busy), (idle_pid, _) = workers.clients_on_each_worker().items()
    busy.submit(Request(request_id="draining", payload="abc", work_ms=4000))  # the stop waits for it
    workers.process.send_signal(signal.SIGTERM)
    workers.wait_for(r"worker \d \(pid %d\) exited with code 0" % idle_pid)
    assert os.path.exists(store), "the first worker to stop removed the store its sibling still uses"
    assert _alive(busy_pid)  # (the sibling was still draining when the store was looked at)
    assert workers.process.wait(20) == 0


def test_workers_whose_supervisor_dies_before_they_serve_stop_by_themselves(serve, tmp_path):
    """Killed before the workers wrote their "serving" notes (which nobody reads any more): they still
    notice, say so, and stop as when the supervisor goes later (they used to exit 1 silently, without
    the orphan's clean-up)."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    (tmp_path / "gated_service.py").write_text(
        "import os\nfrom thrift_handshake.demo import HandshakeHandler\n"
        "class Handler(HandshakeHandler):\n    def __init__(self):\n"
        f"        with open({str(gate)!r}) as gate:  # opened before saying so: the test holds a writer\n"
        "            os.write(2, b'at the gate\\n')  # one write: lines do not mix\n"
        "            gate.read()  # EOF once the test closes its end\n"
        "        super().__init__()\n")
    held = os.open(gate, os.O_RDWR)  # a writer: the workers' opens do not block, their reads do
    try:
        workers = serve("--workers", "2", "--service", "gated_service:Handler", "--path", str(tmp_path),
                        wait=False)
        workers.wait_for("at the gate", count=2)
        workers.pids.extend(int(m.group(1)) for m in workers.matches(r"worker \d started: pid (\d+)"))
        workers.process.kill()
        workers.process.wait(10)
    finally:
        os.close(held)
    for pid in workers.pids:
        workers.wait_for(r"\[%d\]: the supervisor is gone; stopping" % pid, timeout=10)
    assert eventually(lambda: not any(map(_alive, workers.pids)), timeout=10), "workers outlived their supervisor"


@pytest.mark.parametrize("value", ["0", "-1", "two", "257"])
def test_workers_must_be_a_positive_number_or_auto(value):
    process = subprocess.run([sys.executable, "-m", "thrift_handshake", "serve", "--workers", value],
                             stderr=subprocess.PIPE, text=True, timeout=30)
    assert process.returncode == 2 and "--workers" in process.stderr


def test_a_supervisor_takes_one_worker_or_more_on_a_tcp_port(tmp_path):
    """What the CLI never asks for (it runs one worker in its own process) is still a valid supervisor."""
    build = HandshakeServer  # never called: the supervisor is made, not run
    Supervisor(build, ServerConfig(port=0), workers=1)
    with pytest.raises(ValueError, match="workers must be at least 1, not 0"):
        Supervisor(build, ServerConfig(port=0), workers=0)
    with pytest.raises(ValueError, match="a unix_socket is served by one HandshakeServer"):
        Supervisor(build, ServerConfig(unix_socket=str(tmp_path / "socket")), workers=2)


def test_workers_auto_counts_the_cores_this_process_may_run_on():
    """Pinned to one core, ``--workers auto`` serves from one process (not one worker per core of the
    machine, nor per core another process may use)."""
    core = min(os.sched_getaffinity(0))
    process = subprocess.Popen([sys.executable, "-m", "thrift_handshake", "serve", "--port", "0", "--workers", "auto"],
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                               preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    try:
        lines = []
        while not lines or "listening on" not in lines[-1]:
            lines.append(process.stderr.readline())
            assert lines[-1], lines
        assert " thrift_handshake.server: listening on " in lines[-1], lines  # no supervisor, no worker
    finally:
        process.kill()
        process.wait(10)


def test_workers_opening_a_fresh_ledger_at_the_same_moment_all_start(tmp_path):
    # Two processes making a new SQLite file WAL and creating its table at once: one of them used to get
    # "database is locked" at once (SQLite does not wait on a lock upgrade that could deadlock), and a
    # worker that fails before any served stops the whole supervisor.
    from thrift_handshake.demo.ledger import TicketLedger

    for attempt in range(20):
        path = str(tmp_path / f"tickets-{attempt}.sqlite")
        go_r, go_w = os.pipe()
        children = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:  # the child: wait for the common start, open, report by exit code
                code = 1
                try:
                    os.close(go_w)
                    os.read(go_r, 1)
                    TicketLedger(path, ttl=60.0)
                    code = 0
                finally:
                    os._exit(code)
            children.append(pid)
        os.close(go_r)
        os.close(go_w)  # EOF: every child starts now
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
        assert codes == [0] * 4, f"attempt {attempt}: a ledger failed to open alongside the others"


def test_a_worker_killed_after_running_long_is_restarted_at_once(serve):
    from thrift_handshake.workers import STABLE

    workers = serve("--workers", "2")
    victim = workers.pids[0]
    workers.wait_for(r"\[%d\]: listening on" % victim)
    time.sleep(STABLE + 0.5)  # pacing: the worker has now run long enough to count as stable
    os.kill(victim, signal.SIGKILL)
    slot = workers.wait_for(r"worker (\d) \(pid %d\) killed by SIGKILL after [\d.]+s; restarting it in 0\.0s"
                            % victim).group(1)
    workers.wait_for(r"worker %s started: pid" % slot, count=2)
    assert workers.stop() == 0
