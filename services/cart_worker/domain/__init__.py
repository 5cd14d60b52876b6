"""The cart domain: carts, their lines and the rules that govern them.

Pure: no I/O and no framework. Each command function takes the current cart
(and the catalog entries it needs) and returns either ``Accepted`` with the new
cart, the events that happened and the answer's data, or ``Rejected`` with an
error code, a human message and a suggested action. The cart passed in is
never modified, so a rejected or failed command leaves no trace.

- ``model``: limits, catalog entries, the cart and its lines;
- ``events``: what happened to a cart;
- ``outcomes``: accepted or rejected, and the common rejections;
- ``availability``: whether a line can still be bought as it is;
- ``editing``: add, change a quantity, remove, clear;
- ``changes``: check and accept product changes, validate before checkout;
- ``reservations``: a line's stock step and its answers;
- ``views``: a line and a cart as replies show them.
"""

from services.cart_worker.domain.availability import (
    StockView,
    detect_changes,
    is_available,
    stock_key,
)
from services.cart_worker.domain.changes import (
    accept_changes,
    check_changes,
    validate_cart,
)
from services.cart_worker.domain.editing import (
    add_item,
    clear_cart,
    remove_item,
    update_item_quantity,
)
from services.cart_worker.domain.events import (
    CartCheckedOut,
    CartCleared,
    ChangesAccepted,
    DomainEvent,
    ItemAdded,
    ItemQuantityChanged,
    ItemRemoved,
    ProductChangesDetected,
)
from services.cart_worker.domain.model import (
    DEFAULT_MAX_LINES,
    DEFAULT_MAX_PROPERTY_BYTES,
    DEFAULT_MAX_PROPERTY_KEYS,
    DEFAULT_MAX_QUANTITY,
    PENDING,
    RESERVED,
    UNRESERVED,
    UNTRACKED,
    Cart,
    CartLimits,
    CartLine,
    Change,
    PendingStock,
    Product,
    SizeOption,
)
from services.cart_worker.domain.outcomes import (
    Accepted,
    Outcome,
    Rejected,
    cart_empty,
    invalid_quantity,
    item_not_found,
)
from services.cart_worker.domain.reservations import (
    await_stock,
    confirm_stock,
    holder_of,
    insufficient_stock,
    mark_released,
    parse_holder,
    reservation_timed_out,
    roll_back_stock,
    unreserved,
)
from services.cart_worker.domain.views import (
    cart_summary,
    line_view,
)

__all__ = [
    "DEFAULT_MAX_QUANTITY",
    "DEFAULT_MAX_LINES",
    "DEFAULT_MAX_PROPERTY_KEYS",
    "DEFAULT_MAX_PROPERTY_BYTES",
    "CartLimits",
    "UNTRACKED",
    "PENDING",
    "RESERVED",
    "UNRESERVED",
    "SizeOption",
    "Product",
    "Change",
    "CartLine",
    "PendingStock",
    "Cart",
    "ItemAdded",
    "ItemQuantityChanged",
    "ItemRemoved",
    "CartCleared",
    "ProductChangesDetected",
    "ChangesAccepted",
    "CartCheckedOut",
    "DomainEvent",
    "Accepted",
    "Rejected",
    "Outcome",
    "item_not_found",
    "cart_empty",
    "invalid_quantity",
    "stock_key",
    "StockView",
    "detect_changes",
    "is_available",
    "add_item",
    "update_item_quantity",
    "remove_item",
    "clear_cart",
    "check_changes",
    "accept_changes",
    "validate_cart",
    "holder_of",
    "parse_holder",
    "await_stock",
    "confirm_stock",
    "roll_back_stock",
    "mark_released",
    "unreserved",
    "insufficient_stock",
    "reservation_timed_out",
    "line_view",
    "cart_summary",
]
