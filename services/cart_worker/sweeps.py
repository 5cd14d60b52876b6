"""What the cart worker's sweeps find due in MongoDB: stock steps past their
deadline and carts whose timers ran out."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from services.cart_worker import housekeeping, repository
from services.cart_worker.housekeeping import HousekeepingDue
from services.cart_worker.domain import StockAnswerOverdue
from services.runtime.clock import Clock
from services.runtime.settings import Settings


async def find_overdue(db: AsyncDatabase, clock: Clock, settings: Settings, limit: int) -> list[StockAnswerOverdue]:
    now = clock.now()
    return [
        StockAnswerOverdue.of(cart.user_id, step)
        for cart in await repository.carts_past_deadline(db, now, limit)
        for step in cart.steps
        if step.deadline <= now and step.answer is None
    ]


async def find_housekeeping_due(db: AsyncDatabase, clock: Clock, settings: Settings, limit: int) -> list[HousekeepingDue]:
    now = clock.now()
    return [
        HousekeepingDue(cart.user_id, task, at)
        for cart in await repository.carts_due(db, now, limit)
        for task, moment in housekeeping.TASK_FIELDS.items()
        if (at := getattr(cart, moment)) is not None and at <= now
    ]
