"""Commands that edit a cart: add, change a quantity, remove, clear."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from contracts.errors import ERROR_MESSAGES, ErrorCode
from services.cart_worker.domain.events import CartCleared, ItemAdded, ItemQuantityChanged, ItemRemoved
from services.cart_worker.domain.model import DEFAULT_MAX_QUANTITY, Cart, CartLimits, CartLine, Product
from services.cart_worker.domain.outcomes import (
    Accepted,
    Outcome,
    Rejected,
    cannot_add_more,
    invalid_quantity,
    item_not_found,
    not_enough_stock,
)
from services.cart_worker.domain.availability import StockView
from services.cart_worker.domain.views import added_view, removed_view, updated_view

CLEARED = "Cart cleared successfully"


def add_item(
    cart: Cart,
    product: Product | None,
    *,
    product_id: str,
    quantity: int,
    size: str | None,
    properties: Mapping[str, Any] | None,
    new_item_id: str,
    now: datetime,
    limits: CartLimits = CartLimits(),
    available: int | None = None,
    catalog: Mapping[str, Product] | None = None,
    stock: StockView | None = None,
    view: bool = True,
) -> Outcome:
    """Put ``quantity`` units of a product into the cart, merging with its line if present.

    The line snapshots the product's name, effective price and image as they
    are now; a later catalog change is reported by ``check_changes``. With
    ``available`` (the stock read model's units, when the stock worker does not
    decide at once), the line must fit in it. Without ``view``, the answer's
    data is left for the caller to build (see ``update_item_quantity``).
    """
    if product is None or product.is_deleted:
        return Rejected(
            ErrorCode.PRODUCT_INACTIVE,
            "Product not found" if product is None else ERROR_MESSAGES[ErrorCode.PRODUCT_INACTIVE],
            f"Product {product_id} is not sold: remove it from the page or choose another one",
        )
    if product.has_sizes and size is None:
        return Rejected(
            ErrorCode.SIZE_REQUIRED,
            ERROR_MESSAGES[ErrorCode.SIZE_REQUIRED],
            "Send the size, one of: " + ", ".join(option.size for option in product.sizes),
        )
    unit_price = product.effective_price(size)
    if unit_price is None or (size is not None and not product.has_sizes):
        return Rejected(
            ErrorCode.SIZE_NOT_AVAILABLE,
            f"Size {size} not available for this product",
            "Choose one of the sizes offered"
            if product.has_sizes
            else "This product has no sizes: send the command without one",
        )
    max_quantity = limits.max_quantity
    if not 1 <= quantity <= max_quantity:
        return invalid_quantity(quantity, max_quantity)

    existing = cart.line_for(product_id, size)
    if existing is None and len(cart.lines) >= limits.max_lines:
        return Rejected(
            ErrorCode.CART_LIMIT_REACHED,
            f"The cart already holds {len(cart.lines)} different items, the most it can hold",
            "Remove an item or check out before adding another one",
        )
    merged = {**(existing.properties if existing else {}), **(properties or {})}
    if not limits.properties_fit(merged):
        return Rejected(
            ErrorCode.CART_LIMIT_REACHED,
            f"The item's properties would exceed {limits.max_property_keys} keys "
            f"or {limits.max_property_bytes} bytes",
            "Send fewer or shorter properties",
        )
    if existing is None:
        if available is not None and quantity > available:
            return not_enough_stock(available, quantity, size)
        line = CartLine(
            item_id=new_item_id,
            product_id=product_id,
            size=size,
            quantity=quantity,
            product_name=product.name,
            unit_price=unit_price,
            image_url=product.image_url,
            added_at=now,
            updated_at=now,
            properties=merged,
        )
    else:
        room = max_quantity - existing.quantity
        if quantity > room:
            return Rejected(
                ErrorCode.INVALID_QUANTITY,
                ERROR_MESSAGES[ErrorCode.INVALID_QUANTITY],
                f"Add at most {room} more ({existing.quantity} already in the cart, at most {max_quantity})"
                if room
                else f"This line is full ({max_quantity} at most)",
                available_quantity=room,
                item_id=existing.item_id,
            )
        if available is not None and existing.quantity + quantity > available:
            return cannot_add_more(quantity, available - existing.quantity, item_id=existing.item_id)
        line = replace(
            existing,
            quantity=existing.quantity + quantity,
            updated_at=now,
            properties=merged,
        )
    event = ItemAdded(
        user_id=cart.user_id,
        item_id=line.item_id,
        product_id=product_id,
        size=size,
        quantity=quantity,
        line_quantity=line.quantity,
        unit_price=line.unit_price,
        product_name=line.product_name,
    )
    new_cart = cart.with_line(line, now)
    if not view:
        return Accepted(new_cart, (event,), None, line.item_id)
    answer = added_view(new_cart, line.item_id, {**(catalog or {}), product_id: product}, stock, now=now)
    return Accepted(new_cart, (event,), answer, line.item_id)


def update_item_quantity(
    cart: Cart,
    *,
    item_id: str,
    quantity: int,
    now: datetime,
    max_quantity: int = DEFAULT_MAX_QUANTITY,
    catalog: Mapping[str, Product] | None = None,
    available: int | None = None,
    stock: StockView | None = None,
    view: bool = True,
) -> Outcome:
    """Set a line's quantity. Zero is not a quantity: ``remove_item`` removes.
    With ``available`` (see ``add_item``), the new quantity must fit in it.
    Without ``view``, the answer's data is left for the caller to build when it
    answers (a change that waits for the stock worker answers later)."""
    line = cart.line(item_id)
    if line is None:
        return item_not_found(item_id)
    if not 1 <= quantity <= max_quantity:
        return invalid_quantity(quantity, max_quantity)
    catalog = catalog or {}
    if quantity == line.quantity:
        return Accepted(cart, (), updated_view(cart, item_id, catalog, stock, now=now) if view else None, item_id)
    if available is not None and quantity > available:
        return not_enough_stock(available, quantity, line.size, item_id=item_id)
    updated = replace(line, quantity=quantity, updated_at=now)
    event = ItemQuantityChanged(
        user_id=cart.user_id,
        item_id=item_id,
        product_id=line.product_id,
        size=line.size,
        old_quantity=line.quantity,
        new_quantity=quantity,
    )
    new_cart = cart.with_line(updated, now)
    answer = updated_view(new_cart, item_id, catalog, stock, now=now) if view else None
    return Accepted(new_cart, (event,), answer, item_id)


def remove_item(
    cart: Cart, *, item_id: str, now: datetime, catalog: Mapping[str, Product] | None = None,
    stock: StockView | None = None,
) -> Outcome:
    line = cart.line(item_id)
    if line is None:
        return item_not_found(item_id)
    event = ItemRemoved(
        user_id=cart.user_id,
        item_id=item_id,
        product_id=line.product_id,
        size=line.size,
        quantity=line.quantity,
    )
    new_cart = cart.without([item_id], now)
    return Accepted(new_cart, (event,), removed_view(new_cart, item_id, catalog or {}, stock), item_id)


def clear_cart(cart: Cart, *, now: datetime) -> Outcome:
    """Empty the cart. Clearing an empty cart succeeds and changes nothing."""
    if cart.is_empty:
        return Accepted(cart, (), {"message": CLEARED, "removed_item_ids": []})
    item_ids = [line.item_id for line in cart.lines]
    event = CartCleared(user_id=cart.user_id, item_ids=item_ids)
    return Accepted(cart.without(item_ids, now), (event,), {"message": CLEARED, "removed_item_ids": item_ids})
