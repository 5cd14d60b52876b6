"""MongoDB access: the client, the durable write concern, which faults are
passing, and the reads and writes every repository does the same way."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

import bson
from pymongo import AsyncMongoClient, InsertOne, ReplaceOne, monitoring
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    DuplicateKeyError,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WriteConcernError,
)
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from services.runtime.storage import ConcurrentModification

__all__ = ["ConcurrentModification"]  # raised by the writes below; defined by the storage port

#: Acknowledged by a majority and journaled: a reply is only ever sent for state
#: that survives a crash of the database.
DURABLE = WriteConcern(w="majority", j=True)


#: The version of a document stored before it carried one.
LEGACY_VERSION = -1


class Versioned(Protocol):
    """An aggregate that knows the version it was read at (0 when new,
    ``LEGACY_VERSION`` when stored before documents carried one)."""

    @property
    def version(self) -> int: ...


T = TypeVar("T")
V = TypeVar("V", bound=Versioned)


async def find_by_ids(
    collection: AsyncCollection,
    ids: Iterable[str],
    from_doc: Callable[[dict[str, Any]], T],
    *,
    field: str = "_id",
) -> dict[str, T]:
    """The documents whose ``field`` is one of ``ids``, read in one query, as
    ``from_doc`` makes them, by ``_id``. ``field`` may name a field of an array's
    elements (``items.product_id``): a document matches when any element does."""
    wanted = list(set(ids))
    if not wanted:
        return {}  # no round trip for nothing
    return {doc["_id"]: from_doc(doc) async for doc in collection.find({field: {"$in": wanted}})}


async def replace_all(
    collection: AsyncCollection, documents: Iterable[dict[str, Any]], session: AsyncClientSession
) -> None:
    """Upsert documents by ``_id``, last writer wins: for read models that copy
    what another service owns, where a newer event simply replaces an older one."""
    ops = [ReplaceOne({"_id": document["_id"]}, document, upsert=True) for document in documents]
    if ops:
        await collection.bulk_write(ops, ordered=True, session=session)


async def write_versioned(
    collection: AsyncCollection,
    aggregates: Iterable[V],
    to_doc: Callable[[V], dict[str, Any]],
    session: AsyncClientSession,
) -> None:
    """Write aggregates under optimistic concurrency.

    Each aggregate read at ``version`` is written as ``to_doc`` makes it, at
    ``version + 1``: inserted when it was new (a concurrent insert fails on the
    primary key), otherwise replaced only if the stored version is still the
    one that was read. Anything else raises ``ConcurrentModification``, and the
    unit of work is retried from a fresh read.
    """
    inserts, replaces = [], []
    for aggregate in aggregates:
        version = aggregate.version
        document = {**to_doc(aggregate), "version": max(version, 0) + 1}
        if version == 0:
            inserts.append(InsertOne(document))
        elif version == LEGACY_VERSION:
            replaces.append(ReplaceOne({"_id": document["_id"], "version": {"$exists": False}}, document))
        else:
            replaces.append(ReplaceOne({"_id": document["_id"], "version": version}, document))
    if not (inserts or replaces):
        return
    result = await collection.bulk_write([*inserts, *replaces], ordered=True, session=session)
    if result.matched_count != len(replaces):
        raise ConcurrentModification(
            f"{len(replaces) - result.matched_count} document(s) of {collection.name} changed concurrently"
        )


#: Write commands and the field that lists their statements.
WRITES = {"insert": "documents", "update": "updates", "delete": "deletes", "findAndModify": None}


class CommandCounter(monitoring.CommandListener):
    """Counts the commands (round trips) a client sends and the statements of
    its writes (inserts, updates, deletes), and with ``measure_bytes`` the bytes
    of those writes (an extra encoding of each: for benchmarks)."""

    def __init__(self) -> None:
        self.count = 0
        self.statements = 0
        self.bytes_written = 0
        self.measure_bytes = False

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += 1
        if event.command_name in WRITES:
            field = WRITES[event.command_name]
            self.statements += len(event.command.get(field) or ()) if field else 1
            if self.measure_bytes:
                self.bytes_written += len(bson.encode(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


#: Every command sent by clients made with ``connect`` in this process.
round_trips = CommandCounter()


def connect(url: str) -> AsyncMongoClient:
    return AsyncMongoClient(
        url,
        event_listeners=[round_trips],
        tz_aware=True,
        serverSelectionTimeoutMS=5000,
        w="majority",
        journal=True,
        retryWrites=True,
        appname="cartflow",
    )


def transaction_options() -> dict[str, Any]:
    return {"write_concern": DURABLE, "read_concern": ReadConcern("majority")}


def is_transient(exc: BaseException) -> bool:
    """Worth retrying the whole unit of work: the database is away or another writer won a race."""
    if isinstance(exc, ConcurrentModification | DuplicateKeyError):
        return True
    if isinstance(
        exc, ConnectionFailure | AutoReconnect | NetworkTimeout | ServerSelectionTimeoutError | WriteConcernError
    ):
        return True
    if isinstance(exc, PyMongoError) and (
        exc.has_error_label("TransientTransactionError") or exc.has_error_label("UnknownTransactionCommitResult")
    ):
        return True
    if isinstance(exc, OperationFailure) and exc.code in (112, 251, 244, 91, 189, 11600, 11602, 10107, 13435):
        # WriteConflict, NoSuchTransaction, TransactionAborted, ShutdownInProgress,
        # PrimarySteppedDown, InterruptedAtShutdown, InterruptedDueToReplStateChange,
        # NotWritablePrimary, NotPrimaryNoSecondaryOk
        return True
    return False
