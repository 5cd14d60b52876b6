"""The stock domain: levels per (product, size) and the reservations against them.

Pure: no I/O and no framework. Each function takes the current level and
reservation and returns a ``StockOutcome``: the new level, the new reservation
and the events that happened. Invariants, by construction:

- ``reserved + sold <= on_hand``: a reservation is made or grown only when
  ``available = on_hand - reserved - sold`` covers it; a commit turns reserved
  units into sold ones and a transfer changes neither, so neither can oversell;
  a ``set_stock`` below what is held releases the newest reservations until
  what is held fits. The one exception is a recount below what was already
  sold: every reservation is released, ``available`` stays negative and no
  reservation fits until stock comes in;
- ``reserved`` is the sum of the active reservations' quantities and ``sold`` the
  sum of the committed ones (``cartflow stock audit`` checks this on real data);
- every command is idempotent on its reservation id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from contracts.errors import ErrorCode

ACTIVE, RELEASED, COMMITTED, EXPIRED = "active", "released", "committed", "expired"


def level_key(product_id: str, size: str | None) -> str:
    return f"{product_id}|{size or ''}"


@dataclass(frozen=True)
class StockLevel:
    product_id: str
    size: str | None = None
    on_hand: int = 0
    reserved: int = 0
    sold: int = 0
    version: int = 0

    @property
    def key(self) -> str:
        return level_key(self.product_id, self.size)

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved - self.sold


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    product_id: str
    size: str | None
    quantity: int
    holder: str
    state: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    order_id: str | None = None
    reason: str | None = None
    #: The stored version this was read at (0: new). Every write is conditional
    #: on it, so a transfer and an expiry racing for one reservation cannot
    #: both win.
    version: int = 0

    @property
    def is_active(self) -> bool:
        return self.state == ACTIVE


# --- events ----------------------------------------------------------------------


@dataclass(frozen=True)
class StockReserved:
    reservation_id: str
    product_id: str
    size: str | None
    holder: str
    quantity: int
    expires_at: datetime | None
    available_after: int


@dataclass(frozen=True)
class StockReservationRejected:
    reservation_id: str
    product_id: str
    size: str | None
    holder: str | None
    operation: str
    requested: int
    available: int
    error_code: str


@dataclass(frozen=True)
class ReservationAdjusted:
    reservation_id: str
    product_id: str
    size: str | None
    holder: str
    old_quantity: int
    quantity: int
    expires_at: datetime | None
    available_after: int


@dataclass(frozen=True)
class StockReleased:
    reservation_id: str
    product_id: str
    size: str | None
    holder: str
    quantity: int
    reason: str
    no_op: bool
    state: str


@dataclass(frozen=True)
class StockCommitted:
    reservation_id: str
    product_id: str
    size: str | None
    holder: str
    quantity: int
    order_id: str
    no_op: bool


@dataclass(frozen=True)
class ReservationTransferred:
    reservation_id: str
    product_id: str
    size: str | None
    holder: str
    previous_holder: str
    quantity: int
    expires_at: datetime | None


@dataclass(frozen=True)
class StockCommandRejected:
    reservation_id: str
    product_id: str
    size: str | None
    holder: str | None
    command_type: str
    error_code: str
    error_message: str


@dataclass(frozen=True)
class StockLevelChanged:
    product_id: str
    size: str | None
    on_hand: int
    reserved: int
    sold: int
    available: int


StockEvent = (
    StockReserved
    | StockReservationRejected
    | ReservationAdjusted
    | StockReleased
    | StockCommitted
    | ReservationTransferred
    | StockCommandRejected
    | StockLevelChanged
)


@dataclass(frozen=True)
class StockOutcome:
    level: StockLevel | None
    reservation: Reservation | None
    events: tuple[StockEvent, ...] = ()
    #: Reservations a lowered level released (newest first), written with the level.
    released: tuple[Reservation, ...] = ()


def level_changed(level: StockLevel) -> StockLevelChanged:
    return StockLevelChanged(
        level.product_id, level.size, level.on_hand, level.reserved, level.sold, level.available
    )


def unknown_reservation(reservation_id: str, product_id: str | None, command_type: str) -> StockOutcome:
    event = StockCommandRejected(
        reservation_id,
        product_id or "",
        None,
        None,
        command_type,
        ErrorCode.RESERVATION_NOT_FOUND,
        f"Reservation {reservation_id} does not exist",
    )
    return StockOutcome(None, None, (event,))


def _not_active(reservation: Reservation, command_type: str) -> StockCommandRejected:
    return StockCommandRejected(
        reservation.reservation_id,
        reservation.product_id,
        reservation.size,
        reservation.holder,
        command_type,
        ErrorCode.RESERVATION_NOT_ACTIVE,
        f"Reservation {reservation.reservation_id} is {reservation.state}",
    )


#: Holders of reservations taken over by a checkout.
ORDER_HOLDER = "order:"


def wrong_owner(
    reservation: Reservation, *, command_type: str, holder: str | None, product_id: str | None
) -> StockOutcome | None:
    """A refusal when the command names a holder or product other than the
    reservation's own: nobody acts on a reservation they do not hold."""
    r = reservation
    if product_id is not None and product_id != r.product_id:
        message = f"Reservation {r.reservation_id} is not for product {product_id}"
    elif holder is not None and holder != r.holder:
        message = f"Reservation {r.reservation_id} is not held by {holder}"
    elif holder is None and r.holder.startswith(ORDER_HOLDER):
        # Units held for an order are touched only by whoever names the order.
        message = f"Reservation {r.reservation_id} is held for an order: name its holder"
    else:
        return None
    event = StockCommandRejected(
        r.reservation_id, r.product_id, r.size, r.holder, command_type, ErrorCode.RESERVATION_HOLDER_MISMATCH, message
    )
    return StockOutcome(None, None, (event,))


