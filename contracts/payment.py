"""``payment.events``: published by a payment-gateway adapter, keyed by ``payment_id``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from contracts.envelope import Event, Identifier, Money


class PaymentSucceeded(Event):
    type: Literal["PaymentSucceeded"] = "PaymentSucceeded"
    payment_id: Identifier
    amount: Money
    gateway_reference: Annotated[str, Field(max_length=500)] | None = None


class PaymentFailed(Event):
    type: Literal["PaymentFailed"] = "PaymentFailed"
    payment_id: Identifier
    reason: Annotated[str, Field(max_length=500)]


PAYMENT_EVENT_TYPES = frozenset({"PaymentSucceeded", "PaymentFailed"})
payment_event_adapter: TypeAdapter[Any] = TypeAdapter(
    Annotated[PaymentSucceeded | PaymentFailed, Field(discriminator="type")]
)
