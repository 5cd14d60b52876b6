"""The cart aggregate and what it reads: limits, catalog entries, carts, their lines
and the stock step a line may be waiting for."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from contracts import free_form

DEFAULT_MAX_QUANTITY = 99
DEFAULT_MAX_LINES = 100
DEFAULT_MAX_PROPERTY_KEYS = free_form.MAX_KEYS
DEFAULT_MAX_PROPERTY_BYTES = free_form.MAX_BYTES


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
class Unreadable:
    """A command kept in a cart (waiting, or waiting for stock) that this release
    no longer reads: stored by an earlier one. It is never carried out; it is
    answered as not carried out when what is left of it says who sent it."""

    stored: Mapping[str, Any]

    @property
    def type(self) -> str:
        return str(self.stored.get("type"))[:100]

    @property
    def message_id(self) -> str:
        return str(self.stored.get("message_id"))

    @property
    def correlation_id(self) -> Any:
        return self.stored.get("correlation_id")


#: A command a cart keeps: a contract command (``contracts.cart.CartCommand``),
#: or what is left of one stored by an earlier release.
KeptCommand = Any


@dataclass(frozen=True)
class StockAnswerOverdue:
    """A cart waited longer than allowed for the stock worker's answer to a step."""

    user_id: str
    reservation_id: str
    #: The message_id of the command whose stock step is overdue: two steps on
    #: one reservation (an increase, later another) time out separately.
    command_id: str

    @classmethod
    def of(cls, user_id: str, step: PendingStock) -> StockAnswerOverdue:
        """The timeout of ``step`` of ``user_id``'s cart."""
        return cls(user_id, step.reservation_id, step.command.message_id)

    @property
    def dedup_key(self) -> str:
        return f"stock-timeout:{self.reservation_id}:{self.command_id}"


@dataclass(frozen=True)
class PendingStock:
    """A command waiting for the stock worker's answer before it is confirmed.

    A cart may have several in flight, one per line, in the order their commands
    came; they are answered in that order (see ``Cart.steps``).
    """

    command: KeptCommand
    item_id: str
    reservation_id: str
    operation: str  # "reserve" | "adjust"
    previous: CartLine | None  # the line before the command, restored on refusal
    deadline: datetime
    #: The message_id of the stock command this step waits on. Only an answer
    #: caused by it (``causation_id``) resolves the step: two commands about one
    #: reservation (a decrease, then an increase) can be in flight at once.
    stock_command_id: str | None = None
    #: The answer (a stock event of the contract, or the step's
    #: ``StockAnswerOverdue``) that came while an earlier step was still in
    #: flight: taken once this one is first.
    answer: Any | None = None
    #: The stock worker let go of this step's reservation after ``answer`` came:
    #: taken right after the answer, in the order the stock worker sent them.
    released_since: bool = False

    def is_answered_by(self, causation_id: str | None, reservation_id: str) -> bool:
        if self.stock_command_id is None:  # a step stored before answers were matched by cause
            return reservation_id == self.reservation_id
        return causation_id == self.stock_command_id


@dataclass(frozen=True)
class Handover:
    """Lines handed over to the checkout worker and still the buyer's: the cart
    gives them up only once the checkout worker accepted them, and keeps them
    (with their stock) when it refused."""

    payment_id: str
    #: The ``StartCheckout``'s message_id: the answer's ``causation_id``.
    start_message_id: str
    command: KeptCommand  # the buyer's checkout command
    item_ids: tuple[str, ...]
    checkout_type: str
    handed_at: datetime


@dataclass(frozen=True)
class Cart:
    user_id: str
    lines: tuple[CartLine, ...] = ()
    version: int = 0
    updated_at: datetime | None = None
    #: Stock steps in flight, in the order of their commands. Adds and increases
    #: of different lines may run at once; their answers are taken in this order,
    #: so the replies leave in the order the commands came.
    steps: tuple[PendingStock, ...] = ()
    #: Commands that came while steps were in flight and could not start one
    #: of their own, oldest first: they run once no step is left.
    queue: tuple[KeptCommand, ...] = ()
    #: Last command of the buyer that touched the cart, and the housekeeping
    #: moments it scheduled (see ``housekeeping``).
    active_at: datetime | None = None
    check_at: datetime | None = None
    remind_at: datetime | None = None
    expire_at: datetime | None = None
    #: A checkout the checkout worker has not answered yet. Commands that come
    #: meanwhile wait in ``queue``; no timer gives its lines up (the checkout
    #: worker answers every hand-over, accepted or refused).
    handover: Handover | None = None

    @property
    def is_empty(self) -> bool:
        return not self.lines

    @property
    def is_busy(self) -> bool:
        """Whether commands wait: a stock step or a hand-over in flight."""
        return bool(self.steps) or self.handover is not None

    @property
    def pending(self) -> PendingStock | None:
        """The first step in flight: the one whose answer is taken next."""
        return self.steps[0] if self.steps else None

    def in_flight(self, item_id: str) -> bool:
        """Whether a step in flight is about the line ``item_id``."""
        return any(step.item_id == item_id for step in self.steps)

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
