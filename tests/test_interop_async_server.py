"""Interop against the asyncio server: the Go client in every wire cell (THeader included) and the Node.js
client run the whole contract, as they do against the threaded server (tests/test_interop.py)."""

from __future__ import annotations

from typing import Callable, List

import pytest

from test_async_server import event_loop_thread, loop_factory, start_async  # noqa: F401 (fixtures)
from test_interop import ClientWire, assert_flow_passes, go_client, node_client  # noqa: F401 (fixtures)
from thrift_handshake.demo import DemoLimits

WIRES = [ClientWire(), ClientWire("compact", "buffered"), ClientWire("binary", "framed"),
         ClientWire("compact", "framed"), ClientWire("binary", "header"), ClientWire("compact", "header")]


@pytest.mark.parametrize("wire", WIRES, ids=lambda wire: f"{wire.protocol}+{wire.transport}")
def test_the_go_client_runs_the_whole_contract_against_the_asyncio_server(
        wire: ClientWire, go_client: List[str], start_async,  # noqa: F811
        record_property: Callable[[str, object], None]) -> None:
    server = start_async(grace=2.0)
    small_queue = start_async(demo=DemoLimits(submit_workers=1, submit_queue=1), grace=0.1)
    assert_flow_passes(go_client, server.address, "go", record_property, small_queue, wire)


def test_the_node_client_runs_the_whole_contract_against_the_asyncio_server(
        node_client: List[str], start_async,  # noqa: F811
        record_property: Callable[[str, object], None]) -> None:
    server = start_async(grace=2.0)
    small_queue = start_async(demo=DemoLimits(submit_workers=1, submit_queue=1), grace=0.1)
    assert_flow_passes(node_client, server.address, "node", record_property, small_queue)
