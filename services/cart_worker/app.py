"""The cart worker: what it consumes, what it publishes, and how it is assembled."""

from __future__ import annotations

from contracts.topics import (
    CART_COMMANDS,
    CART_EVENTS,
    CART_REPLIES,
    CATALOG_EVENTS,
    CHECKOUT_COMMANDS,
    STOCK_COMMANDS,
    STOCK_EVENTS,
)
from services.cart_worker import repository
from services.cart_worker.handlers import CartLogic, find_overdue
from services.runtime.worker import WorkerSpec

SPEC = WorkerSpec(
    name="cart",
    consumes=(CATALOG_EVENTS, CART_COMMANDS, STOCK_EVENTS),
    produces=(CART_REPLIES, CART_EVENTS, STOCK_COMMANDS, CHECKOUT_COMMANDS),
    make_logic=CartLogic,
    prepare=repository.prepare,
    sweep=find_overdue,
    sweep_key=lambda message: message.dedup_key,
    sweep_interval=lambda settings: settings.cart_pending_sweep_seconds,
)