def _invalid_quantity(reservation_id, product_id, size, holder, command_type, quantity) -> StockCommandRejected:
    return StockCommandRejected(
        reservation_id,
        product_id,
        size,
        holder,
        command_type,
        ErrorCode.INVALID_QUANTITY,
        f"Quantity must be at least 1, got {quantity}",
    )


# --- commands --------------------------------------------------------------------


#: Why a reservation was released by a ``SetStock`` that left too little for it.
STOCK_REDUCED = "stock_reduced"


def set_stock(
    level: StockLevel, on_hand: int, *, active: Iterable[Reservation], now: datetime
) -> StockOutcome:
    """Set the absolute level on hand. ``active`` are the level's active
    reservations; when what is held (reserved and sold) no longer fits on hand,
    the newest are released, announced as ``StockReleased {reason:
    "stock_reduced"}``, until it does, or until none is left (a recount below
    what was sold: ``available`` stays negative and no reservation fits)."""
    if on_hand == level.on_hand and level.version and not _over_held(level):
        return StockOutcome(None, None, ())
    new = replace(level, on_hand=on_hand)
    held = [r for r in active if r.is_active and (r.product_id, r.size) == (level.product_id, level.size)]
    released: list[Reservation] = []
    announced: list[StockEvent] = []
    for r in sorted(held, key=lambda r: (r.created_at, r.reservation_id), reverse=True):
        if not _over_held(new):
            break
        outcome = release(new, r, reason=STOCK_REDUCED, now=now)
        assert outcome.level is not None and outcome.reservation is not None
        new = outcome.level
        released.append(outcome.reservation)
        announced.extend(e for e in outcome.events if isinstance(e, StockReleased))
    return StockOutcome(new, None, (*announced, level_changed(new)), tuple(released))


def _over_held(level: StockLevel) -> bool:
    """Whether reservations hold units the level no longer has."""
    return level.reserved > 0 and level.reserved + level.sold > level.on_hand


def reserve(
    level: StockLevel,
    existing: Reservation | None,
    *,
    reservation_id: str,
    quantity: int,
    holder: str,
    expires_at: datetime | None,
    now: datetime,
) -> StockOutcome:
    """Reserve the full quantity, or nothing."""
    if existing is not None:
        return _repeat(level, existing)
    if quantity < 1:
        event = _invalid_quantity(reservation_id, level.product_id, level.size, holder, "ReserveStock", quantity)
        return StockOutcome(None, None, (event,))
    if quantity > level.available:
        rejected = StockReservationRejected(
            reservation_id,
            level.product_id,
            level.size,
            holder,
            "reserve",
            quantity,
            max(level.available, 0),
            ErrorCode.INSUFFICIENT_STOCK,
        )
        return StockOutcome(None, None, (rejected,))
    new_level = replace(level, reserved=level.reserved + quantity)
    reservation = Reservation(
        reservation_id, level.product_id, level.size, quantity, holder, ACTIVE, now, now, expires_at
    )
    reserved = StockReserved(
        reservation_id, level.product_id, level.size, holder, quantity, expires_at, new_level.available
    )
    return StockOutcome(new_level, reservation, (reserved, level_changed(new_level)))


def _repeat(level: StockLevel, reservation: Reservation) -> StockOutcome:
    """A reservation id seen before: announce its state again, change nothing."""
    r = reservation
    if r.state == ACTIVE:
        event: StockEvent = StockReserved(
            r.reservation_id, r.product_id, r.size, r.holder, r.quantity, r.expires_at, level.available
        )
    elif r.state == COMMITTED:
        event = StockCommitted(r.reservation_id, r.product_id, r.size, r.holder, r.quantity, r.order_id or "", True)
    else:
        event = StockReleased(
            r.reservation_id, r.product_id, r.size, r.holder, r.quantity, r.reason or r.state, True, r.state
        )
    return StockOutcome(None, None, (event,))


