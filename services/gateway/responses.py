"""The gateway's responses, typed: the original carts app's shapes (what
``original_api`` makes of cartflow's replies) and its error format, as the
OpenAPI document publishes them. Fields may be added within v1; the models
say what a client can rely on."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from contracts.envelope import Money, Total
from contracts.replies import (
    CartSummary,
    ChangeDetails,
    CheckoutStarted,
    CheckoutStatus,
    ProductPage,
    ValidationDetail,
    ValidationReport,
)


class Shape(BaseModel):
    model_config = ConfigDict(extra="allow")


class Problem(Shape):
    """Every refusal, in the original app's error format (``error`` repeats the message, as its views answer)."""

    success: Literal[False]
    error_code: str | None
    error_message: str | None
    error: str | None
    suggested_action: str | None
    cart_item_id: str | None = None
    available_quantity: int | None = None
    #: 401: why the token was refused.
    detail: str | None = None
    #: 503 and 504: the key to send the same request again with.
    idempotency_key: str | None = None
    #: A refused checkout (``CHECKOUT_VALIDATION_FAILED``): what is wrong with which line.
    is_valid: bool | None = None
    total_valid_amount: Total | None = None
    validation_details: list[ValidationDetail] | None = None


class ProductRef(Shape):
    id: str
    name: str
    current_price: Money
    image: str | None


class CartItem(Shape):
    """A cart line as the original lists it, with cartflow's own fields beside."""

    id: str
    product: ProductRef
    quantity: int
    size: str | None
    line_total: Total
    is_available: bool
    has_changed: bool
    changes: ChangeDetails
    product_last_checked: AwareDatetime
    product_properties: dict[str, Any]
    price_snapshot: Money
    added_at: AwareDatetime


class Cart(Shape):
    items: list[CartItem]
    total_items: int
    total_amount: Total
    has_changes: bool
    unavailable_items: list[CartItem]


class CartCount(Shape):
    count: int
    total_items: int
    total_amount: Total


class ItemAdded(Shape):
    message: str
    cart_item_id: str
    cart_summary: CartSummary


class ItemCreated(CartItem):
    """``POST /api/cart/``: the created (or grown) line."""

    cart_summary: CartSummary


class QuantityUpdated(Shape):
    message: str
    new_quantity: int
    new_subtotal: Total


class ItemRemoved(Shape):
    message: str
    cart_item_id: str
    cart_summary: CartSummary


class CartCleared(Shape):
    message: str
    removed_item_ids: list[str]


class ChangedLine(Shape):
    cart_item_id: str
    changes: ChangeDetails


class ChangesChecked(Shape):
    has_changes: bool
    items_checked: int
    changed_items: list[ChangedLine]


class ChangesAccepted(Cart):
    message: str
    accepted_item_ids: list[str]


class PaymentSent(Shape):
    message: str
    payment_id: str


class DevelopmentToken(Shape):
    token: str
    user_id: str


class WebhookReceived(Shape):
    received: Literal[True]
    #: Why the event was acknowledged without publishing anything.
    ignored: str | None = None
    payment_id: str | None = None
    #: The message published on ``payment.events``.
    published: Literal["PaymentSucceeded", "PaymentFailed"] | None = None


__all__ = [
    "Cart",
    "CartCleared",
    "CartCount",
    "ChangesAccepted",
    "ChangesChecked",
    "CheckoutStarted",
    "CheckoutStatus",
    "DevelopmentToken",
    "ItemAdded",
    "ItemCreated",
    "ItemRemoved",
    "PaymentSent",
    "Problem",
    "ProductPage",
    "QuantityUpdated",
    "ValidationReport",
    "WebhookReceived",
]
