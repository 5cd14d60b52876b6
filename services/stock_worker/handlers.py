"""The stock worker's handlers: stock commands in, stock events out.

Stock commands come from other services (the cart, the checkout) and operators,
so they are answered with events on ``stock.events`` rather than with replies;
a malformed stock command is dead-lettered.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Iterable
from typing import Any, Protocol

from contracts import stock as stock_contract
from contracts.topics import STOCK_COMMANDS, STOCK_EVENTS
from services.runtime.clock import Clock
from services.runtime.decoding import decode_record
from services.runtime.emit import causal_envelope, event_records
from services.runtime.processing import UnitOfWork, Work
from services.runtime.records import Incoming, Outgoing
from services.runtime.routing import RoutingError, Routes, received_on
from services.runtime.settings import Settings
from services.stock_worker import domain, published
from services.stock_worker.domain import ExpireReservation, Reservation, StockLevel, StockOutcome, level_key


@dataclass
class StockUnit(UnitOfWork):
    levels: dict[str, StockLevel] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    dirty_levels: set[str] = field(default_factory=set)
    dirty_reservations: set[str] = field(default_factory=set)
    #: The newest ``StockLevelChanged`` of each level this batch changed, with its
    #: cause's id and envelope: published once per level, after the batch.
    level_changes: dict[str, tuple[domain.StockLevelChanged, str, dict[str, Any]]] = field(default_factory=dict)

    def level(self, product_id: str, size: str | None) -> StockLevel:
        key = level_key(product_id, size)
        return self.levels.setdefault(key, StockLevel(product_id, size))

    def apply(self, outcome: StockOutcome) -> None:
        if outcome.level is not None:
            self.levels[outcome.level.key] = outcome.level
            self.dirty_levels.add(outcome.level.key)
        for reservation in (outcome.reservation, *outcome.released):
            if reservation is not None:
                self.reservations[reservation.reservation_id] = reservation
                self.dirty_reservations.add(reservation.reservation_id)

    def active_reservations(self, level: StockLevel) -> list[Reservation]:
        """The level's active reservations this unit knows (``load`` brings in
        all of them for a level a ``SetStock`` may lower)."""
        return [
            r for r in self.reservations.values()
            if r.is_active and (r.product_id, r.size) == (level.product_id, level.size)
        ]


class StockStore(Protocol):
    """Where ``StockLogic`` reads and writes levels and reservations (on
    MongoDB: ``services.stock_worker.repository.StockStore``)."""

    async def reservations(self, ids: Iterable[str]) -> dict[str, Reservation]: ...
    async def levels(self, keys: Iterable[str]) -> dict[str, StockLevel]: ...
    async def active_reservations(self, levels: Iterable[StockLevel]) -> dict[str, Reservation]: ...
    async def save(self, levels: Iterable[StockLevel], reservations: Iterable[Reservation]) -> None: ...


class StockLogic:
    name = "stock"

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.events_topic = settings.topic(STOCK_EVENTS)
        about_a_reservation = (
            stock_contract.AdjustReservation, stock_contract.ReleaseReservation, stock_contract.CommitReservation,
            stock_contract.TransferReservation, ExpireReservation,
        )
        self.routes = Routes(
            {
                stock_contract.SetStock: self._set_stock,
                stock_contract.ReserveStock: self._reserve,
                **{kind: self._on_reservation for kind in about_a_reservation},
            },
            receives=(*received_on((STOCK_COMMANDS,)), ExpireReservation),
        )
        self.commands_topic = settings.topic(STOCK_COMMANDS)

    def decode(self, record: Incoming) -> Work:
        adapter, types = stock_contract.stock_command_adapter, stock_contract.STOCK_COMMAND_TYPES
        return decode_record(record, adapter, types, self.clock)

    def arrange(self, works: list[Work]) -> list[Work]:
        return works

    async def load(self, store: StockStore, messages: list[Any]) -> StockUnit:
        # The levels the messages name and the reservations they name, read side
        # by side; then the levels of those reservations not read yet (usually none).
        keys = {level_key(m.product_id, m.size) for m in messages if isinstance(m, stock_contract.SetStock | stock_contract.ReserveStock)}
        reservations, levels = await asyncio.gather(
            store.reservations([m.reservation_id for m in messages if hasattr(m, "reservation_id")]), store.levels(keys)
        )
        if missing := {level_key(r.product_id, r.size) for r in reservations.values()} - set(levels):
            levels.update(await store.levels(missing))
        lowered = _levels_a_set_stock_may_lower(messages, levels, reservations)
        for r in (await store.active_reservations([levels[k] for k in sorted(lowered)])).values():
            reservations.setdefault(r.reservation_id, r)
        return StockUnit(levels=levels, reservations=reservations)

    async def save(self, unit: StockUnit, store: StockStore) -> None:
        await store.save(
            [unit.levels[k] for k in sorted(unit.dirty_levels)],
            [unit.reservations[r] for r in sorted(unit.dirty_reservations)],
        )

    def failed(self, work: Work, error: Exception) -> list[Outgoing]:
        return []

    def handle(self, unit: StockUnit, message: Any) -> list[Outgoing]:
        now = self.clock.now()
        outcome = self.routes(unit, message, now)
        unit.apply(outcome)
        if isinstance(message, ExpireReservation):
            cause_id, envelope = message.dedup_key, causal_envelope(message.dedup_key, None, now)
        else:
            cause_id, envelope = message.message_id, causal_envelope(message.message_id, message.correlation_id, now)
        answers = []
        for event in outcome.events:
            if isinstance(event, domain.StockLevelChanged):
                unit.level_changes[level_key(event.product_id, event.size)] = (event, cause_id, envelope)
            else:
                answers.append(event)
        return self._records(answers, cause_id, envelope)

    def finish(self, unit: StockUnit) -> list[Outgoing]:
        """One ``StockLevelChanged`` per level the batch changed, with the level as
        the batch left it (a level is a state: its readers want the last one)."""
        changes, unit.level_changes = unit.level_changes, {}
        return [
            record
            for key in sorted(changes)
            for record in self._records([changes[key][0]], *changes[key][1:])
        ]

    def _records(self, events: list[Any], cause_id: str, envelope: dict[str, Any]) -> list[Outgoing]:
        return event_records(
            events,
            published.STOCK_EVENTS,
            topic=self.events_topic,
            key=lambda event: event.product_id,
            cause_id=cause_id,
            envelope=envelope,
        )

    def _set_stock(self, unit: StockUnit, message: stock_contract.SetStock, now: datetime) -> StockOutcome:
        level = unit.level(message.product_id, message.size)
        return domain.set_stock(level, message.on_hand, active=unit.active_reservations(level), now=now)

    def _reserve(self, unit: StockUnit, message: stock_contract.ReserveStock, now: datetime) -> StockOutcome:
        return domain.reserve(
            unit.level(message.product_id, message.size),
            unit.reservations.get(message.reservation_id),
            reservation_id=message.reservation_id,
            quantity=message.quantity,
            holder=message.holder,
            expires_at=message.expires_at,
            now=now,
        )

    def _on_reservation(self, unit: StockUnit, message: Any, now: datetime) -> StockOutcome:
        """A command (or the expiry) about one reservation, checked against its holder."""
        reservation = unit.reservations.get(message.reservation_id)
        if reservation is None:
            if isinstance(message, ExpireReservation):
                return StockOutcome(None, None, ())
            return domain.unknown_reservation(message.reservation_id, message.product_id, message.type)
        if not isinstance(message, ExpireReservation):
            claimed = getattr(message, "holder", None)
            if isinstance(message, stock_contract.TransferReservation):
                # A repeat of a transfer that happened finds the new holder: no refusal.
                claimed = None if reservation.holder == message.holder else message.expected_holder
            refusal = domain.wrong_owner(
                reservation, command_type=message.type, holder=claimed, product_id=message.product_id
            )
            if refusal is not None:
                return refusal
        level = unit.level(reservation.product_id, reservation.size)
        match message:
            case stock_contract.AdjustReservation():
                return domain.adjust(level, reservation, quantity=message.quantity, expires_at=message.expires_at, now=now)
            case stock_contract.ReleaseReservation():
                return domain.release(level, reservation, reason=message.reason, now=now)
            case stock_contract.CommitReservation():
                return domain.commit(level, reservation, order_id=message.order_id, now=now)
            case ExpireReservation():
                return domain.expire(level, reservation, now=now)
            case stock_contract.TransferReservation():
                return domain.transfer(reservation, holder=message.holder, expires_at=message.expires_at, now=now)
        raise RoutingError(f"no handler for {type(message).__name__}")


def _levels_a_set_stock_may_lower(
    messages: list[Any], levels: dict[str, StockLevel], reservations: dict[str, Reservation]
) -> set[str]:
    """The keys of the stored levels whose reservations a ``SetStock`` of this
    batch may have to release: it sets less than the level holds, or the batch
    also reserves or grows reservations of it. (Reservations made in the batch
    are in the unit already; only stored ones need reading.)"""
    growing = {level_key(m.product_id, m.size) for m in messages if isinstance(m, stock_contract.ReserveStock)}
    growing.update(
        level_key(r.product_id, r.size)
        for m in messages
        if isinstance(m, stock_contract.AdjustReservation) and (r := reservations.get(m.reservation_id)) is not None
    )
    keys = set()
    for m in messages:
        if not isinstance(m, stock_contract.SetStock):
            continue
        key = level_key(m.product_id, m.size)
        level = levels.get(key)
        if level is not None and level.reserved > 0 and (key in growing or m.on_hand < level.reserved + level.sold):
            keys.add(key)
    return keys
