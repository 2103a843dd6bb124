"""``Supervisor(reuse_port=True)`` (no CLI flag: the library's): each worker listens on a socket of its own
on the supervisor's port (real processes on 127.0.0.1)."""

from __future__ import annotations

from test_workers import serve  # noqa: F401 (serve: the fixture)

_SUPERVISOR = '''import os, signal, sys
from thrift_handshake import ServerConfig
from thrift_handshake.demo import demo_server
from thrift_handshake.logs import configure
from thrift_handshake.workers import Supervisor

configure("DEBUG", with_pid=True)
config = ServerConfig(host="127.0.0.1", port=0)
workers = int(sys.argv[sys.argv.index("--workers") + 1])
handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)}
fds = os.listdir("/proc/self/fd")
code = Supervisor(lambda: demo_server(config), config, workers, reuse_port=True).run()
left = {"handlers": {signum: signal.getsignal(signum) for signum in handlers} != handlers,
        "wake-up fd": signal.set_wakeup_fd(-1) != -1, "fds": os.listdir("/proc/self/fd") != fds}
print("after the run, changed:", sorted(name for name, changed in left.items() if changed), file=sys.stderr)
sys.exit(code)
'''


def test_workers_on_sockets_of_their_own_each_serve_the_port_and_stop_cleanly(serve, tmp_path):
    """And the supervisor's process is left as it was: signal handlers, wake-up fd, open files."""
    script = tmp_path / "reuse_port_supervisor.py"
    script.write_text(_SUPERVISOR)
    workers = serve("--workers", "2", program=(str(script),))
    workers.wait_for(r"listening on 127\.0\.0\.1:%d with 2 workers \(SO_REUSEPORT\)$" % workers.port)
    for pid, client in workers.clients_on_each_worker().items():
        assert client.echo(f"from {pid}") == f"from {pid}"
    assert workers.stop() == 0
    workers.wait_for(r"worker 0 \(pid \d+\) exited with code 0")
    workers.wait_for(r"worker 1 \(pid \d+\) exited with code 0")
    workers.wait_for(r"after the run, changed: \[\]$")
