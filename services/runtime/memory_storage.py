"""The storage port in memory: the same dedup entries, outbox and
all-or-nothing transactions as on MongoDB, held in dicts, so that the batch
processor can be tested in milliseconds without a server. Documents put
through ``MemoryState`` are upserted without a version check: an aggregate
store on it that needs optimistic concurrency checks versions itself.

Reads and writes copy documents, as a database would: nothing a caller keeps
aliases what is stored. A transaction stages its writes and applies them when
its block ends without an exception; a failed commit applies nothing.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.runtime.records import Outgoing
from services.runtime.storage import ConcurrentModification, InboxEntry, Place


@dataclass
class MemoryState:
    """Collections of documents by ``_id``; inside a transaction, writes are staged."""

    collections: dict[str, dict[Any, dict[str, Any]]]
    staged: list[tuple[str, dict[str, Any]]] | None = None

    async def find(self, collection: str, ids: Iterable[Any]) -> dict[Any, dict[str, Any]]:
        """The documents of ``collection`` whose ``_id`` is one of ``ids``."""
        stored = self.collections.get(collection, {})
        return {i: copy.deepcopy(stored[i]) for i in set(ids) if i in stored}

    async def put(self, collection: str, documents: Iterable[dict[str, Any]]) -> None:
        """Upsert ``documents`` by ``_id`` when the transaction commits."""
        if self.staged is None:
            raise RuntimeError("writes go through a transaction")
        self.staged.extend((collection, copy.deepcopy(document)) for document in documents)


@dataclass
class MemoryTransaction:
    storage: MemoryStorage
    state: MemoryState
    written: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    entries: list[tuple[bool, InboxEntry]] = field(default_factory=list)
    late: list[tuple[str, tuple[Place, ...]]] = field(default_factory=list)

    async def append_outbox(self, records: Sequence[Outgoing], now: datetime) -> list[Place]:
        if not records:
            return []
        number = self.storage.take_chunk_number()
        self.written[number] = [record.to_doc() for record in records]
        return [(number, index) for index in range(len(records))]

    async def add_inbox_entries(self, internal: bool, entries: Sequence[InboxEntry]) -> None:
        self.entries.extend((internal, entry) for entry in entries)

    async def add_late_replies(self, replies: Mapping[str, Sequence[Place]]) -> None:
        self.late.extend((key, tuple(places)) for key, places in replies.items())


class MemoryStorage:
    """The port on dicts: what one worker's collections on MongoDB would hold."""

    def __init__(self) -> None:
        self.collections: dict[str, dict[Any, dict[str, Any]]] = {}
        self.state = MemoryState(self.collections)
        self.inboxes: dict[bool, dict[str, InboxEntry]] = {False: {}, True: {}}
        self.chunks: dict[int, list[dict[str, Any]]] = {}
        self.next_chunk = 1
        #: Redrive tokens an operator was handed, with the fingerprint of their record.
        self.redrives: dict[str, str] = {}

    def take_chunk_number(self) -> int:
        """The next outbox chunk's number, never handed out twice (an aborted
        transaction leaves a gap, as a sequence does)."""
        self.next_chunk += 1
        return self.next_chunk - 1

    def records(self) -> list[Outgoing]:
        """Every record in the outbox, in the order it was written."""
        return [Outgoing.from_doc(doc) for number in sorted(self.chunks) for doc in self.chunks[number]]

    async def inbox_entries(self, internal: bool, keys: Sequence[str]) -> dict[str, InboxEntry]:
        inbox = self.inboxes[internal]
        return {key: inbox[key] for key in keys if key in inbox}

    async def stored_records(self, places: Sequence[Place]) -> dict[Place, Outgoing]:
        found = {}
        for number, index in places:
            chunk = self.chunks.get(number, [])
            if 0 <= index < len(chunk):
                found[(number, index)] = Outgoing.from_doc(chunk[index])
        return found

    async def redrive_fingerprints(self, tokens: Sequence[str]) -> dict[str, str | None]:
        return {token: self.redrives[token] for token in tokens if token in self.redrives}

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTransaction]:
        transaction = MemoryTransaction(self, MemoryState(self.collections, staged=[]))
        yield transaction
        self._commit(transaction)

    def _commit(self, transaction: MemoryTransaction) -> None:
        keys = [(internal, entry.key) for internal, entry in transaction.entries]
        if len(set(keys)) != len(keys) or any(key in self.inboxes[internal] for internal, key in keys):
            raise ConcurrentModification("a message was recorded as processed concurrently")
        for collection, document in transaction.state.staged or ():
            self.collections.setdefault(collection, {})[document["_id"]] = document
        self.chunks.update(transaction.written)
        for internal, entry in transaction.entries:
            self.inboxes[internal][entry.key] = entry
        for key, places in transaction.late:
            if (entry := self.inboxes[False].get(key)) is not None:
                self.inboxes[False][key] = replace(entry, replies=(*entry.replies, *places))

    def is_transient(self, error: BaseException) -> bool:
        return isinstance(error, ConcurrentModification)
