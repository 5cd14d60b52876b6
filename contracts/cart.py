"""``cart.commands``, ``cart.replies`` and ``cart.events``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from contracts.envelope import BoundedInt, Command, Event, Identifier, Money

Properties = Annotated[dict[str, Any], Field(max_length=50)]
ItemIds = Annotated[list[Identifier], Field(min_length=1, max_length=500)]
Address = Annotated[dict[str, Any], Field(max_length=50)]
Text = Annotated[str, Field(min_length=1, max_length=200)]


# --- commands (in, key user_id) -------------------------------------------------


class AddItem(Command):
    type: Literal["AddItem"] = "AddItem"
    user_id: Identifier
    product_id: Identifier
    quantity: BoundedInt = 1
    size: Identifier | None = None
    properties: Properties | None = None


class UpdateItemQuantity(Command):
    type: Literal["UpdateItemQuantity"] = "UpdateItemQuantity"
    user_id: Identifier
    item_id: Identifier
    quantity: BoundedInt


class RemoveItem(Command):
    type: Literal["RemoveItem"] = "RemoveItem"
    user_id: Identifier
    item_id: Identifier


class ClearCart(Command):
    type: Literal["ClearCart"] = "ClearCart"
    user_id: Identifier


class GetCart(Command):
    type: Literal["GetCart"] = "GetCart"
    user_id: Identifier


class CheckChanges(Command):
    type: Literal["CheckChanges"] = "CheckChanges"
    user_id: Identifier


class AcceptChanges(Command):
    type: Literal["AcceptChanges"] = "AcceptChanges"
    user_id: Identifier
    item_ids: ItemIds | None = None


class ValidateCart(Command):
    type: Literal["ValidateCart"] = "ValidateCart"
    user_id: Identifier
    item_ids: ItemIds | None = None


class CheckoutItem(Command):
    type: Literal["CheckoutItem"] = "CheckoutItem"
    user_id: Identifier
    item_id: Identifier
    payment_method: Text
    gateway_name: Text
    shipping_address: Address


class CheckoutCart(Command):
    type: Literal["CheckoutCart"] = "CheckoutCart"
    user_id: Identifier
    payment_method: Text
    gateway_name: Text
    shipping_address: Address


CartCommand = Annotated[
    AddItem
    | UpdateItemQuantity
    | RemoveItem
    | ClearCart
    | GetCart
    | CheckChanges
    | AcceptChanges
    | ValidateCart
    | CheckoutItem
    | CheckoutCart,
    Field(discriminator="type"),
]
cart_command_adapter: TypeAdapter[Any] = TypeAdapter(CartCommand)
CART_COMMANDS = (
    AddItem,
    UpdateItemQuantity,
    RemoveItem,
    ClearCart,
    GetCart,
    CheckChanges,
    AcceptChanges,
    ValidateCart,
    CheckoutItem,
    CheckoutCart,
)
CART_COMMAND_TYPES = frozenset(m.model_fields["type"].default for m in CART_COMMANDS)


# --- replies (out, key user_id) -------------------------------------------------


class CommandResult(Event):
    """The one answer to one command, correlated by the command's ``correlation_id``."""

    type: Literal["CommandResult"] = "CommandResult"
    correlation_id: Identifier
    command_type: str
    command_message_id: str | None = None
    user_id: str | None = None
    success: bool
    error_code: str | None = None
    error_message: str | None = None
    suggested_action: str | None = None
    cart_item_id: str | None = None
    available_quantity: int | None = None
    data: dict[str, Any] | None = None


# --- events (out, key user_id) --------------------------------------------------


class ItemAdded(Event):
    type: Literal["ItemAdded"] = "ItemAdded"
    user_id: str
    item_id: str
    product_id: str
    size: str | None = None
    quantity: int  # added by this command
    line_quantity: int  # on the line afterwards
    unit_price: Money
    product_name: str


class ItemQuantityChanged(Event):
    type: Literal["ItemQuantityChanged"] = "ItemQuantityChanged"
    user_id: str
    item_id: str
    product_id: str
    size: str | None = None
    old_quantity: int
    new_quantity: int


class ItemRemoved(Event):
    type: Literal["ItemRemoved"] = "ItemRemoved"
    user_id: str
    item_id: str
    product_id: str
    size: str | None = None
    quantity: int


class CartCleared(Event):
    type: Literal["CartCleared"] = "CartCleared"
    user_id: str
    item_ids: list[str]


class ProductChangesDetected(Event):
    type: Literal["ProductChangesDetected"] = "ProductChangesDetected"
    user_id: str
    items: list[dict[str, Any]]  # {item_id, product_id, size, changes: [...]}


class ChangesAccepted(Event):
    type: Literal["ChangesAccepted"] = "ChangesAccepted"
    user_id: str
    item_ids: list[str]
    total_amount: Money


class CartCheckedOut(Event):
    """Added to v1: lines left the cart for a checkout (their reservations went with them)."""

    type: Literal["CartCheckedOut"] = "CartCheckedOut"
    user_id: str
    payment_id: str
    checkout_type: str
    item_ids: list[str]


CART_EVENT_TYPES = (
    ItemAdded,
    ItemQuantityChanged,
    ItemRemoved,
    CartCleared,
    ProductChangesDetected,
    ChangesAccepted,
    CartCheckedOut,
)
