"""``cart.commands``, ``cart.replies`` and ``cart.events``."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, BeforeValidator, Field, TypeAdapter, model_validator

from contracts.envelope import Command, Event, Identifier, LooseIdentifier, LooseInt, Money
from contracts.free_form import BoundedFreeFormObject

#: Free-form objects: keys as ``contracts.free_form`` allows them (sizes and
#: nesting are held to the deployment's limits at decoding).
Properties = BoundedFreeFormObject
ItemIds = Annotated[list[LooseIdentifier], Field(min_length=1, max_length=500)]
#: A shipping address as an object of fields, or as one line of text.
Address = BoundedFreeFormObject | Annotated[str, Field(min_length=1, max_length=1000)]
Text = Annotated[str, Field(min_length=1, max_length=200)]
#: A size; an empty string (what a form without a size sends) means none.
Size = Annotated[Identifier | None, BeforeValidator(lambda value: None if value == "" else value)]

# The names the original carts app's clients send, read beside cartflow's own.
class _Aliased(Command):
    """A command that also reads the original app's names for some fields: both
    names with different values is an error, not a silent choice."""

    _spellings: ClassVar[tuple[tuple[str, str], ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _one_value_per_field(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, alias in cls._spellings:
                if name in data and alias in data and data[name] != data[alias]:
                    raise ValueError(f"{name} and {alias} name the same field: send one of them")
        return data


ITEM_ID_SPELLINGS = (("item_id", "cart_item_id"),)
ITEM_IDS_SPELLINGS = (("item_ids", "cart_item_ids"),)


def _item_id() -> Any:
    return Field(validation_alias=AliasChoices("item_id", "cart_item_id"))


def _item_ids() -> Any:
    return Field(default=None, validation_alias=AliasChoices("item_ids", "cart_item_ids"))


# --- commands (in, key user_id) -------------------------------------------------


class AddItem(_Aliased):
    _spellings = (("properties", "product_properties"),)
    type: Literal["AddItem"] = "AddItem"
    user_id: Identifier
    product_id: LooseIdentifier
    quantity: LooseInt = 1
    size: Size = None
    properties: Properties | None = Field(
        default=None, validation_alias=AliasChoices("properties", "product_properties")
    )
    #: With true, the reply also carries the whole cart (``cart``, as ``GetCart``
    #: answers it); by default it carries the line and the two-figure summary.
    include_cart: bool = False


class UpdateItemQuantity(_Aliased):
    _spellings = ITEM_ID_SPELLINGS
    type: Literal["UpdateItemQuantity"] = "UpdateItemQuantity"
    user_id: Identifier
    item_id: LooseIdentifier = _item_id()
    quantity: LooseInt
    #: As ``AddItem``'s.
    include_cart: bool = False


class RemoveItem(_Aliased):
    _spellings = ITEM_ID_SPELLINGS
    type: Literal["RemoveItem"] = "RemoveItem"
    user_id: Identifier
    item_id: LooseIdentifier = _item_id()


class ClearCart(Command):
    type: Literal["ClearCart"] = "ClearCart"
    user_id: Identifier


class GetCart(Command):
    type: Literal["GetCart"] = "GetCart"
    user_id: Identifier


class GetCartCount(Command):
    """Added to v1: how many units the cart holds and their total (a cart badge)."""

    type: Literal["GetCartCount"] = "GetCartCount"
    user_id: Identifier


class ListProducts(Command):
    """Added to v1: a page of the catalog as the cart knows it (what a storefront
    lists), in product id order after ``after``, with the units available."""

    type: Literal["ListProducts"] = "ListProducts"
    user_id: Identifier
    after: Identifier | None = None
    limit: Annotated[int, Field(strict=True, ge=1, le=50)] = 20


class CheckChanges(Command):
    type: Literal["CheckChanges"] = "CheckChanges"
    user_id: Identifier


class AcceptChanges(_Aliased):
    _spellings = ITEM_IDS_SPELLINGS
    type: Literal["AcceptChanges"] = "AcceptChanges"
    user_id: Identifier
    item_ids: ItemIds | None = _item_ids()


class ValidateCart(_Aliased):
    _spellings = ITEM_IDS_SPELLINGS
    type: Literal["ValidateCart"] = "ValidateCart"
    user_id: Identifier
    item_ids: ItemIds | None = _item_ids()


class CheckoutItem(_Aliased):
    """``payment_method`` defaults to ``credit_card``, ``gateway_name`` to the
    deployment's ``CARTFLOW_CHECKOUT_DEFAULT_GATEWAY``; the address is optional."""

    _spellings = ITEM_ID_SPELLINGS

    type: Literal["CheckoutItem"] = "CheckoutItem"
    user_id: Identifier
    item_id: LooseIdentifier = _item_id()
    payment_method: Text = "credit_card"
    gateway_name: Text | None = None
    shipping_address: Address | None = None


class CheckoutCart(Command):
    """Defaults as for ``CheckoutItem``."""

    type: Literal["CheckoutCart"] = "CheckoutCart"
    user_id: Identifier
    payment_method: Text = "credit_card"
    gateway_name: Text | None = None
    shipping_address: Address | None = None


CartCommand = Annotated[
    AddItem
    | UpdateItemQuantity
    | RemoveItem
    | ClearCart
    | GetCart
    | GetCartCount
    | ListProducts
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
    GetCartCount,
    ListProducts,
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
