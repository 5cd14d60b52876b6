"""``stock.commands`` and ``stock.events``: stock levels and reservations.

Every message is keyed by ``product_id``, so one consumer owns one product's
stock at a time. Commands that name a reservation also carry its
``product_id`` (an addition to the v1 shapes) so that publishers can key them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, TypeAdapter

from contracts.envelope import BoundedInt, Command, Event, Identifier

Reason = Annotated[str, Field(min_length=1, max_length=100)]
Holder = Annotated[str, Field(min_length=1, max_length=500)]


# --- commands (in, key product_id) ----------------------------------------------


class SetStock(Command):
    """The absolute level on hand, from inventory or an operator. Idempotent.

    A level below what is reserved and sold releases reservations, newest
    first, until what is held fits (or none is left, when more was sold than
    the recount found): each is announced as ``StockReleased`` with reason
    ``stock_reduced`` and this command's ``message_id`` as its ``causation_id``."""

    type: Literal["SetStock"] = "SetStock"
    product_id: Identifier
    size: Identifier | None = None
    on_hand: Annotated[BoundedInt, Field(ge=0)]


class ReserveStock(Command):
    type: Literal["ReserveStock"] = "ReserveStock"
    reservation_id: Identifier
    product_id: Identifier
    size: Identifier | None = None
    quantity: BoundedInt
    #: Who holds the units: ``cart:<user_id>:<item_id>`` or ``order:<order_id>``.
    holder: Holder
    expires_at: AwareDatetime | None = None


class AdjustReservation(Command):
    type: Literal["AdjustReservation"] = "AdjustReservation"
    reservation_id: Identifier
    product_id: Identifier | None = None
    quantity: BoundedInt
    expires_at: AwareDatetime | None = None
    #: Added to v1: who the sender believes holds the reservation; refused with
    #: RESERVATION_HOLDER_MISMATCH when someone else does.
    holder: Holder | None = None


class ReleaseReservation(Command):
    type: Literal["ReleaseReservation"] = "ReleaseReservation"
    reservation_id: Identifier
    product_id: Identifier | None = None
    reason: Reason
    #: Added to v1: as for AdjustReservation.
    holder: Holder | None = None


class CommitReservation(Command):
    type: Literal["CommitReservation"] = "CommitReservation"
    reservation_id: Identifier
    product_id: Identifier | None = None
    order_id: Identifier
    #: Added to v1: as for AdjustReservation.
    holder: Holder | None = None


class TransferReservation(Command):
    """Added to v1: hand a reservation to another holder (a cart line to an order
    at checkout), with a new expiry or none."""

    type: Literal["TransferReservation"] = "TransferReservation"
    reservation_id: Identifier
    product_id: Identifier | None = None
    holder: Holder
    expires_at: AwareDatetime | None = None
    #: Added to v1: who must hold the reservation now for the transfer to happen
    #: (a checkout names the buyer's cart line); refused with
    #: RESERVATION_HOLDER_MISMATCH when someone else does.
    expected_holder: Holder | None = None


STOCK_COMMANDS = (
    SetStock,
    ReserveStock,
    AdjustReservation,
    ReleaseReservation,
    CommitReservation,
    TransferReservation,
)
STOCK_COMMAND_TYPES = frozenset(m.model_fields["type"].default for m in STOCK_COMMANDS)
StockCommand = Annotated[
    SetStock | ReserveStock | AdjustReservation | ReleaseReservation | CommitReservation | TransferReservation,
    Field(discriminator="type"),
]
stock_command_adapter: TypeAdapter[Any] = TypeAdapter(StockCommand)


# --- events (out, key product_id) -----------------------------------------------


class _ReservationEvent(Event):
    reservation_id: str
    product_id: str
    size: str | None = None
    holder: str | None = None


class StockReserved(_ReservationEvent):
    type: Literal["StockReserved"] = "StockReserved"
    quantity: int
    expires_at: AwareDatetime | None = None
    available_after: int


class StockReservationRejected(_ReservationEvent):
    type: Literal["StockReservationRejected"] = "StockReservationRejected"
    #: "reserve" or "adjust"
    operation: str = "reserve"
    requested: int
    #: The most this reservation could hold now (for an adjustment: including
    #: what it already holds).
    available: int
    error_code: str


class ReservationAdjusted(_ReservationEvent):
    type: Literal["ReservationAdjusted"] = "ReservationAdjusted"
    old_quantity: int
    quantity: int
    expires_at: AwareDatetime | None = None
    available_after: int


class StockReleased(_ReservationEvent):
    type: Literal["StockReleased"] = "StockReleased"
    quantity: int
    reason: str
    #: True when the reservation was already released or committed: nothing changed.
    no_op: bool = False
    state: str = "released"


class StockCommitted(_ReservationEvent):
    type: Literal["StockCommitted"] = "StockCommitted"
    quantity: int
    order_id: str
    no_op: bool = False


class ReservationTransferred(_ReservationEvent):
    type: Literal["ReservationTransferred"] = "ReservationTransferred"
    previous_holder: str
    quantity: int
    expires_at: AwareDatetime | None = None


class StockCommandRejected(_ReservationEvent):
    """A reservation command that cannot apply (unknown or closed reservation, bad quantity)."""

    type: Literal["StockCommandRejected"] = "StockCommandRejected"
    command_type: str
    error_code: str
    error_message: str


class StockLevelChanged(Event):
    type: Literal["StockLevelChanged"] = "StockLevelChanged"
    product_id: str
    size: str | None = None
    on_hand: int
    reserved: int
    sold: int
    available: int


STOCK_EVENTS = (
    StockReserved,
    StockReservationRejected,
    ReservationAdjusted,
    StockReleased,
    StockCommitted,
    ReservationTransferred,
    StockCommandRejected,
    StockLevelChanged,
)
STOCK_EVENT_TYPES = frozenset(m.model_fields["type"].default for m in STOCK_EVENTS)
StockEvent = Annotated[
    StockReserved
    | StockReservationRejected
    | ReservationAdjusted
    | StockReleased
    | StockCommitted
    | ReservationTransferred
    | StockCommandRejected
    | StockLevelChanged,
    Field(discriminator="type"),
]
stock_event_adapter: TypeAdapter[Any] = TypeAdapter(StockEvent)
