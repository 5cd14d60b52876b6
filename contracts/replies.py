"""The ``data`` of each command's ``CommandResult``, typed.

``CommandResult.data`` stays a JSON object on the wire; these models say what
it holds for each command type (``REPLY_DATA``), and a refusal's data for the
codes that carry any (``REJECTION_DATA``). Clients may parse ``data`` with them;
fields may be added within contract v1, so the models ignore what they do not
know. Money is a decimal string, never a JSON number, and so are the old and
new prices in ``change_details``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from contracts.envelope import Money, Total


class ReplyData(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- the cart and its lines --------------------------------------------------------


class Change(ReplyData):
    """One difference between a line's snapshot and the catalog or stock now."""

    field: Literal["name", "price", "availability", "stock"]
    old: str | None
    new: str | None
    message: str


class OldNew(ReplyData):
    old: str
    new: str


class Unavailable(ReplyData):
    available: Literal[False] = False
    reason: str


class ChangeDetails(ReplyData):
    """The changes keyed by field, as the original carts app reports them."""

    name: OldNew | None = None
    price: OldNew | None = None
    availability: Unavailable | None = None


class LineView(ReplyData):
    """A cart line judged live: ``unit_price`` and ``product_name`` are what the
    line was added with, ``current_price`` and ``line_total`` what it costs now."""

    item_id: str
    product_id: str
    product_name: str
    image_url: str | None
    size: str | None
    quantity: int
    unit_price: Money
    current_price: Money
    line_total: Total
    properties: dict[str, Any]
    added_at: AwareDatetime
    reservation_state: Literal["untracked", "pending", "reserved", "unreserved"]
    is_available: bool
    has_changed: bool
    changes: list[Change]
    change_details: ChangeDetails
    product_last_checked: AwareDatetime


class CartView(ReplyData):
    """The answer to ``GetCart``: available lines newest first and in the totals,
    unavailable ones apart."""

    user_id: str
    items: list[LineView]
    unavailable_items: list[LineView]
    item_count: int
    total_items: int
    total_amount: Total
    has_changes: bool


class CartSummary(ReplyData):
    total_items: int
    total_price: Total


class ItemAddedReply(LineView):
    """The answer to ``AddItem``: the line and the original app's two-figure
    summary of the cart (the whole cart is what ``GetCart`` answers)."""

    message: str
    cart_item_id: str
    cart_summary: CartSummary
    #: Only when the command asked for it (``include_cart``).
    cart: CartView | None = None


class QuantityUpdatedReply(LineView):
    """The answer to ``UpdateItemQuantity``: the line, its new quantity and
    subtotal, and the two-figure summary of the cart."""

    message: str
    cart_item_id: str
    new_quantity: int
    new_subtotal: Total
    cart_summary: CartSummary
    #: Only when the command asked for it (``include_cart``).
    cart: CartView | None = None


class ItemRemovedReply(ReplyData):
    message: str
    cart_item_id: str
    cart_summary: CartSummary


class CartClearedReply(ReplyData):
    message: str
    removed_item_ids: list[str]


class CartCountReply(ReplyData):
    """The answer to ``GetCartCount``: units and their total, unavailable lines left out."""

    count: int
    total_items: int
    item_count: int
    total_amount: Total
    total_price: Total


class SizeView(ReplyData):
    size: str
    price: Money
    #: Units available now; None where the stock is not known.
    available_quantity: int | None


class ProductView(ReplyData):
    product_id: str
    name: str
    price: Money
    image_url: str | None
    sizes: list[SizeView]
    #: Units available now (of a product without sizes); None where not known.
    available_quantity: int | None
    is_available: bool


class ProductPage(ReplyData):
    """The answer to ``ListProducts``: ask again with ``after: next_after`` for the next page."""

    products: list[ProductView]
    next_after: str | None


class ChangedItem(ReplyData):
    item_id: str
    cart_item_id: str
    product_id: str
    size: str | None
    changes: list[Change]
    change_details: ChangeDetails
    product_last_checked: AwareDatetime


class ChangesReport(ReplyData):
    """The answer to ``CheckChanges``."""

    has_changes: bool
    items_checked: int
    changed_items: list[ChangedItem]


class ChangesAcceptedReply(ReplyData):
    accepted_item_ids: list[str]
    cart: CartView


class ValidationDetail(ReplyData):
    item_id: str
    cart_item_id: str
    product_id: str
    product_name: str
    size: str | None
    quantity: int
    requested_quantity: int
    #: Units the line could have now; None where the stock is not known.
    available_quantity: int | None
    line_total: Total
    item_total: Total
    is_valid: bool
    issues: list[Change]


class ValidationReport(ReplyData):
    """The answer to ``ValidateCart``, and the data of a ``CHECKOUT_VALIDATION_FAILED`` refusal."""

    is_valid: bool
    total_valid_amount: Total
    validation_details: list[ValidationDetail]


# --- checkouts -----------------------------------------------------------------------


class OrderView(ReplyData):
    order_id: str
    product_id: str
    product_name: str
    size: str | None
    quantity: int
    total_price: Total
    status: str


class CheckoutStarted(ReplyData):
    """The answer to ``CheckoutItem`` (with ``order``) and ``CheckoutCart`` (with ``orders``)."""

    checkout_type: Literal["single_item", "full_cart"]
    total_amount: Total
    order_count: int
    payment_id: str
    payment_hash: str
    payment_expires_at: AwareDatetime
    time_remaining_seconds: int
    order: OrderView | None = None
    orders: list[OrderView] | None = None


class CheckoutStatus(ReplyData):
    """The answer to ``GetCheckout``: where a checkout and its orders stand."""

    payment_id: str
    checkout_type: Literal["single_item", "full_cart"]
    state: Literal["awaiting_payment", "payment_received", "paid", "cancelled"]
    total_amount: Total
    order_count: int
    orders: list[OrderView]
    payment_method: str
    gateway_name: str
    payment_expires_at: AwareDatetime
    time_remaining_seconds: int
    is_paid: bool
    is_cancelled: bool
    cancel_reason: str | None
    closed_at: AwareDatetime | None


class PaymentStatus(ReplyData):
    """The answer to ``GetPayment``: what the payment of a checkout should be, and where it stands."""

    payment_id: str
    state: Literal["awaiting_payment", "payment_received", "paid", "cancelled"]
    total_amount: Total
    payment_expires_at: AwareDatetime


#: The model of ``CommandResult.data`` when a command of each type succeeded.
REPLY_DATA: dict[str, type[ReplyData]] = {
    "AddItem": ItemAddedReply,
    "UpdateItemQuantity": QuantityUpdatedReply,
    "RemoveItem": ItemRemovedReply,
    "ClearCart": CartClearedReply,
    "GetCart": CartView,
    "GetCartCount": CartCountReply,
    "ListProducts": ProductPage,
    "CheckChanges": ChangesReport,
    "AcceptChanges": ChangesAcceptedReply,
    "ValidateCart": ValidationReport,
    "CheckoutItem": CheckoutStarted,
    "CheckoutCart": CheckoutStarted,
    "GetCheckout": CheckoutStatus,
    "GetPayment": PaymentStatus,
}

#: The model of ``CommandResult.data`` of a refusal, for the codes that carry data.
REJECTION_DATA: dict[str, type[ReplyData]] = {
    "CHECKOUT_VALIDATION_FAILED": ValidationReport,
}
