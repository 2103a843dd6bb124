"""``Supervisor`` as a library runs it (real processes on 127.0.0.1): what the CLI does not reach, such as
``reuse_port=True`` (each worker listens on a socket of its own on the supervisor's port)."""

from __future__ import annotations

from pathlib import Path

from test_workers import serve  # noqa: F401 (serve: the fixture)

_SUPERVISOR = '''import os, signal, sys
from thrift_handshake import HandshakeServer, ServerConfig
from thrift_handshake.demo import demo_server
from thrift_handshake.logs import configure
from thrift_handshake.workers import Supervisor

configure("DEBUG", with_pid=True)
config = ServerConfig(host="127.0.0.1", port=0)
workers = int(sys.argv[sys.argv.index("--workers") + 1])


class Failing(HandshakeServer):
    def serve(self):
        raise RuntimeError("serve broke")


server_class = Failing if "--failing" in sys.argv else HandshakeServer
handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)}
fds = os.listdir("/proc/self/fd")
code = Supervisor(lambda: demo_server(config, server_class=server_class), config, workers,
                  reuse_port="--reuse-port" in sys.argv).run()
left = {"handlers": {signum: signal.getsignal(signum) for signum in handlers} != handlers,
        "wake-up fd": signal.set_wakeup_fd(-1) != -1, "fds": os.listdir("/proc/self/fd") != fds}
print("after the run, changed:", sorted(name for name, changed in left.items() if changed), file=sys.stderr)
sys.exit(code)
'''


def test_workers_on_sockets_of_their_own_each_serve_the_port_and_stop_cleanly(serve, tmp_path):
    """And the supervisor's process is left as it was: signal handlers, wake-up fd, open files."""
    script = _supervisor(tmp_path)
    workers = serve("--workers", "2", "--reuse-port", program=(str(script),))
    workers.wait_for(r"listening on 127\.0\.0\.1:%d with 2 workers \(SO_REUSEPORT\)$" % workers.port)
    for pid, client in workers.clients_on_each_worker().items():
        assert client.echo(f"from {pid}") == f"from {pid}"
    assert workers.stop() == 0
    workers.wait_for(r"worker 0 \(pid \d+\) exited with code 0")
    workers.wait_for(r"worker 1 \(pid \d+\) exited with code 0")
    workers.wait_for(r"after the run, changed: \[\]$")


def test_a_worker_that_fails_unexpectedly_says_why_before_it_exits(serve, tmp_path):
    """An exception out of the worker's server (not a failed start): logged with its traceback, exit code 1."""
    workers = serve("--workers", "1", "--failing", program=(str(_supervisor(tmp_path)),), wait=False)
    pid = int(workers.wait_for(r"worker 0 started: pid (\d+)").group(1))
    workers.wait_for(r"\[%d\]: worker 0 failed$" % pid)
    workers.wait_for(r"^RuntimeError: serve broke$")
    workers.wait_for(r"worker 0 \(pid %d\) exited with code 1 after" % pid)


def _supervisor(path: Path) -> Path:
    script = path / "supervisor.py"
    script.write_text(_SUPERVISOR)
    return script
