"""Dead-letter topics for operators: read what is parked and why, and send it
back to its source topic once the cause is fixed.

A redriven record carries ``cartflow-redrive-count``; the processor dedups it
under a key of its own, so a message that was set aside (and so changed
nothing) is processed afresh rather than answered from the inbox. If it fails
again, the worker parks it in the dead-letter topic again, with the count: it
never loops on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts.topics import dead_letter_topic
from services.runtime.kafka import topic_partitions

REDRIVE_COUNT = "cartflow-redrive-count"
REDRIVEN_FROM = "cartflow-redriven-from"


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None

    @property
    def message_id(self) -> str | None:
        try:
            body = json.loads(self.value)
        except ValueError:
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


def redrive_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The original headers, without the dead-letter annotations, plus the redrive count."""
    kept = [(k, v) for k, v in letter.headers if not k.startswith("cartflow-")]
    return [
        *kept,
        (REDRIVE_COUNT, str(letter.redrive_count + 1).encode()),
        (REDRIVEN_FROM, f"{letter.partition}:{letter.offset}".encode()),
    ]


async def redrive(
    bootstrap: str, source_topic: str, letters: Iterable[DeadLetter], **options: Any
) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **options)
    await producer.start()
    sent = 0
    try:
        for letter in letters:
            await producer.send_and_wait(source_topic, letter.value, key=letter.key, headers=redrive_headers(letter))
            sent += 1
    finally:
        await producer.stop()
    return sent
