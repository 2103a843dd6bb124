"""``Supervisor(reuse_port=True)`` (no CLI flag: the library's): each worker listens on a socket of its own
on the supervisor's port (real processes on 127.0.0.1)."""

from __future__ import annotations

from test_workers import serve  # noqa: F401 (serve: the fixture)

_SUPERVISOR = '''import sys
from thrift_handshake import ServerConfig
from thrift_handshake.demo import demo_server
from thrift_handshake.logs import configure
from thrift_handshake.workers import Supervisor

configure("DEBUG", with_pid=True)
config = ServerConfig(host="127.0.0.1", port=0)
workers = int(sys.argv[sys.argv.index("--workers") + 1])
sys.exit(Supervisor(lambda: demo_server(config), config, workers, reuse_port=True).run())
'''


def test_workers_on_sockets_of_their_own_each_serve_the_port_and_stop_cleanly(serve, tmp_path):
    script = tmp_path / "reuse_port_supervisor.py"
    script.write_text(_SUPERVISOR)
    workers = serve("--workers", "2", program=(str(script),))
    workers.wait_for(r"listening on 127\.0\.0\.1:%d with 2 workers \(SO_REUSEPORT\)$" % workers.port)
    for pid, client in workers.clients_on_each_worker().items():
        assert client.echo(f"from {pid}") == f"from {pid}"
    assert workers.stop() == 0
    workers.wait_for(r"worker 0 \(pid \d+\) exited with code 0")
    workers.wait_for(r"worker 1 \(pid \d+\) exited with code 0")
