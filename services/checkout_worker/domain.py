"""The checkout saga as a pure state machine.

One checkout: one or more orders (one per cart line, each ``under_paying``), one
shared payment, one deadline. What happens next is a function of the saga's
state and the incoming message only:

    awaiting_payment --PaymentSucceeded(right amount, in time)--> paid (or payment_received)
    awaiting_payment --deadline reached------------------------> cancelled (payment_timeout)
    awaiting_payment --PaymentFailed (when failures cancel)----> cancelled (payment_failed)
    payment_received --last order's stock settled--------------> paid (its lost orders cancelled, refunded)
    any state        --an order's units taken back by a recount--> that order cancelled (out_of_stock),
                                                                 refunded if paid; cancelled once none is left
    cancelled        --PaymentSucceeded-------------------------> cancelled, LatePaymentReceived
    paid             --another, distinct PaymentSucceeded-------> paid, PaymentRefundRequired

Each order's units: the saga takes the cart line's reservation over
(``TransferStock``, only from the buyer's cart line). If the stock worker
refuses (the reservation expired, was released or is someone else's), the saga
reserves the units afresh from what is available (``ReserveStock``); if that
is refused too, the order's stock is lost. The rule: **no order is paid
without its units.** A payment is settled only once every order's stock is
held or lost: held orders are paid and their units committed, lost orders are
cancelled (``out_of_stock``) and their amount is announced as
``PaymentRefundRequired``.

Each step returns the new saga, the events that happened and the effects on
stock: take over or reserve at the start, commit on payment, release on
cancellation (the compensation). A message that finds the saga past the state
it applies to changes nothing, so duplicates, reorderings and a deadline racing
a payment end in exactly one outcome. Stock answers are matched to the command
that caused them by its id, which the saga derives from what the command means.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from contracts.envelope import message_id_for
from contracts.holders import cart_line_holder, order_holder

AWAITING_PAYMENT, PAID, CANCELLED = "awaiting_payment", "paid", "cancelled"
#: The buyer paid; some orders still wait for the stock worker's answer.
PAYMENT_RECEIVED = "payment_received"
UNDER_PAYING = "under_paying"
PAYMENT_TIMEOUT, PAYMENT_FAILED, OUT_OF_STOCK = "payment_timeout", "payment_failed", "out_of_stock"
DUPLICATE_PAYMENT = "duplicate_payment"
#: Where an order's units stand.
TRANSFERRING, RESERVING, HELD, LOST = "transferring", "reserving", "held", "lost"


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
    #: TRANSFERRING, RESERVING, HELD or LOST; sagas stored before the saga took
    #: reservations over had them handed over by the cart: HELD.
    stock: str = HELD
    #: The message_id of the stock command whose answer this order waits for.
    stock_command_id: str | None = None

    @property
    def holder(self) -> str:
        """Who holds the order's units once the saga has them."""
        return order_holder(self.order_id)

    @property
    def settled(self) -> bool:
        return self.stock in (HELD, LOST)


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
    shipping_address: dict[str, Any] | str | None
    created_at: datetime
    deadline: datetime
    state: str = AWAITING_PAYMENT
    closed_at: datetime | None = None
    cancel_reason: str | None = None
    failed_attempts: int = 0
    version: int = 0
    #: The payment that paid: its gateway reference (or message id), to tell a
    #: repeat of it from a second charge.
    paid_reference: str | None = None
    #: Every other charge already answered (refunded late, as a duplicate, or
    #: as a wrong amount), newest last: a charge is answered once, however
    #: often the payment provider announces it.
    answered_charges: tuple[str, ...] = ()


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
    gateway_reference: str | None = None


@dataclass(frozen=True)
class PaymentAmountMismatch:
    payment_id: str
    expected: Decimal
    received: Decimal
    gateway_reference: str | None = None


@dataclass(frozen=True)
class PaymentAttemptFailed:
    payment_id: str
    reason: str
    payment_expires_at: datetime


@dataclass(frozen=True)
class PaymentRefundRequired:
    payment_id: str
    amount: Decimal
    reason: str
    order_ids: list[str]
    gateway_reference: str | None


@dataclass(frozen=True)
class TransferStock:
    reservation_id: str
    product_id: str
    holder: str
    expected_holder: str | None
    expires_at: None = None


@dataclass(frozen=True)
class ReserveStock:
    reservation_id: str
    product_id: str
    size: str | None
    quantity: int
    holder: str
    expires_at: None = None


