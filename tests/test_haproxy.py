"""Three CLI servers behind HAProxy (deploy/haproxy.cfg, as shipped): its protocol-speaking health
check marks a draining server down, and clients that retry idempotent calls lose none of them while a
server drains, is killed, or all three are restarted one after another."""

from __future__ import annotations

import csv
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
from server_process import serve_subprocess

from conftest import eventually, free_port
from thrift_handshake import (
    Client,
    ClientOptions,
    ConnectError,
    ConnectionBroken,
    RetryPolicy,
    ThriftHandshakeError,
)
from thrift_handshake_gen import HandshakeService
from thrift_handshake_gen.ttypes import Request

RECIPE = Path(__file__).resolve().parent.parent / "deploy" / "haproxy.cfg"
#: Servers keep answering Draining this long, well above what the checks below need to mark one down.
DRAIN_NOTICE = "1.5"
RETRY = RetryPolicy(idempotent={"echo"}, attempts=12, backoff=0.05, max_backoff=0.5)


def _port_outside_the_ephemeral_range() -> int:
    """A free loopback port below Linux's ephemeral range (32768 and up), so that no outgoing connection
    takes it while its server restarts."""
    while True:
        port = random.randrange(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class CliServer:
    """``thrift-handshake serve`` in its own process; its log read on a thread (never blocks it)."""

    def __init__(self, port: int = 0) -> None:
        flags = ["--grace", "10", "--drain-notice", DRAIN_NOTICE]
        self.process, self.port = serve_subprocess(*flags, "--port", str(port or _port_outside_the_ephemeral_range()))
        self.log: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.log.append(line)

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._reader.join(5)
        self.process.stderr.close()


class Balancer:
    """HAProxy running deploy/haproxy.cfg, its addresses given through the environment."""

    def __init__(self, tmp_path: Path, servers: List[CliServer]) -> None:
        self.port = free_port()
        self.stats_socket = str(tmp_path / "haproxy.sock")
        env = dict(os.environ, THRIFT_LISTEN=f"127.0.0.1:{self.port}", THRIFT_STATS=self.stats_socket,
                   THRIFT_CHECK_INTER="100ms", THRIFT_CHECK_FALL="2", THRIFT_CHECK_RISE="2",
                   **{f"THRIFT_S{i}": f"127.0.0.1:{server.port}" for i, server in enumerate(servers, 1)})
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.access(haproxy, os.X_OK):
            pytest.fail("haproxy is missing: scripts/test installs it as root (apt-get install haproxy)")
        self.process = subprocess.Popen([haproxy, "-db", "-f", str(RECIPE)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def states(self) -> Dict[str, str]:
        """Each server's state as HAProxy's checks see it (UP, DOWN, "UP 1/2" on the way down...)."""
        try:
            with socket.socket(socket.AF_UNIX) as control:
                control.connect(self.stats_socket)
                control.sendall(b"show stat\n")
                data = b"".join(iter(lambda: control.recv(65536), b""))
        except OSError:  # not listening yet
            return {}
        rows = csv.DictReader(data.decode(errors="replace").lstrip("# ").splitlines())  # last_chk: raw bytes
        return {row["svname"]: row["status"] for row in rows if row["pxname"] == "thrift_servers"
                and row["svname"] not in ("BACKEND", "FRONTEND")}

    def wait_for(self, server: str, status: str, timeout: float = 10.0) -> None:
        assert eventually(lambda: self.states().get(server) == status, timeout), \
            f"HAProxy never saw {server} {status}: {self.states()}"

    def end(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.process.stderr.close()


class Load:
    """Client threads through the balancer: ``echo`` (idempotent, retried) on ``idempotent`` threads,
    ``process`` (not idempotent: never retried) on one more; every failure is kept."""

    def __init__(self, port: int, idempotent: int = 4) -> None:
        self.port = port
        self.echoed = 0
        self.processed = 0
        self.lost_idempotent: List[BaseException] = []
        self.failed_other: List[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._echo, args=(n,)) for n in range(idempotent)]
        self._threads.append(threading.Thread(target=self._process))
        for thread in self._threads:
            thread.start()

    def _client(self) -> Client:
        return Client("127.0.0.1", self.port, ClientOptions(retry=RETRY, client_name="load"),
                      service=HandshakeService)

    def _echo(self, n: int) -> None:
        client = self._client()
        try:
            client.connect()
            count = 0
            while not self._stop.is_set():
                count += 1
                message = f"{n}:{count}"
                try:
                    answer = client.echo(message)
                except ThriftHandshakeError as error:
                    self.lost_idempotent.append(error)
                    continue
                assert answer == message
                with self._lock:
                    self.echoed += 1
        except BaseException as error:  # the test reads it: an untyped failure is a lost call too
            self.lost_idempotent.append(error)
        finally:
            client.close()

    def _process(self) -> None:
        client = self._client()
        while not self._stop.is_set():
            try:
                if client.phase.value != "READY":
                    client.reconnect()
                client.process(Request(request_id="p", work_ms=5))
                self.processed += 1
            except ThriftHandshakeError as error:  # typed: the caller knows what happened
                self.failed_other.append(error)
                self._stop.wait(0.05)
            except BaseException as error:
                self.failed_other.append(error)
                break
        client.close()

    def served_more(self, calls: int, timeout: float = 20.0) -> None:
        """Waits until ``calls`` more echo calls succeeded."""
        target = self.echoed + calls
        assert eventually(lambda: self.echoed >= target, timeout), f"the load stalled at {self.echoed}"

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Tuple[Balancer, List[CliServer]]]:
    servers = [CliServer() for _ in range(3)]
    balancer = Balancer(tmp_path, servers)
    try:
        for name in ("s1", "s2", "s3"):
            balancer.wait_for(name, "UP")
        yield balancer, servers
    finally:
        balancer.end()
        for server in servers:
            server.end()


def test_a_draining_then_a_killed_server_lose_no_idempotent_call(cluster):
    balancer, servers = cluster
    load = Load(balancer.port)
    try:
        load.served_more(100)
        servers[0].process.send_signal(signal.SIGTERM)  # drains: the check fails while it still listens
        balancer.wait_for("s1", "DOWN", timeout=float(DRAIN_NOTICE))
        assert servers[0].process.wait(15) == 0
        assert any("draining:" in line for line in servers[0].log)
        load.served_more(100)
        servers[1].process.kill()  # no drain at all: sessions cut, the port refuses
        balancer.wait_for("s2", "DOWN")
        load.served_more(100)
    finally:
        load.stop()
    assert load.lost_idempotent == []
    assert load.processed > 0
    # The non-idempotent calls that failed did so with a typed error saying what happened.
    assert all(isinstance(error, ThriftHandshakeError) for error in load.failed_other), load.failed_other


def test_a_rolling_restart_under_load_fails_no_idempotent_call(cluster):
    balancer, servers = cluster
    load = Load(balancer.port)
    try:
        load.served_more(50)
        for index, name in enumerate(("s1", "s2", "s3")):
            old = servers[index]
            old.process.send_signal(signal.SIGTERM)
            balancer.wait_for(name, "DOWN", timeout=float(DRAIN_NOTICE))
            assert old.process.wait(15) == 0
            old.end()
            servers[index] = CliServer(port=old.port)  # the same address: HAProxy's checks find it
            balancer.wait_for(name, "UP")
            load.served_more(50)
    finally:
        load.stop()
    assert load.lost_idempotent == []
    # Drained, not killed: a non-idempotent call that failed is known not to have run (the server said so
    # before it closed the session, or no connection was made), so it may be sent again.
    assert all(isinstance(error, ConnectError) or (isinstance(error, ConnectionBroken) and not error.may_have_run)
               for error in load.failed_other), load.failed_other
