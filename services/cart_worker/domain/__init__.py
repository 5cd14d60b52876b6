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
    UNAVAILABLE_REASON,
    change_details,
    detect_changes,
    is_available,
    live_price,
    live_total,
    stock_key,
    units_available,
)
from services.cart_worker.domain.handover import hand_over, handover_answered
from services.cart_worker.domain.changes import (
    accept_changes,
    check_changes,
    refused_at_checkout,
    validate_cart,
)
from services.cart_worker.domain.editing import (
    CLEARED,
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
    Cart,
    Handover,
    CartLimits,
    CartLine,
    Change,
    DEFAULT_MAX_LINES,
    DEFAULT_MAX_PROPERTY_BYTES,
    DEFAULT_MAX_PROPERTY_KEYS,
    DEFAULT_MAX_QUANTITY,
    PENDING,
    PendingStock,
    Product,
    StockAnswerOverdue,
    Unreadable,
    RESERVED,
    SizeOption,
    UNRESERVED,
    UNTRACKED,
)
from services.cart_worker.domain.outcomes import (
    Accepted,
    Outcome,
    Rejected,
    cannot_add_more,
    cart_empty,
    invalid_quantity,
    item_not_found,
    not_enough_stock,
)
from services.cart_worker.domain.reservations import (
    await_stock,
    before_steps,
    confirm_stock,
    give_up_product,
    hold_answer,
    insufficient_stock,
    mark_released,
    reservation_timed_out,
    retry_first,
    roll_back_stock,
    unreserved,
)
from services.cart_worker.domain.views import (
    added_view,
    cart_count,
    cart_summary,
    line_view,
    newest_first,
    product_page,
    removed_view,
    updated_view,
)

__all__ = [
    "StockView",
    "UNAVAILABLE_REASON",
    "change_details",
    "detect_changes",
    "is_available",
    "live_price",
    "live_total",
    "stock_key",
    "units_available",
    "accept_changes",
    "check_changes",
    "refused_at_checkout",
    "validate_cart",
    "CLEARED",
    "add_item",
    "clear_cart",
    "remove_item",
    "update_item_quantity",
    "CartCheckedOut",
    "CartCleared",
    "ChangesAccepted",
    "DomainEvent",
    "ItemAdded",
    "ItemQuantityChanged",
    "ItemRemoved",
    "ProductChangesDetected",
    "Cart",
    "Handover",
    "hand_over",
    "handover_answered",
    "CartLimits",
    "CartLine",
    "Change",
    "DEFAULT_MAX_LINES",
    "DEFAULT_MAX_PROPERTY_BYTES",
    "DEFAULT_MAX_PROPERTY_KEYS",
    "DEFAULT_MAX_QUANTITY",
    "PENDING",
    "PendingStock",
    "Product",
    "StockAnswerOverdue",
    "Unreadable",
    "RESERVED",
    "SizeOption",
    "UNRESERVED",
    "UNTRACKED",
    "Accepted",
    "Outcome",
    "Rejected",
    "cannot_add_more",
    "cart_empty",
    "invalid_quantity",
    "item_not_found",
    "not_enough_stock",
    "await_stock",
    "before_steps",
    "confirm_stock",
    "give_up_product",
    "hold_answer",
    "insufficient_stock",
    "mark_released",
    "reservation_timed_out",
    "retry_first",
    "roll_back_stock",
    "unreserved",
    "added_view",
    "cart_count",
    "cart_summary",
    "line_view",
    "newest_first",
    "product_page",
    "removed_view",
    "updated_view",
]
