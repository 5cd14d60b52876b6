"""notifications.events (out, key user_id): what a messaging service turns into
e-mails or push messages. The cart worker publishes them from its periodic
housekeeping; no address or payment detail is ever part of them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, TypeAdapter

from contracts.envelope import Event, Money


class CartChangeAlert(Event):
    """The periodic change check found changes the buyer has not seen yet
    (price, name, availability, stock); with auto-removal, unavailable lines
    were also taken out of the cart (``removed_item_ids``)."""

    type: Literal["CartChangeAlert"] = "CartChangeAlert"
    user_id: str
    items: list[dict[str, Any]]  # {item_id, product_id, size, product_name, changes: [{field, old, new, message}]}
    removed_item_ids: list[str] = []


class StockAlert(Event):
    """A line in the cart became unavailable (sold out, withdrawn, size gone)."""

    type: Literal["StockAlert"] = "StockAlert"
    user_id: str
    item_id: str
    product_id: str
    size: str | None = None
    product_name: str
    message: str


class AbandonedCartReminder(Event):
    """The cart holds items and saw no activity for the abandoned-cart threshold.
    Sent once per idle period."""

    type: Literal["AbandonedCartReminder"] = "AbandonedCartReminder"
    user_id: str
    last_activity_at: AwareDatetime
    item_count: int
    subtotal: Money


class CartExpired(Event):
    """The cart saw no activity for the session timeout: it was emptied and the
    stock it held was released."""

    type: Literal["CartExpired"] = "CartExpired"
    user_id: str
    last_activity_at: AwareDatetime
    item_ids: list[str]
    released_reservation_ids: list[str]


NOTIFICATION_TYPES = (CartChangeAlert, StockAlert, AbandonedCartReminder, CartExpired)
NotificationEvent = Annotated[
    CartChangeAlert | StockAlert | AbandonedCartReminder | CartExpired, Field(discriminator="type")
]
notification_event_adapter: TypeAdapter[Any] = TypeAdapter(NotificationEvent)
