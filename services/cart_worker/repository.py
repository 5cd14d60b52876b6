"""MongoDB storage of carts and of the catalog read model.

Money is stored as decimal strings, never as binary floats. Each cart carries a
``version``: a write succeeds only against the version that was read, so two
consumers that briefly own the same partition during a rebalance cannot
overwrite each other's changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from contracts import cart as cart_contract
from contracts import stock as stock_contract
from contracts.derived_ids import stock_command_id
from services.cart_worker.domain import (
    PENDING,
    RESERVED,
    UNTRACKED,
    Cart,
    CartLine,
    Change,
    Handover,
    PendingStock,
    Product,
    SizeOption,
    StockAnswerOverdue,
    Unreadable,
)
from services.runtime.mongo import find_by_ids, replace_all, write_versioned
from services.runtime.mongo_storage import MongoState

CARTS = "cart.carts"
CATALOG = "cart.catalog"
STOCK = "cart.stock"


#: Indexes of earlier releases: one per housekeeping moment and one on the last
#: change, all four kept up to date by every cart write. ``due_at`` and
#: ``empty_since`` replace them with two that hold only the carts they apply to.
LEGACY_INDEXES = ("check_at_1", "remind_at_1", "expire_at_1", "updated_at_1")


async def prepare(db: AsyncDatabase) -> None:
    # Carts waiting on the stock worker, by deadline, for the timeout sweep.
    await db[CARTS].create_index("pending.deadline", sparse=True)
    # Carts holding a product, for releasing its reservations when it is deleted.
    await db[CARTS].create_index("items.product_id")
    # The earliest housekeeping moment, for the sweep that finds carts whose time
    # has come; and since when an empty cart is empty, for pruning. Both fields
    # are left out where they do not apply, so these indexes hold only such carts.
    await db[CARTS].create_index("due_at", sparse=True)
    await db[CARTS].create_index("empty_since", sparse=True)
    await _migrate_legacy_carts(db)


async def _migrate_legacy_carts(db: AsyncDatabase) -> None:
    """Give carts written by an earlier release their ``due_at`` and ``empty_since``,
    then drop the indexes those fields replace. It runs while a legacy index
    exists, so a start interrupted halfway migrates again at the next one."""
    carts = db[CARTS]
    legacy = [name for name in await carts.index_information() if name in LEGACY_INDEXES]
    if not legacy:
        return
    batch: list[UpdateOne] = []
    async for doc in carts.find({"due_at": {"$exists": False}, "empty_since": {"$exists": False}}):
        derived = _derived_fields(doc)
        if derived:
            # Only as read: a process of this release that started first may have written it since.
            batch.append(UpdateOne({"_id": doc["_id"], "version": doc.get("version")}, {"$set": derived}))
        if len(batch) >= 500:
            await carts.bulk_write(batch, ordered=False)
            batch = []
    if batch:
        await carts.bulk_write(batch, ordered=False)
    for name in legacy:
        with contextlib.suppress(OperationFailure):  # another process starting dropped it first
            await carts.drop_index(name)


def empty_since(cutoff: datetime) -> dict[str, Any]:
    """Carts with nothing in them, nothing pending or queued, unchanged since ``cutoff``
    (found through the ``empty_since`` index; the rest guards the delete)."""
    return {
        "empty_since": {"$lt": cutoff},
        "items.0": {"$exists": False},
        "pending": None,
        "queue.0": {"$exists": False},
    }


def product_to_doc(product: Product) -> dict[str, Any]:
    return {
        "_id": product.product_id,
        "name": product.name,
        "price": str(product.price),
        "image_url": product.image_url,
        "is_deleted": product.is_deleted,
        "sizes": [{"size": option.size, "price": str(option.price)} for option in product.sizes],
    }


def product_from_doc(doc: dict[str, Any]) -> Product:
    return Product(
        product_id=doc["_id"],
        name=doc["name"],
        price=Decimal(doc["price"]),
        image_url=doc.get("image_url"),
        is_deleted=bool(doc.get("is_deleted")),
        sizes=tuple(SizeOption(option["size"], Decimal(option["price"])) for option in doc.get("sizes") or ()),
    )


def _line_to_doc(line: CartLine) -> dict[str, Any]:
    return {
        "item_id": line.item_id,
        "product_id": line.product_id,
        "size": line.size,
        "quantity": line.quantity,
        "product_name": line.product_name,
        "unit_price": str(line.unit_price),
        "image_url": line.image_url,
        "added_at": line.added_at,
        "updated_at": line.updated_at,
        "properties": dict(line.properties),
        "has_product_changed": line.has_product_changed,
        "change_details": [change.as_dict() for change in line.change_details],
        "reservation_id": line.reservation_id,
        "reserved_quantity": line.reserved_quantity,
        "reservation_state": line.reservation_state,
    }


def _line_from_doc(doc: dict[str, Any]) -> CartLine:
    return CartLine(
        item_id=doc["item_id"],
        product_id=doc["product_id"],
        size=doc.get("size"),
        quantity=doc["quantity"],
        product_name=doc["product_name"],
        unit_price=Decimal(doc["unit_price"]),
        image_url=doc.get("image_url"),
        added_at=doc["added_at"],
        updated_at=doc["updated_at"],
        properties=doc.get("properties") or {},
        has_product_changed=bool(doc.get("has_product_changed")),
        change_details=tuple(Change(**change) for change in doc.get("change_details") or ()),
        reservation_id=doc.get("reservation_id"),
        reserved_quantity=doc.get("reserved_quantity", 0),
        reservation_state=doc.get("reservation_state", UNTRACKED),
    )


# --- commands and answers kept in a cart: typed in memory, contract JSON when stored ---
#
# Upcasting happens here and only here: what an earlier release stored and this
# one no longer reads is loaded as ``Unreadable`` (a command) or as the step's
# timeout (a held answer), which the saga knows how to answer and undo.

#: How a held timeout is marked among held answers (stock events have a ``type``).
OVERDUE = "overdue"
#: Marks a held answer whose reservation the stock worker let go of since.
RELEASED_SINCE = "released_since"


def _command_to_doc(command: Any) -> dict[str, Any]:
    if isinstance(command, Unreadable):
        return dict(command.stored)
    return command.model_dump(mode="json")


def command_from_doc(doc: Any) -> Any:
    """A kept command as this release reads it, or ``Unreadable``."""
    try:
        return cart_contract.cart_command_adapter.validate_python(doc)
    except ValueError:  # pydantic's ValidationError is one
        return Unreadable(doc if isinstance(doc, dict) else {"stored": repr(doc)[:500]})


def _answer_to_doc(step: PendingStock) -> dict[str, Any] | None:
    if step.answer is None:
        return None
    if isinstance(step.answer, StockAnswerOverdue):
        doc: dict[str, Any] = {OVERDUE: dataclasses.asdict(step.answer)}
    else:
        doc = step.answer.model_dump(mode="json")
    if step.released_since:
        doc[RELEASED_SINCE] = True
    return doc


def _answer_from_doc(doc: Any, user_id: str, step: PendingStock) -> tuple[Any, bool]:
    """A held answer as it came, and whether its reservation was let go of since.
    One that no longer reads counts as the step's timeout, which undoes whatever
    the stock worker did for the step."""
    if not isinstance(doc, dict):
        return (StockAnswerOverdue.of(user_id, step), False) if doc is not None else (None, False)
    released = bool(doc.get(RELEASED_SINCE))
    answer = {key: value for key, value in doc.items() if key != RELEASED_SINCE}
    try:
        if OVERDUE in answer:
            return StockAnswerOverdue(**answer[OVERDUE]), released
        return stock_contract.stock_event_adapter.validate_python(answer), released
    except (TypeError, ValueError):
        return StockAnswerOverdue.of(user_id, step), released


def _step_to_doc(step: PendingStock) -> dict[str, Any]:
    doc = {
        "command": _command_to_doc(step.command),
        "item_id": step.item_id,
        "reservation_id": step.reservation_id,
        "operation": step.operation,
        "previous": _line_to_doc(step.previous) if step.previous else None,
        "deadline": step.deadline,
        "stock_command_id": step.stock_command_id,
    }
    if (answer := _answer_to_doc(step)) is not None:
        doc["answer"] = answer
    return doc


def _step_from_doc(doc: dict[str, Any], user_id: str) -> PendingStock:
    command = command_from_doc(doc["command"])
    command_id = doc.get("stock_command_id")
    if command_id is None and not isinstance(command, Unreadable):
        # Stored before steps kept it: the id their stock command was sent with,
        # derived as it was then, so that only the answer to it resolves the step.
        kind = "ReserveStock" if doc["operation"] == "reserve" else "AdjustReservation"
        command_id = stock_command_id(command.message_id, kind, doc["reservation_id"])
    step = PendingStock(
        command=command,
        item_id=doc["item_id"],
        reservation_id=doc["reservation_id"],
        operation=doc["operation"],
        previous=_line_from_doc(doc["previous"]) if doc.get("previous") else None,
        deadline=doc["deadline"],
        stock_command_id=command_id,
    )
    answer, released = _answer_from_doc(doc.get("answer"), user_id, step)
    return dataclasses.replace(step, answer=answer, released_since=released)


def _handover_to_doc(handover: Handover | None) -> dict[str, Any] | None:
    if handover is None:
        return None
    return {
        "payment_id": handover.payment_id,
        "start_message_id": handover.start_message_id,
        "command": _command_to_doc(handover.command),
        "item_ids": list(handover.item_ids),
        "checkout_type": handover.checkout_type,
        "handed_at": handover.handed_at,
    }


def _handover_from_doc(doc: dict[str, Any] | None) -> Handover | None:
    if not doc:
        return None
    return Handover(
        payment_id=doc["payment_id"],
        start_message_id=doc["start_message_id"],
        command=command_from_doc(doc["command"]),
        item_ids=tuple(doc["item_ids"]),
        checkout_type=doc["checkout_type"],
        handed_at=doc["handed_at"],
    )


def _steps_from_doc(doc: list[dict[str, Any]] | dict[str, Any] | None, user_id: str) -> tuple[PendingStock, ...]:
    """The steps in flight: a list of them, or (stored by an earlier release) one or none."""
    if not doc:
        return ()
    if isinstance(doc, dict):
        return (_step_from_doc(doc, user_id),)
    return tuple(_step_from_doc(step, user_id) for step in doc)


def _derived_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """The indexed fields a cart document carries only when they apply: the
    earliest of its housekeeping moments, and since when it has been empty."""
    derived: dict[str, Any] = {}
    moments = [doc[moment] for moment in ("check_at", "remind_at", "expire_at") if doc.get(moment) is not None]
    if moments:
        derived["due_at"] = min(moments)
    if not doc.get("items") and not doc.get("pending") and not doc.get("queue") and doc.get("updated_at"):
        derived["empty_since"] = doc["updated_at"]
    return derived


def cart_to_doc(cart: Cart) -> dict[str, Any]:
    doc = {
        "_id": cart.user_id,
        "version": cart.version,
        "updated_at": cart.updated_at,
        "items": [_line_to_doc(line) for line in cart.lines],
        # Kept under its earlier name (and null when none) for the index and the pruning query.
        "pending": [_step_to_doc(step) for step in cart.steps] or None,
        "queue": [_command_to_doc(command) for command in cart.queue],
        "active_at": cart.active_at,
        "check_at": cart.check_at,
        "remind_at": cart.remind_at,
        "expire_at": cart.expire_at,
    }
    if cart.handover is not None:
        doc["handover"] = _handover_to_doc(cart.handover)
    return {**doc, **_derived_fields(doc)}


def cart_from_doc(doc: dict[str, Any]) -> Cart:
    return Cart(
        user_id=doc["_id"],
        lines=tuple(_line_from_doc(line) for line in doc.get("items") or ()),
        version=doc.get("version", 0),
        updated_at=doc.get("updated_at"),
        steps=_steps_from_doc(doc.get("pending"), doc["_id"]),
        queue=tuple(command_from_doc(command) for command in doc.get("queue") or ()),
        active_at=doc.get("active_at"),
        check_at=doc.get("check_at"),
        remind_at=doc.get("remind_at"),
        expire_at=doc.get("expire_at"),
        handover=_handover_from_doc(doc.get("handover")),
    )


async def load_carts(db: AsyncDatabase, user_ids: Iterable[str]) -> dict[str, Cart]:
    return await find_by_ids(db[CARTS], user_ids, cart_from_doc)


async def load_products(db: AsyncDatabase, product_ids: Iterable[str]) -> dict[str, Product]:
    return await find_by_ids(db[CATALOG], product_ids, product_from_doc)


async def list_product_ids(db: AsyncDatabase, after: str | None, limit: int) -> list[str]:
    """Up to ``limit`` ids of products on sale, in id order, after ``after``."""
    query: dict[str, object] = {"is_deleted": {"$ne": True}}
    if after is not None:
        query["_id"] = {"$gt": after}
    return [doc["_id"] async for doc in db[CATALOG].find(query, {"_id": 1}).sort("_id", 1).limit(limit)]


async def load_carts_holding(db: AsyncDatabase, product_ids: Iterable[str]) -> dict[str, Cart]:
    """Carts with a line of one of ``product_ids`` that holds units or waits for
    the stock worker (through the ``items.product_id`` index)."""
    wanted = list(set(product_ids))
    if not wanted:
        return {}
    holding = {"product_id": {"$in": wanted}, "reservation_state": {"$in": [RESERVED, PENDING]}}
    return {doc["_id"]: cart_from_doc(doc) async for doc in db[CARTS].find({"items": {"$elemMatch": holding}})}


async def load_stock(db: AsyncDatabase, keys: Iterable[str]) -> dict[str, int]:
    return await find_by_ids(db[STOCK], keys, lambda doc: doc["available"])


async def save_stock(db: AsyncDatabase, stock: dict[str, int], session: AsyncClientSession) -> None:
    await replace_all(db[STOCK], [{"_id": key, "available": available} for key, available in stock.items()], session)


async def carts_past_deadline(db: AsyncDatabase, now: datetime, limit: int) -> list[Cart]:
    """Carts with a step in flight past its deadline whose answer has not come
    (one that came waits for the steps before it, and needs no timeout)."""
    overdue = {
        "$or": [
            {"pending": {"$elemMatch": {"deadline": {"$lte": now}, "answer": {"$exists": False}}}},
            # No answer held at all; also the one step an earlier release stored as a document.
            {"pending.deadline": {"$lte": now}, "pending.answer": {"$exists": False}},
        ]
    }
    cursor = db[CARTS].find(overdue).limit(limit)
    return [cart_from_doc(doc) async for doc in cursor]


async def carts_due(db: AsyncDatabase, now: datetime, limit: int) -> list[Cart]:
    """Carts whose earliest housekeeping moment (check_at, remind_at, expire_at) has come, earliest first."""
    cursor = db[CARTS].find({"due_at": {"$lte": now}}).sort("due_at", 1).limit(limit)
    return [cart_from_doc(doc) async for doc in cursor]


async def save_carts(db: AsyncDatabase, carts: Iterable[Cart], session: AsyncClientSession) -> None:
    await write_versioned(db[CARTS], carts, cart_to_doc, session)


async def save_products(db: AsyncDatabase, products: Iterable[Product], session: AsyncClientSession) -> None:
    await replace_all(db[CATALOG], map(product_to_doc, products), session)


class CartStore:
    """Carts, the catalog copy and the stock copy on MongoDB, as ``CartLogic``
    loads and saves them (inside the batch's transaction when ``state`` carries
    its session)."""

    def __init__(self, state: MongoState) -> None:
        self.db, self.session = state.db, state.session

    async def carts(self, user_ids: Iterable[str]) -> dict[str, Cart]:
        return await load_carts(self.db, user_ids)

    async def carts_holding(self, product_ids: Iterable[str]) -> dict[str, Cart]:
        return await load_carts_holding(self.db, product_ids)

    async def product_ids(self, after: str | None, limit: int) -> list[str]:
        return await list_product_ids(self.db, after, limit)

    async def products(self, product_ids: Iterable[str]) -> dict[str, Product]:
        return await load_products(self.db, product_ids)

    async def stock(self, keys: Iterable[str]) -> dict[str, int]:
        return await load_stock(self.db, keys)

    async def save(self, products: Iterable[Product], stock: dict[str, int], carts: Iterable[Cart]) -> None:
        await save_products(self.db, products, self.session)  # type: ignore[arg-type]
        await save_stock(self.db, stock, self.session)  # type: ignore[arg-type]
        await save_carts(self.db, carts, self.session)  # type: ignore[arg-type]
