"""Dead-letter topics for operators: read what is parked and why, and send it
back to its source topic once the cause is fixed.

Sending back is an operator's act, and only an operator can make it: for
each record, ``redrive`` stores a random token in MongoDB (``redrives``), bound
to the fingerprint of the record's key and bytes, and sends the token in the
``cartflow-redrive-token`` header. The processor dedups a record whose token it
finds under a key of its own, so a message that was set aside (and so changed
nothing) is processed afresh rather than answered from the inbox. A producer
who sets the header itself (or copies a token onto another message) gets the
ordinary dedup. Redriving the same dead letter twice sends the same token, so
the second is a repeat and changes nothing. If a redriven record fails again, the worker parks it in the
dead-letter topic again, with ``cartflow-redrive-count``: it never loops on
its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import hashlib
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pymongo.asynchronous.database import AsyncDatabase

from contracts.topics import dead_letter_topic
from services.runtime.headers import PREFIX, REDRIVE_COUNT, REDRIVE_TOKEN, REDRIVEN_FROM
from services.runtime.kafka import topic_partitions
from services.runtime.mongo_storage import REDRIVES
from services.runtime.records import Incoming


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        """The last value of ``name``: the one the worker added after the record's own."""
        for key, value in reversed(self.headers):
            if key == name:
                return value.decode(errors="replace")
        return None

    @property
    def message_id(self) -> str | None:
        try:
            body = json.loads(self.value)
        except Exception:  # any bytes at all: deep nesting raises RecursionError
            return None
        value = body.get("message_id") if isinstance(body, dict) else None
        return value if isinstance(value, str) else None

    @property
    def redrive_count(self) -> int:
        try:
            return int(self.header(REDRIVE_COUNT) or 0)
        except ValueError:
            return 0


async def read_dead_letters(bootstrap: str, source_topic: str, **options: Any) -> list[DeadLetter]:
    """Everything in the dead-letter topic of ``source_topic``, oldest first per partition."""
    topic = dead_letter_topic(source_topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **options)
    await consumer.start()
    try:
        assigned = await topic_partitions(consumer, topic)
        if not assigned:
            return []
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        await consumer.seek_to_beginning(*assigned)
        letters: list[DeadLetter] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                letters.extend(
                    DeadLetter(r.partition, r.offset, r.timestamp, r.key, r.value or b"", tuple(r.headers or ()))
                    for r in records
                    if r.offset < ends[TopicPartition(topic, r.partition)]
                )
        return letters
    finally:
        await consumer.stop()


def redrive_headers(letter: DeadLetter, token: str) -> list[tuple[str, bytes]]:
    """The original headers, without cartflow's annotations, plus the redrive's token and count."""
    kept = [(k, v) for k, v in letter.headers if not k.startswith(PREFIX)]
    return [
        *kept,
        (REDRIVE_COUNT, str(letter.redrive_count + 1).encode()),
        (REDRIVEN_FROM, f"{letter.partition}:{letter.offset}".encode()),
        (REDRIVE_TOKEN, token.encode()),
    ]


async def redrive(
    bootstrap: str, source_topic: str, letters: Iterable[DeadLetter], db: AsyncDatabase, now: datetime, **options: Any
) -> int:
    """Send ``letters`` back to ``source_topic``, each with a token stored in ``db`` first."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **options)
    await producer.start()
    sent = 0
    try:
        for letter in letters:
            # One token per dead letter: redriving the same letter again is a
            # repeat (deduped), not a second intention.
            position = f"{dead_letter_topic(source_topic)}:{letter.partition}:{letter.offset}"
            token = hashlib.sha256(position.encode()).hexdigest()[:40]
            fingerprint = Incoming(source_topic, 0, 0, letter.key, letter.value).fingerprint
            await db[REDRIVES].update_one(
                {"_id": token},
                {"$setOnInsert": {"fingerprint": fingerprint, "letter": position, "issued_at": now}},
                upsert=True,
            )
            await producer.send_and_wait(
                source_topic, letter.value, key=letter.key, headers=redrive_headers(letter, token)
            )
            sent += 1
    finally:
        await producer.stop()
    return sent
