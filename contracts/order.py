"""``order.events``: what downstream services consume, keyed by ``payment_id`` so
that every event of one checkout stays in order."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime

from contracts.envelope import Event, Money


class OrderPlaced(Event):
    type: Literal["OrderPlaced"] = "OrderPlaced"
    order_id: str
    payment_id: str
    user_id: str
    product_id: str
    product_name: str
    size: str | None = None
    quantity: int
    unit_price: Money
    total_price: Money
    status: str = "under_paying"
    payment_expires_at: AwareDatetime
    shipping_address: dict[str, Any]


class PaymentRequested(Event):
    type: Literal["PaymentRequested"] = "PaymentRequested"
    payment_id: str
    payment_hash: str
    total_amount: Money
    payment_method: str
    gateway_name: str
    payment_expires_at: AwareDatetime
    order_ids: list[str]


class OrderPaid(Event):
    type: Literal["OrderPaid"] = "OrderPaid"
    order_id: str
    payment_id: str


class OrderCancelled(Event):
    type: Literal["OrderCancelled"] = "OrderCancelled"
    order_id: str
    payment_id: str
    reason: str  # "payment_timeout" | "payment_failed" | "out_of_stock"


class LatePaymentReceived(Event):
    """A payment after the checkout was cancelled: refund needed, no stock sold."""

    type: Literal["LatePaymentReceived"] = "LatePaymentReceived"
    payment_id: str
    amount: Money
    received_at: AwareDatetime
    #: Added to v1: the charge to refund (the payment's ``gateway_reference``,
    #: else its ``message_id``); each charge is announced once.
    gateway_reference: str | None = None


class PaymentAmountMismatch(Event):
    """Added to v1: a payment for another amount than asked; the payment stays pending."""

    type: Literal["PaymentAmountMismatch"] = "PaymentAmountMismatch"
    payment_id: str
    expected: Money
    received: Money
    #: Added to v1: the charge of the wrong amount (as for ``LatePaymentReceived``).
    gateway_reference: str | None = None


class PaymentAttemptFailed(Event):
    """Added to v1: the gateway reported a failure; the buyer may retry until the deadline."""

    type: Literal["PaymentAttemptFailed"] = "PaymentAttemptFailed"
    payment_id: str
    reason: str
    payment_expires_at: AwareDatetime


class PaymentRefundRequired(Event):
    """Added to v1: money was taken that no order keeps, so the payments team must
    give it back: orders of a paid checkout whose units could not be secured
    (``out_of_stock``, with their ids), or a second, distinct payment of a
    checkout already paid (``duplicate_payment``)."""

    type: Literal["PaymentRefundRequired"] = "PaymentRefundRequired"
    payment_id: str
    amount: Money
    reason: str  # "out_of_stock" | "duplicate_payment"
    order_ids: list[str] = []
    gateway_reference: str | None = None


class UnmatchedPaymentReceived(Event):
    """Added to v1: a payment for a payment id no checkout has. The payment is
    also dead-lettered on payment.events: redrive it if its checkout appears
    (it then pays); otherwise refund it."""

    type: Literal["UnmatchedPaymentReceived"] = "UnmatchedPaymentReceived"
    payment_id: str
    amount: Money
    gateway_reference: str | None = None
