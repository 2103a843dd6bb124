"""A Python client process of the benchmark (``python -m bench.pyclient``), kept for the whole run so that process
start-up stays out of every measurement. It reads one JSON command per line on stdin and answers on stdout:

    {"system": "b"|"p"|"tp2"|"grpc", "port": N, "op": "echo"|"types"|"lifecycle", "threads": K, "seconds": S}
        opens K connections (none for the lifecycle), answers {"ready": true}
    go      runs the op on every connection (a thread each) for S seconds, answers
            {"calls": N, "errors": N, "lat": [microseconds per call, ...]}
    close   closes the connections (the project's client says goodbye), answers {"closed": true}

The project's client pipelines hello with the first call and does not await the Farewell (see ``_project``).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Callable, List, Tuple

from bench.payloads import TEXT

HOST = "127.0.0.1"


def _bare_thrift(port: int):
    from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
    from thrift.transport import TSocket, TTransport

    from thrift_handshake_gen import HandshakeService

    transport = TTransport.TBufferedTransport(TSocket.TSocket(HOST, port))
    stub = HandshakeService.Client(TBinaryProtocolAccelerated(transport))
    transport.open()
    return stub, transport.close


def _project(port: int):
    from thrift_handshake import Client, ClientOptions
    from thrift_handshake_gen import HandshakeService

    # Hello goes out with the first call and goodbye without awaiting the Farewell: the lifecycle waits
    # for one round trip, as B's does (the Farewell's counts are not used here).
    options = ClientOptions(pipeline_hello=True, await_farewell=False)
    client = Client(HOST, port, options, service=HandshakeService)
    client.connect()
    return client, client.close


def _thriftpy2(port: int, module):
    from thriftpy2.protocol import TCyBinaryProtocolFactory
    from thriftpy2.rpc import make_client
    from thriftpy2.transport import TCyBufferedTransportFactory

    client = make_client(module.HandshakeService, HOST, port, proto_factory=TCyBinaryProtocolFactory(),
                         trans_factory=TCyBufferedTransportFactory(), timeout=None)
    return client, client.close


def _grpc(port: int, pb_grpc):
    import grpc

    # A channel of its own per connection: by default channels to one target share one TCP connection.
    channel = grpc.insecure_channel(f"{HOST}:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
    return pb_grpc.BenchStub(channel), channel.close


def connector(system: str) -> Tuple[Callable[[int], Tuple[object, Callable[[], None]]], Callable, Callable]:
    """(open(port) -> (stub, close), echo(stub), types(stub)) for one system."""
    if system in ("b", "p"):
        from bench.payloads import thrift_all_types
        value = thrift_all_types()
        return (_bare_thrift if system == "b" else _project), (lambda s: s.echo(TEXT)), (lambda s: s.echo_types(value))
    if system == "tp2":
        from bench.payloads import load_thriftpy2, thriftpy2_all_types
        module = load_thriftpy2()
        value = thriftpy2_all_types(module)
        return (lambda port: _thriftpy2(port, module)), (lambda s: s.echo(TEXT)), (lambda s: s.echo_types(value))
    if system == "grpc":
        from bench.payloads import grpc_all_types, load_grpc
        pb, pb_grpc = load_grpc()
        text, value = pb.Text(message=TEXT), grpc_all_types(pb)
        return (lambda port: _grpc(port, pb_grpc)), (lambda s: s.Echo(text)), (lambda s: s.EchoTypes(value))
    raise ValueError(f"unknown system {system!r}")


class Job:
    def __init__(self, command: dict) -> None:
        self.open, echo, types = connector(command["system"])
        self.port, self.op, self.seconds = command["port"], command["op"], command["seconds"]
        self.threads = command["threads"]
        self.conns: List[Tuple[object, Callable[[], None]]] = []
        if self.op == "lifecycle":
            def lifecycle(_stub, port=self.port):
                stub, close = self.open(port)
                echo(stub)
                close()
            self.call = lifecycle
        else:
            self.conns = [self.open(self.port) for _ in range(self.threads)]
            self.call = echo if self.op == "echo" else types
            for stub, _ in self.conns:  # one warm-up call each
                self.call(stub)
        self.latencies: List[List[float]] = [[] for _ in range(self.threads)]
        self.errors = [0] * self.threads

    def _loop(self, index: int, deadline: float) -> None:
        stub = self.conns[index][0] if self.conns else None
        call, out, clock = self.call, self.latencies[index], time.perf_counter
        while True:
            started = clock()
            if started >= deadline:
                return
            try:
                call(stub)
            except Exception as error:  # counted and reported; a broken connection ends this thread's run
                if self.errors[index] == 0:
                    print(f"bench.pyclient: {type(error).__name__}: {error}", file=sys.stderr)
                self.errors[index] += 1
                if stub is not None:
                    return
                continue
            out.append(clock() - started)

    def run(self) -> dict:
        deadline = time.perf_counter() + self.seconds
        if self.threads == 1:
            self._loop(0, deadline)
        else:
            threads = [threading.Thread(target=self._loop, args=(i, deadline)) for i in range(self.threads)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        latencies = [round(x * 1e6, 1) for per_thread in self.latencies for x in per_thread]
        return {"calls": len(latencies), "errors": sum(self.errors), "lat": latencies}

    def close(self) -> None:
        for _, close in self.conns:
            try:
                close()
            except Exception:
                pass
        self.conns = []


def main() -> None:
    job = None
    for line in sys.stdin:
        line = line.strip()
        try:
            if line == "go":
                answer = job.run()
            elif line == "close":
                if job is not None:
                    job.close()
                job, answer = None, {"closed": True}
            elif line == "exit":
                return
            else:
                job = Job(json.loads(line))
                answer = {"ready": True}
        except Exception as error:
            answer = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
