"""The checkout saga as a pure state machine.

One checkout: one or more orders (one per cart line, each ``under_paying``), one
shared payment, one deadline. What happens next is a function of the saga's
state and the incoming message only:

    awaiting_payment --PaymentSucceeded(right amount, in time)--> paid
    awaiting_payment --deadline reached------------------------> cancelled (payment_timeout)
    awaiting_payment --PaymentFailed (when failures cancel)----> cancelled (payment_failed)
    cancelled        --PaymentSucceeded-------------------------> cancelled, LatePaymentReceived

Each step returns the new saga, the events that happened and the effects on
stock: commit on payment, release on cancellation (the compensation). A message
that finds the saga past the state it applies to changes nothing, so
duplicates, reorderings and a deadline racing a payment end in exactly one
outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

AWAITING_PAYMENT, PAID, CANCELLED = "awaiting_payment", "paid", "cancelled"
UNDER_PAYING = "under_paying"
PAYMENT_TIMEOUT, PAYMENT_FAILED = "payment_timeout", "payment_failed"


@dataclass(frozen=True)
class Order:
    order_id: str
    item_id: str
    product_id: str
    product_name: str
    size: str | None
    quantity: int
    unit_price: Decimal
    total_price: Decimal
    reservation_id: str | None
    status: str = UNDER_PAYING


@dataclass(frozen=True)
class Checkout:
    payment_id: str
    payment_hash: str
    user_id: str
    checkout_type: str
    orders: tuple[Order, ...]
    total_amount: Decimal
    payment_method: str
    gateway_name: str
    shipping_address: dict[str, Any]
    created_at: datetime
    deadline: datetime
    state: str = AWAITING_PAYMENT
    closed_at: datetime | None = None
    cancel_reason: str | None = None
    failed_attempts: int = 0
    version: int = 0


# --- events and effects ------------------------------------------------------------


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str
    payment_id: str
    user_id: str
    product_id: str
    product_name: str
    size: str | None
    quantity: int
    unit_price: Decimal
    total_price: Decimal
    status: str
    payment_expires_at: datetime
    shipping_address: dict[str, Any]


@dataclass(frozen=True)
class PaymentRequested:
    payment_id: str
    payment_hash: str
    total_amount: Decimal
    payment_method: str
    gateway_name: str
    payment_expires_at: datetime
    order_ids: list[str]


@dataclass(frozen=True)
class OrderPaid:
    order_id: str
    payment_id: str


@dataclass(frozen=True)
class OrderCancelled:
    order_id: str
    payment_id: str
    reason: str


@dataclass(frozen=True)
class LatePaymentReceived:
    payment_id: str
    amount: Decimal
    received_at: datetime


@dataclass(frozen=True)
class PaymentAmountMismatch:
    payment_id: str
    expected: Decimal
    received: Decimal


@dataclass(frozen=True)
class PaymentAttemptFailed:
    payment_id: str
    reason: str
    payment_expires_at: datetime


@dataclass(frozen=True)
class CommitStock:
    reservation_id: str
    product_id: str
    order_id: str


@dataclass(frozen=True)
class ReleaseStock:
    reservation_id: str
    product_id: str
    reason: str


@dataclass(frozen=True)
class ScheduleDeadline:
    payment_id: str
    due_at: datetime


Event = (
    OrderPlaced
    | PaymentRequested
    | OrderPaid
    | OrderCancelled
    | LatePaymentReceived
    | PaymentAmountMismatch
    | PaymentAttemptFailed
)
Effect = CommitStock | ReleaseStock | ScheduleDeadline


@dataclass(frozen=True)
class Step:
    checkout: Checkout
    events: tuple[Event, ...] = ()
    effects: tuple[Effect, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.events or self.effects)


# --- transitions -------------------------------------------------------------------


def start(checkout: Checkout) -> Step:
    """A new checkout: its orders are placed and its payment is requested."""
    placed = tuple(
        OrderPlaced(
            o.order_id,
            checkout.payment_id,
            checkout.user_id,
            o.product_id,
            o.product_name,
            o.size,
            o.quantity,
            o.unit_price,
            o.total_price,
            o.status,
            checkout.deadline,
            checkout.shipping_address,
        )
        for o in checkout.orders
    )
    requested = PaymentRequested(
        checkout.payment_id,
        checkout.payment_hash,
        checkout.total_amount,
        checkout.payment_method,
        checkout.gateway_name,
        checkout.deadline,
        [o.order_id for o in checkout.orders],
    )
    return Step(checkout, (*placed, requested), (ScheduleDeadline(checkout.payment_id, checkout.deadline),))


def payment_succeeded(checkout: Checkout, amount: Decimal, *, now: datetime) -> Step:
    if checkout.state == AWAITING_PAYMENT and now >= checkout.deadline:
        # The deadline passed before the payment was seen: the timeout wins,
        # whether or not its timer has fired yet.
        expired = deadline_reached(checkout, now=now)
        late = payment_succeeded(expired.checkout, amount, now=now)
        return Step(late.checkout, expired.events + late.events, expired.effects + late.effects)
    if checkout.state == CANCELLED:
        return Step(checkout, (LatePaymentReceived(checkout.payment_id, amount, now),))
    if checkout.state == PAID:
        return Step(checkout)  # a repeat of the payment already applied
    if amount != checkout.total_amount:
        return Step(checkout, (PaymentAmountMismatch(checkout.payment_id, checkout.total_amount, amount),))
    orders = tuple(replace(o, status=PAID) for o in checkout.orders)
    paid = replace(checkout, orders=orders, state=PAID, closed_at=now)
    events = tuple(OrderPaid(o.order_id, checkout.payment_id) for o in orders)
    effects = tuple(
        CommitStock(o.reservation_id, o.product_id, o.order_id) for o in orders if o.reservation_id
    )
    return Step(paid, events, effects)


def payment_failed(checkout: Checkout, reason: str, *, now: datetime, cancel: bool) -> Step:
    if checkout.state != AWAITING_PAYMENT:
        return Step(checkout)
    if cancel or now >= checkout.deadline:
        return _cancel(checkout, PAYMENT_FAILED if cancel else PAYMENT_TIMEOUT, now)
    failed = replace(checkout, failed_attempts=checkout.failed_attempts + 1)
    return Step(failed, (PaymentAttemptFailed(checkout.payment_id, reason, checkout.deadline),))


def deadline_reached(checkout: Checkout, *, now: datetime) -> Step:
    """Cancel an unpaid checkout once its deadline has passed; never before."""
    if checkout.state != AWAITING_PAYMENT or now < checkout.deadline:
        return Step(checkout)
    return _cancel(checkout, PAYMENT_TIMEOUT, now)


def _cancel(checkout: Checkout, reason: str, now: datetime) -> Step:
    orders = tuple(replace(o, status=CANCELLED) for o in checkout.orders)
    cancelled = replace(checkout, orders=orders, state=CANCELLED, closed_at=now, cancel_reason=reason)
    events = tuple(OrderCancelled(o.order_id, checkout.payment_id, reason) for o in orders)
    # Compensations, one per line, in reverse order of the reservations made.
    effects = tuple(
        ReleaseStock(o.reservation_id, o.product_id, reason) for o in reversed(orders) if o.reservation_id
    )
    return Step(cancelled, events, effects)


# --- views -------------------------------------------------------------------------


def checkout_response(checkout: Checkout, *, now: datetime) -> dict[str, Any]:
    """The answer to the upstream checkout command (the original specification's shape)."""
    orders = [
        {
            "order_id": o.order_id,
            "product_id": o.product_id,
            "product_name": o.product_name,
            "size": o.size,
            "quantity": o.quantity,
            "total_price": str(o.total_price),
            "status": o.status,
        }
        for o in checkout.orders
    ]
    response: dict[str, Any] = {
        "checkout_type": checkout.checkout_type,
        "total_amount": str(checkout.total_amount),
        "order_count": len(orders),
        "payment_id": checkout.payment_id,
        "payment_hash": checkout.payment_hash,
        "payment_expires_at": checkout.deadline.isoformat(),
        "time_remaining_seconds": max(0, int((checkout.deadline - now).total_seconds())),
    }
    if checkout.checkout_type == "single_item":
        response["order"] = orders[0]
    else:
        response["orders"] = orders
    return response
