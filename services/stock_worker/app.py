"""The stock worker: what it consumes, what it publishes, and how it is assembled."""

from __future__ import annotations

from contracts.topics import STOCK_COMMANDS, STOCK_EVENTS
from services.runtime.spec import Retention, Sweep, WorkerSpec, dedup_key
from services.stock_worker import repository
from services.stock_worker.expiry import find_expired
from services.stock_worker.handlers import StockLogic

SPEC = WorkerSpec(
    name="stock",
    consumes=(STOCK_COMMANDS,),
    produces=(STOCK_EVENTS,),
    make_logic=StockLogic,
    store=repository.StockStore,
    prepare=repository.prepare,
    sweeps=(Sweep(find_expired, dedup_key, lambda settings: settings.stock_expiry_sweep_seconds),),
    figures=repository.figures,
    retention=(
        Retention(
            repository.RESERVATIONS, lambda settings: settings.closed_reservation_retention_hours, repository.closed_since
        ),
    ),
)
