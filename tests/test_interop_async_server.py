"""Interop against the asyncio server: the Node.js, Go, Java, C++ and Rust clients run the whole contract
against ``AsyncHandshakeServer`` in every wire cell their runtime has, as they do against the threaded server
(tests/test_interop.py): binary and compact, buffered and framed, and THeader for those that have it."""

from __future__ import annotations

from typing import Callable, List

import pytest

from test_async_server import event_loop_thread, loop_factory, start_async  # noqa: F401 (fixtures)
from test_interop import (  # noqa: F401 (fixtures)
    HEADER_CLIENTS, ClientWire, assert_flow_passes, cpp_client, go_client, java_client, node_client, rust_client)
from thrift_handshake.demo import DemoLimits

LANGUAGES = ["node", "go", "java", "cpp", "rust"]
WIRES = [ClientWire(protocol, transport) for transport in ("buffered", "framed", "header")
         for protocol in ("binary", "compact")]
CELLS = [(language, wire) for language in LANGUAGES for wire in WIRES
         if wire.transport != "header" or language in HEADER_CLIENTS]


@pytest.mark.parametrize("language, wire", CELLS,
                         ids=[f"{language}-{wire.protocol}+{wire.transport}" for language, wire in CELLS])
def test_the_client_runs_the_whole_contract_against_the_asyncio_server(
        language: str, wire: ClientWire, start_async, request: pytest.FixtureRequest,  # noqa: F811
        record_property: Callable[[str, object], None]) -> None:
    command: List[str] = request.getfixturevalue(f"{language}_client")
    server = start_async(grace=2.0)
    small_queue = start_async(demo=DemoLimits(submit_workers=1, submit_queue=1), grace=0.1)

    def record(name: str, value: object) -> None:  # its own rows in the session's matrix
        record_property(name, {**value, "language": f"{value['language']} (asyncio)"})  # type: ignore[dict-item]

    assert_flow_passes(command, server.address, language, record, small_queue, wire)
