"""What clients read: a line and a cart as the replies show them."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from services.cart_worker.domain.availability import StockView, detect_changes, is_available
from services.cart_worker.domain.model import Cart, CartLine, Product


def line_view(
    line: CartLine, product: Product | None, *, live: bool = False, stock: StockView | None = None
) -> dict[str, Any]:
    """A line as answered to clients. With ``live``, availability and changes are
    judged against ``product`` as it is now."""
    view: dict[str, Any] = {
        "item_id": line.item_id,
        "product_id": line.product_id,
        "product_name": line.product_name,
        "image_url": line.image_url,
        "size": line.size,
        "quantity": line.quantity,
        "unit_price": str(line.unit_price),
        "line_total": str(line.line_total),
        "properties": dict(line.properties),
        "added_at": line.added_at.isoformat(),
        "reservation_state": line.reservation_state,
    }
    if live:
        changes = detect_changes(line, product, stock)
        view["is_available"] = is_available(line, product, stock)
        view["has_changed"] = bool(changes)
        view["changes"] = [change.as_dict() for change in changes]
    return view


def cart_summary(cart: Cart, catalog: Mapping[str, Product], stock: StockView | None = None) -> dict[str, Any]:
    """The cart as a buyer sees it: unavailable lines apart and out of the totals."""
    items, unavailable = [], []
    total_items, total_amount = 0, Decimal(0)
    for line in cart.lines:
        view = line_view(line, catalog.get(line.product_id), live=True, stock=stock)
        if view["is_available"]:
            items.append(view)
            total_items += line.quantity
            total_amount += line.line_total
        else:
            unavailable.append(view)
    return {
        "user_id": cart.user_id,
        "items": items,
        "unavailable_items": unavailable,
        "item_count": len(items),
        "total_items": total_items,
        "total_amount": str(total_amount),
        "has_changes": any(view["has_changed"] for view in (*items, *unavailable)),
    }
