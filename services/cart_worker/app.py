"""The cart worker: what it consumes, what it publishes, and how it is assembled."""

from __future__ import annotations

from contracts.topics import CART_EVENTS, CART_REPLIES, CHECKOUT_COMMANDS, NOTIFICATIONS_EVENTS, STOCK_COMMANDS
from services.cart_worker import repository
from services.cart_worker.handlers import CONSUMED, CartLogic
from services.cart_worker.sweeps import find_housekeeping_due, find_overdue
from services.runtime.spec import Retention, Sweep, WorkerSpec, dedup_key

SPEC = WorkerSpec(
    name="cart",
    consumes=CONSUMED,
    produces=(CART_REPLIES, CART_EVENTS, STOCK_COMMANDS, CHECKOUT_COMMANDS, NOTIFICATIONS_EVENTS),
    make_logic=CartLogic,
    store=repository.CartStore,
    prepare=repository.prepare,
    sweeps=(
        Sweep(find_overdue, dedup_key, lambda settings: settings.cart_pending_sweep_seconds),
        Sweep(find_housekeeping_due, dedup_key, lambda settings: settings.cart_housekeeping_sweep_seconds),
    ),
    retention=(
        Retention(repository.CARTS, lambda settings: settings.empty_cart_retention_hours, repository.empty_since),
    ),
)
