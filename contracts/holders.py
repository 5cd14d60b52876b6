"""Who holds a reservation: the ``holder`` of the stock commands and events, a
protocol between the workers. A cart line holds as ``cart:<user_id>:<item_id>``,
an order of a checkout as ``order:<order_id>``; anything else (a warehouse's own
holds) is opaque to cartflow. Every worker names and reads holders through
these functions only."""

from __future__ import annotations

CART_LINE = "cart:"
ORDER = "order:"


def cart_line_holder(user_id: str, item_id: str) -> str:
    """How a cart line names itself as the holder of a reservation."""
    return f"{CART_LINE}{user_id}:{item_id}"


def parse_cart_line_holder(holder: str | None) -> tuple[str, str] | None:
    """(user_id, item_id) of a cart-line holder; None for any other holder.
    An item id holds no ``:``, so the last one separates it from the user."""
    if not holder or not holder.startswith(CART_LINE):
        return None
    user_id, _, item_id = holder[len(CART_LINE) :].rpartition(":")
    return (user_id, item_id) if user_id and item_id else None


def order_holder(order_id: str) -> str:
    """How an order of a checkout names itself as the holder of a reservation."""
    return f"{ORDER}{order_id}"


def is_order_holder(holder: str | None) -> bool:
    return bool(holder) and holder.startswith(ORDER)  # type: ignore[union-attr]
