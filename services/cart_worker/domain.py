"""The cart domain: carts, their lines and the rules that govern them.

Pure: no I/O and no framework. Each command function takes the current cart
(and the catalog entries it needs) and returns either ``Accepted`` with the new
cart, the events that happened and the answer's data, or ``Rejected`` with an
error code, a human message and a suggested action. The cart passed in is
never modified, so a rejected or failed command leaves no trace.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from contracts.errors import ErrorCode

DEFAULT_MAX_QUANTITY = 99
DEFAULT_MAX_LINES = 100
DEFAULT_MAX_PROPERTY_KEYS = 50
DEFAULT_MAX_PROPERTY_BYTES = 1024


@dataclass(frozen=True)
class CartLimits:
    """How large one cart may grow, so that its document and every reply about
    it stay far below the database's and the broker's limits."""

    max_quantity: int = DEFAULT_MAX_QUANTITY
    max_lines: int = DEFAULT_MAX_LINES
    max_property_keys: int = DEFAULT_MAX_PROPERTY_KEYS
    max_property_bytes: int = DEFAULT_MAX_PROPERTY_BYTES

    def properties_fit(self, properties: Mapping[str, Any]) -> bool:
        encoded = json.dumps(properties, separators=(",", ":"), default=str, ensure_ascii=False).encode()
        return len(properties) <= self.max_property_keys and len(encoded) <= self.max_property_bytes

#: Reservation states of a cart line.
UNTRACKED = "untracked"  # cart-time reservation is off
PENDING = "pending"  # asked for, not answered yet
RESERVED = "reserved"  # the stock worker holds reserved_quantity units for the line
UNRESERVED = "unreserved"  # released by the stock worker (expired, product deleted)


# --- catalog read model ----------------------------------------------------------


@dataclass(frozen=True)
class SizeOption:
    size: str
    price: Decimal


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    price: Decimal
    image_url: str | None = None
    is_deleted: bool = False
    sizes: tuple[SizeOption, ...] = ()

    @property
    def has_sizes(self) -> bool:
        return bool(self.sizes)

    def size_option(self, size: str | None) -> SizeOption | None:
        return next((option for option in self.sizes if option.size == size), None)

    def effective_price(self, size: str | None) -> Decimal | None:
        """The price of one unit in ``size``; None where that size is not sold."""
        if not self.has_sizes:
            return self.price
        option = self.size_option(size)
        return option.price if option else None


# --- the cart aggregate ----------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One difference between a cart line's snapshot and the catalog today."""

    field: str  # "name" | "price" | "availability"
    old: str | None
    new: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "old": self.old, "new": self.new, "message": self.message}


@dataclass(frozen=True)
class CartLine:
    item_id: str
    product_id: str
    size: str | None
    quantity: int
    product_name: str
    unit_price: Decimal
    image_url: str | None
    added_at: datetime
    updated_at: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)
    has_product_changed: bool = False
    change_details: tuple[Change, ...] = ()
    #: The stock reservation behind the line, when cart-time reservation is on.
    reservation_id: str | None = None
    #: Units the stock worker confirmed for this line.
    reserved_quantity: int = 0
    reservation_state: str = UNTRACKED

    @property
    def line_total(self) -> Decimal:
        return self.unit_price * self.quantity

    @property
    def is_reserved(self) -> bool:
        return self.reservation_state == RESERVED


@dataclass(frozen=True)
class PendingStock:
    """A command waiting for the stock worker's answer before it is confirmed.

    While a cart has one, its later commands wait in the cart's queue, so a
    user's commands still take effect in the order they were sent.
    """

    command: Mapping[str, Any]  # the command as received (contract JSON)
    item_id: str
    reservation_id: str
    operation: str  # "reserve" | "adjust"
    previous: CartLine | None  # the line before the command, restored on refusal
    deadline: datetime
    #: The message_id of the stock command this step waits on. Only an answer
    #: caused by it (``causation_id``) resolves the step: two commands about one
    #: reservation (a decrease, then an increase) can be in flight at once.
    stock_command_id: str | None = None

    def is_answered_by(self, causation_id: str | None, reservation_id: str) -> bool:
        if self.stock_command_id is None:  # a step stored before answers were matched by cause
            return reservation_id == self.reservation_id
        return causation_id == self.stock_command_id


