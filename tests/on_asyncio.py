"""Fixtures that run the threaded server's tests against ``AsyncHandshakeServer``: a test module imports
``server`` and ``start_server`` from here (with test_async_server's ``start_async`` and its fixtures),
together with the threaded tests it runs; pytest resolves those tests' fixtures in that module."""

from __future__ import annotations

import pytest

from thrift_handshake.aio import AsyncHandshakeServer


@pytest.fixture
def start_server(start_async):
    """The threaded tests' ``start_server(handler=None, demo=None, **config)``, on the asyncio server."""
    return start_async


@pytest.fixture
def server(start_async) -> AsyncHandshakeServer:
    return start_async()
