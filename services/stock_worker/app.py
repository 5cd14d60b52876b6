"""The stock worker: what it consumes, what it publishes, and how it is assembled."""

from __future__ import annotations

from contracts.topics import STOCK_COMMANDS, STOCK_EVENTS
from services.runtime.worker import WorkerSpec
from services.stock_worker import repository
from services.stock_worker.handlers import StockLogic, find_expired

SPEC = WorkerSpec(
    name="stock",
    consumes=(STOCK_COMMANDS,),
    produces=(STOCK_EVENTS,),
    make_logic=StockLogic,
    prepare=repository.prepare,
    sweep=find_expired,
    sweep_key=lambda message: message.dedup_key,
    sweep_interval=lambda settings: settings.stock_expiry_sweep_seconds,
    figures=repository.figures,
)
