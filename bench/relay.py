"""A relay that holds every chunk a while each way: loopback made to cost a round trip, as a LAN does.

``bench.aio_client`` measures its clients through it (``--delay``, 1 ms each way by default: a round trip
of a LAN between racks); run alone it prints its port and forwards to the target until killed.

    .venv/bin/python -m bench.relay TARGET_PORT [DELAY_SECONDS]
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Deque, Tuple

__all__ = ["relay", "start_relay"]


async def relay(target: int, delay: float) -> None:
    """Forwards connections to ``target``, every chunk held ``delay`` seconds each way, in order."""
    loop = asyncio.get_running_loop()

    async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        held: Deque[Tuple[float, bytes]] = deque()
        arrived = asyncio.Event()

        async def forward() -> None:
            while True:
                await arrived.wait()
                arrived.clear()
                while held:
                    due, data = held[0]
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    held.popleft()
                    if not data:
                        sink.close()
                        return
                    sink.write(data)

        forwarding = asyncio.ensure_future(forward())
        while True:
            data = await source.read(65536)
            held.append((loop.time() + delay, data))
            arrived.set()
            if not data:
                break
        await forwarding

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer), return_exceptions=True)

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def start_relay(target: int, delay: float) -> "Tuple[subprocess.Popen, int]":
    process = subprocess.Popen([sys.executable, "-m", "bench.relay", str(target), str(delay)],
                               stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert process.stdout is not None
    return process, int(process.stdout.readline())


if __name__ == "__main__":
    asyncio.run(relay(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.001))
