"""What a cart command returns: ``Accepted`` with the new cart and its events, or
``Rejected`` with an error code, a message and a suggested action."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.errors import ErrorCode
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
        f"Item {item_id} is not in this cart",
        "Refresh the cart and use one of its item ids",
        item_id=item_id,
    )


def cart_empty() -> Rejected:
    return Rejected(ErrorCode.CART_EMPTY, "The cart is empty", "Add items to the cart first")


def invalid_quantity(quantity: int, max_quantity: int) -> Rejected:
    return Rejected(
        ErrorCode.INVALID_QUANTITY,
        f"Quantity must be between 1 and {max_quantity}, got {quantity}",
        f"Choose a quantity from 1 to {max_quantity}",
        available_quantity=max_quantity,
    )
