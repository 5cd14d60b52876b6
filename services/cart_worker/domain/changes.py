"""Product changes seen by the buyer: checking them, accepting them, and validating
a cart before checkout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from services.cart_worker.domain.availability import StockView, detect_changes, is_available
from services.cart_worker.domain.events import ChangesAccepted, DomainEvent, ProductChangesDetected
from services.cart_worker.domain.model import Cart, CartLine, Product
from services.cart_worker.domain.outcomes import Accepted, Outcome, Rejected, cart_empty, item_not_found
from services.cart_worker.domain.views import cart_summary


def check_changes(
    cart: Cart, catalog: Mapping[str, Product], *, now: datetime, stock: StockView | None = None
) -> Outcome:
    """Compare every line with the catalog and stock and record what changed on the line."""
    changed_items = []
    lines = []
    for line in cart.lines:
        changes = detect_changes(line, catalog.get(line.product_id), stock)
        lines.append(replace(line, has_product_changed=bool(changes), change_details=changes))
        if changes:
            changed_items.append(
                {
                    "item_id": line.item_id,
                    "product_id": line.product_id,
                    "size": line.size,
                    "changes": [change.as_dict() for change in changes],
                }
            )
    checked = tuple(lines)
    new_cart = cart if checked == cart.lines else replace(cart, lines=checked, updated_at=now)
    events: tuple[DomainEvent, ...] = (
        (ProductChangesDetected(user_id=cart.user_id, items=changed_items),) if changed_items else ()
    )
    data = {"has_changes": bool(changed_items), "items_checked": len(cart.lines), "changed_items": changed_items}
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
    cart: Cart, catalog: Mapping[str, Product], *, item_ids: list[str] | None, now: datetime
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
    summary = cart_summary(new_cart, catalog)
    events: tuple[DomainEvent, ...] = (
        (ChangesAccepted(user_id=cart.user_id, item_ids=accepted, total_amount=Decimal(summary["total_amount"])),)
        if accepted
        else ()
    )
    return Accepted(new_cart, events, {"accepted_item_ids": accepted, "cart": summary})


def validate_cart(
    cart: Cart, catalog: Mapping[str, Product], *, item_ids: list[str] | None, stock: StockView | None = None
) -> Outcome:
    """Whether the named (or all) lines can be bought as they stand in the cart."""
    selected = _selected_lines(cart, item_ids)
    if isinstance(selected, Rejected):
        return selected
    details = []
    total_valid = Decimal(0)
    for line in selected:
        issues = detect_changes(line, catalog.get(line.product_id), stock)
        if not issues:
            total_valid += line.line_total
        details.append(
            {
                "item_id": line.item_id,
                "product_id": line.product_id,
                "size": line.size,
                "quantity": line.quantity,
                "line_total": str(line.line_total),
                "is_valid": not issues,
                "issues": [issue.as_dict() for issue in issues],
            }
        )
    data = {
        "is_valid": all(detail["is_valid"] for detail in details),
        "total_valid_amount": str(total_valid),
        "validation_details": details,
    }
    return Accepted(cart, (), data)
