"""Where the threaded server's CPU per call and per lifecycle goes beyond bare Apache Thrift's (B), by
component, in-process: each layer of this server's path added in turn to B's, timed over many messages
(``time.process_time``), the variants alternating round by round; medians of the rounds.

Per 32-byte echo, read from memory (no sockets, the handler the same everywhere: the demo's):

- ``thrift``: B's stack: Thrift's accelerated binary protocol, TBufferedTransport, the generated processor;
- ``+ strict decoding``: this server's protocol (method name decoded last, strings read as bytes and
  decoded as strict UTF-8 per field, container elements typed);
- ``+ server transport``: its buffered transport (a large request priced before it is decoded) and the
  check for pipelined bytes after each message (``keep_unread_input``);
- ``+ gate and session``: ``SessionProcessor.process`` as served (session established; the call checked
  against the session, counted, the session bound to the thread around it, the decoded-size budget armed);
- ``+ a user interceptor``: the whole interceptor chain run (not the default: without user interceptors a
  call nothing observes is served quietly).

Per echo over a connected socket pair, one thread writing the request and reading the reply (so the
kernel's part, a loopback send and receive, is in both): B's TSocket against this server's
``ConnectionSocket`` (per-message deadline and byte budget, kernel timeouts) under the whole stack above.

Per lifecycle, in memory: the connection's state and session made and closed (``connection``,
``close``), hello, goodbye, and the one INFO line logged to a file as ``serve`` configures logging.

    .venv/bin/python -m bench.breakdown [--rounds 9] [--calls 20000] [--lifecycles 3000]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, List

from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TBufferedTransport, TMemoryBuffer

from bench.call_count import _messages
from thrift_handshake import ServerConfig, logs
from thrift_handshake.demo import demo_server
from thrift_handshake.demo.handler import HandshakeHandler
from thrift_handshake.gate_state import SessionClosed
from thrift_handshake.interceptors import Interceptor
from thrift_handshake.wire.connection_socket import ConnectionSocket
from thrift_handshake.wire.stack import BufferedTransport
from thrift_handshake_gen import HandshakeService

Measure = Callable[[int], float]  # n -> CPU seconds for n messages (or lifecycles)


class _Interceptor(Interceptor):
    """A user interceptor that looks at each call's start and end and does nothing: the chain runs whole."""

    def call_started(self, call: Any) -> None:
        pass

    def call_ended(self, call: Any) -> None:
        pass


def _server(interceptors=()):
    server = demo_server(ServerConfig(port=0, host="127.0.0.1", interceptors=tuple(interceptors)))
    return server, server.processor, server.inputProtocolFactory


def _established(processor, factory, transport, say_hello: Callable[[], None], answered: bool = False):
    """A protocol on ``transport`` whose connection said hello through the gate (``say_hello`` puts the
    hello message where the transport reads next; with ``answered`` the answer goes to ``transport``)."""
    protocol = factory.getProtocol(transport)
    state = processor.connection(protocol, "127.0.0.1:1")
    say_hello()
    processor.process(protocol, protocol if answered else _sink(factory))
    transport.keep_unread_input()
    assert state.session.established
    return protocol, state


def _sink(factory):
    return factory.getProtocol(BufferedTransport(TMemoryBuffer()))


def _in_memory(kind: str, hello: bytes, echo: bytes) -> Measure:
    def run(n: int) -> float:
        data = echo * n
        bare = HandshakeService.Processor(HandshakeHandler())
        if kind == "thrift":  # B's stack
            iprot = TBinaryProtocolAccelerated(TBufferedTransport(TMemoryBuffer(data)))
            oprot = TBinaryProtocolAccelerated(TBufferedTransport(TMemoryBuffer()))
            step = lambda: bare.process(iprot, oprot)  # noqa: E731
        else:
            _, processor, factory = _server([_Interceptor()] if kind == "chain" else [])
            if kind == "strict":  # this server's protocol on Thrift's transport
                iprot = factory.getProtocol(TBufferedTransport(TMemoryBuffer(data)))
                oprot = factory.getProtocol(TBufferedTransport(TMemoryBuffer()))
                step = lambda: bare.process(iprot, oprot)  # noqa: E731
            else:
                transport = BufferedTransport(TMemoryBuffer((b"" if kind == "transport" else hello) + data))
                oprot = _sink(factory)
                if kind == "transport":  # ... and on this server's transport
                    iprot = factory.getProtocol(transport)
                    served = bare
                else:  # ... through the gate, the session established
                    iprot, _ = _established(processor, factory, transport, lambda: None)
                    served = processor

                def step() -> None:
                    served.process(iprot, oprot)
                    transport.keep_unread_input()
        started = time.process_time()
        for _ in range(n):
            step()
        return time.process_time() - started
    return run


