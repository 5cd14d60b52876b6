"""What a cart command returns: ``Accepted`` with the new cart and its events, or
``Rejected`` with an error code, a message and a suggested action."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.errors import ERROR_MESSAGES, ErrorCode
from services.cart_worker.domain.events import DomainEvent
from services.cart_worker.domain.model import Cart


@dataclass(frozen=True)
class Accepted:
    cart: Cart
    events: tuple[DomainEvent, ...] = ()
    data: dict[str, Any] | None = None
    item_id: str | None = None


@dataclass(frozen=True)
class Rejected:
    code: ErrorCode
    message: str
    suggested_action: str
    available_quantity: int | None = None
    item_id: str | None = None
    data: dict[str, Any] | None = None


Outcome = Accepted | Rejected


def item_not_found(item_id: str) -> Rejected:
    return Rejected(
        ErrorCode.ITEM_NOT_FOUND,
        ERROR_MESSAGES[ErrorCode.ITEM_NOT_FOUND],
        f"Item {item_id} is not in this cart: refresh the cart and use one of its item ids",
        item_id=item_id,
    )


def cart_empty() -> Rejected:
    return Rejected(ErrorCode.CART_EMPTY, ERROR_MESSAGES[ErrorCode.CART_EMPTY], "Add items to the cart first")


def invalid_quantity(quantity: int, max_quantity: int) -> Rejected:
    return Rejected(
        ErrorCode.INVALID_QUANTITY,
        ERROR_MESSAGES[ErrorCode.INVALID_QUANTITY],
        f"Choose a quantity from 1 to {max_quantity} (got {quantity})",
        available_quantity=max_quantity,
    )


def not_enough_stock(available: int, requested: int, size: str | None, *, item_id: str | None = None) -> Rejected:
    """Fewer units than asked for: "Only 5 items available (requested 10)", or
    "Only 2 items available in size M" for a size."""
    available = max(available, 0)
    message = (
        f"Only {available} items available in size {size}"
        if size
        else f"Only {available} items available (requested {requested})"
    )
    return Rejected(
        ErrorCode.INSUFFICIENT_STOCK,
        message,
        "Reduce quantity or try different size" if available else "Choose another product or size",
        available_quantity=available,
        item_id=item_id,
    )


def cannot_add_more(adding: int, more: int, *, item_id: str) -> Rejected:
    """The line is already in the cart and stock does not cover ``adding`` more."""
    more = max(more, 0)
    return Rejected(
        ErrorCode.INSUFFICIENT_STOCK,
        f"Cannot add {adding} more. Only {more} more available",
        f"Add at most {more} more" if more else "Keep the quantity already in the cart",
        available_quantity=more,
        item_id=item_id,
    )
