"""Shared fixtures: the real servers start once per test session; each test module
gets its own deployment (topic prefix, database, worker processes), so tests
never see each other's messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from harness.deployment import LOG_DIR, Deployment, open_deployment
from services.ops.backends import Backends, open_backends
from services.runtime.settings import Settings


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    with open_backends(Settings(), log_dir=LOG_DIR) as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def cart_deployment(backends: Backends) -> AsyncIterator[Deployment]:
    """A running cart worker in its own deployment, shared by one test module,
    with cart-time stock reservation off (the stock worker has tests of its own)."""
    deployment = await open_deployment(backends, CARTFLOW_CART_STOCK_RESERVATION_ENABLED="false")
    deployment.worker("cart")
    try:
        yield deployment
    finally:
        await deployment.close()