def _over_sockets(kind: str, hello: bytes, echo: bytes) -> Measure:
    def run(n: int) -> float:
        client, served = socket.socketpair()
        try:
            for end in (client, served):
                end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            reply_size = 0
            if kind == "thrift":
                sock = TSocket()
                sock.setHandle(served)
                transport = TBufferedTransport(sock)
                iprot = TBinaryProtocolAccelerated(transport)
                processor = HandshakeService.Processor(HandshakeHandler())
                serve = lambda: processor.process(iprot, iprot)  # noqa: E731
            else:
                server, processor, factory = _server()
                sock = ConnectionSocket()
                sock.setHandle(served)
                limits = server.config.limits
                sock.start_session(limits, 0.005)
                transport = server.inputTransportFactory.getTransport(sock)
                iprot, _ = _established(processor, factory, transport, lambda: client.sendall(hello), answered=True)
                sock.message_done()
                client.recv(65536)

                def serve() -> None:
                    processor.process(iprot, iprot)
                    sock.message_done()
                    transport.keep_unread_input()
            client.sendall(echo)
            serve()
            reply_size = len(client.recv(65536))
            started = time.process_time()
            for _ in range(n):
                client.sendall(echo)
                serve()
                got = 0
                while got < reply_size:
                    got += len(client.recv(reply_size - got))
            return time.process_time() - started
        finally:
            client.close()
            served.close()
    return run


def _lifecycle_part(part: str, hello: bytes, goodbye: bytes, log_file: str) -> Measure:
    def run(n: int) -> float:
        _, processor, factory = _server()
        sink = _sink(factory)
        logger = logging.getLogger("breakdown.server")
        logger.propagate = False
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        spent = 0.0
        try:
            for _ in range(n):
                protocol = factory.getProtocol(BufferedTransport(TMemoryBuffer(hello + goodbye)))
                started = time.process_time()
                state = processor.connection(protocol, "127.0.0.1:40000", collected=False)
                if part == "state":
                    state.close()
                    spent += time.process_time() - started
                    continue
                middle = time.process_time()
                processor.process(protocol, sink)
                if part == "hello":
                    spent += time.process_time() - middle
                    state.close()
                    continue
                middle = time.process_time()
                try:
                    processor.process(protocol, sink)
                except SessionClosed:
                    pass
                if part == "goodbye":
                    spent += time.process_time() - middle
                    state.close()
                    continue
                state.close()
                middle = time.process_time()
                logger.info("%s peer=%s session=%s%s: %s", "closed", "127.0.0.1:40000", state.context.session_id,
                            " client='bench' version=2 calls=1 duration_ms=0", "goodbye")
                spent += time.process_time() - middle
        finally:
            handler.close()
        return spent
    return run


def _rounds(measures: Dict[str, Measure], rounds: int, n: int) -> Dict[str, float]:
    """Median microseconds per unit of each measure, alternating their order round by round."""
    samples: Dict[str, List[float]] = {name: [] for name in measures}
    names = list(measures)
    for number in range(rounds + 1):  # the first round warms up
        for name in (names if number % 2 else list(reversed(names))):
            spent = measures[name](n)
            if number:
                samples[name].append(spent * 1e6 / n)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--lifecycles", type=int, default=3_000)
    args = parser.parse_args()
    logs.configure("INFO")  # as ``serve`` logs (its lines go to stderr: none is written here but the INFO line)
    hello, echo, goodbye = _messages()
    memory = _rounds({kind: _in_memory(kind, hello, echo) for kind in ("thrift", "strict", "transport", "gate", "chain")},
                     args.rounds, args.calls)
    sockets = _rounds({kind: _over_sockets(kind, hello, echo) for kind in ("thrift", "served")}, args.rounds, args.calls)
    with tempfile.TemporaryDirectory() as tmp:
        lifecycle = _rounds({part: _lifecycle_part(part, hello, goodbye, os.path.join(tmp, "server.log"))
                             for part in ("state", "hello", "goodbye", "log")}, args.rounds, args.lifecycles)
    print(f"server CPU per 32-byte echo, in memory, us (medians of {args.rounds} alternating rounds of "
          f"{args.calls}):")
    previous = 0.0
    for kind, label in (("thrift", "B's stack (Thrift, accelerated)"), ("strict", "+ strict decoding"),
                        ("transport", "+ server transport"), ("gate", "+ gate and session (as served)")):
        print(f"  {label:36} {memory[kind]:6.2f}  ({memory[kind] - previous:+.2f})")
        previous = memory[kind]
    print(f"  {'(a user interceptor: whole chain)':36} {memory['chain']:6.2f}  ({memory['chain'] - previous:+.2f})")
    difference = sockets["served"] - sockets["thrift"]
    print(f"per echo over a socket pair, both ends on one thread, us: B {sockets['thrift']:.2f}, this server "
          f"{sockets['served']:.2f} ({difference:+.2f}; of which the socket layer "
          f"{difference - (memory['gate'] - memory['thrift']):+.2f})")
    print(f"per lifecycle, in memory, us: connection state and session made and closed {lifecycle['state']:.2f}, "
          f"hello {lifecycle['hello']:.2f}, goodbye {lifecycle['goodbye']:.2f}, the INFO line {lifecycle['log']:.2f}")


if __name__ == "__main__":
    main()
