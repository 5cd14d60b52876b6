"""Whether a line can still be bought as it is: what differs between its snapshot
and the catalog and stock now."""

from __future__ import annotations

from collections.abc import Mapping

from services.cart_worker.domain.model import PENDING, CartLine, Change, Product


def stock_key(product_id: str, size: str | None) -> str:
    return f"{product_id}|{size or ''}"


#: Units available per ``stock_key``, as last announced by the stock worker.
StockView = Mapping[str, int]


def _stock_for(line: CartLine, stock: StockView | None) -> int | None:
    """Units the line could still get, or None when its stock does not limit it."""
    if stock is None or line.is_reserved or line.reservation_state == PENDING:
        return None
    return stock.get(stock_key(line.product_id, line.size))


def detect_changes(line: CartLine, product: Product | None, stock: StockView | None = None) -> tuple[Change, ...]:
    """What differs between the line's snapshot and the catalog (and stock) now."""
    available = _stock_for(line, stock)
    if available is not None and available <= 0:
        return (Change("availability", "in_stock", "out_of_stock", "The product is out of stock"),)
    changes = list(_catalog_changes(line, product))
    if available is not None and available < line.quantity and not any(c.field == "availability" for c in changes):
        changes.append(Change("stock", str(line.quantity), str(available), f"Only {available} items available"))
    return tuple(changes)


def _catalog_changes(line: CartLine, product: Product | None) -> tuple[Change, ...]:
    if product is None or product.is_deleted:
        return (Change("availability", "available", "unavailable", "The product is no longer available"),)
    price = product.effective_price(line.size)
    if price is None:
        return (
            Change("availability", "available", "unavailable", f"Size {line.size} is no longer available"),
        )
    changes = []
    if product.name != line.product_name:
        changes.append(
            Change("name", line.product_name, product.name, f"Renamed from {line.product_name!r} to {product.name!r}")
        )
    if price != line.unit_price:
        direction = "increased" if price > line.unit_price else "decreased"
        changes.append(
            Change("price", str(line.unit_price), str(price), f"Price {direction} from {line.unit_price} to {price}")
        )
    return tuple(changes)


def is_available(line: CartLine, product: Product | None, stock: StockView | None = None) -> bool:
    if product is None or product.is_deleted or product.effective_price(line.size) is None:
        return False
    available = _stock_for(line, stock)
    return available is None or available > 0
