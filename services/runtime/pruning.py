"""The dedup window: inbox entries older than ``CARTFLOW_INBOX_RETENTION_HOURS``
are pruned, with the sent outbox chunks that held their replies, so both stay
the size of the window, not of all history. In the same rounds, each worker's
finished aggregates (``WorkerSpec.retention``: paid or cancelled checkouts,
closed reservations, empty carts) go once older than their own setting.

A message redelivered or replayed after its entry was pruned is processed
afresh; docs/delivery-guarantees.md says so and ``cartflow replay`` warns about such ranges.
Pruning runs in batches by ``_id`` so that no single delete holds the database
for long, and uses the worker's clock (deadline tests run in seconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.runtime.clock import Clock
from services.runtime.mongo_storage import inbox_collections
from services.runtime.settings import Settings
from services.runtime.spec import WorkerSpec

#: Entries deleted per round trip.
PRUNE_BATCH = 1000
#: Sent outbox chunks stay this much longer than the inbox entries pointing into them.
OUTBOX_MARGIN = timedelta(hours=1)


async def prune(collection: AsyncCollection, query: dict[str, Any], *, batch: int = PRUNE_BATCH) -> int:
    """Delete what matches ``query``, ``batch`` documents per round trip; how many went."""
    removed = 0
    while True:
        ids = [doc["_id"] async for doc in collection.find(query, {"_id": 1}).limit(batch)]
        if not ids:
            return removed
        # The query again: a document that changed since it was found (a cart
        # that got a line) no longer matches and stays.
        removed += (await collection.delete_many({"_id": {"$in": ids}, **query})).deleted_count


async def prune_inbox(db: AsyncDatabase, worker: str, older_than: datetime, *, batch: int = PRUNE_BATCH) -> int:
    """Delete the worker's inbox entries processed before ``older_than``, then
    the sent outbox chunks written before it; how many inbox entries went."""
    removed = 0
    for name in inbox_collections(worker):
        removed += await prune(db[name], {"processed_at": {"$lt": older_than}}, batch=batch)
    # An hour later than the entries, so that no entry outlives the replies it points at.
    chunks_before = older_than - OUTBOX_MARGIN
    await prune(db[f"{worker}.outbox"], {"sent": True, "written_at": {"$lt": chunks_before}}, batch=batch)
    return removed


async def prune_finished(db: AsyncDatabase, spec: WorkerSpec, settings: Settings, now: datetime) -> int:
    """Delete the worker's finished aggregates older than their retention; how many went."""
    removed = 0
    for rule in spec.retention:
        cutoff = now - timedelta(hours=rule.hours(settings))
        removed += await prune(db[rule.collection], rule.finished(cutoff))
    return removed


async def keep_windows(
    spec: WorkerSpec, settings: Settings, db: AsyncDatabase, clock: Clock, beat: Callable[[], None]
) -> None:
    """Forever: prune what is older than its window, then wait."""
    window = timedelta(hours=settings.inbox_retention_hours)
    while True:
        await prune_inbox(db, spec.name, clock.now() - window)
        await prune_finished(db, spec, settings, clock.now())
        beat()
        await asyncio.sleep(settings.inbox_prune_interval_seconds)
