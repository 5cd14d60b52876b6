"""A consumer that holds each record of a topic until it is due, then processes it.

Used for delayed events (payment deadlines): a record whose due time is in the
future pauses its partition, and the consumer seeks back to it, so it is fetched
again when the partition resumes at that time. The consumer keeps polling the
other partitions meanwhile and never sleeps in a handler, so the group never
sees it as stuck. Because every record of such a topic carries the same delay,
each partition is already in due order: holding its head holds the rest.

Offsets are committed only after the due records were processed, so a crash
fires a deadline again (and the saga's state makes the repeat a no-op), never
loses one. Any failure (the database away longer than the processor retries,
a commit refused during a rebalance) ends ``run`` with the consumer closed;
its supervisor starts it again, and the uncommitted records are read again.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from services.runtime.clock import Clock
from services.runtime.records import Incoming
from services.runtime.settings import Settings

MAX_WAIT_SECONDS = 0.1


def due_at_field(record: Incoming) -> datetime | None:
    """The record's ``due_at``; None (process now, where the decoder refuses or
    dead-letters it) when it has none, is malformed or names no time zone."""
    try:
        due = datetime.fromisoformat(json.loads(record.value or b"")["due_at"])
    except Exception:  # any bytes at all: deep nesting raises RecursionError
        return None
    return due if due.tzinfo is not None and due.utcoffset() is not None else None


class _ForgetRevoked(ConsumerRebalanceListener):
    def __init__(self, held: dict[TopicPartition, datetime]) -> None:
        self.held = held

    async def on_partitions_revoked(self, revoked) -> None:
        for partition in revoked:
            self.held.pop(partition, None)

    async def on_partitions_assigned(self, assigned) -> None:
        return None


class DelayedTopicConsumer:
    def __init__(
        self,
        settings: Settings,
        *,
        topic: str,
        group_id: str,
        process: Callable[[list[Incoming]], Awaitable[None]],
        clock: Clock,
        due_of: Callable[[Incoming], datetime | None] = due_at_field,
        beat: Callable[[], None] = lambda: None,
        max_delay: timedelta | None = None,
    ) -> None:
        self.beat = beat
        #: A record due later than this is not held (it would hold its whole
        #: partition): it is processed at once, and the saga ignores a deadline
        #: that has not come.
        self.max_delay = max_delay
        self.settings = settings
        self.topic = topic
        self.group_id = group_id
        self.process = process
        self.clock = clock
        self.due_of = due_of
        self.held: dict[TopicPartition, datetime] = {}

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
            **self.settings.kafka_client_options,
        )
        self.held.clear()
        consumer.subscribe([self.topic], listener=_ForgetRevoked(self.held))
        await consumer.start()
        try:
            while True:
                await self._round(consumer)
                self.beat()
        finally:
            await consumer.stop()

    async def _round(self, consumer: AIOKafkaConsumer) -> None:
        now = self.clock.now()
        for partition, due in list(self.held.items()):
            if due <= now:
                del self.held[partition]
                if partition in consumer.assignment():
                    consumer.resume(partition)
        wait = MAX_WAIT_SECONDS
        if self.held:
            wait = max(0.0, min(wait, (min(self.held.values()) - now).total_seconds()))
        batches = await consumer.getmany(timeout_ms=int(wait * 1000), max_records=self.settings.batch_max_records)
        ready: list[Incoming] = []
        for partition, records in batches.items():
            for record in records:
                incoming = Incoming.from_record(record)
                due = self.due_of(incoming)
                if due is not None and self.max_delay is not None and due > now + self.max_delay:
                    due = None
                if due is not None and due > now:
                    consumer.seek(partition, record.offset)
                    consumer.pause(partition)
                    self.held[partition] = due
                    break
                ready.append(incoming)
        if ready:
            await self.process(ready)
            await consumer.commit()
