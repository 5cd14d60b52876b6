"""Whether a line can still be bought as it is, at what price, and what differs
between its snapshot and the catalog and stock now.

Prices are live: a line keeps the name and price it was added with, for change
detection, but its total is the product's current effective price (the size's
price where the line has a size) times its quantity.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from services.cart_worker.domain.model import PENDING, CartLine, Change, Product

#: Why an unavailable line cannot be bought, in the original app's words.
UNAVAILABLE_REASON = "Out of stock or product deleted"


def stock_key(product_id: str, size: str | None) -> str:
    return f"{product_id}|{size or ''}"


#: Units available per ``stock_key``, as last announced by the stock worker.
StockView = Mapping[str, int]


def _stock_for(line: CartLine, stock: StockView | None) -> int | None:
    """Units the line could still get, or None when its stock does not limit it
    (unknown, or the line holds a reservation covering it)."""
    if stock is None or line.is_reserved or line.reservation_state == PENDING:
        return None
    return stock.get(stock_key(line.product_id, line.size))


def _is_listed(product: Product | None) -> bool:
    """Whether the catalog knows the product's name and price (a product deleted
    before the cart ever saw it is known by its id alone)."""
    return product is not None and bool(product.name)


def live_price(line: CartLine, product: Product | None) -> Decimal:
    """The price one unit of the line costs now: the catalog's effective price,
    or the line's own snapshot where the catalog no longer prices it."""
    if _is_listed(product):
        assert product is not None
        price = product.effective_price(line.size)
        if price is not None:
            return price
    return line.unit_price


def live_total(line: CartLine, product: Product | None) -> Decimal:
    return live_price(line, product) * line.quantity


def units_available(line: CartLine, stock: StockView | None) -> int | None:
    """How many units this line could have now: what it holds plus what is free,
    or None where the stock is not known."""
    free = stock.get(stock_key(line.product_id, line.size)) if stock is not None else None
    if line.is_reserved:
        return line.reserved_quantity + max(free or 0, 0)
    return None if free is None else max(free, 0)


def detect_changes(line: CartLine, product: Product | None, stock: StockView | None = None) -> tuple[Change, ...]:
    """What differs between the line's snapshot and the catalog (and stock) now.

    Availability comes first; an unavailable line still reports its name and
    price changes where the catalog knows them."""
    changes = list(_availability_changes(line, product, stock))
    if _is_listed(product):
        assert product is not None
        if product.name != line.product_name:
            # The names are in old and new; repeating them here would double a reply's size.
            changes.append(Change("name", line.product_name, product.name, "The product was renamed"))
        price = product.effective_price(line.size)
        if price is not None and price != line.unit_price:
            direction = "increased" if price > line.unit_price else "decreased"
            changes.append(
                Change("price", str(line.unit_price), str(price), f"Price {direction} from {line.unit_price} to {price}")
            )
    return tuple(changes)


def _availability_changes(line: CartLine, product: Product | None, stock: StockView | None) -> tuple[Change, ...]:
    if product is None or product.is_deleted:
        return (Change("availability", "available", "unavailable", "The product is no longer available"),)
    if product.effective_price(line.size) is None:
        return (Change("availability", "available", "unavailable", f"Size {line.size} is no longer available"),)
    available = _stock_for(line, stock)
    if available is not None and available <= 0:
        return (Change("availability", "in_stock", "out_of_stock", "The product is out of stock"),)
    if available is not None and available < line.quantity:
        message = (
            f"Only {available} items available in size {line.size}"
            if line.size
            else f"Only {available} items available (requested {line.quantity})"
        )
        return (Change("stock", str(line.quantity), str(available), message),)
    return ()


def is_available(line: CartLine, product: Product | None, stock: StockView | None = None) -> bool:
    """Whether the line can be bought as it is: the product and its size are sold,
    and the stock covers the whole quantity (partial stock is not enough)."""
    return not _availability_changes(line, product, stock)


def change_details(changes: tuple[Change, ...]) -> dict[str, Any]:
    """The changes keyed by field, as the original app reports them:
    ``name: {old, new}``, ``price: {old, new}`` (decimal strings, never floats)
    and ``availability: {available: false, reason}``."""
    details: dict[str, Any] = {}
    for change in changes:
        if change.field in ("name", "price"):
            details[change.field] = {"old": change.old, "new": change.new}
        else:
            details["availability"] = {"available": False, "reason": UNAVAILABLE_REASON}
    return details