@dataclass(frozen=True)
class Cart:
    user_id: str
    lines: tuple[CartLine, ...] = ()
    version: int = 0
    updated_at: datetime | None = None
    pending: PendingStock | None = None
    #: Commands (contract JSON) received while ``pending`` was set, oldest first.
    queue: tuple[Mapping[str, Any], ...] = ()
    #: Last command of the buyer that touched the cart, and the housekeeping
    #: moments it scheduled (see ``housekeeping``).
    active_at: datetime | None = None
    check_at: datetime | None = None
    remind_at: datetime | None = None
    expire_at: datetime | None = None

    @property
    def is_empty(self) -> bool:
        return not self.lines

    def line(self, item_id: str) -> CartLine | None:
        return next((line for line in self.lines if line.item_id == item_id), None)

    def line_for(self, product_id: str, size: str | None) -> CartLine | None:
        return next(
            (line for line in self.lines if line.product_id == product_id and line.size == size),
            None,
        )

    def with_line(self, new: CartLine, now: datetime) -> Cart:
        """The cart with ``new`` in place of the line with its id, or appended."""
        if self.line(new.item_id) is None:
            lines = (*self.lines, new)
        else:
            lines = tuple(new if line.item_id == new.item_id else line for line in self.lines)
        return replace(self, lines=lines, updated_at=now)

    def without(self, item_ids: Iterable[str], now: datetime) -> Cart:
        gone = set(item_ids)
        return replace(
            self, lines=tuple(line for line in self.lines if line.item_id not in gone), updated_at=now
        )


# --- domain events ---------------------------------------------------------------


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


# --- outcomes --------------------------------------------------------------------


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


def _item_not_found(item_id: str) -> Rejected:
    return Rejected(
        ErrorCode.ITEM_NOT_FOUND,
        f"Item {item_id} is not in this cart",
        "Refresh the cart and use one of its item ids",
        item_id=item_id,
    )


def _cart_empty() -> Rejected:
    return Rejected(ErrorCode.CART_EMPTY, "The cart is empty", "Add items to the cart first")


def _invalid_quantity(quantity: int, max_quantity: int) -> Rejected:
    return Rejected(
        ErrorCode.INVALID_QUANTITY,
        f"Quantity must be between 1 and {max_quantity}, got {quantity}",
        f"Choose a quantity from 1 to {max_quantity}",
        available_quantity=max_quantity,
    )


# --- commands --------------------------------------------------------------------


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
    max_quantity: int = DEFAULT_MAX_QUANTITY,
    limits: CartLimits | None = None,
) -> Outcome:
    """Put ``quantity`` units of a product into the cart, merging with its line if present.

    The line snapshots the product's name, effective price and image as they
    are now; a later catalog change is reported by ``check_changes`` rather
    than silently applied.
    """
    if product is None or product.is_deleted:
        return Rejected(
            ErrorCode.PRODUCT_INACTIVE,
            f"Product {product_id} is not available",
            "Remove the product from the page or choose another one",
        )
    if product.has_sizes and size is None:
        return Rejected(
            ErrorCode.SIZE_REQUIRED,
            f"Product {product_id} comes in sizes: choose one",
            "Send the size, one of: " + ", ".join(option.size for option in product.sizes),
        )
    unit_price = product.effective_price(size)
    if unit_price is None or (size is not None and not product.has_sizes):
        return Rejected(
            ErrorCode.SIZE_NOT_AVAILABLE,
            f"Size {size} is not available for product {product_id}",
            "Choose one of the sizes offered"
            if product.has_sizes
            else "This product has no sizes: send the command without one",
        )
    limits = limits or CartLimits(max_quantity=max_quantity)
    max_quantity = limits.max_quantity
    if not 1 <= quantity <= max_quantity:
        return _invalid_quantity(quantity, max_quantity)

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
                f"Cannot add {quantity} more. Only {room} more allowed "
                f"({existing.quantity} already in the cart, at most {max_quantity})",
                f"Add at most {room} more" if room else "This line is full",
                available_quantity=room,
                item_id=existing.item_id,
            )
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
    return Accepted(cart.with_line(line, now), (event,), line_view(line, product, live=True), line.item_id)


def update_item_quantity(
    cart: Cart,
    *,
    item_id: str,
    quantity: int,
    now: datetime,
    max_quantity: int = DEFAULT_MAX_QUANTITY,
) -> Outcome:
    """Set a line's quantity. Zero is not a quantity: ``remove_item`` removes."""
    line = cart.line(item_id)
    if line is None:
        return _item_not_found(item_id)
    if not 1 <= quantity <= max_quantity:
        return _invalid_quantity(quantity, max_quantity)
    if quantity == line.quantity:
        return Accepted(cart, (), line_view(line, None), item_id)
    updated = replace(line, quantity=quantity, updated_at=now)
    event = ItemQuantityChanged(
        user_id=cart.user_id,
        item_id=item_id,
        product_id=line.product_id,
        size=line.size,
        old_quantity=line.quantity,
        new_quantity=quantity,
    )
    return Accepted(cart.with_line(updated, now), (event,), line_view(updated, None), item_id)


def remove_item(cart: Cart, *, item_id: str, now: datetime) -> Outcome:
    line = cart.line(item_id)
    if line is None:
        return _item_not_found(item_id)
    event = ItemRemoved(
        user_id=cart.user_id,
        item_id=item_id,
        product_id=line.product_id,
        size=line.size,
        quantity=line.quantity,
    )
    return Accepted(cart.without([item_id], now), (event,), None, item_id)


