"""What happened to a cart: the domain events its commands return."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class ItemAdded:
    user_id: str
    item_id: str
    product_id: str
    size: str | None
    quantity: int
    line_quantity: int
    unit_price: Decimal
    product_name: str


@dataclass(frozen=True)
class ItemQuantityChanged:
    user_id: str
    item_id: str
    product_id: str
    size: str | None
    old_quantity: int
    new_quantity: int


@dataclass(frozen=True)
class ItemRemoved:
    user_id: str
    item_id: str
    product_id: str
    size: str | None
    quantity: int


@dataclass(frozen=True)
class CartCleared:
    user_id: str
    item_ids: list[str]


@dataclass(frozen=True)
class ProductChangesDetected:
    user_id: str
    items: list[dict[str, Any]]


@dataclass(frozen=True)
class ChangesAccepted:
    user_id: str
    item_ids: list[str]
    total_amount: Decimal


@dataclass(frozen=True)
class CartCheckedOut:
    user_id: str
    payment_id: str
    checkout_type: str
    item_ids: list[str]


DomainEvent = (
    ItemAdded
    | ItemQuantityChanged
    | ItemRemoved
    | CartCleared
    | ProductChangesDetected
    | ChangesAccepted
    | CartCheckedOut
)
