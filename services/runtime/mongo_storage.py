"""The storage port on MongoDB: a worker's inbox, internal inbox and outbox are
collections named after it (``<worker>.inbox``, ``<worker>.internal-inbox``,
``<worker>.outbox``), and a batch is one multi-document transaction with the
durable write concern."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from services.runtime.mongo import is_transient, transaction_options
from services.runtime.outbox import find_records, write_outbox
from services.runtime.records import Outgoing
from services.runtime.storage import InboxEntry, Place

#: Collection of the tokens ``cartflow dlq redrive`` hands out (see services.ops.dlq).
REDRIVES = "redrives"


def inbox_collections(worker: str) -> tuple[str, str]:
    """The collections of a worker's dedup entries: consumed records, then its own work."""
    return f"{worker}.inbox", f"{worker}.internal-inbox"


@dataclass(frozen=True)
class MongoState:
    """What a worker's MongoDB repository reads and writes through: the
    database, and inside a transaction its session."""

    db: AsyncDatabase
    session: AsyncClientSession | None = None


def _entry_from_doc(doc: dict[str, Any]) -> InboxEntry:
    replies = tuple(tuple(ref) if isinstance(ref, list) else ref for ref in doc.get("replies", ()))
    return InboxEntry(doc["_id"], doc.get("processed_at"), replies)  # type: ignore[arg-type]


def _entry_to_doc(entry: InboxEntry) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": entry.key, "processed_at": entry.processed_at}
    if entry.replies:
        doc["replies"] = [list(ref) if isinstance(ref, tuple) else ref for ref in entry.replies]
    return doc


@dataclass
class MongoTransaction:
    storage: MongoStorage
    state: MongoState
    written: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    async def append_outbox(self, records: Sequence[Outgoing], now: datetime) -> list[Place]:
        if not records:
            return []
        db, session = self.state.db, self.state.session
        return await write_outbox(db, self.storage.outbox, list(records), session, now, self.written)

    async def add_inbox_entries(self, internal: bool, entries: Sequence[InboxEntry]) -> None:
        if entries:
            collection = self.state.db[self.storage.inboxes[internal]]
            await collection.insert_many([_entry_to_doc(entry) for entry in entries], session=self.state.session)

    async def add_late_replies(self, replies: Mapping[str, Sequence[Place]]) -> None:
        if replies:
            await self.state.db[self.storage.inboxes[False]].bulk_write(
                [
                    UpdateOne({"_id": key}, {"$push": {"replies": {"$each": [list(place) for place in places]}}})
                    for key, places in replies.items()
                ],
                session=self.state.session,
            )


class MongoStorage:
    """The port on one worker's collections of ``db``."""

    def __init__(self, db: AsyncDatabase, worker: str) -> None:
        self.db = db
        self.state = MongoState(db)
        consumed, internal = inbox_collections(worker)
        self.inboxes = {False: consumed, True: internal}
        self.outbox = f"{worker}.outbox"

    async def inbox_entries(self, internal: bool, keys: Sequence[str]) -> dict[str, InboxEntry]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        cursor = self.db[self.inboxes[internal]].find({"_id": {"$in": wanted}})
        return {doc["_id"]: _entry_from_doc(doc) async for doc in cursor}

    async def stored_records(self, places: Sequence[Place]) -> dict[Place, Outgoing]:
        return await find_records(self.db, self.outbox, list(places))

    async def redrive_fingerprints(self, tokens: Sequence[str]) -> dict[str, str | None]:
        if not tokens:
            return {}
        cursor = self.db[REDRIVES].find({"_id": {"$in": list(tokens)}}, {"fingerprint": 1})
        return {doc["_id"]: doc.get("fingerprint") async for doc in cursor}

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MongoTransaction]:
        async with self.db.client.start_session() as session:
            async with await session.start_transaction(**transaction_options()):
                yield MongoTransaction(self, MongoState(self.db, session))

    def is_transient(self, error: BaseException) -> bool:
        return is_transient(error)
