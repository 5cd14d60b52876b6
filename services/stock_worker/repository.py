"""MongoDB storage of stock levels and reservations.

Levels and reservations carry a version and are written only over the version
that was read: no two consumers (nor a consumer and the expiry sweep of the
same process) can both spend the same units or both decide one reservation's
fate, even while a rebalance lets them overlap.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from services.runtime.mongo import LEGACY_VERSION, find_by_ids, write_versioned
from services.runtime.mongo_storage import MongoState
from services.stock_worker.domain import ACTIVE, EXPIRED, RELEASED, Reservation, StockLevel

LEVELS = "stock.levels"
RESERVATIONS = "stock.reservations"


async def prepare(db: AsyncDatabase) -> None:
    # The expiry sweep reads active reservations in expiry order.
    await db[RESERVATIONS].create_index(
        [("expires_at", ASCENDING)], name="active_by_expiry", partialFilterExpression={"state": ACTIVE}
    )
    await db[RESERVATIONS].create_index([("product_id", ASCENDING), ("size", ASCENDING)])
    # Closed reservations by last change, for pruning.
    await db[RESERVATIONS].create_index([("state", ASCENDING), ("updated_at", ASCENDING)])
    # Reservations written before they carried a version count as version 1.
    await db[RESERVATIONS].update_many({"version": {"$exists": False}}, {"$set": {"version": 1}})


def closed_since(cutoff: datetime) -> dict[str, Any]:
    """Reservations released or expired, unchanged since ``cutoff``. Committed
    ones stay: they are the record of what was sold, which the audit counts."""
    return {"state": {"$in": [RELEASED, EXPIRED]}, "updated_at": {"$lt": cutoff}}


def level_to_doc(level: StockLevel) -> dict[str, Any]:
    return {
        "_id": level.key,
        "product_id": level.product_id,
        "size": level.size,
        "on_hand": level.on_hand,
        "reserved": level.reserved,
        "sold": level.sold,
        "available": level.available,
        "version": level.version,
    }


def level_from_doc(doc: dict[str, Any]) -> StockLevel:
    return StockLevel(
        doc["product_id"], doc.get("size"), doc["on_hand"], doc["reserved"], doc["sold"], doc["version"]
    )


def reservation_to_doc(r: Reservation) -> dict[str, Any]:
    return {
        "_id": r.reservation_id,
        "product_id": r.product_id,
        "size": r.size,
        "quantity": r.quantity,
        "holder": r.holder,
        "state": r.state,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "expires_at": r.expires_at,
        "order_id": r.order_id,
        "reason": r.reason,
    }


def reservation_from_doc(doc: dict[str, Any]) -> Reservation:
    return Reservation(
        doc["_id"],
        doc["product_id"],
        doc.get("size"),
        doc["quantity"],
        doc["holder"],
        doc["state"],
        doc["created_at"],
        doc["updated_at"],
        doc.get("expires_at"),
        doc.get("order_id"),
        doc.get("reason"),
        # A reservation written without a version (by a release before versions)
        # reads as LEGACY: written over only while it still has none.
        doc.get("version", LEGACY_VERSION),
    )


async def load_reservations(db: AsyncDatabase, ids: Iterable[str]) -> dict[str, Reservation]:
    return await find_by_ids(db[RESERVATIONS], ids, reservation_from_doc)


async def load_active_reservations(db: AsyncDatabase, levels: Iterable[StockLevel]) -> dict[str, Reservation]:
    """Every active reservation of ``levels`` (through the product and size index)."""
    wanted = [{"product_id": level.product_id, "size": level.size} for level in levels]
    if not wanted:
        return {}
    cursor = db[RESERVATIONS].find({"state": ACTIVE, "$or": wanted})
    return {doc["_id"]: reservation_from_doc(doc) async for doc in cursor}


async def load_levels(db: AsyncDatabase, keys: Iterable[str]) -> dict[str, StockLevel]:
    return await find_by_ids(db[LEVELS], keys, level_from_doc)


async def save(
    db: AsyncDatabase,
    levels: Iterable[StockLevel],
    reservations: Iterable[Reservation],
    session: AsyncClientSession,
) -> None:
    await write_versioned(db[LEVELS], levels, level_to_doc, session)
    await write_versioned(db[RESERVATIONS], reservations, reservation_to_doc, session)


async def due_reservations(db: AsyncDatabase, now: datetime, limit: int) -> list[Reservation]:
    cursor = (
        db[RESERVATIONS]
        .find({"state": ACTIVE, "expires_at": {"$lte": now}})
        .sort("expires_at", ASCENDING)
        .limit(limit)
    )
    return [reservation_from_doc(doc) async for doc in cursor]


async def all_levels(db: AsyncDatabase) -> list[StockLevel]:
    return [level_from_doc(doc) async for doc in db[LEVELS].find()]


async def all_reservations(db: AsyncDatabase) -> list[Reservation]:
    return [reservation_from_doc(doc) async for doc in db[RESERVATIONS].find()]


async def figures(db: AsyncDatabase, now: datetime) -> dict[str, float]:
    """Gauges for status and metrics."""
    return {"active_reservations": await db[RESERVATIONS].count_documents({"state": ACTIVE})}


class StockStore:
    """Levels and reservations on MongoDB, as ``StockLogic`` loads and saves them
    (inside the batch's transaction when ``state`` carries its session)."""

    def __init__(self, state: MongoState) -> None:
        self.db, self.session = state.db, state.session

    async def reservations(self, ids: Iterable[str]) -> dict[str, Reservation]:
        return await load_reservations(self.db, ids)

    async def levels(self, keys: Iterable[str]) -> dict[str, StockLevel]:
        return await load_levels(self.db, keys)

    async def active_reservations(self, levels: Iterable[StockLevel]) -> dict[str, Reservation]:
        return await load_active_reservations(self.db, levels)

    async def save(self, levels: Iterable[StockLevel], reservations: Iterable[Reservation]) -> None:
        await save(self.db, levels, reservations, self.session)  # type: ignore[arg-type]
