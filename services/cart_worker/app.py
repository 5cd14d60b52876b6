"""The cart worker: what it consumes, what it publishes, and how it is assembled."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from contracts.topics import CART_COMMANDS, CART_EVENTS, CART_REPLIES, CATALOG_EVENTS
from services.cart_worker.handlers import CartLogic
from services.runtime.worker import WorkerSpec


async def prepare(db: AsyncDatabase) -> None:
    # Carts and catalog entries are read by _id only; the primary key serves both.
    return None


SPEC = WorkerSpec(
    name="cart",
    consumes=(CATALOG_EVENTS, CART_COMMANDS),
    produces=(CART_REPLIES, CART_EVENTS),
    make_logic=CartLogic,
    prepare=prepare,
)
