"""Deadlines held by the timer consumer fire earliest first across partitions:
when more are due than one batch takes, no partition's deadlines wait while
another partition's later ones go first. Driven with an in-memory stand-in
for the Kafka consumer and a manual clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from aiokafka import TopicPartition

from services.runtime.clock import ManualClock
from services.runtime.delayed import DelayedTopicConsumer
from services.runtime.settings import Settings

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TOPIC = "checkout.timeouts"


class Broker:
    """What the timer consumer asks of aiokafka's consumer, with the records given up front."""

    def __init__(self, records: dict[int, list[datetime]]) -> None:
        self.fetch = {
            TopicPartition(TOPIC, partition): [
                SimpleNamespace(
                    topic=TOPIC, partition=partition, offset=offset, key=b"k", headers=(),
                    value=json.dumps({"due_at": due.isoformat(), "name": f"p{partition}-{offset}"}).encode(),
                )
                for offset, due in enumerate(dues)
            ]
            for partition, dues in records.items()
        }
        self.committed: dict[TopicPartition, int] = {}

    async def getmany(self, timeout_ms: int, max_records: int):
        fetched, self.fetch = self.fetch, {}
        return fetched

    def assignment(self):
        return {TopicPartition(TOPIC, partition) for partition in range(4)}

    def pause(self, partition) -> None:
        pass

    def paused(self):
        return set()

    def resume(self, partition) -> None:
        pass

    async def commit(self, offsets) -> None:
        self.committed.update(offsets)


async def test_when_more_deadlines_are_due_than_a_batch_takes_the_earliest_of_all_partitions_fire_first():
    seconds = [NOW - timedelta(seconds=s) for s in range(60, 0, -1)]  # a minute of deadlines, oldest first
    broker = Broker({0: seconds[30:36], 1: seconds[0:6], 2: seconds[12:18]})
    fired: list[list[str]] = []

    async def process(records) -> None:
        fired.append([json.loads(record.value)["name"] for record in records])

    timers = DelayedTopicConsumer(
        Settings(batch_max_records=4), topic=TOPIC, group_id="g", process=process, clock=ManualClock(NOW)
    )

    for _ in range(5):
        await timers._round(broker)

    assert fired[0] == ["p1-0", "p1-1", "p1-2", "p1-3"], "the oldest deadlines, all in partition 1, go first"
    assert fired[1] == ["p1-4", "p1-5", "p2-0", "p2-1"]
    assert [name for batch in fired for name in batch][-6:] == [f"p0-{n}" for n in range(6)], "the latest go last"
    assert broker.committed[TopicPartition(TOPIC, 0)] == 6
