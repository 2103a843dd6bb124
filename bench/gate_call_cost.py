"""What the gate costs per small unframed call in-process, with the decoded-size budget on and off:
``SessionProcessor.process`` serving 32-byte ``echo`` messages (strict binary, C decoder) read from
memory through the server's buffered transport, as the message loop calls it. No sockets, so the
figure is the Python work per call only. Prints the medians of alternating rounds.

    .venv/bin/python -m bench.gate_call_cost [--rounds 9] [--calls 20000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import List

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.transport.TTransport import TMemoryBuffer

from thrift_handshake import Wire
from thrift_handshake.decoded_budget import DecodedBudget
from thrift_handshake.demo.handler import HandshakeHandler
from thrift_handshake.gate import SessionProcessor
from thrift_handshake.wire.protocols import protocol_factory
from thrift_handshake.wire.stack import BufferedTransport
from thrift_handshake_gen import HandshakeService


def _calls(count: int) -> bytes:
    buffer = TMemoryBuffer()
    protocol = TBinaryProtocol(buffer)
    for seqid in range(count):
        protocol.writeMessageBegin("echo", 1, seqid)
        HandshakeService.echo_args(message="x" * 32).write(protocol)
        protocol.writeMessageEnd()
    return buffer.getvalue()


def _microseconds_per_call(data: bytes, calls: int, budget: bool) -> float:
    factory = protocol_factory(Wire(), 16 << 20, 1_000_000)
    processor = SessionProcessor(HandshakeService.Processor(HandshakeHandler()), handshake=False,
                                 decoded_budget=DecodedBudget(256 << 20, 0.25) if budget else None)
    transport = BufferedTransport(TMemoryBuffer(data))
    protocol = factory.getProtocol(transport)
    processor.connection(protocol, "127.0.0.1:1")
    replies = factory.getProtocol(BufferedTransport(TMemoryBuffer()))
    started = time.process_time()
    for _ in range(calls):
        processor.process(protocol, replies)
        transport.keep_unread_input()  # as the message loop does after each message
    return (time.process_time() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    data = _calls(args.calls)
    on: List[float] = []
    off: List[float] = []
    for _ in range(args.rounds):
        off.append(_microseconds_per_call(data, args.calls, budget=False))
        on.append(_microseconds_per_call(data, args.calls, budget=True))
    print(f"gate CPU per 32-byte unframed echo, in-process: budget on {statistics.median(on):.2f} us, off "
          f"{statistics.median(off):.2f} us, on - off {statistics.median(a - b for a, b in zip(on, off)):.3f} us "
          f"(medians of {args.rounds} alternating rounds of {args.calls} calls)")


if __name__ == "__main__":
    main()
