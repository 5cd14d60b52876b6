"""``checkout.commands`` (the cart's hand-over) and ``checkout.timeouts`` (delayed
deadline events). Both are internal to cartflow and keyed by ``payment_id``:
one checkout has one payment, so its id names the checkout too."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from contracts.envelope import Command, Event, Identifier, Money


class CheckoutLine(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    order_id: Identifier
    item_id: Identifier
    product_id: Identifier
    product_name: str
    size: str | None = None
    quantity: int
    unit_price: Money
    total_price: Money
    reservation_id: str | None = None


class StartCheckout(Command):
    """Sent by the cart worker once a checkout passed validation; the cart lines
    are already out of the cart and their reservations held for the orders."""

    type: Literal["StartCheckout"] = "StartCheckout"
    payment_id: Identifier
    payment_hash: str
    user_id: Identifier
    checkout_type: Literal["single_item", "full_cart"]
    lines: Annotated[list[CheckoutLine], Field(min_length=1, max_length=500)]
    total_amount: Money
    payment_method: str
    gateway_name: str
    shipping_address: dict[str, Any]
    #: The upstream command this checkout answers.
    command_type: str
    command_message_id: str


class PaymentDeadlineReached(Event):
    type: Literal["PaymentDeadlineReached"] = "PaymentDeadlineReached"
    payment_id: Identifier
    due_at: AwareDatetime


start_checkout_adapter: TypeAdapter[Any] = TypeAdapter(StartCheckout)
deadline_adapter: TypeAdapter[Any] = TypeAdapter(PaymentDeadlineReached)
