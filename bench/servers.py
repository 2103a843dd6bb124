"""The Python peer servers, each run in its own process by the harness:

    python -m bench.servers b PORT       B: stock TThreadedServer + TBufferedTransport + TBinaryProtocolAccelerated,
                                         the project's generated code, a handler that just returns
    python -m bench.servers tp2 PORT     thriftpy2's threaded server, cybin protocol, the same IDL loaded at run time
    python -m bench.servers grpc PORT    grpcio's sync server, the same message shapes (bench.proto)
    python -m bench.servers grpc-aio PORT  grpcio's asyncio server (grpc.aio), the same messages
    python -m bench.servers tp2-aio PORT   thriftpy2's asyncio server (TAsyncServer, its binary protocol and
                                           buffered transport: its only ones), coroutine methods, on the event
                                           loop ``serve --asyncio`` runs on (uvloop's when installed)

Each prints "listening PORT" once it accepts and runs until SIGTERM.
"""

from __future__ import annotations

import signal
import sys


def _announce(port: int) -> None:
    print(f"listening {port}", flush=True)


class BareHandler:
    """Returns at once; enough of the session methods that any client can call them."""

    def __init__(self, gen):
        self._gen = gen

    def hello(self, hello):
        return self._gen.ServerHello(session_id="bare", version=2)

    def ping(self):
        return None

    def goodbye(self):
        return self._gen.Farewell(session_id="bare")

    def echo(self, message):
        return message

    def echo_types(self, value):
        return value

    def process(self, request):
        return self._gen.Response(request_id=request.request_id)


def serve_b(port: int) -> None:
    from thrift.protocol.TBinaryProtocol import TBinaryProtocolAcceleratedFactory
    from thrift.server.TServer import TThreadedServer
    from thrift.transport import TSocket, TTransport

    from thrift_handshake_gen import HandshakeService, ttypes
    from thrift_handshake_gen.session import ttypes as session_types

    class Gen:
        ServerHello, Farewell, Response = session_types.ServerHello, session_types.Farewell, ttypes.Response

    server = TThreadedServer(HandshakeService.Processor(BareHandler(Gen)),
                             TSocket.TServerSocket(host="127.0.0.1", port=port),
                             TTransport.TBufferedTransportFactory(), TBinaryProtocolAcceleratedFactory(),
                             daemon=True)
    server.serverTransport.listen()
    server.serverTransport.listen = lambda: None  # serve() listens again otherwise
    _announce(port)
    server.serve()


def serve_thriftpy2(port: int) -> None:
    from thriftpy2.protocol import TCyBinaryProtocolFactory
    from thriftpy2.rpc import make_server
    from thriftpy2.transport import TCyBufferedTransportFactory

    from bench.payloads import load_thriftpy2

    module = load_thriftpy2()
    # client_timeout: thriftpy2 closes a connection idle 3 s by default; B and the others keep theirs, and a
    # client process waiting for its "go" on a loaded machine can wait that long
    server = make_server(module.HandshakeService, BareHandler(module), host="127.0.0.1", port=port,
                         proto_factory=TCyBinaryProtocolFactory(), trans_factory=TCyBufferedTransportFactory(),
                         client_timeout=None)
    server.trans.listen()
    server.trans.listen = lambda: None
    server.daemon = True
    _announce(port)
    server.serve()


class AsyncBareHandler:
    """``BareHandler``'s methods as coroutines, for thriftpy2's asyncio server."""

    def __init__(self, gen):
        self._bare = BareHandler(gen)

    async def hello(self, hello):
        return self._bare.hello(hello)

    async def ping(self):
        return None

    async def goodbye(self):
        return self._bare.goodbye()

    async def echo(self, message):
        return message

    async def echo_types(self, value):
        return value

    async def process(self, request):
        return self._bare.process(request)


def serve_thriftpy2_aio(port: int) -> None:
    import asyncio

    from thriftpy2.contrib.aio.rpc import make_server

    from bench.payloads import load_thriftpy2
    from thrift_handshake.aio import event_loop_factory

    module = load_thriftpy2()

    class Gen:
        ServerHello, Farewell, Response = module.session.ServerHello, module.session.Farewell, module.Response

    loop = event_loop_factory()()  # the loop this project's asyncio server runs on: like for like
    asyncio.set_event_loop(loop)
    server = make_server(module.HandshakeService, AsyncBareHandler(Gen), host="127.0.0.1", port=port, loop=loop,
                         client_timeout=None)
    server.init_server()
    for signum in (signal.SIGTERM, signal.SIGINT):  # stopped on the loop, not by sys.exit inside it
        loop.add_signal_handler(signum, loop.stop)
    _announce(port)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(server.close())


def serve_grpc(port: int) -> None:
    from concurrent import futures

    import grpc

    from bench.payloads import load_grpc

    pb, pb_grpc = load_grpc()

    class Servicer(pb_grpc.BenchServicer):
        def Echo(self, request, context):
            return request

        def EchoTypes(self, request, context):
            return request

    # 64 workers: every connection of the largest workload has a call in flight.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    pb_grpc.add_BenchServicer_to_server(Servicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    _announce(port)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop(0)


def serve_grpc_aio(port: int) -> None:
    import asyncio

    import grpc

    from bench.payloads import load_grpc

    pb, pb_grpc = load_grpc()

    class Servicer(pb_grpc.BenchServicer):
        async def Echo(self, request, context):
            return request

        async def EchoTypes(self, request, context):
            return request

    async def main() -> None:
        server = grpc.aio.server()
        pb_grpc.add_BenchServicer_to_server(Servicer(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        stopped = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):  # stopped on the loop, not by sys.exit inside it
            asyncio.get_running_loop().add_signal_handler(signum, stopped.set)
        _announce(port)
        await stopped.wait()
        await server.stop(0)

    asyncio.run(main())


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    {"b": serve_b, "tp2": serve_thriftpy2, "grpc": serve_grpc, "grpc-aio": serve_grpc_aio,
     "tp2-aio": serve_thriftpy2_aio}[kind](port)


if __name__ == "__main__":
    main()
