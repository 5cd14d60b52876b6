"""Product changes seen by the buyer: checking them, accepting them, and validating
a cart before checkout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.cart_worker.domain.availability import (
    StockView,
    change_details,
    detect_changes,
    is_available,
    live_total,
    units_available,
)
from services.cart_worker.domain.events import ChangesAccepted, DomainEvent, ProductChangesDetected
from services.cart_worker.domain.model import Cart, CartLine, Change, Product
from services.cart_worker.domain.outcomes import Accepted, Outcome, Rejected, cart_empty, item_not_found
from services.cart_worker.domain.views import cart_summary, newest_first


def check_changes(
    cart: Cart, catalog: Mapping[str, Product], *, now: datetime, stock: StockView | None = None
) -> Outcome:
    """Compare every line with the catalog and stock and record what changed on the line."""
    changed_items = []
    lines = []
    newest = {line.item_id: rank for rank, line in enumerate(newest_first(cart.lines))}
    for line in cart.lines:
        changes = detect_changes(line, catalog.get(line.product_id), stock)
        lines.append(replace(line, has_product_changed=bool(changes), change_details=changes))
        if changes:
            changed_items.append(
                {
                    "item_id": line.item_id,
                    "cart_item_id": line.item_id,
                    "product_id": line.product_id,
                    "size": line.size,
                    "changes": [change.as_dict() for change in changes],
                    "change_details": change_details(changes),
                    "product_last_checked": now.isoformat(),
                }
            )
    changed_items.sort(key=lambda item: newest[item["item_id"]])
    checked = tuple(lines)
    new_cart = cart if checked == cart.lines else replace(cart, lines=checked, updated_at=now)
    events: tuple[DomainEvent, ...] = (
        (ProductChangesDetected(user_id=cart.user_id, items=changed_items),) if changed_items else ()
    )
    data = {
        "has_changes": bool(changed_items),
        "items_checked": len(cart.lines),
        "changed_items": changed_items,
    }
    return Accepted(new_cart, events, data)


def _selected_lines(cart: Cart, item_ids: list[str] | None) -> tuple[CartLine, ...] | Rejected:
    if cart.is_empty:
        return cart_empty()
    if item_ids is None:
        return cart.lines
    selected = []
    for item_id in dict.fromkeys(item_ids):
        line = cart.line(item_id)
        if line is None:
            return item_not_found(item_id)
        selected.append(line)
    return tuple(selected)


def accept_changes(
    cart: Cart,
    catalog: Mapping[str, Product],
    *,
    item_ids: list[str] | None,
    now: datetime,
    stock: StockView | None = None,
) -> Outcome:
    """Take the catalog's current name, price and image into the named (or all) lines.

    A line whose product is no longer sold cannot be accepted: it stays flagged
    until it is removed.
    """
    selected = _selected_lines(cart, item_ids)
    if isinstance(selected, Rejected):
        return selected
    accepted = []
    new_cart = cart
    for line in selected:
        product = catalog.get(line.product_id)
        if not is_available(line, product):
            continue
        assert product is not None
        price = product.effective_price(line.size)
        assert price is not None
        refreshed = replace(
            line,
            product_name=product.name,
            unit_price=price,
            image_url=product.image_url,
            has_product_changed=False,
            change_details=(),
            updated_at=now,
        )
        if refreshed != replace(line, updated_at=now):
            accepted.append(line.item_id)
            new_cart = new_cart.with_line(refreshed, now)
    summary = cart_summary(new_cart, catalog, stock, now=now)
    events: tuple[DomainEvent, ...] = (
        (ChangesAccepted(user_id=cart.user_id, item_ids=accepted, total_amount=Decimal(summary["total_amount"])),)
        if accepted
        else ()
    )
    return Accepted(new_cart, events, {"accepted_item_ids": accepted, "cart": summary})


def validate_cart(
    cart: Cart, catalog: Mapping[str, Product], *, item_ids: list[str] | None, stock: StockView | None = None
) -> Outcome:
    """Whether the named (or all) lines can be bought as they stand in the cart:
    the product and size still sold, the stock covering the whole quantity, and
    no change of name or price the buyer has not accepted."""
    selected = _selected_lines(cart, item_ids)
    if isinstance(selected, Rejected):
        return selected
    details = []
    total_valid = Decimal(0)
    for line in newest_first(selected):
        product = catalog.get(line.product_id)
        issues = detect_changes(line, product, stock)
        detail = _validation_detail(line, product, issues, units_available(line, stock))
        if not issues:
            total_valid += Decimal(detail["item_total"])
        details.append(detail)
    data = {
        "is_valid": all(detail["is_valid"] for detail in details),
        "total_valid_amount": str(total_valid),
        "validation_details": details,
    }
    return Accepted(cart, (), data)


def refused_at_checkout(
    cart: Cart, catalog: Mapping[str, Product], item_id: str, requested: int, available: int, message: str
) -> dict[str, Any]:
    """The validation data of a checkout the stock worker refused a line of."""
    line = cart.line(item_id)
    assert line is not None, item_id
    issue = Change("stock", str(requested), str(available), message)
    detail = _validation_detail(line, catalog.get(line.product_id), (issue,), max(available, 0))
    return {"is_valid": False, "total_valid_amount": "0", "validation_details": [detail]}


def _validation_detail(
    line: CartLine, product: Product | None, issues: tuple[Change, ...], available: int | None
) -> dict[str, Any]:
    """One line of a validation, in today's fields and the original app's."""
    item_total = str(live_total(line, product))
    return {
        "item_id": line.item_id,
        "cart_item_id": line.item_id,
        "product_id": line.product_id,
        "product_name": line.product_name,
        "size": line.size,
        "quantity": line.quantity,
        "requested_quantity": line.quantity,
        "available_quantity": available,
        "line_total": item_total,
        "item_total": item_total,
        "is_valid": not issues,
        "issues": [issue.as_dict() for issue in issues],
    }
