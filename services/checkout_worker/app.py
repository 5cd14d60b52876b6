"""The checkout worker: what it consumes, what it publishes, and how it is assembled."""

from __future__ import annotations

from contracts.topics import CART_REPLIES, CHECKOUT_HANDOVERS, CHECKOUT_TIMEOUTS, ORDER_EVENTS, STOCK_COMMANDS
from services.checkout_worker import repository
from services.checkout_worker.deadlines import find_overdue, fire_deadlines_when_due
from services.checkout_worker.handlers import CONSUMED, CheckoutLogic
from services.runtime.spec import Retention, Sweep, WorkerSpec, dedup_key

SPEC = WorkerSpec(
    name="checkout",
    consumes=CONSUMED,
    produces=(ORDER_EVENTS, CHECKOUT_TIMEOUTS, STOCK_COMMANDS, CART_REPLIES, CHECKOUT_HANDOVERS),
    make_logic=CheckoutLogic,
    store=repository.CheckoutStore,
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
