"""MongoDB access: the client, the durable write concern, and which faults are passing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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

#: Acknowledged by a majority and journaled: a reply is only ever sent for state
#: that survives a crash of the database.
DURABLE = WriteConcern(w="majority", j=True)


#: The version of a document stored before it carried one.
LEGACY_VERSION = -1


class ConcurrentModification(Exception):
    """Another consumer changed an aggregate between our read and our write."""


async def write_versioned(
    collection: AsyncCollection, documents: Iterable[tuple[int, dict[str, Any]]], session: AsyncClientSession
) -> None:
    """Write aggregates under optimistic concurrency.

    Each ``(version_read, document)`` is written at ``version_read + 1``: inserted
    when it was new (a concurrent insert fails on the primary key), otherwise
    replaced only if the stored version is still the one that was read.
    Anything else raises ``ConcurrentModification``, and the unit of work is
    retried from a fresh read.
    """
    inserts, replaces = [], []
    for version, document in documents:
        document = {**document, "version": max(version, 0) + 1}
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


class CommandCounter(monitoring.CommandListener):
    """Counts the commands (round trips) a client sends, for benchmarks."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += 1

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