@dataclass(frozen=True)
class CommitStock:
    reservation_id: str
    product_id: str
    order_id: str
    holder: str | None = None


@dataclass(frozen=True)
class ReleaseStock:
    reservation_id: str
    product_id: str
    reason: str
    holder: str | None = None


@dataclass(frozen=True)
class StockAnswer:
    """The stock worker's answer to one of the saga's commands."""

    causation_id: str | None
    reservation_id: str
    granted: bool
    #: For a granted answer: what the reservation holds.
    product_id: str | None = None
    quantity: int | None = None


def stock_command_id(payment_id: str, kind: str, reservation_id: str) -> str:
    """The message_id of the saga's stock command of ``kind`` about a reservation."""
    return message_id_for(payment_id, kind, reservation_id)


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
    | PaymentRefundRequired
)
Effect = TransferStock | ReserveStock | CommitStock | ReleaseStock | ScheduleDeadline


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
    """A new checkout: its orders are placed, their units taken over from the cart
    (or reserved where the line had none), and its payment is requested."""
    orders, effects = [], []
    for order in checkout.orders:
        if order.reservation_id:
            # Only from the buyer's own cart line: a hand-over naming anyone
            # else's reservation is refused by the stock worker.
            cart_line = cart_line_holder(checkout.user_id, order.item_id)
            kind = "TransferReservation"
            effect: Effect = TransferStock(order.reservation_id, order.product_id, order.holder, cart_line)
            order = replace(order, stock=TRANSFERRING)
        else:
            order, effect = _reserve_afresh(checkout, order)
            kind = "ReserveStock"
        orders.append(replace(order, stock_command_id=stock_command_id(checkout.payment_id, kind, effect.reservation_id)))
        effects.append(effect)
    checkout = replace(checkout, orders=tuple(orders))
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
            address_object(checkout.shipping_address),
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
    return Step(checkout, (*placed, requested), (*effects, ScheduleDeadline(checkout.payment_id, checkout.deadline)))


def _reserve_afresh(checkout: Checkout, order: Order, attempt: str = "") -> tuple[Order, ReserveStock]:
    reservation_id = message_id_for(checkout.payment_id, "Reservation", f"{order.order_id}{attempt}")
    effect = ReserveStock(reservation_id, order.product_id, order.size, order.quantity, order.holder)
    moved = replace(
        order,
        reservation_id=reservation_id,
        stock=RESERVING,
        stock_command_id=stock_command_id(checkout.payment_id, "ReserveStock", reservation_id),
    )
    return moved, effect


def stock_answered(checkout: Checkout, answer: StockAnswer, *, now: datetime) -> Step:
    """The stock worker answered one of the saga's commands."""
    matching = [
        o
        for o in checkout.orders
        if o.stock_command_id and o.stock_command_id == answer.causation_id and o.reservation_id == answer.reservation_id
    ]
    if not matching or checkout.state in (PAID, CANCELLED):
        return Step(checkout)  # not ours, a repeat, or too late: a cancellation released it already
    order, effects = matching[0], ()
    exact = answer.product_id == order.product_id and answer.quantity == order.quantity
    if answer.granted and exact:
        order = replace(order, stock=HELD, stock_command_id=None)
    elif answer.granted:
        # The reservation holds other units than the order needs (a change of
        # the cart line was overtaken by the checkout): give it back and
        # reserve exactly the order's units.
        release = ReleaseStock(order.reservation_id or "", order.product_id, "quantity_mismatch", order.holder)
        order, reserve = _reserve_afresh(checkout, order, attempt="exact")
        effects = (release, reserve)
    elif order.stock == TRANSFERRING:
        # The cart's reservation is gone (expired, released, someone else's):
        # reserve the units afresh from what is available.
        order, effect = _reserve_afresh(checkout, order)
        effects = (effect,)
    else:
        order = replace(order, stock=LOST, reservation_id=None, stock_command_id=None)
    updated = replace(checkout, orders=tuple(order if o.order_id == order.order_id else o for o in checkout.orders))
    if updated.state == PAYMENT_RECEIVED and all(o.settled for o in updated.orders):
        settled = _settle(updated, now)
        return Step(settled.checkout, settled.events, (*effects, *settled.effects))
    return Step(updated, (), effects)


