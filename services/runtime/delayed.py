"""A consumer that holds each record of a topic until it is due, then processes it.

Used for delayed events (payment deadlines). Fetched records wait in memory,
per partition and in offset order, until their due time; whatever is due in
all partitions is processed together, in one batch, earliest due first across
partitions, and the offsets after it committed. Because every record of such
a topic carries the same delay, each partition is already in due order: its
head is the next one due. A partition whose waiting records pass a bound is
paused (so memory stays bounded) and resumed once they are processed. The
consumer keeps polling meanwhile and never sleeps in a handler, so the group
never sees it as stuck.

Offsets are committed only after the due records were processed, so a crash
fires a deadline again (and the saga's state makes the repeat a no-op), never
loses one; a partition taken away forgets what it held, and its new owner
reads it again from the committed offset. Any failure (the database away
longer than the processor retries, a commit refused during a rebalance) ends
``run`` with the consumer closed; its supervisor starts it again, and the
uncommitted records are read again.
"""

from __future__ import annotations

import json
from collections import deque
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
    def __init__(self, waiting: dict[TopicPartition, deque[tuple[datetime | None, Incoming]]]) -> None:
        self.waiting = waiting

    async def on_partitions_revoked(self, revoked) -> None:
        for partition in revoked:
            self.waiting.pop(partition, None)

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
        #: Fetched records not processed yet, with their due time (None: now), per partition.
        self.waiting: dict[TopicPartition, deque[tuple[datetime | None, Incoming]]] = {}
        #: Most records one partition keeps waiting before it is paused.
        self.bound = 2 * settings.batch_max_records

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
            **self.settings.kafka_client_options,
        )
        self.waiting.clear()
        consumer.subscribe([self.topic], listener=_ForgetRevoked(self.waiting))
        await consumer.start()
        try:
            while True:
                await self._round(consumer)
                self.beat()
        finally:
            await consumer.stop()

    async def _round(self, consumer: AIOKafkaConsumer) -> None:
        wait = MAX_WAIT_SECONDS
        heads = [queue[0][0] for queue in self.waiting.values() if queue]
        if heads:
            now = self.clock.now()
            wait = min(wait, max(0.0, min((due - now).total_seconds() if due else 0.0 for due in heads)))
        batches = await consumer.getmany(timeout_ms=int(wait * 1000), max_records=self.settings.batch_max_records)
        now = self.clock.now()
        for partition, records in batches.items():
            if partition not in consumer.assignment():
                continue
            queue = self.waiting.setdefault(partition, deque())
            for record in records:
                incoming = Incoming.from_record(record)
                due = self.due_of(incoming)
                if due is not None and self.max_delay is not None and due > now + self.max_delay:
                    due = None
                queue.append((due, incoming))
            if len(queue) >= self.bound:
                consumer.pause(partition)
        ready: list[Incoming] = []
        done: dict[TopicPartition, int] = {}
        while len(ready) < self.settings.batch_max_records:
            # The earliest due head of all partitions next (one with no due time
            # first): with more due than a batch takes, no partition waits while
            # another's later deadlines go before its earlier ones.
            due_heads = [
                (queue[0][0], partition)
                for partition, queue in self.waiting.items()
                if queue and (queue[0][0] is None or queue[0][0] <= now)
            ]
            if not due_heads:
                break
            _, partition = min(due_heads, key=lambda head: (head[0] is not None, head[0] or now))
            _, incoming = self.waiting[partition].popleft()
            ready.append(incoming)
            done[partition] = incoming.offset + 1
        if ready:
            await self.process(ready)
            await consumer.commit({partition: offset for partition, offset in done.items()})
        for partition, queue in self.waiting.items():
            if len(queue) < self.bound and partition in consumer.paused() and partition in consumer.assignment():
                consumer.resume(partition)
