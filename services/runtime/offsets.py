"""Consumer-group positions: how far behind a group is, and how many records
a topic holds (for status and the metrics endpoint).

A group's committed offsets are read with a consumer that is assigned the
partitions by hand and never joins the group, so looking never disturbs the
workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.runtime.kafka import topic_partitions


@dataclass(frozen=True)
class PartitionPosition:
    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        # A group that never committed has everything still to read; a broker may
        # report an end below a committed offset for a moment, never a negative lag.
        return max(0, self.end - (self.committed or 0))


@contextlib.asynccontextmanager
async def standalone_consumer(
    bootstrap: str, group_id: str | None = None, **options: Any
) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        **options,
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def partitions_of(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    return [partition for topic in topics for partition in await topic_partitions(consumer, topic)]


async def group_positions(
    bootstrap: str, group_id: str, topics: Iterable[str], **options: Any
) -> list[PartitionPosition]:
    """Committed and end offsets of every partition of ``topics`` for ``group_id``."""
    async with standalone_consumer(bootstrap, group_id, **options) as consumer:
        partitions = await partitions_of(consumer, topics)
        if not partitions:
            return []
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        return [PartitionPosition(tp.topic, tp.partition, await consumer.committed(tp), ends[tp]) for tp in partitions]


async def topic_record_counts(bootstrap: str, topics: Iterable[str], **options: Any) -> dict[str, int]:
    """Records currently held by each topic (end minus beginning offsets)."""
    counts: dict[str, int] = {}
    async with standalone_consumer(bootstrap, **options) as consumer:
        for topic in topics:
            partitions = await topic_partitions(consumer, topic)
            if not partitions:
                counts[topic] = 0
                continue
            ends = await consumer.end_offsets(partitions)
            starts = await consumer.beginning_offsets(partitions)
            counts[topic] = sum(ends[tp] - starts[tp] for tp in partitions)
    return counts
