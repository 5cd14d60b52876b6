"""The transactional outbox and its relay.

Handlers never publish. What a batch wants published is written to the
worker's outbox collection in the same transaction as its state and inbox
entries, as one *chunk* document holding the batch's records (several chunks
when they pass ``CHUNK_BYTES``); the relay then publishes chunks in order and
marks each one sent once Kafka acknowledged all its records. A crash between
publish and mark publishes that chunk again, with the same ``message_id``s:
at-least-once publication that consumers dedup.

A sent chunk stays for the dedup window (``CARTFLOW_INBOX_RETENTION_HOURS``):
inbox entries point at the replies in it instead of holding copies, so each
reply is written once, and a repeated command is answered from its chunk.
``services.runtime.pruning`` prunes sent chunks with the inbox entries.

Chunks are numbered from a counter document incremented inside the writing
transaction, so their order is the order in which transactions committed,
whatever the clocks of the processes that wrote them. One relay per worker
kind holds a lease, so records leave in that order even with several worker
processes running; the relay reads with majority read concern, so it never
publishes a write that a failover could still take back.

The relay never blocks on one record. A record that can never be published
(a topic name Kafka refuses, a topic still unknown after one lookup bounded by
``relay_topic_wait_seconds``, a record over the size limit, a topic the worker
may not write) is copied to ``<worker>.outbox.parked`` with its reason, counted
in ``cartflow status`` and the ``cartflow_outbox_parked`` gauge, and listed and
sent again by ``cartflow dlq parked`` / ``cartflow dlq unpark``. A record that
fails for a passing reason holds back every later record of the same topic and
key; its chunk stays unsent, remembers which of its records went out, and the
others go again after a backoff. The
producer keeps one batch per partition in flight, so records of one key leave
in order; only a batch refused for longer than the producer's request timeout
can be overtaken by a later one (``CARTFLOW_KAFKA_IDEMPOTENT_PRODUCER`` closes
that gap on brokers that support it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
import os
import uuid
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    CorruptRecordException,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    PolicyViolationError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)
from pymongo import ASCENDING, ReplaceOne, ReturnDocument, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError
from pymongo.read_concern import ReadConcern

from services.runtime.clock import Clock, SystemClock
from services.runtime.records import Outgoing
from services.runtime.settings import is_topic_name
from services.runtime.storage import Place

log = logging.getLogger(__name__)

SEQUENCES = "sequences"
PARKED_SUFFIX = ".parked"

#: Broker answers that no retry can change.
UNPUBLISHABLE = (
    ClusterAuthorizationFailedError,
    CorruptRecordException,
    InvalidTopicError,
    MessageSizeTooLargeError,
    PolicyViolationError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)


async def next_sequences(db: AsyncDatabase, name: str, count: int, session: AsyncClientSession | None) -> range:
    """``count`` numbers from the counter ``name``, in commit order: inside a
    transaction, a concurrent writer conflicts on the counter and retries."""
    doc = await db[SEQUENCES].find_one_and_update(
        {"_id": name}, {"$inc": {"value": count}}, upsert=True, return_document=ReturnDocument.AFTER, session=session
    )
    return range(doc["value"] - count + 1, doc["value"] + 1)


#: Bytes of records one chunk holds at most (a MongoDB document holds 16 MiB).
CHUNK_BYTES = 4 << 20

#: Most bytes of records the relay keeps in memory from the commits it was told of.
FRESH_BYTES = 64 << 20


def _chunked(messages: list[Outgoing]) -> list[list[Outgoing]]:
    parts: list[list[Outgoing]] = [[]]
    size = 0
    for message in messages:
        # BSON spends some bytes on each record and on each header besides its text.
        weight = message.size + 64 + 32 * len(message.headers)
        if parts[-1] and size + weight > CHUNK_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(message)
        size += weight
    return parts


async def write_outbox(
    db: AsyncDatabase, outbox: str, messages: list[Outgoing], session: AsyncClientSession | None, now: datetime,
    written: dict[int, list[dict[str, Any]]] | None = None,
) -> list[Place]:
    """Write ``messages`` as numbered chunks in ``session``'s transaction; the
    place of each, in order. The chunks' records are added to ``written``, by
    number, for the relay to publish from memory once the transaction commits."""
    parts = _chunked(messages)
    numbers = await next_sequences(db, outbox, len(parts), session)
    chunks = {number: [message.to_doc() for message in part] for number, part in zip(numbers, parts, strict=True)}
    await db[outbox].insert_many(
        [
            {"_id": number, "written_at": now, "sent": False, "count": len(records), "records": records}
            for number, records in chunks.items()
        ],
        session=session,
    )
    if written is not None:
        written.update(chunks)
    return [(number, index) for number, records in chunks.items() for index in range(len(records))]


def _bytes_of(records: list[dict[str, Any]]) -> int:
    """The bytes of stored records' keys and values: what keeping them in memory costs."""
    return sum(len(doc["value"]) + len(doc["key"] or b"") for doc in records)


