"""``serve --workers``: which dead workers are restarted, and for how long (real processes on 127.0.0.1)."""

from __future__ import annotations

import datetime
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, List

from conftest import eventually, free_port
from test_workers import _kill, flaky_service, serve  # noqa: F401 (serve: the fixture)

from thrift_handshake import Client, ClientOptions, Timeouts
from thrift_handshake_gen import HandshakeService


def test_every_worker_killed_at_once_is_restarted(serve):
    workers = serve("--workers", "2")
    workers.clients_on_each_worker()  # each serves, so the supervisor has its "serving" note
    for pid in workers.pids:
        _kill(pid)
    restarted = [int(workers.wait_for(r"worker \d+ started: pid (\d+)", count=n).group(1)) for n in (3, 4)]
    assert not set(restarted) & set(workers.pids)
    assert workers.process.poll() is None
    assert workers.connect().echo("after all died") == "after all died"
    assert workers.stop() == 0


def test_a_worker_failing_to_start_beside_one_that_serves_is_restarted_for_as_long_as_the_other_serves(
        serve, tmp_path):
    """Three failed starts in a row stop the service only when no worker serves."""
    flag = flaky_service(tmp_path)
    workers = serve("--workers", "2", "--service", "flaky_service:Handler", "--path", str(tmp_path))
    workers.clients_on_each_worker()  # each serves, so the supervisor has its "serving" note
    flag.touch()
    os.kill(workers.pids[0], signal.SIGKILL)
    # the kill, then three failed starts: each restarted
    delays = [float(workers.wait_for(r"worker 0 .* restarting it in ([\d.]+)s", count=n, timeout=15).group(1))
              for n in (1, 2, 3, 4)]
    assert delays == [0.5, 1.0, 2.0, 4.0]
    for n, delay in enumerate(delays[:3], start=1):  # each start comes its delay after the death, not sooner
        died = _logged_at(workers.wait_for(r"worker 0 .* restarting it in", count=n).string)
        started = _logged_at(workers.wait_for(r"worker 0 started: pid", count=n + 1).string)
        assert started - died >= delay - 0.002, (n, started - died)
    assert not workers.matches("no worker can serve")
    assert workers.connect().echo("the other worker") == "the other worker"
    assert workers.stop() == 0


def _logged_at(line: str) -> float:
    """When the line was logged (its timestamp, to the millisecond), in seconds."""
    return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_a_service_whose_workers_can_no_longer_start_gives_up_after_three_failed_starts(serve, tmp_path):
    flag = flaky_service(tmp_path)
    workers = serve("--workers", "2", "--service", "flaky_service:Handler", "--path", str(tmp_path))
    workers.clients_on_each_worker()  # each serves, so the supervisor has its "serving" note
    flag.touch()
    for pid in workers.pids:
        _kill(pid)
    assert workers.process.wait(30) == 1
    gave_up = workers.wait_for(r"no worker can serve: 3 starts failed in a row").string
    before = workers.lines[:workers.lines.index(gave_up)]
    restarted = [line for line in before if re.search(r"exited with code 1 after [\d.]+s; restarting", line)]
    assert len(restarted) == 2, before[-12:]  # the first two failed starts; the third stops the service


_GATED = '''import os
from thrift_handshake.demo import HandshakeHandler
HERE = os.path.dirname(os.path.abspath(__file__))
class Handler(HandshakeHandler):
    def __init__(self):
        for role in ("dies-first", "serves", "dies-next"):  # the first three workers take one each
            try:
                os.close(os.open(os.path.join(HERE, "took-" + role), os.O_CREAT | os.O_EXCL))
                break
            except FileExistsError:
                continue
        else:
            role = "serves-later"
        if role != "serves-later":
            with open(os.path.join(HERE, role)) as gate:  # opened before saying so: the test holds a writer
                os.write(2, f"at the gate {role} {os.getpid()}\\n".encode())  # one write: lines do not mix
                gate.read()  # EOF once the test closes its end
        if role.startswith("dies"):
            os._exit(1)
        super().__init__()
'''


def _gated_service(path: Path) -> Dict[str, int]:
    """Writes ``gated_service:Handler`` into ``path``: its first three workers wait at a gate each (a FIFO
    in ``path``, held open by the test: closing it opens the gate), then die or serve as their role says.
    Returns the test's ends of the gates, by role."""
    (path / "gated_service.py").write_text(_GATED)
    held = {}
    for role in ("dies-first", "serves", "dies-next"):
        os.mkfifo(path / role)
        held[role] = os.open(path / role, os.O_RDWR)  # a writer: the workers block in read, not open
    return held


def _blocked_writing_to_a_pipe(pid: int) -> bool:
    with open(f"/proc/{pid}/wchan") as wchan:
        return "pipe_write" in wchan.read()  # (anon_)pipe_write: where the kernel holds the process


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0] == "Z"  # dead, not yet reaped by the supervisor


