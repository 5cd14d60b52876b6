"""The stock audit: recompute reserved and sold from the reservation records and
compare them with the counters on each level. Zero drift is the expected answer."""

from __future__ import annotations

from dataclasses import dataclass

from pymongo.asynchronous.database import AsyncDatabase

from services.stock_worker import repository
from services.stock_worker.domain import Drift, audit


@dataclass(frozen=True)
class AuditReport:
    levels: int
    reservations: int
    drifts: list[Drift]


async def run_audit(db: AsyncDatabase) -> AuditReport:
    levels = await repository.all_levels(db)
    reservations = await repository.all_reservations(db)
    return AuditReport(len(levels), len(reservations), audit(levels, reservations))