def records_of(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of a chunk; a document of an earlier release is one record itself."""
    return chunk["records"] if "records" in chunk else [chunk]


def _still_to_go(chunk: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """The records of an unsent chunk not yet out, with their index."""
    out = set(chunk.get("delivered", ()))
    return [(index, doc) for index, doc in enumerate(records_of(chunk)) if index not in out]


async def find_records(db: AsyncDatabase, outbox: str, places: list[Place]) -> dict[Place, Outgoing]:
    """The records at ``places`` that are still kept (one query, a few chunks
    in memory at a time, only the wanted records kept)."""
    wanted: dict[int, set[int]] = {}
    for number, index in places:
        wanted.setdefault(number, set()).add(index)
    found: dict[Place, Outgoing] = {}
    if wanted:
        async for chunk in db[outbox].find({"_id": {"$in": sorted(wanted)}}).batch_size(2):
            records = records_of(chunk)
            for index in wanted[chunk["_id"]]:
                if 0 <= index < len(records):
                    found[(chunk["_id"], index)] = Outgoing.from_doc(records[index])
    return found


async def prepare_outbox(db: AsyncDatabase, outbox: str) -> None:
    """Indexes for the relay's "unsent, in order" query and for pruning by age;
    documents of an earlier release (one per record, deleted once published)
    become unsent chunks of one."""
    await db[outbox].update_many({"sent": {"$exists": False}}, {"$set": {"sent": False}})
    await db[outbox].create_index([("sent", ASCENDING), ("_id", ASCENDING)])
    await db[outbox].create_index("written_at")


async def unsent_records(db: AsyncDatabase, outbox: str) -> tuple[int, datetime | None]:
    """How many records wait in ``outbox``, and when the oldest of them was written."""
    unsent = {"sent": False}
    totals = await (await db[outbox].aggregate([
        {"$match": unsent},
        {"$group": {"_id": None, "records": {"$sum": {"$ifNull": ["$count", 1]}}}},
    ])).to_list()
    oldest = await db[outbox].find_one(unsent, {"written_at": 1}, sort=[("_id", ASCENDING)])
    return (totals[0]["records"] if totals else 0), (oldest or {}).get("written_at")


class Lease:
    """A named lease in MongoDB: whoever holds it and renews it in time leads."""

    def __init__(self, db: AsyncDatabase, name: str, seconds: float, clock: Clock) -> None:
        self.collection = db["leases"]
        self.name = name
        self.seconds = seconds
        self.clock = clock
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        #: Until when this process leads, as far as it knows (None: it does not).
        self.until: datetime | None = None

    async def acquire(self) -> bool:
        now = self.clock.now()
        try:
            await self.collection.find_one_and_update(
                {"_id": self.name, "$or": [{"owner": self.owner}, {"expires_at": {"$lt": now}}]},
                {"$set": {"owner": self.owner, "expires_at": now + timedelta(seconds=self.seconds)}},
                upsert=True,
            )
            self.until = now + timedelta(seconds=self.seconds)
            return True
        except DuplicateKeyError:
            self.until = None
            return False

    async def keep(self) -> bool:
        """Whether this process still leads, renewing the lease once half of it has run."""
        if self.until is not None and self.clock.now() < self.until - timedelta(seconds=self.seconds / 2):
            return True
        return await self.acquire()

    async def release(self) -> None:
        await self.collection.delete_one({"_id": self.name, "owner": self.owner})


class OutboxRelay:
    def __init__(
        self,
        db: AsyncDatabase,
        collection: str,
        producer: AIOKafkaProducer,
        *,
        batch_size: int,
        poll_seconds: float,
        lease_seconds: float,
        clock: Clock | None = None,
        topic_wait_seconds: float = 10.0,
        max_record_bytes: int = 1 << 20,
        beat: Callable[[], None] = lambda: None,
    ) -> None:
        self.beat = beat
        self.outbox = db.get_collection(collection, read_concern=ReadConcern("majority"))
        self.parked = db[collection + PARKED_SUFFIX]
        self.producer = producer
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.clock = clock or SystemClock()
        self.lease = Lease(db, f"{collection}-relay", lease_seconds, self.clock)
        self.topic_wait_seconds = topic_wait_seconds
        self.max_record_bytes = max_record_bytes
        self._wake = asyncio.Event()
        self._stopping = False
        self._legacy_done = False
        #: Records of chunks this process wrote and has not published yet, by chunk.
        self._fresh: dict[int, list[dict[str, Any]]] = {}
        self._fresh_bytes = 0
        self.published = 0
        self.parked_count = 0

    def wake(self, written: dict[int, list[dict[str, Any]]] | None = None) -> None:
        """Called after a commit so that fresh records leave without waiting for
        the poll; with the chunks that commit wrote, which the relay then
        publishes from memory instead of reading them back (within a bound)."""
        if written and self.lease.until is not None:  # only the leading relay publishes
            for number, records in written.items():
                size = _bytes_of(records)
                if self._fresh_bytes + size > FRESH_BYTES:
                    break  # read back from MongoDB instead
                self._fresh[number] = records
                self._fresh_bytes += size
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            # Cleared before the round, not after: a commit during the round wakes the next one.
            self._wake.clear()
            # Renewed once half of it has run, not every round: a round that
            # publishes a fresh commit costs no write before the first record.
            leading = await self.lease.keep()
            if not leading and self._fresh:
                self._fresh, self._fresh_bytes = {}, 0  # the leading process publishes them
            busy = leading and await self.relay_once()
            self.beat()
            if not busy:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
                except TimeoutError:
                    pass

    async def relay_once(self) -> bool:
        """Publish the next chunks in order; True when there may be more waiting.

        Raises when a record failed for a passing reason, so that the supervisor
        logs it and starts the relay again after a backoff."""
        chunks, more = await self._next_chunks()
        if not chunks:
            return False
        entries = [
            (chunk["_id"], index, Outgoing.from_doc(doc))
            for chunk in chunks
            for index, doc in _still_to_go(chunk)
        ]
        missing = await self._missing_topics({m.topic for _, _, m in entries if is_topic_name(m.topic)})
        if not await self.lease.keep():
            return False  # another process leads now (the topic lookup took long): it publishes these
        held: set[tuple[str, bytes | None]] = set()  # topic and key with an earlier record not yet out
        sent: list[tuple[int, int, Outgoing, Any]] = []
        parked: list[tuple[int, int, Outgoing, str]] = []
        for number, index, message in entries:
            if (message.topic, message.key) in held:
                continue
            reason = self._unpublishable(message, missing)
            if reason is not None:
                parked.append((number, index, message, reason))
                continue
            try:
                future = await self.producer.send(
                    message.topic, value=message.value, key=message.key, headers=list(message.headers)
                )
            except UNPUBLISHABLE as exc:
                parked.append((number, index, message, f"{type(exc).__name__}: {exc}"))
                continue
            except KafkaError:
                held.add((message.topic, message.key))
                continue
            sent.append((number, index, message, future))

        transient: BaseException | None = None
        delivered: dict[int, list[int]] = {}  # by chunk: records out (or parked) in this round
        results = await asyncio.gather(*(future for *_, future in sent), return_exceptions=True)
        for (number, index, message, _), result in zip(sent, results, strict=True):
            if (message.topic, message.key) in held:
                continue  # an earlier record of this key failed: this one goes again after it
            if isinstance(result, UNPUBLISHABLE):
                parked.append((number, index, message, f"{type(result).__name__}: {result}"))
            elif isinstance(result, BaseException):
                transient = transient or result
                held.add((message.topic, message.key))
            else:
                delivered.setdefault(number, []).append(index)
        if parked:
            await self._park(parked)
            for number, index, _, _ in parked:
                delivered.setdefault(number, []).append(index)
        await self._mark(chunks, delivered)
        self.published += sum(map(len, delivered.values())) - len(parked)
        if transient is not None:
            raise RuntimeError(f"publishing failed for a passing reason: {transient!r}") from transient
        return more

    async def _mark(self, chunks: list[dict[str, Any]], delivered: dict[int, list[int]]) -> None:
        """Chunks whose every record is out (or parked) are sent; a chunk with
        records still to go keeps the ones that went, so they do not go again."""
        done, partly = [], []
        for chunk in chunks:
            number = chunk["_id"]
            out = set(chunk.get("delivered", ())) | set(delivered.get(number, ()))
            if len(out) >= chunk.get("count", 1):
                done.append(number)
            elif delivered.get(number):
                partly.append(UpdateOne({"_id": number}, {"$addToSet": {"delivered": {"$each": delivered[number]}}}))
        if done:
            await self.outbox.update_many({"_id": {"$in": done}}, {"$set": {"sent": True}, "$unset": {"delivered": ""}})
            for number in done:
                self._forget(number)
        if partly:
            await self.outbox.bulk_write(partly)

    def _forget(self, number: int) -> None:
        records = self._fresh.pop(number, None)
        if records is not None:
            self._fresh_bytes -= _bytes_of(records)

    async def _next_chunks(self) -> tuple[list[dict[str, Any]], bool]:
        """Unsent chunks in order, up to about ``batch_size`` records still to
        go, and whether more may be waiting (``prepare_outbox`` gave records of
        an earlier release their ``sent`` field: the query uses the index)."""
        query: dict[str, Any] = {"sent": False}
        if not self._legacy_done:
            # Records written before outbox numbers were counters have string ids,
            # which sort after every number: they are older, so they go first.
            legacy = {"sent": False, "_id": {"$type": "string"}}
            if await self.outbox.find_one(legacy, {"_id": 1}):
                query = legacy
            else:
                self._legacy_done = True
        chunks: list[dict[str, Any]] = []
        records = 0
        more = False
        known = set(self._fresh)  # committed before this query: sent unless it finds them
        # Which chunks are next, without their records: those this process wrote
        # are in memory, only the others (a crashed or another process's) are read.
        heads = self.outbox.find(query, {"records": 0}).sort("_id", ASCENDING).limit(self.batch_size)
        async for chunk in heads:
            chunks.append(chunk)
            records += chunk.get("count", 1) - len(chunk.get("delivered", ()))
            if records >= self.batch_size:
                more = True
                break
        await heads.close()
        first = chunks[0]["_id"] if chunks else None
        for number in known:
            if first is None or (isinstance(number, int) and isinstance(first, int) and number < first):
                self._forget(number)  # published (by this relay before, or by another)
        for chunk in chunks:
            if chunk["_id"] in self._fresh:
                chunk["records"] = self._fresh[chunk["_id"]]
        unread = [chunk["_id"] for chunk in chunks if "count" in chunk and "records" not in chunk]
        if unread:
            # A few chunks per round trip: each may hold megabytes.
            full = self.outbox.find({"_id": {"$in": unread}}, {"records": 1}).batch_size(4)
            stored = {doc["_id"]: doc.get("records", []) async for doc in full}
            chunks = [chunk for chunk in chunks if chunk["_id"] in stored or chunk["_id"] not in unread]
            for chunk in chunks:
                if chunk["_id"] in stored:
                    chunk["records"] = stored[chunk["_id"]]
        return chunks, more or len(chunks) == self.batch_size

    async def _missing_topics(self, topics: set[str]) -> set[str]:
        """Topics the cluster does not know after one lookup of all of them at
        once, bounded by ``topic_wait_seconds`` (brokers that create topics on
        demand create them here)."""
        cluster = self.producer.client.cluster
        unknown = [t for t in topics if cluster.partitions_for_topic(t) is None]
        if not unknown:
            return set()

        async def look(topic: str) -> None:
            try:
                await asyncio.wait_for(self.producer.partitions_for(topic), timeout=self.topic_wait_seconds)
            except (TimeoutError, KafkaError):
                pass

        await asyncio.gather(*(look(topic) for topic in unknown))
        return {topic for topic in unknown if cluster.partitions_for_topic(topic) is None}

    def _unpublishable(self, message: Outgoing, missing: set[str]) -> str | None:
        """Why ``message`` can never be published, or None when it can go."""
        if not is_topic_name(message.topic):
            return f"illegal topic name {message.topic[:260]!r}"
        if message.size > self.max_record_bytes:
            return f"record of {message.size} bytes exceeds the limit of {self.max_record_bytes}"
        if message.topic in missing:
            return f"topic {message.topic!r} does not exist (waited {self.topic_wait_seconds:g}s)"
        return None

    async def _park(self, parked: list[tuple[int, int, Outgoing, str]]) -> None:
        now = self.clock.now()
        for number, index, message, reason in parked:
            log.error("outbox record %s.%s to %r cannot be published and is parked: %s",
                      number, index, message.topic[:260], reason)
        await self.parked.bulk_write(
            [
                ReplaceOne(
                    {"_id": f"{number}.{index}"},
                    {**message.to_doc(), "chunk": number, "index": index, "reason": reason[:1000], "parked_at": now},
                    upsert=True,
                )
                for number, index, message, reason in parked
            ]
        )
        self.parked_count += len(parked)
        from services.runtime.observability import OUTBOX_PARKED_TOTAL

        OUTBOX_PARKED_TOTAL.inc(len(parked))

    async def drain(self, timeout: float = 10.0) -> None:
        """Publish what is waiting, for a clean shutdown."""
        try:
            async with asyncio.timeout(timeout):
                while await self.lease.acquire() and await self.relay_once():
                    pass
        except (TimeoutError, PyMongoError, RuntimeError):
            log.warning("outbox not drained on shutdown; the next relay will publish it")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        await self.drain()
        try:
            await self.lease.release()
        except PyMongoError:
            pass


async def unpark(db: AsyncDatabase, outbox: str, now: datetime, ids: list[Any] | None = None) -> int:
    """Send parked records again: they go back to the end of the outbox in a new
    chunk (and are parked again if they still cannot be published)."""
    parked = db[outbox + PARKED_SUFFIX]
    query: dict[str, Any] = {"_id": {"$in": ids}} if ids else {}
    docs = await parked.find(query).sort([("chunk", ASCENDING), ("index", ASCENDING), ("_id", ASCENDING)]).to_list()
    if not docs:
        return 0
    async with db.client.start_session() as session:
        async with await session.start_transaction():
            await write_outbox(db, outbox, [Outgoing.from_doc(doc) for doc in docs], session, now)
            await parked.delete_many({"_id": {"$in": [doc["_id"] for doc in docs]}}, session=session)
    return len(docs)
