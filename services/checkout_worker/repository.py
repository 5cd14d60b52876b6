"""MongoDB storage of checkout sagas: one document per checkout, keyed by payment id."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from services.checkout_worker.domain import AWAITING_PAYMENT, CANCELLED, HELD, PAID, Checkout, Order
from services.runtime.mongo import find_by_ids, write_versioned
from services.runtime.mongo_storage import MongoState

SAGAS = "checkout.sagas"
#: Every charge a checkout answered, by its reference, kept longer than the
#: checkouts themselves: a charge announced again after its checkout was pruned
#: is recognised as answered, not taken for a payment nobody asked for.
CHARGES = "checkout.charges"


async def prepare(db: AsyncDatabase) -> None:
    # The safety-net sweep and the stuck-saga report read unpaid sagas by deadline.
    await db[SAGAS].create_index(
        [("deadline", ASCENDING)], name="awaiting_by_deadline", partialFilterExpression={"state": AWAITING_PAYMENT}
    )
    # Stock answers find their saga by the command that caused them.
    await db[SAGAS].create_index("orders.stock_command_id", sparse=True)
    # Finished checkouts by when they closed, for pruning.
    await db[SAGAS].create_index([("state", ASCENDING), ("closed_at", ASCENDING)])
    await db[CHARGES].create_index("answered_at")
    # Units a recount takes back find their saga by the order's reservation.
    await db[SAGAS].create_index("orders.reservation_id", sparse=True)


def charges_answered_before(cutoff: datetime) -> dict[str, Any]:
    """Charges answered before ``cutoff``."""
    return {"answered_at": {"$lt": cutoff}}


def finished_since(cutoff: datetime) -> dict[str, Any]:
    """Checkouts paid or cancelled before ``cutoff``."""
    return {"state": {"$in": [PAID, CANCELLED]}, "closed_at": {"$lt": cutoff}}


def _order_to_doc(o: Order) -> dict[str, Any]:
    return {
        "order_id": o.order_id,
        "item_id": o.item_id,
        "product_id": o.product_id,
        "product_name": o.product_name,
        "size": o.size,
        "quantity": o.quantity,
        "unit_price": str(o.unit_price),
        "total_price": str(o.total_price),
        "reservation_id": o.reservation_id,
        "status": o.status,
        "stock": o.stock,
        "stock_command_id": o.stock_command_id,
    }


def _order_from_doc(d: dict[str, Any]) -> Order:
    return Order(
        d["order_id"],
        d["item_id"],
        d["product_id"],
        d["product_name"],
        d.get("size"),
        d["quantity"],
        Decimal(d["unit_price"]),
        Decimal(d["total_price"]),
        d.get("reservation_id"),
        d["status"],
        d.get("stock", HELD),
        d.get("stock_command_id"),
    )


def checkout_to_doc(c: Checkout) -> dict[str, Any]:
    return {
        "_id": c.payment_id,
        "payment_hash": c.payment_hash,
        "user_id": c.user_id,
        "checkout_type": c.checkout_type,
        "orders": [_order_to_doc(o) for o in c.orders],
        "total_amount": str(c.total_amount),
        "payment_method": c.payment_method,
        "gateway_name": c.gateway_name,
        "shipping_address": c.shipping_address,
        "created_at": c.created_at,
        "deadline": c.deadline,
        "state": c.state,
        "closed_at": c.closed_at,
        "cancel_reason": c.cancel_reason,
        "failed_attempts": c.failed_attempts,
        "version": c.version,
        "paid_reference": c.paid_reference,
        "answered_charges": list(c.answered_charges),
    }


def checkout_from_doc(d: dict[str, Any]) -> Checkout:
    return Checkout(
        payment_id=d["_id"],
        payment_hash=d["payment_hash"],
        user_id=d["user_id"],
        checkout_type=d["checkout_type"],
        orders=tuple(_order_from_doc(o) for o in d["orders"]),
        total_amount=Decimal(d["total_amount"]),
        payment_method=d["payment_method"],
        gateway_name=d["gateway_name"],
        shipping_address=d.get("shipping_address"),
        created_at=d["created_at"],
        deadline=d["deadline"],
        state=d["state"],
        closed_at=d.get("closed_at"),
        cancel_reason=d.get("cancel_reason"),
        failed_attempts=d.get("failed_attempts", 0),
        version=d.get("version", 0),
        paid_reference=d.get("paid_reference"),
        answered_charges=tuple(d.get("answered_charges") or ()),
    )


async def load(db: AsyncDatabase, payment_ids: Iterable[str]) -> dict[str, Checkout]:
    return await find_by_ids(db[SAGAS], payment_ids, checkout_from_doc)


async def load_holding(db: AsyncDatabase, reservation_ids: Iterable[str]) -> dict[str, Checkout]:
    """The checkouts with an order holding one of ``reservation_ids``."""
    return await find_by_ids(db[SAGAS], reservation_ids, checkout_from_doc, field="orders.reservation_id")


async def load_charges(db: AsyncDatabase, references: Iterable[str]) -> dict[str, str]:
    """The checkout (its payment id) each of ``references`` was answered for."""
    wanted = sorted(set(references))
    if not wanted:
        return {}
    return {doc["_id"]: doc["payment_id"] async for doc in db[CHARGES].find({"_id": {"$in": wanted}})}


async def save_charges(
    db: AsyncDatabase, charges: dict[str, str], now: datetime, session: AsyncClientSession
) -> None:
    """Remember charges answered (reference -> payment id; the first answer wins)."""
    writes = [
        UpdateOne({"_id": reference}, {"$setOnInsert": {"payment_id": payment_id, "answered_at": now}}, upsert=True)
        for reference, payment_id in sorted(charges.items())
    ]
    if writes:
        await db[CHARGES].bulk_write(writes, ordered=False, session=session)


async def load_waiting_on(db: AsyncDatabase, command_ids: Iterable[str]) -> dict[str, Checkout]:
    """The sagas with an order waiting for the answer to one of these stock commands."""
    return await find_by_ids(db[SAGAS], command_ids, checkout_from_doc, field="orders.stock_command_id")


async def save(db: AsyncDatabase, checkouts: Iterable[Checkout], session: AsyncClientSession) -> None:
    await write_versioned(db[SAGAS], checkouts, checkout_to_doc, session)


async def awaiting_past(db: AsyncDatabase, moment: datetime, limit: int = 1000) -> list[Checkout]:
    """Unpaid checkouts whose deadline is before ``moment``, oldest first."""
    cursor = db[SAGAS].find({"state": AWAITING_PAYMENT, "deadline": {"$lt": moment}}).sort("deadline", ASCENDING)
    return [checkout_from_doc(d) async for d in cursor.limit(limit)]


async def figures(db: AsyncDatabase, now: datetime) -> dict[str, float]:
    """Gauges for status and metrics: open sagas and how late the most overdue one is."""
    pending = await db[SAGAS].count_documents({"state": AWAITING_PAYMENT})
    oldest = await db[SAGAS].find_one(
        {"state": AWAITING_PAYMENT, "deadline": {"$lt": now}}, sort=[("deadline", ASCENDING)]
    )
    overdue = (now - oldest["deadline"]).total_seconds() if oldest else 0.0
    return {"pending_sagas": pending, "oldest_overdue_seconds": overdue}


class CheckoutStore:
    """Checkouts and answered charges on MongoDB, as ``CheckoutLogic`` loads and
    saves them (inside the batch's transaction when ``state`` carries its session)."""

    def __init__(self, state: MongoState) -> None:
        self.db, self.session = state.db, state.session

    async def checkouts(self, payment_ids: Iterable[str]) -> dict[str, Checkout]:
        return await load(self.db, payment_ids)

    async def waiting_on(self, command_ids: Iterable[str]) -> dict[str, Checkout]:
        return await load_waiting_on(self.db, command_ids)

    async def holding(self, reservation_ids: Iterable[str]) -> dict[str, Checkout]:
        return await load_holding(self.db, reservation_ids)

    async def charges(self, references: Iterable[str]) -> dict[str, str]:
        return await load_charges(self.db, references)

    async def save(self, checkouts: Iterable[Checkout], charges: dict[str, str], now: datetime) -> None:
        await save(self.db, checkouts, self.session)  # type: ignore[arg-type]
        await save_charges(self.db, charges, now, self.session)  # type: ignore[arg-type]
