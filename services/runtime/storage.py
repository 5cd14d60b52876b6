"""The batch processor's storage port: what exactly-once processing needs of a
database, and nothing else.

The processor reads dedup entries, stored replies and redrive tokens, lets the
worker's aggregate store load the state a batch touches, and writes everything
the batch did (aggregates, outbox records, dedup entries, replies that join an
earlier command's entry) in one transaction. Every write is blind: nothing here
needs a read before it writes, so an implementation may keep state between
batches and write only what changed.

Two implementations: ``services.runtime.mongo_storage`` (MongoDB, what workers
run on) and ``services.runtime.memory_storage`` (a dict per collection, with the
same all-or-nothing transactions, for tests that need no server).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from services.runtime.records import Outgoing

#: Where an outbox record lives: the number of its chunk and its index in it.
Place = tuple[int, int]

#: A reply as a dedup entry refers to it: by place, or (entries of an earlier
#: release) a copy of the record itself.
ReplyRef = Place | dict[str, Any]


class ConcurrentModification(Exception):
    """Another consumer changed an aggregate between our read and our write:
    the batch is tried again from a fresh read."""


@dataclass(frozen=True)
class InboxEntry:
    """What dedup keeps of a processed message: its key, when, and its replies."""

    key: str
    processed_at: datetime
    replies: tuple[ReplyRef, ...] = ()


State = TypeVar("State")
Unit = TypeVar("Unit")


class Aggregates(Protocol[State, Unit]):
    """A worker's aggregates in one storage: what a batch of messages touches,
    loaded into a unit of work, and what the unit changed, written back inside
    the batch's transaction (refusing to overwrite a concurrent change with
    ``ConcurrentModification``)."""

    async def load(self, state: State, messages: list[Any]) -> Unit: ...

    async def save(self, unit: Unit, state: State) -> None: ...


class Transaction(Protocol[State]):
    """The writes of one batch; none is visible unless all are."""

    #: The storage's native handle inside the transaction, for ``Aggregates.save``.
    state: State
    #: The outbox chunks written, by number, once committed (the relay
    #: publishes them from memory rather than reading them back).
    written: dict[int, list[dict[str, Any]]]

    async def append_outbox(self, records: Sequence[Outgoing], now: datetime) -> list[Place]:
        """Append ``records`` to the outbox in order; the place of each."""

    async def add_inbox_entries(self, internal: bool, entries: Sequence[InboxEntry]) -> None:
        """Record messages as processed (``internal``: work a worker gave itself)."""

    async def add_late_replies(self, replies: Mapping[str, Sequence[Place]]) -> None:
        """Add replies to the entries of commands processed earlier, by their keys."""


class Storage(Protocol, Generic[State]):
    """Dedup entries, outbox and a worker's aggregates, with transactions."""

    #: The storage's native handle outside any transaction, for ``Aggregates.load``.
    state: State

    async def inbox_entries(self, internal: bool, keys: Sequence[str]) -> dict[str, InboxEntry]:
        """The entries among ``keys`` of messages processed before."""

    async def stored_records(self, places: Sequence[Place]) -> dict[Place, Outgoing]:
        """The outbox records at ``places`` that are still kept."""

    async def redrive_fingerprints(self, tokens: Sequence[str]) -> dict[str, str | None]:
        """For each redrive token an operator was handed, the fingerprint of the record it was issued for."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction[State]]:
        """A transaction, committed when the block ends without an exception."""

    def is_transient(self, error: BaseException) -> bool:
        """Whether ``error`` passes: the storage was away, or another writer won a race."""
