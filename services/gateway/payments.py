"""Stripe's webhook events read as cartflow's payment events. Pure: the
signature is checked before (``stripe.WebhookSignature``, in the route), and
what is read here is published by the route.

A ``payment_intent.succeeded`` or ``payment_intent.payment_failed`` whose
``metadata.payment_id`` is a cartflow payment id becomes ``PaymentSucceeded`` or
``PaymentFailed``. Its ``message_id`` comes from Stripe's event id and its
``gateway_reference`` from the charge (the intent's ``latest_charge``, else the
intent): Stripe delivering the event again is the same message and the same
charge. The amount received is converted from the currency's minor units by
its exponent (Stripe's zero- and three-decimal currencies included).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from contracts.envelope import is_identifier, message_id_for
from contracts.payment import PaymentFailed, PaymentSucceeded

#: The Stripe event types that say how a payment ended, and what cartflow calls each.
HANDLED = {"payment_intent.succeeded": "succeeded", "payment_intent.payment_failed": "failed"}

#: Stripe's zero-decimal currencies: an amount of 500 JPY is 500.
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
#: Stripe's three-decimal currencies: 5120 BHD minor units is 5.120.
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


@dataclass(frozen=True)
class Ignored:
    """Not a payment outcome of a cartflow checkout: acknowledged, nothing published."""

    reason: str


@dataclass(frozen=True)
class Unreadable:
    """A signed event that says a payment ended, in a form cartflow cannot take."""

    reason: str


@dataclass(frozen=True)
class Outcome:
    """How a cartflow checkout's payment ended, as the provider said."""

    event_id: str
    payment_id: str
    succeeded: bool
    charge: str
    amount: Decimal | None = None
    reason: str | None = None

    def message(self, now: datetime) -> PaymentSucceeded | PaymentFailed:
        message_id = message_id_for("stripe", "PaymentEvent", self.event_id)
        if self.succeeded:
            assert self.amount is not None
            return PaymentSucceeded(
                message_id=message_id, occurred_at=now, payment_id=self.payment_id, amount=self.amount,
                gateway_reference=self.charge,
            )
        return PaymentFailed(message_id=message_id, occurred_at=now, payment_id=self.payment_id, reason=self.reason or "")


def exponent(currency: str) -> int:
    """How many decimals the minor units of ``currency`` stand for, as Stripe counts them."""
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def major_units(minor: int, currency: str) -> Decimal | None:
    """``minor`` units of ``currency`` as an amount of at most two decimals (cartflow's
    money), or None when it has more (a three-decimal amount not ending in 0)."""
    amount = Decimal(minor).scaleb(-exponent(currency))
    cents = amount.quantize(Decimal("0.01"))
    return cents if cents == amount else None


def read(event: Mapping[str, Any], *, currency: str) -> Outcome | Ignored | Unreadable:
    """What a verified Stripe event says of a checkout priced in ``currency``."""
    kind = event.get("type")
    if kind not in HANDLED:
        return Ignored(f"event type {str(kind)[:100]!r} is not a payment outcome")
    event_id = event.get("id")
    data = event.get("data")
    intent = data.get("object") if isinstance(data, Mapping) else None
    if not is_identifier(event_id) or not isinstance(intent, Mapping) or intent.get("object") != "payment_intent":
        return Unreadable("the event carries no payment intent")
    metadata = intent.get("metadata")
    payment_id = metadata.get("payment_id") if isinstance(metadata, Mapping) else None
    if payment_id is None:
        return Ignored("the payment intent names no cartflow payment_id")
    if not is_identifier(payment_id):
        return Unreadable("metadata.payment_id is not a cartflow payment id")
    intent_id, charge = intent.get("id"), intent.get("latest_charge")
    reference = charge if is_identifier(charge) else intent_id
    if not is_identifier(reference):
        return Unreadable("the payment intent has no id")
    if HANDLED[kind] == "failed":
        error = intent.get("last_payment_error")
        code = error.get("decline_code") or error.get("code") if isinstance(error, Mapping) else None
        reason = code if isinstance(code, str) and is_identifier(code) else "payment_failed"
        return Outcome(event_id, payment_id, succeeded=False, charge=reference, reason=reason[:100])
    paid_in = intent.get("currency")
    if not isinstance(paid_in, str) or paid_in.lower() != currency.lower():
        return Unreadable(f"paid in {str(paid_in)[:10]!r}, the shop's prices are in {currency!r}")
    received = intent.get("amount_received", intent.get("amount"))
    if isinstance(received, bool) or not isinstance(received, int) or not 0 <= received < 10**15:
        return Unreadable("the amount received is not a count of minor units")
    amount = major_units(received, paid_in.lower())
    if amount is None:
        return Unreadable("the amount has more decimals than cartflow's money")
    return Outcome(event_id, payment_id, succeeded=True, charge=reference, amount=amount)