def test_a_worker_dying_before_serving_after_a_sibling_said_it_serves_is_restarted_as_a_failed_start(tmp_path):
    """The supervisor reaps a worker that died before serving while a sibling's "serving" note waits
    unread in the pipe: it reads the note first, so the death is a failed start, restarted after its
    delay (not one waiting for a sibling to serve). The race is ordered by holding the supervisor in a
    log write (its stderr pipe full) while the sibling writes its note and the worker dies."""
    held = _gated_service(tmp_path)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "thrift_handshake", "serve", "--port", str(port), "--workers",
                                "3", "--log-level", "WARNING", "--service", "gated_service:Handler",
                                "--path", str(tmp_path)], stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    lines: List[bytes] = []
    try:
        pids = {}
        while len(pids) < 3:
            line = process.stderr.readline()
            assert line, b"".join(lines)
            lines.append(line)
            gate = re.search(rb"at the gate (\S+) (\d+)", line)
            if gate:
                pids[gate.group(1).decode()] = int(gate.group(2))
        with open(f"/proc/{process.pid}/fd/2", "wb", buffering=0) as pipe:  # the supervisor's stderr: filled
            os.set_blocking(pipe.fileno(), False)
            for size in (4096, 1):
                while pipe.write(b"x" * size):
                    pass
        os.close(held.pop("dies-first"))
        assert eventually(lambda: _blocked_writing_to_a_pipe(process.pid), timeout=10), "the death was not logged"
        os.close(held.pop("serves"))
        client = Client("127.0.0.1", port, ClientOptions(timeouts=Timeouts(connect=5, call=10)),
                        service=HandshakeService)
        client.connect()  # answered: that worker wrote its "serving" note before it served
        client.close()
        os.close(held.pop("dies-next"))
        assert eventually(lambda: _zombie(pids["dies-next"]), timeout=10)
        reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
        reader.start()
        died = rb"\(pid %d\) exited with code 1 " % pids["dies-next"]
        assert eventually(lambda: any(re.search(died, line) for line in lines), timeout=10)
        assert any(re.search(died + rb"after [\d.]+s; restarting it in 0\.5s", line) for line in lines), lines[-3:]
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        for fd in held.values():
            os.close(fd)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_a_worker_dead_before_any_served_is_not_restarted_once_stopping(serve, tmp_path):
    """It waits for a sibling to serve; when the sibling says so only after a stop signal, the port is
    closed already: the dead worker's slot stays empty and the stop is clean."""
    held = _gated_service(tmp_path)
    try:
        workers = serve("--workers", "2", "--service", "gated_service:Handler", "--path", str(tmp_path), wait=False)
        workers.wait_for("at the gate", count=2)
        os.close(held.pop("dies-first"))
        workers.wait_for(r"exited with code 1 before serving; waiting for the other workers to start")
        workers.process.send_signal(signal.SIGTERM)
        workers.wait_for("stopping 1 workers")
        os.close(held.pop("serves"))  # it serves, says so, and stops (it was told before it served)
        assert workers.process.wait(20) == 0
        assert len(workers.matches(r"worker \d started: pid")) == 2, workers.lines
    finally:
        for fd in held.values():
            os.close(fd)


def test_a_worker_dead_before_any_served_is_restarted_once_a_sibling_serves(serve, tmp_path):
    held = _gated_service(tmp_path)
    (tmp_path / "took-dies-next").touch()  # two roles only: the restarted worker serves at once
    try:
        workers = serve("--workers", "2", "--service", "gated_service:Handler", "--path", str(tmp_path), wait=False)
        workers.wait_for("at the gate", count=2)
        os.close(held.pop("dies-first"))
        slot = workers.wait_for(r"worker (\d) \(pid \d+\) exited with code 1 before serving; waiting for the other "
                                r"workers to start").group(1)
        os.close(held.pop("serves"))
        workers.wait_for(r"worker %s started: pid" % slot, count=2)
        assert workers.connect().echo("after the restart") == "after the restart"
        assert workers.stop() == 0
    finally:
        for fd in held.values():
            os.close(fd)


def test_a_worker_failing_while_the_service_stops_makes_the_stop_unclean(serve, tmp_path):
    """Told to stop while it was still starting, it then fails (exit code 1): the supervisor exits 1."""
    held = _gated_service(tmp_path)
    try:
        workers = serve("--workers", "2", "--service", "gated_service:Handler", "--path", str(tmp_path), wait=False)
        workers.wait_for("at the gate", count=2)
        dying = int(workers.wait_for(r"at the gate dies-first (\d+)").group(1))
        workers.process.send_signal(signal.SIGTERM)
        workers.wait_for("stopping 2 workers")
        os.close(held.pop("dies-first"))
        workers.wait_for(r" WARNING thrift_handshake\.workers\[\d+\]: worker \d \(pid %d\) exited with code 1$" % dying)
        os.close(held.pop("serves"))
        assert workers.process.wait(20) == 1
    finally:
        for fd in held.values():
            os.close(fd)