def adjust(
    level: StockLevel, reservation: Reservation, *, quantity: int, expires_at: datetime | None, now: datetime
) -> StockOutcome:
    """Change an active reservation's quantity; growth needs the units to be there."""
    r = reservation
    if not r.is_active:
        return StockOutcome(None, None, (_not_active(r, "AdjustReservation"),))
    if quantity < 1:
        event = _invalid_quantity(r.reservation_id, r.product_id, r.size, r.holder, "AdjustReservation", quantity)
        return StockOutcome(None, None, (event,))
    growth = quantity - r.quantity
    if growth > level.available:
        rejected = StockReservationRejected(
            r.reservation_id,
            r.product_id,
            r.size,
            r.holder,
            "adjust",
            quantity,
            max(level.available, 0) + r.quantity,
            ErrorCode.INSUFFICIENT_STOCK,
        )
        return StockOutcome(None, None, (rejected,))
    new_level = replace(level, reserved=level.reserved + growth)
    adjusted = replace(r, quantity=quantity, updated_at=now, expires_at=expires_at or r.expires_at)
    event = ReservationAdjusted(
        r.reservation_id, r.product_id, r.size, r.holder, r.quantity, quantity, adjusted.expires_at, new_level.available
    )
    events: tuple[StockEvent, ...] = (event, level_changed(new_level)) if growth else (event,)
    return StockOutcome(new_level, adjusted, events)


def release(
    level: StockLevel, reservation: Reservation, *, reason: str, now: datetime, state: str = RELEASED
) -> StockOutcome:
    """Give the units back. A reservation that is no longer active is left as it is."""
    r = reservation
    if not r.is_active:
        event = StockReleased(r.reservation_id, r.product_id, r.size, r.holder, r.quantity, reason, True, r.state)
        return StockOutcome(None, None, (event,))
    new_level = replace(level, reserved=level.reserved - r.quantity)
    closed = replace(r, state=state, reason=reason, updated_at=now)
    event = StockReleased(r.reservation_id, r.product_id, r.size, r.holder, r.quantity, reason, False, state)
    return StockOutcome(new_level, closed, (event, level_changed(new_level)))


def expire(level: StockLevel, reservation: Reservation, *, now: datetime) -> StockOutcome:
    """Release a reservation whose time is up; one renewed since is left alone."""
    if not reservation.is_active or reservation.expires_at is None or reservation.expires_at > now:
        return StockOutcome(None, None, ())
    return release(level, reservation, reason="expired", now=now, state=EXPIRED)


def commit(level: StockLevel, reservation: Reservation, *, order_id: str, now: datetime) -> StockOutcome:
    """Turn reserved units into sold ones."""
    r = reservation
    if r.state == COMMITTED:
        event = StockCommitted(r.reservation_id, r.product_id, r.size, r.holder, r.quantity, r.order_id or order_id, True)
        return StockOutcome(None, None, (event,))
    if not r.is_active:
        return StockOutcome(None, None, (_not_active(r, "CommitReservation"),))
    new_level = replace(level, reserved=level.reserved - r.quantity, sold=level.sold + r.quantity)
    committed = replace(r, state=COMMITTED, order_id=order_id, updated_at=now, expires_at=None)
    event = StockCommitted(r.reservation_id, r.product_id, r.size, r.holder, r.quantity, order_id, False)
    return StockOutcome(new_level, committed, (event, level_changed(new_level)))



def transfer(reservation: Reservation, *, holder: str, expires_at: datetime | None, now: datetime) -> StockOutcome:
    """Hand an active reservation to a new holder, with the new holder's expiry (or none)."""
    r = reservation
    if not r.is_active:
        return StockOutcome(None, None, (_not_active(r, "TransferReservation"),))
    if r.holder == holder and r.expires_at == expires_at:
        # Already done (by this command or an earlier one): say so again, so
        # that whoever asked gets an answer.
        event = ReservationTransferred(r.reservation_id, r.product_id, r.size, holder, r.holder, r.quantity, expires_at)
        return StockOutcome(None, None, (event,))
    moved = replace(r, holder=holder, expires_at=expires_at, updated_at=now)
    event = ReservationTransferred(r.reservation_id, r.product_id, r.size, holder, r.holder, r.quantity, expires_at)
    return StockOutcome(None, moved, (event,))


# --- audit -----------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    key: str
    counted_reserved: int
    recorded_reserved: int
    counted_sold: int
    recorded_sold: int


def audit(levels: list[StockLevel], reservations: list[Reservation]) -> list[Drift]:
    """Recompute reserved and sold from the reservation records; report any level that disagrees."""
    reserved: dict[str, int] = {}
    sold: dict[str, int] = {}
    for r in reservations:
        key = level_key(r.product_id, r.size)
        if r.state == ACTIVE:
            reserved[key] = reserved.get(key, 0) + r.quantity
        elif r.state == COMMITTED:
            sold[key] = sold.get(key, 0) + r.quantity
    drifts = []
    keys = {level.key for level in levels} | set(reserved) | set(sold)
    by_key = {level.key: level for level in levels}
    for key in sorted(keys):
        level = by_key.get(key)
        recorded = (level.reserved, level.sold) if level else (0, 0)
        counted = (reserved.get(key, 0), sold.get(key, 0))
        if counted != recorded:
            drifts.append(Drift(key, counted[0], recorded[0], counted[1], recorded[1]))
    return drifts


@dataclass(frozen=True)
class ExpireReservation:
    """Internal: a reservation's expiry time has passed."""

    reservation_id: str
    expires_at: datetime

    @property
    def dedup_key(self) -> str:
        return f"expire:{self.reservation_id}:{self.expires_at.isoformat()}"
