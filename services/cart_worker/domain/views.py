"""What clients read: a line and a cart as the replies show them.

Every view is judged live, against the catalog and stock as the cart knows them
at the moment of the answer: totals use current prices, a line the stock does
not fully cover is unavailable, and lines are listed newest first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.cart_worker.domain.availability import (
    StockView,
    change_details,
    detect_changes,
    is_available,
    live_price,
    stock_key,
)
from services.cart_worker.domain.model import Cart, CartLine, Product


def newest_first(lines: tuple[CartLine, ...]) -> list[CartLine]:
    """Lines as the original app lists them: the last added first (among lines
    added at the same moment, the one added later first)."""
    order = sorted(range(len(lines)), key=lambda i: (lines[i].added_at, i), reverse=True)
    return [lines[i] for i in order]


def line_view(
    line: CartLine, product: Product | None, *, stock: StockView | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """A line as answered to clients: its snapshot (``product_name``,
    ``unit_price``), its live price and total, and what changed since."""
    changes = detect_changes(line, product, stock)
    price = live_price(line, product)
    return {
        "item_id": line.item_id,
        "product_id": line.product_id,
        "product_name": line.product_name,
        "image_url": line.image_url,
        "size": line.size,
        "quantity": line.quantity,
        "unit_price": str(line.unit_price),
        "current_price": str(price),
        "line_total": str(price * line.quantity),
        "properties": dict(line.properties),
        "added_at": line.added_at.isoformat(),
        "reservation_state": line.reservation_state,
        "is_available": is_available(line, product, stock),
        "has_changed": bool(changes),
        "changes": [change.as_dict() for change in changes],
        "change_details": change_details(changes),
        "product_last_checked": (now or line.updated_at).isoformat(),
    }


def cart_summary(
    cart: Cart, catalog: Mapping[str, Product], stock: StockView | None = None, *, now: datetime | None = None
) -> dict[str, Any]:
    """The cart as a buyer sees it: unavailable lines apart and out of the totals."""
    items, unavailable = [], []
    total_items, total_amount = 0, Decimal(0)
    for line in newest_first(cart.lines):
        view = line_view(line, catalog.get(line.product_id), stock=stock, now=now)
        if view["is_available"]:
            items.append(view)
            total_items += line.quantity
            total_amount += Decimal(view["line_total"])
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


def cart_count(cart: Cart, catalog: Mapping[str, Product], stock: StockView | None = None) -> dict[str, Any]:
    """How many units the cart holds and what they cost now (what a cart badge shows);
    counted as ``cart_summary`` counts them, unavailable lines left out."""
    summary = cart_summary(cart, catalog, stock)
    return {
        "count": summary["total_items"],
        "total_items": summary["total_items"],
        "item_count": summary["item_count"],
        "total_amount": summary["total_amount"],
        "total_price": summary["total_amount"],
    }


def added_view(
    cart: Cart, item_id: str, catalog: Mapping[str, Product], stock: StockView | None = None, *,
    now: datetime | None = None, include_cart: bool = False,
) -> dict[str, Any]:
    """The answer to an add: the original app's ``message``, ``cart_item_id`` and
    two-figure ``cart_summary``, beside the line; the whole cart only when asked
    for (it is ``GetCart``'s answer)."""
    summary = cart_summary(cart, catalog, stock, now=now)
    return {
        "message": "Item added to cart successfully",
        "cart_item_id": item_id,
        "cart_summary": _brief(summary),
        **_line_in(summary, item_id),
        **({"cart": summary} if include_cart else {}),
    }


def updated_view(
    cart: Cart, item_id: str, catalog: Mapping[str, Product], stock: StockView | None = None, *,
    now: datetime | None = None, include_cart: bool = False,
) -> dict[str, Any]:
    """The answer to a quantity change: the original app's ``message``,
    ``new_quantity`` and ``new_subtotal``, beside the line and the two-figure
    ``cart_summary``; the whole cart only when asked for."""
    summary = cart_summary(cart, catalog, stock, now=now)
    line = _line_in(summary, item_id)
    return {
        "message": "Cart item updated successfully",
        "cart_item_id": item_id,
        "new_quantity": line["quantity"],
        "new_subtotal": line["line_total"],
        "cart_summary": _brief(summary),
        **line,
        **({"cart": summary} if include_cart else {}),
    }


def removed_view(
    cart: Cart, item_id: str, catalog: Mapping[str, Product], stock: StockView | None = None
) -> dict[str, Any]:
    """The answer to a removal: what the cart holds afterwards."""
    return {
        "message": "Item removed from cart successfully",
        "cart_item_id": item_id,
        "cart_summary": _brief(cart_summary(cart, catalog, stock)),
    }


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    return {"total_items": summary["total_items"], "total_price": summary["total_amount"]}


def _line_in(summary: dict[str, Any], item_id: str) -> dict[str, Any]:
    """The view of one line, as the summary already judged it."""
    return next(view for view in (*summary["items"], *summary["unavailable_items"]) if view["item_id"] == item_id)


#: Most bytes of product views in one catalog page: products with many long
#: sizes end the page early rather than outgrow a Kafka record (1 MiB).
PAGE_BYTES = 256 << 10


def product_page(products: list[Product], stock: StockView, limit: int) -> dict[str, Any]:
    """A page of the catalog as a storefront lists it: ``products`` holds up to
    ``limit + 1`` products in id order; the extra one only says a next page exists.
    A page also ends before its views pass ``PAGE_BYTES`` (it holds one at least)."""
    page = products[:limit]

    def units(product: Product, size: str | None) -> int | None:
        available = stock.get(stock_key(product.product_id, size))
        return None if available is None else max(available, 0)

    views: list[dict[str, Any]] = []
    used = 0
    for product in page:
        sizes = [
            {"size": option.size, "price": str(option.price), "available_quantity": units(product, option.size)}
            for option in product.sizes
        ]
        available = None if product.has_sizes else units(product, None)
        in_stock = (
            any(size["available_quantity"] != 0 for size in sizes) if product.has_sizes else available != 0
        )
        view = {
            "product_id": product.product_id,
            "name": product.name,
            "price": str(product.price),
            "image_url": product.image_url,
            "sizes": sizes,
            "available_quantity": available,
            "is_available": not product.is_deleted and in_stock,
        }
        used += len(json.dumps(view, ensure_ascii=False).encode())
        if views and used > PAGE_BYTES:
            break
        views.append(view)
    more = len(views) < len(products)
    return {"products": views, "next_after": views[-1]["product_id"] if more else None}