def clear_cart(cart: Cart, *, now: datetime) -> Outcome:
    """Empty the cart. Clearing an empty cart succeeds and changes nothing."""
    if cart.is_empty:
        return Accepted(cart, (), {"removed_item_ids": []})
    item_ids = [line.item_id for line in cart.lines]
    event = CartCleared(user_id=cart.user_id, item_ids=item_ids)
    return Accepted(cart.without(item_ids, now), (event,), {"removed_item_ids": item_ids})


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
        return _cart_empty()
    if item_ids is None:
        return cart.lines
    selected = []
    for item_id in dict.fromkeys(item_ids):
        line = cart.line(item_id)
        if line is None:
            return _item_not_found(item_id)
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


# --- stock reservations ----------------------------------------------------------


def holder_of(user_id: str, item_id: str) -> str:
    """How a cart line names itself as the holder of a reservation."""
    return f"cart:{user_id}:{item_id}"


def parse_holder(holder: str | None) -> tuple[str, str] | None:
    """(user_id, item_id) of a cart-line holder; None for any other holder."""
    if not holder or not holder.startswith("cart:"):
        return None
    user_id, _, item_id = holder[len("cart:") :].rpartition(":")
    return (user_id, item_id) if user_id and item_id else None


def await_stock(
    cart: Cart, pending: PendingStock, *, now: datetime
) -> Cart:
    """The cart with the pending line marked as waiting for the stock worker."""
    line = cart.line(pending.item_id)
    assert line is not None
    waiting = replace(line, reservation_state=PENDING, reservation_id=pending.reservation_id)
    return replace(cart.with_line(waiting, now), pending=pending)


def confirm_stock(cart: Cart, quantity: int, *, now: datetime) -> Cart:
    """The stock worker holds the units: the pending line is reserved."""
    pending = cart.pending
    assert pending is not None
    line = cart.line(pending.item_id)
    cart = replace(cart, pending=None)
    if line is None:
        return cart
    reserved = replace(line, reservation_state=RESERVED, reserved_quantity=quantity, reservation_id=pending.reservation_id)
    return cart.with_line(reserved, now)


def roll_back_stock(cart: Cart, *, now: datetime) -> Cart:
    """The units could not be had: the line is as it was before the command."""
    pending = cart.pending
    assert pending is not None
    cart = replace(cart, pending=None)
    if pending.previous is None:
        return cart.without([pending.item_id], now)
    return cart.with_line(pending.previous, now)


def mark_released(cart: Cart, reservation_id: str, *, now: datetime) -> Cart:
    """The stock worker let go of a line's units (expiry, product deleted)."""
    pending = cart.pending
    if pending is not None and pending.previous is not None and pending.previous.reservation_id == reservation_id:
        # Should the step in flight be refused, the line goes back to holding nothing.
        cart = replace(cart, pending=replace(pending, previous=unreserved(pending.previous)))
    for line in cart.lines:
        if line.reservation_id == reservation_id and line.reservation_state != PENDING:
            return cart.with_line(unreserved(line), now)
        if line.reservation_id == reservation_id:
            # An adjustment is in flight for a reservation that just lapsed:
            # nothing is held any more, whatever the answer will be.
            return cart.with_line(replace(line, reserved_quantity=0), now)
    return cart


def unreserved(line: CartLine) -> CartLine:
    """The line holding no reservation (its own lapsed)."""
    return replace(line, reservation_state=UNRESERVED, reserved_quantity=0, reservation_id=None)


def insufficient_stock(pending: PendingStock, command_type: str, requested: int, available: int) -> Rejected:
    """The refusal in the words buyers know: "Only N items available" or
    "Cannot add N more. Only M more available"."""
    previous = pending.previous
    if command_type == "AddItem" and previous is not None:
        adding = requested - previous.quantity
        more = max(available - previous.quantity, 0)
        message = f"Cannot add {adding} more. Only {more} more available"
        return Rejected(
            ErrorCode.INSUFFICIENT_STOCK,
            message,
            f"Add at most {more} more" if more else "Keep the quantity already in the cart",
            available_quantity=more,
            item_id=previous.item_id,
        )
    return Rejected(
        ErrorCode.INSUFFICIENT_STOCK,
        f"Only {max(available, 0)} items available",
        f"Choose a quantity of at most {max(available, 0)}" if available > 0 else "Choose another product",
        available_quantity=max(available, 0),
        item_id=previous.item_id if previous else None,
    )


def reservation_timed_out(pending: PendingStock) -> Rejected:
    return Rejected(
        ErrorCode.RESERVATION_FAILED,
        "Stock could not be reserved in time",
        "Try again in a moment",
        item_id=pending.previous.item_id if pending.previous else None,
    )


# --- views -----------------------------------------------------------------------


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
