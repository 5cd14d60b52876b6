"""Where a payment deadline fires. Every checkout publishes a
``PaymentDeadlineReached`` on ``checkout.timeouts``, held by a delayed consumer
until its ``due_at`` and then handed to the saga (``domain.deadline_reached``:
cancel the unpaid orders, release their stock). The safety net finds unpaid
checkouts past their deadline plus a grace period whose timeout message was
lost, as ``OverdueDeadline``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from pymongo.asynchronous.database import AsyncDatabase

from contracts.topics import CHECKOUT_TIMEOUTS
from services.checkout_worker import repository
from services.checkout_worker.domain import OverdueDeadline
from services.runtime.clock import Clock
from services.runtime.delayed import DelayedTopicConsumer
from services.runtime.processing import BatchProcessor
from services.runtime.settings import Settings


async def fire_deadlines_when_due(
    settings: Settings, processor: BatchProcessor, clock: Clock, beat: Callable[[], None]
) -> None:
    """Hold each PaymentDeadlineReached until its due_at, then let the saga decide."""
    await DelayedTopicConsumer(
        settings,
        topic=settings.topic(CHECKOUT_TIMEOUTS),
        group_id=settings.group_id("checkout-timeouts"),
        process=processor.process,
        clock=clock,
        beat=beat,
        # Every deadline is payment_timeout_seconds after its checkout: one much
        # later than that is not a real one and must not hold its partition.
        max_delay=timedelta(seconds=settings.payment_timeout_seconds + 60),
    ).run()


async def find_overdue(db: AsyncDatabase, clock: Clock, settings: Settings, limit: int) -> list[OverdueDeadline]:
    """The safety net: unpaid checkouts past their deadline plus a grace period,
    whose timeout message was lost (the embedded broker keeps topics in memory)."""
    moment = clock.now() - timedelta(seconds=settings.checkout_deadline_grace_seconds)
    return [OverdueDeadline(c.payment_id, c.deadline) for c in await repository.awaiting_past(db, moment, limit)]
