"""Cart housekeeping, pure: what happens to a cart with the passing of time.

After every command of the buyer that touches the cart, ``touch`` schedules up
to three things on the cart itself:

- ``check_at``: the periodic change check (every ``check_every``), which stores
  what changed on each line, alerts the buyer to changes not seen before
  (``CartChangeAlert``, and a ``StockAlert`` per line that became unavailable),
  and with ``auto_remove_unavailable`` takes unavailable lines out;
- ``remind_at``: one ``AbandonedCartReminder`` after ``remind_after`` without
  activity;
- ``expire_at``: after ``expire_after`` without activity the cart is emptied
  (``CartExpired``) and the reservations of its lines are returned.

The worker's sweep finds carts whose time has come; each task runs once per
scheduled moment (the moment is part of its dedup key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from services.cart_worker import domain
from services.cart_worker.domain import Cart, CartLine, Product, StockView, cart_summary

CHECK, REMIND, EXPIRE = "check", "remind", "expire"
TASK_FIELDS = {CHECK: "check_at", REMIND: "remind_at", EXPIRE: "expire_at"}


@dataclass(frozen=True)
class Policy:
    remind_after: timedelta
    expire_after: timedelta
    check_every: timedelta
    notify_changes: bool = True
    notify_abandoned: bool = True
    auto_remove_unavailable: bool = False


@dataclass(frozen=True)
class HousekeepingDue:
    """Internal: a cart's scheduled task whose moment has come."""

    user_id: str
    task: str  # CHECK | REMIND | EXPIRE
    due_at: datetime

    @property
    def dedup_key(self) -> str:
        return f"housekeeping:{self.task}:{self.user_id}:{self.due_at.isoformat()}"


# --- notifications (mirroring contracts.notifications field for field) ----------


@dataclass(frozen=True)
class CartChangeAlert:
    user_id: str
    items: list[dict[str, Any]]
    removed_item_ids: list[str]


@dataclass(frozen=True)
class StockAlert:
    user_id: str
    item_id: str
    product_id: str
    size: str | None
    product_name: str
    message: str


@dataclass(frozen=True)
class AbandonedCartReminder:
    user_id: str
    last_activity_at: datetime
    item_count: int
    subtotal: Decimal


@dataclass(frozen=True)
class CartExpired:
    user_id: str
    last_activity_at: datetime
    item_ids: list[str]
    released_reservation_ids: list[str]


@dataclass(frozen=True)
class Result:
    cart: Cart
    #: For cart.events.
    cart_events: tuple[domain.DomainEvent, ...] = ()
    #: For notifications.events.
    notifications: tuple[Any, ...] = ()
    #: Lines whose stock reservation must be given back.
    releases: tuple[CartLine, ...] = ()


def touch(cart: Cart, now: datetime, policy: Policy) -> Cart:
    """The cart after activity of its buyer: every timer starts again."""
    if cart.is_empty:
        return replace(cart, active_at=now, check_at=None, remind_at=None, expire_at=None)
    return replace(
        cart,
        active_at=now,
        check_at=cart.check_at or now + policy.check_every,
        remind_at=now + policy.remind_after if policy.notify_abandoned else None,
        expire_at=now + policy.expire_after,
    )


def is_due(cart: Cart, due: HousekeepingDue, now: datetime) -> bool:
    """Whether ``due`` still names the cart's schedule (activity may have moved it)."""
    return getattr(cart, TASK_FIELDS[due.task]) == due.due_at and due.due_at <= now


def remind(
    cart: Cart, now: datetime, catalog: Mapping[str, Product] | None = None, stock: StockView | None = None
) -> Result:
    """Remind the buyer of an abandoned cart, counted as ``GetCart`` counts it:
    the available lines at their current prices."""
    reminded = replace(cart, remind_at=None)
    if cart.is_empty:
        return Result(reminded)
    summary = cart_summary(cart, catalog or {}, stock)
    reminder = AbandonedCartReminder(
        user_id=cart.user_id,
        last_activity_at=cart.active_at or now,
        item_count=summary["total_items"],
        subtotal=Decimal(summary["total_amount"]),
    )
    return Result(reminded, notifications=(reminder,))


def expire(cart: Cart, now: datetime, retry_after: timedelta) -> Result:
    """Empty the cart and give its stock back; a cart still waiting for the stock
    worker is tried again ``retry_after`` later."""
    if cart.is_busy or cart.queue:
        return Result(replace(cart, expire_at=now + retry_after))
    emptied = replace(cart, lines=(), updated_at=now, check_at=None, remind_at=None, expire_at=None)
    if cart.is_empty:
        return Result(emptied)
    held = tuple(line for line in cart.lines if line.reservation_id and line.is_reserved)
    item_ids = [line.item_id for line in cart.lines]
    expired = CartExpired(
        user_id=cart.user_id,
        last_activity_at=cart.active_at or now,
        item_ids=item_ids,
        released_reservation_ids=[line.reservation_id for line in held if line.reservation_id],
    )
    return Result(emptied, (domain.CartCleared(cart.user_id, item_ids),), (expired,), held)


def periodic_check(
    cart: Cart, catalog: Mapping[str, Product], stock: StockView | None, now: datetime, policy: Policy
) -> Result:
    """Record what changed on each line; alert to what is new since the last look."""
    outcome = domain.check_changes(cart, catalog, now=now, stock=stock)
    checked = replace(outcome.cart, check_at=now + policy.check_every if not cart.is_empty else None)
    before = {line.item_id: set(line.change_details) for line in cart.lines}
    fresh_items: list[dict[str, Any]] = []
    alerts: list[StockAlert] = []
    unavailable: list[CartLine] = []
    for line in checked.lines:
        new = [change for change in line.change_details if change not in before.get(line.item_id, set())]
        if not domain.is_available(line, catalog.get(line.product_id), stock):
            unavailable.append(line)
        if not new:
            continue
        fresh_items.append(
            {
                "item_id": line.item_id,
                "product_id": line.product_id,
                "size": line.size,
                "product_name": line.product_name,
                "changes": [change.as_dict() for change in new],
            }
        )
        alerts.extend(
            StockAlert(cart.user_id, line.item_id, line.product_id, line.size, line.product_name, change.message)
            for change in new
            if change.field == "availability"
        )
    cart_events: tuple[domain.DomainEvent, ...] = outcome.events if fresh_items else ()
    removed: tuple[CartLine, ...] = ()
    if policy.auto_remove_unavailable and unavailable and not cart.is_busy:
        removed = tuple(unavailable)
        checked = checked.without((line.item_id for line in removed), now)
        cart_events = (
            *cart_events,
            *(domain.ItemRemoved(cart.user_id, l.item_id, l.product_id, l.size, l.quantity) for l in removed),
        )
        if checked.is_empty:
            checked = replace(checked, check_at=None, remind_at=None, expire_at=None)
    notifications: tuple[Any, ...] = ()
    if policy.notify_changes and (fresh_items or removed):
        notifications = (
            CartChangeAlert(cart.user_id, fresh_items, [line.item_id for line in removed]),
            *alerts,
        )
    releases = tuple(line for line in removed if line.reservation_id and line.is_reserved)
    return Result(checked, cart_events, notifications, releases)
