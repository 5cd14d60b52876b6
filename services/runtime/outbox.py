"""The transactional outbox and its relay.

Handlers never publish. What a unit of work wants published is written to the
worker's outbox collection in the same transaction as its state and inbox
entries; the relay then publishes it in order and deletes what Kafka
acknowledged. A crash between publish and delete publishes those records again,
with the same ``message_id``: at-least-once publication that consumers dedup.

One relay per worker kind holds a lease, so outbox records leave in the order
they were written even with several worker processes running.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import uuid
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from services.runtime.clock import Clock, SystemClock
from services.runtime.records import Outgoing

log = logging.getLogger(__name__)

_counter = itertools.count()
_process_tag = f"{os.getpid():07d}"


def next_sequence() -> str:
    """Sortable and unique: wall time first, then this process's own counter."""
    return f"{time.time_ns():020d}-{_process_tag}-{next(_counter):012d}"


def outbox_documents(messages: list[Outgoing]) -> list[dict[str, Any]]:
    return [{"_id": next_sequence(), **message.to_doc()} for message in messages]


class Lease:
    """A named lease in MongoDB: whoever holds it and renews it in time leads."""

    def __init__(self, db: AsyncDatabase, name: str, seconds: float, clock: Clock) -> None:
        self.collection = db["leases"]
        self.name = name
        self.seconds = seconds
        self.clock = clock
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def acquire(self) -> bool:
        now = self.clock.now()
        try:
            await self.collection.find_one_and_update(
                {"_id": self.name, "$or": [{"owner": self.owner}, {"expires_at": {"$lt": now}}]},
                {"$set": {"owner": self.owner, "expires_at": now + timedelta(seconds=self.seconds)}},
                upsert=True,
            )
            return True
        except DuplicateKeyError:
            return False

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
    ) -> None:
        self.outbox = db[collection]
        self.producer = producer
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.lease = Lease(db, f"{collection}-relay", lease_seconds, clock or SystemClock())
        self._wake = asyncio.Event()
        self._stopping = False
        self.published = 0

    def wake(self) -> None:
        """Called after a commit so that fresh records leave without waiting for the poll."""
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            # Cleared before the round, not after: a commit during the round wakes the next one.
            self._wake.clear()
            try:
                busy = await self.lease.acquire() and await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                busy = False
                await asyncio.sleep(self.poll_seconds)
            if not busy:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
                except TimeoutError:
                    pass

    async def relay_once(self) -> bool:
        """Publish one batch in order; True when there may be more waiting."""
        docs = await self.outbox.find({}).sort("_id", ASCENDING).limit(self.batch_size).to_list()
        if not docs:
            return False
        futures = []
        for doc in docs:
            message = Outgoing.from_doc(doc)
            futures.append(
                await self.producer.send(
                    message.topic,
                    value=message.value,
                    key=message.key,
                    headers=list(message.headers),
                )
            )
        await asyncio.gather(*futures)
        await self.outbox.delete_many({"_id": {"$in": [doc["_id"] for doc in docs]}})
        self.published += len(docs)
        return len(docs) == self.batch_size

    async def drain(self, timeout: float = 10.0) -> None:
        """Publish what is waiting, for a clean shutdown."""
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while await self.lease.acquire() and await self.relay_once():
                if asyncio.get_running_loop().time() > deadline:
                    break
        except PyMongoError:
            log.warning("outbox not drained on shutdown; the next relay will publish it")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        await self.drain()
        try:
            await self.lease.release()
        except PyMongoError:
            pass
