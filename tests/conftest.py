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


#: The kinds of test, one of which every test is: ``unit`` (pure logic, no
#: servers: every test under tests/unit), ``integration`` (the real servers),
#: ``chaos`` (faults injected into a running system), ``browser`` (Chromium,
#: on the real servers too).
KINDS = ("unit", "integration", "chaos")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "unit" in item.path.parts:
            item.add_marker(pytest.mark.unit)
        kinds = [kind for kind in KINDS if item.get_closest_marker(kind)]
        if len(kinds) != 1:
            raise pytest.UsageError(f"{item.nodeid} must be exactly one of {', '.join(KINDS)}, not {kinds or 'none'}")
