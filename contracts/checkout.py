"""``checkout.commands`` (the cart's hand-over), ``checkout.handovers`` (the checkout
worker's answer to it) and ``checkout.timeouts`` (delayed deadline events). All
are internal to cartflow; commands and timeouts are keyed by ``payment_id`` (one
checkout has one payment, so its id names the checkout too), hand-over answers
by ``user_id``, so they reach the cart in order with the buyer's commands."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from contracts.envelope import Command, Event, Identifier, Money
from contracts.free_form import FreeFormObject


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

    @model_validator(mode="after")
    def _adds_up(self) -> CheckoutLine:
        if self.quantity < 1:
            raise ValueError(f"line {self.order_id}: quantity must be at least 1")
        if self.total_price != self.unit_price * self.quantity:
            raise ValueError(f"line {self.order_id}: total_price is not unit_price x quantity")
        return self


class StartCheckout(Command):
    """Sent by the cart worker once a checkout passed validation and every line
    holds a reservation; the lines are already out of the cart. The checkout
    takes each reservation over from the cart line (or reserves afresh when it
    is gone), only from the buyer's own cart line (``cart:<user_id>:<item_id>``).
    Its total must be the sum of its lines, each line's total its unit price
    times its quantity. Only the cart worker may write this topic (see the
    ACL table in docs/security.md): it is trusted for prices."""

    type: Literal["StartCheckout"] = "StartCheckout"
    payment_id: Identifier
    payment_hash: str
    user_id: Identifier
    checkout_type: Literal["single_item", "full_cart"]
    lines: Annotated[list[CheckoutLine], Field(min_length=1, max_length=500)]
    total_amount: Money
    payment_method: str
    gateway_name: str
    shipping_address: FreeFormObject | str | None = None
    #: The upstream command this checkout answers.
    command_type: str
    command_message_id: str

    @model_validator(mode="after")
    def _adds_up(self) -> StartCheckout:
        if self.total_amount != sum((line.total_price for line in self.lines), Decimal(0)):
            raise ValueError("total_amount is not the sum of the lines' total_price")
        if len({line.order_id for line in self.lines}) != len(self.lines):
            raise ValueError("two lines share an order_id")
        return self


class PaymentDeadlineReached(Event):
    type: Literal["PaymentDeadlineReached"] = "PaymentDeadlineReached"
    payment_id: Identifier
    due_at: AwareDatetime


class _HandoverAnswer(Event):
    """Added to v1, on ``checkout.handovers`` (keyed by ``user_id``, written only by
    the checkout worker, read only by the cart worker): the checkout worker's
    answer to a ``StartCheckout``. The cart keeps the lines it hands over until
    one of these arrives; ``causation_id`` is the ``StartCheckout``'s
    ``message_id``."""

    payment_id: Identifier
    user_id: Identifier
    #: The cart lines the hand-over carried.
    item_ids: Annotated[list[Identifier], Field(max_length=500)] = Field(default_factory=list)


class CheckoutAccepted(_HandoverAnswer):
    """The checkout exists: the cart drops the lines it handed over."""

    type: Literal["CheckoutAccepted"] = "CheckoutAccepted"


class CheckoutRefused(_HandoverAnswer):
    """The checkout worker could not take the hand-over (it failed validation or
    could not be stored): the cart keeps its lines and their stock, and answers
    the buyer's checkout command with ``error_code``."""

    type: Literal["CheckoutRefused"] = "CheckoutRefused"
    error_code: str
    message: str = ""


HANDOVER_ANSWER_TYPES = (CheckoutAccepted, CheckoutRefused)
handover_answer_adapter: TypeAdapter[Any] = TypeAdapter(
    Annotated[CheckoutAccepted | CheckoutRefused, Field(discriminator="type")]
)
start_checkout_adapter: TypeAdapter[Any] = TypeAdapter(StartCheckout)
deadline_adapter: TypeAdapter[Any] = TypeAdapter(PaymentDeadlineReached)


class GetCheckout(Command):
    """Added to v1, on ``checkout.queries``: where a checkout stands (each order's
    status, the payment deadline and the time left, paid or cancelled and why).
    Answered with one ``CommandResult`` on ``reply_to`` (default ``cart.replies``);
    a payment id that is not the user's is answered ``CHECKOUT_NOT_FOUND``."""

    type: Literal["GetCheckout"] = "GetCheckout"
    user_id: Identifier
    payment_id: Identifier


class GetPayment(Command):
    """Added to v1, on ``checkout.queries``, for the payment webhook: whether a
    checkout has this payment id, and the amount and state of its payment; no
    user, orders or address. Answered with one ``CommandResult`` on ``reply_to``;
    an unknown payment id is answered ``CHECKOUT_NOT_FOUND``."""

    type: Literal["GetPayment"] = "GetPayment"
    payment_id: Identifier


CHECKOUT_QUERY_TYPES = frozenset({"GetCheckout", "GetPayment"})
checkout_query_adapter: TypeAdapter[Any] = TypeAdapter(
    Annotated[GetCheckout | GetPayment, Field(discriminator="type")]
)
