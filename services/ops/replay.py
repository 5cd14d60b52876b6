"""Re-publishing a range of a topic.

Records go out byte for byte, with their key, headers and ``message_id``:
every consumer dedups on ``message_id``, so replaying commands or events that
were already processed changes nothing and is answered only with the stored
replies. Re-publishing into another topic (``into``) is how a topic is copied
for a fresh deployment or a staging system.

Only records that existed when the replay started are read, so replaying a
topic into itself ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from services.runtime.headers import REPLAYED_FROM
from services.runtime.kafka import topic_partitions
from services.ops.offsets import offsets_at
from services.runtime.offsets import standalone_consumer



@dataclass
class ReplaySummary:
    read: int = 0
    #: Re-published (with ``dry_run``: would have been).
    republished: int = 0
    skipped: int = 0
    #: Records in the chosen range before ``to_time`` filtering.
    planned: int = 0


def _millis(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


async def replay(
    bootstrap: str,
    topic: str,
    *,
    into: str | None = None,
    from_offset: int | None = None,
    from_time: datetime | None = None,
    to_time: datetime | None = None,
    partition: int | None = None,
    dry_run: bool = False,
    on_plan: Callable[[int], None] = lambda total: None,
    on_progress: Callable[[int], None] = lambda advanced: None,
    **options: Any,
) -> ReplaySummary:
    """Re-publish ``topic``'s records in the range to ``into`` (default: ``topic``).

    The range starts at ``from_offset`` (per partition) or the first record at or
    after ``from_time`` (default: the beginning) and ends at the records present
    now; records stamped after ``to_time`` are skipped. ``dry_run`` reads and
    counts without publishing.
    """
    summary = ReplaySummary()
    target = into or topic
    async with standalone_consumer(bootstrap, **options) as consumer:
        partitions = await topic_partitions(consumer, topic)
        if partition is not None:
            partitions = [tp for tp in partitions if tp.partition == partition]
        if not partitions:
            raise LookupError(
                f"topic {topic!r} has no partition to replay"
                + (f" numbered {partition}" if partition is not None else "")
            )
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        if from_offset is not None:
            starts = {tp: min(max(from_offset, starts[tp]), ends[tp]) for tp in partitions}
        elif from_time is not None:
            starts = await offsets_at(consumer, partitions, from_time, ends)
        for tp in partitions:
            consumer.seek(tp, starts[tp])
        summary.planned = sum(ends[tp] - starts[tp] for tp in partitions)
        on_plan(summary.planned)
        until = _millis(to_time)
        producer = None if dry_run else AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **options)
        if producer is not None:
            await producer.start()
        try:
            sending: list[asyncio.Future] = []
            remaining = {tp for tp in partitions if starts[tp] < ends[tp]}
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=500)
                for tp, records in batches.items():
                    records = [r for r in records if r.offset < ends[tp]]
                    for record in records:
                        summary.read += 1
                        if until is not None and record.timestamp > until:
                            summary.skipped += 1
                            continue
                        if producer is not None:
                            headers = [
                                *(record.headers or ()),
                                (
                                    REPLAYED_FROM,
                                    f"{tp.topic}:{tp.partition}:{record.offset}".encode(),
                                ),
                            ]
                            # Same partition when replaying in place: order per key is kept even for unkeyed records.
                            sending.append(
                                await producer.send(
                                    target,
                                    record.value,
                                    key=record.key,
                                    headers=headers,
                                    partition=record.partition if target == topic else None,
                                )
                            )
                        summary.republished += 1
                    on_progress(len(records))
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
                # Delivery is confirmed batch by batch, so a failure stops the replay where it happened.
                await asyncio.gather(*sending)
                sending.clear()
        finally:
            if producer is not None:
                await producer.stop()
    return summary
