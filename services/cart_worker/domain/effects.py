"""What the cart's rules ask the world to do, as values: the reply to a command
(with the events of the change it made), the stock commands of a stock step, the
hand-over of lines to the checkout worker, and events that answer no command.

Each stock effect names its compensation (``undo``): what undoes it, should its
answer not come in time. ``services.cart_worker.translator`` turns effects into
contract messages; nothing here knows topics, envelopes or bytes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from contracts.errors import ErrorCode
from services.cart_worker.domain.events import DomainEvent
from services.cart_worker.domain.model import Cart, KeptCommand
from services.cart_worker.domain.outcomes import Accepted, Outcome


@dataclass(frozen=True)
class Cause:
    """What an effect is caused by: its message id (or a key derived from one,
    for a timer) and the correlation id to carry on."""

    message_id: str
    correlation_id: str | None = None

    @classmethod
    def of(cls, command: KeptCommand) -> Cause:
        correlation_id = command.correlation_id
        return cls(command.message_id, correlation_id if isinstance(correlation_id, str) else None)


@dataclass(frozen=True)
class Reply:
    """The one answer to ``command``; when accepted, the events of its change follow it.
    ``late``: the command was answered in a later batch than the one it came in."""

    command: Any
    outcome: Outcome
    late: bool = False

    @property
    def events(self) -> tuple[DomainEvent, ...]:
        return self.outcome.events if isinstance(self.outcome, Accepted) else ()


@dataclass(frozen=True)
class ReplyUnreadable:
    """The refusal of a kept command that no longer reads (see ``Unreadable``)."""

    stored: Any
    code: ErrorCode
    message: str


@dataclass(frozen=True)
class Release:
    """Give back whatever ``reservation_id`` holds."""

    cause: Cause
    user_id: str
    item_id: str
    reservation_id: str
    product_id: str
    reason: str


@dataclass(frozen=True)
class Reserve:
    """Hold ``quantity`` units for a cart line until ``expires_at``."""

    cause: Cause
    user_id: str
    item_id: str
    reservation_id: str
    product_id: str
    size: str | None
    quantity: int
    expires_at: datetime

    def undo(self, cause: Cause) -> Release:
        """Whatever was reserved late is released."""
        return Release(cause, self.user_id, self.item_id, self.reservation_id, self.product_id, "reservation_timeout")


@dataclass(frozen=True)
class Adjust:
    """Make the line's reservation hold ``quantity`` units; ``held`` is what it held before."""

    cause: Cause
    user_id: str
    item_id: str
    reservation_id: str
    product_id: str
    quantity: int
    held: int
    expires_at: datetime | None = None

    def undo(self, cause: Cause) -> Adjust | Release:
        """The reservation is put back to what it held, or released when it held nothing."""
        if self.held:
            return Adjust(cause, self.user_id, self.item_id, self.reservation_id, self.product_id, self.held, self.held)
        return Release(cause, self.user_id, self.item_id, self.reservation_id, self.product_id, "reservation_timeout")


@dataclass(frozen=True)
class HandedLine:
    order_id: str
    item_id: str
    product_id: str
    product_name: str
    size: str | None
    quantity: int
    unit_price: Decimal
    total_price: Decimal
    reservation_id: str | None


@dataclass(frozen=True)
class HandOver:
    """Hand ``lines`` over to the checkout worker, which answers the buyer (the
    hand-over counts as the command's reply)."""

    command: Any
    payment_id: str
    checkout_type: str
    lines: tuple[HandedLine, ...]
    total: Decimal
    gateway_name: str
    #: When the hand-over was decided: the message's ``occurred_at``, the same
    #: in the size check as in the record sent.
    occurred_at: datetime
    late: bool = False


@dataclass(frozen=True)
class Announce:
    """Events that answer no command of this batch (a hand-over accepted)."""

    #: The message that caused the events (their ``causation_id``).
    cause: Cause
    events: tuple[DomainEvent, ...]
    #: The id the events' own ids derive from, when it is not the cause's (so
    #: that every answer to one hand-over announces the same events).
    derived_from: str | None = None


Effect = Reply | ReplyUnreadable | Reserve | Adjust | Release | HandOver | Announce


@dataclass(frozen=True)
class Step:
    """A cart after one message, and what it asks the world to do, in order."""

    cart: Cart
    effects: tuple[Effect, ...] = field(default=())

    @property
    def events(self) -> tuple[DomainEvent, ...]:
        """The cart's domain events in this step, in order."""
        return tuple(
            event for effect in self.effects if isinstance(effect, Reply | Announce) for event in effect.events
        )

    def then(self, following: Step) -> Step:
        """This step followed by ``following`` (taken from this step's cart)."""
        return Step(following.cart, (*self.effects, *following.effects))
