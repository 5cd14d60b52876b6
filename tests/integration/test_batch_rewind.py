"""A failed batch that spans several partitions is fetched again from every one of
them: the subscriber's NACK_ON_ERROR rewinds each partition of the batch to its
earliest record, so no record the failed batch held is skipped (faststream>=0.7.8;
earlier 0.7 releases rewound only the partition of the batch's first record)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from services.ops.backends import Backends
from services.runtime.kafka import ensure_topics, make_broker, subscribe_batches
from services.runtime.records import Incoming
from services.runtime.settings import Settings

pytestmark = pytest.mark.integration

TOPIC = "rewind.events"
PARTITIONS = 4
RECORDS = 40


async def publish_across_partitions(settings: Settings, bootstrap: str) -> set[tuple[int, int]]:
    """Publish ``RECORDS`` records, keys spread round the partitions; their (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    try:
        published = set()
        for n in range(RECORDS):
            partition = n % PARTITIONS
            metadata = await producer.send_and_wait(
                settings.topic(TOPIC), f"record {n}".encode(), key=f"user-{n}".encode(), partition=partition
            )
            published.add((metadata.partition, metadata.offset))
        return published
    finally:
        await producer.stop()


async def test_a_failed_batch_spanning_several_partitions_is_processed_again_from_every_partition(
    backends: Backends,
):
    bootstrap = backends.kafka_bootstrap
    settings = Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
        topic_partitions=PARTITIONS,
        batch_max_records=500,
    )
    await ensure_topics(settings, bootstrap, [TOPIC])
    # Everything is on the topic before the consumer starts, so its first fetch
    # brings records from several partitions at once.
    published = await publish_across_partitions(settings, bootstrap)
    assert {partition for partition, _ in published} == set(range(PARTITIONS))

    failed_batch: set[tuple[int, int]] = set()
    processed: set[tuple[int, int]] = set()

    async def process(batch: list[Incoming]) -> None:
        records = {(record.partition, record.offset) for record in batch}
        if not failed_batch and len({partition for partition, _ in records}) >= 2:
            failed_batch.update(records)
            raise RuntimeError("the first batch spanning several partitions fails")
        processed.update(records)

    broker = make_broker(settings, bootstrap, name="batch-rewind-test")
    subscribe_batches(broker, settings, worker="rewind", topics=[TOPIC], process=process)
    await broker.start()
    try:
        async with asyncio.timeout(120):
            while not (failed_batch and published <= processed):
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(
            f"failed batch seen: {bool(failed_batch)}; never processed after it: {sorted(published - processed)}"
        )
    finally:
        await broker.stop()

    partitions_of_failed_batch = {partition for partition, _ in failed_batch}
    assert len(partitions_of_failed_batch) >= 2
    assert failed_batch <= processed, "records of the failed batch were skipped"
    assert published <= processed
