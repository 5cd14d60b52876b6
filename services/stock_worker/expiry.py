"""Where a reservation expires: the sweep finds reservations past their
``expires_at`` (oldest first) and hands each to the worker as an
``ExpireReservation``, processed like a consumed command and deduped by its
reservation and expiry time; the stock domain (``domain.expire``) releases it."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from services.runtime.clock import Clock
from services.runtime.settings import Settings
from services.stock_worker import repository
from services.stock_worker.domain import ExpireReservation


async def find_expired(db: AsyncDatabase, clock: Clock, settings: Settings, limit: int) -> list[ExpireReservation]:
    due = await repository.due_reservations(db, clock.now(), limit)
    return [ExpireReservation(r.reservation_id, r.expires_at) for r in due if r.expires_at]