#: How many answered charges a checkout remembers besides the one that paid
#: (only the payment provider writes payment events: a bound, not a quota).
MAX_ANSWERED_CHARGES = 200


def payment_succeeded(checkout: Checkout, amount: Decimal, *, now: datetime, reference: str | None = None) -> Step:
    """A payment for this checkout. ``reference`` names the charge (the gateway's
    reference, else the message id): a charge already answered changes nothing,
    in whatever state the saga is; another one on a paid checkout is a double
    charge to refund."""
    if reference is not None and charge_answered(checkout, reference):
        return Step(checkout)  # a repeat of a charge already answered, whatever came of it
    if checkout.state == AWAITING_PAYMENT and now >= checkout.deadline:
        # The deadline passed before the payment was seen: the timeout wins,
        # whether or not its timer has fired yet.
        expired = deadline_reached(checkout, now=now)
        late = payment_succeeded(expired.checkout, amount, now=now, reference=reference)
        return Step(late.checkout, expired.events + late.events, expired.effects + late.effects)
    if checkout.state == CANCELLED:
        late_payment = LatePaymentReceived(checkout.payment_id, amount, now, reference)
        return Step(_answered(checkout, reference), (late_payment,))
    if checkout.state in (PAID, PAYMENT_RECEIVED):
        if reference is None or checkout.paid_reference is None:
            return Step(checkout)  # paid before charges were told apart: take it as the same one
        refund = PaymentRefundRequired(checkout.payment_id, amount, DUPLICATE_PAYMENT, [], reference)
        return Step(_answered(checkout, reference), (refund,))
    if amount != checkout.total_amount:
        mismatch = PaymentAmountMismatch(checkout.payment_id, checkout.total_amount, amount, reference)
        return Step(_answered(checkout, reference), (mismatch,))
    received = replace(checkout, state=PAYMENT_RECEIVED, paid_reference=reference)
    if all(o.settled for o in received.orders):
        return _settle(received, now)
    return Step(received)


def charge_answered(checkout: Checkout, reference: str) -> bool:
    """Whether the charge ``reference`` was already answered for this checkout."""
    return reference == checkout.paid_reference or reference in checkout.answered_charges


def charges_of(checkout: Checkout) -> tuple[str, ...]:
    """Every charge this checkout answered, the one that paid first."""
    paid = (checkout.paid_reference,) if checkout.paid_reference else ()
    return (*paid, *checkout.answered_charges)


def _answered(checkout: Checkout, reference: str | None) -> Checkout:
    if reference is None:
        return checkout
    return replace(checkout, answered_charges=(*checkout.answered_charges, reference)[-MAX_ANSWERED_CHARGES:])


def _settle(checkout: Checkout, now: datetime) -> Step:
    """Pay the orders whose units are held; cancel and refund the ones whose units were lost."""
    held = [o for o in checkout.orders if o.stock == HELD]
    lost = [o for o in checkout.orders if o.stock == LOST]
    orders = tuple(replace(o, status=PAID if o.stock == HELD else CANCELLED) for o in checkout.orders)
    settled = replace(
        checkout,
        orders=orders,
        state=PAID if held else CANCELLED,
        closed_at=now,
        cancel_reason=None if held else OUT_OF_STOCK,
    )
    events: list[Event] = [OrderPaid(o.order_id, checkout.payment_id) for o in held]
    # An order whose units a recount took back was cancelled then already.
    events += [OrderCancelled(o.order_id, checkout.payment_id, OUT_OF_STOCK) for o in lost if o.status != CANCELLED]
    if lost:
        amount = sum((o.total_price for o in lost), Decimal(0))
        events.append(
            PaymentRefundRequired(
                checkout.payment_id, amount, OUT_OF_STOCK, [o.order_id for o in lost], checkout.paid_reference
            )
        )
    effects = tuple(CommitStock(o.reservation_id, o.product_id, o.order_id, o.holder) for o in held if o.reservation_id)
    return Step(settled, tuple(events), effects)


