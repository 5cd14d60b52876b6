"""MongoDB access: the client, the durable write concern, and which faults are passing."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
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


class ConcurrentModification(Exception):
    """Another consumer changed an aggregate between our read and our write."""


def connect(url: str) -> AsyncMongoClient:
    return AsyncMongoClient(
        url,
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
