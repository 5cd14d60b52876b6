"""The checkout worker: what it consumes, what it publishes, and how it is assembled."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from contracts.topics import CART_REPLIES, CHECKOUT_HANDOVERS, CHECKOUT_TIMEOUTS, ORDER_EVENTS, STOCK_COMMANDS
from services.checkout_worker import repository
from services.checkout_worker.handlers import CONSUMED, CheckoutLogic, find_overdue
from services.runtime.clock import Clock
from services.runtime.delayed import DelayedTopicConsumer
from services.runtime.processing import BatchProcessor
from services.runtime.settings import Settings
from services.runtime.spec import Retention, Sweep, WorkerSpec, dedup_key


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


SPEC = WorkerSpec(
    name="checkout",
    consumes=CONSUMED,
    produces=(ORDER_EVENTS, CHECKOUT_TIMEOUTS, STOCK_COMMANDS, CART_REPLIES, CHECKOUT_HANDOVERS),
    make_logic=CheckoutLogic,
    prepare=repository.prepare,
    sweeps=(Sweep(find_overdue, dedup_key, lambda settings: settings.checkout_deadline_sweep_seconds),),
    background=(fire_deadlines_when_due,),
    extra_groups=(("checkout-timeouts", (CHECKOUT_TIMEOUTS,)),),
    figures=repository.figures,
    retention=(
        Retention(repository.SAGAS, lambda settings: settings.finished_checkout_retention_hours, repository.finished_since),
        Retention(repository.CHARGES, lambda settings: settings.charge_retention_hours, repository.charges_answered_before),
    ),
)