def units_taken_back(checkout: Checkout, reservation_id: str, *, now: datetime) -> Step:
    """The stock worker gave an order's units back because the stock was counted
    lower than what was held (``stock_reduced``): that order is lost. It is
    cancelled (``out_of_stock``) at once; the payment, when it comes, pays only
    the orders that kept their units and refunds the rest. On a paid checkout
    (the recount overtook the commit), the order is cancelled and refunded now.
    When no order is left, the checkout is cancelled."""
    order = next((o for o in checkout.orders if o.reservation_id == reservation_id and o.status != CANCELLED), None)
    if order is None or checkout.state == CANCELLED:
        return Step(checkout)  # not one of ours any more, or a repeat
    lost = replace(order, stock=LOST, status=CANCELLED, stock_command_id=None)
    orders = tuple(lost if o.order_id == order.order_id else o for o in checkout.orders)
    updated = replace(checkout, orders=orders)
    events: list[Event] = [OrderCancelled(order.order_id, checkout.payment_id, OUT_OF_STOCK)]
    if checkout.state == PAID:
        events.append(
            PaymentRefundRequired(
                checkout.payment_id, order.total_price, OUT_OF_STOCK, [order.order_id], checkout.paid_reference
            )
        )
    elif checkout.state == PAYMENT_RECEIVED and all(o.settled for o in orders):
        settled = _settle(updated, now)
        return Step(settled.checkout, (*events, *settled.events), settled.effects)
    if all(o.status == CANCELLED for o in orders):
        updated = replace(updated, state=CANCELLED, closed_at=now, cancel_reason=OUT_OF_STOCK)
    return Step(updated, tuple(events))


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
    # An order whose units a recount took back was cancelled then already.
    events = tuple(
        OrderCancelled(o.order_id, checkout.payment_id, reason)
        for o, before in zip(orders, checkout.orders, strict=True)
        if before.status != CANCELLED
    )
    # Compensations, one per order whose units are (or may soon be) held, in
    # reverse order. A take-over still on its way is released after it lands:
    # both travel on the product's partition, in order.
    effects = tuple(
        ReleaseStock(o.reservation_id, o.product_id, reason, o.holder)
        for o in reversed(orders)
        if o.reservation_id and o.stock != LOST
    )
    return Step(cancelled, events, effects)


# --- views -------------------------------------------------------------------------


def checkout_response(checkout: Checkout, *, now: datetime) -> dict[str, Any]:
    """The answer to the upstream checkout command (the original specification's shape)."""
    orders = _order_views(checkout)
    response: dict[str, Any] = {
        "checkout_type": checkout.checkout_type,
        "total_amount": str(checkout.total_amount),
        "order_count": len(orders),
        "payment_id": checkout.payment_id,
        "payment_hash": checkout.payment_hash,
        "payment_expires_at": checkout.deadline.isoformat(),
        "time_remaining_seconds": _seconds_left(checkout, now),
    }
    if checkout.checkout_type == "single_item":
        response["order"] = orders[0]
    else:
        response["orders"] = orders
    return response


def address_object(address: dict[str, Any] | str | None) -> dict[str, Any]:
    """The shipping address as order events carry it, always an object: a
    one-line address becomes ``{"line": ...}``, no address ``{}``."""
    if isinstance(address, str):
        return {"line": address}
    return address or {}


def checkout_status(checkout: Checkout, *, now: datetime) -> dict[str, Any]:
    """Where a checkout stands, for the buyer: each order's status, the deadline
    and the time left to pay (0 once paid or cancelled), and why it closed."""
    is_open = checkout.state == AWAITING_PAYMENT
    return {
        "payment_id": checkout.payment_id,
        "checkout_type": checkout.checkout_type,
        "state": checkout.state,
        "total_amount": str(checkout.total_amount),
        "order_count": len(checkout.orders),
        "orders": _order_views(checkout),
        "payment_method": checkout.payment_method,
        "gateway_name": checkout.gateway_name,
        "payment_expires_at": checkout.deadline.isoformat(),
        "time_remaining_seconds": _seconds_left(checkout, now) if is_open else 0,
        "is_paid": checkout.state == PAID,
        "is_cancelled": checkout.state == CANCELLED,
        "cancel_reason": checkout.cancel_reason,
        "closed_at": checkout.closed_at.isoformat() if checkout.closed_at else None,
    }


def _order_views(checkout: Checkout) -> list[dict[str, Any]]:
    return [
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


def _seconds_left(checkout: Checkout, now: datetime) -> int:
    return max(0, int((checkout.deadline - now).total_seconds()))


@dataclass(frozen=True)
class OverdueDeadline:
    """Internal: the safety net found an unpaid checkout past its deadline."""

    payment_id: str
    due_at: datetime

    @property
    def dedup_key(self) -> str:
        return f"overdue:{self.payment_id}"
