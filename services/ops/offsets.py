"""Moving consumer groups: where a time falls in a topic, and rewinding (or
advancing) a stopped group to it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from services.runtime.offsets import partitions_of, standalone_consumer


async def offsets_at(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], moment: datetime, ends: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Per partition, the first offset stamped at or after ``moment``; the end
    offset where no record is that recent. Some brokers answer "none" with a
    timestamp of -1 rather than no entry, which means the same."""
    found = await consumer.offsets_for_times({tp: int(moment.timestamp() * 1000) for tp in partitions})
    return {
        tp: found[tp].offset if found.get(tp) is not None and found[tp].timestamp >= 0 else ends[tp]
        for tp in partitions
    }


@dataclass(frozen=True)
class OffsetMove:
    topic: str
    partition: int
    current: int | None
    target: int


class GroupIsRunning(RuntimeError):
    """The group has live members; its offsets can be moved only while it is stopped."""


async def reset_group_offsets(
    bootstrap: str,
    group_id: str,
    topics: Iterable[str],
    *,
    to_time: datetime | None = None,
    dry_run: bool = False,
    join_timeout: float = 45.0,
    **options: Any,
) -> list[OffsetMove]:
    """Move ``group_id`` on every partition of ``topics`` to the first record at or
    after ``to_time`` (to the end of a partition with none; to the beginning when
    ``to_time`` is None).

    The group must be stopped: the reset joins it, as the only member, so that
    the broker accepts its commit, and refuses to go on when it is handed fewer
    than all partitions (another member is alive and would overwrite the move).
    """
    topics = list(topics)
    async with standalone_consumer(bootstrap, group_id, **options) as consumer:
        partitions = await partitions_of(consumer, topics)
        if not partitions:
            return []
        ends = await consumer.end_offsets(partitions)
        if to_time is None:
            targets = await consumer.beginning_offsets(partitions)
        else:
            targets = await offsets_at(consumer, partitions, to_time, ends)
        moves = [OffsetMove(tp.topic, tp.partition, await consumer.committed(tp), targets[tp]) for tp in partitions]
        if dry_run:
            return moves
    async with standalone_consumer(bootstrap, group_id, **options) as member:
        member.subscribe(topics)
        # A member killed a moment ago still holds its share until its session
        # times out; a live one keeps it: wait for everything, up to join_timeout.
        try:
            async with asyncio.timeout(join_timeout):
                while set(member.assignment()) != set(partitions):
                    await member.getmany(timeout_ms=200)
        except TimeoutError:
            raise GroupIsRunning(
                f"{group_id} has other live members: stop its workers before moving its offsets"
            ) from None
        await member.commit({tp: OffsetAndMetadata(targets[tp], "") for tp in partitions})
    return moves
