"""The outbox relay against the real broker and database: a record that can
never be published is parked with its reason and the records behind it leave;
an operator sees parked records and sends them again."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.errors import KafkaTimeoutError

from services.runtime.clock import ManualClock
from services.runtime.kafka import ensure_topics, make_producer
from services.runtime.mongo import connect
from services.runtime.outbox import OutboxRelay, unpark, write_outbox
from services.runtime.records import Outgoing
from services.runtime.settings import Settings
from harness.support import Tap, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
async def relay_setup(backends):
    tag = uuid.uuid4().hex[:8]
    settings = Settings(kafka_bootstrap=backends.kafka_bootstrap, producer_max_request_bytes=100_000)
    client = connect(backends.mongo_url)
    db = client[f"relay_{tag}"]
    producer = make_producer(settings, backends.kafka_bootstrap)
    await producer.start()
    relay = OutboxRelay(
        db, "w.outbox", producer, batch_size=100, poll_seconds=0.1, lease_seconds=5, clock=ManualClock(),
        max_record_bytes=settings.producer_max_request_bytes,
    )
    await ensure_topics(settings, backends.kafka_bootstrap, [f"relay-{tag}.events"])
    tap = await Tap(backends.kafka_bootstrap, f"relay-{tag}.events").start()
    try:
        yield db, relay, tap, f"relay-{tag}.events"
    finally:
        await tap.stop()
        await producer.stop()
        await client.drop_database(db.name)
        await client.close()


async def write(db, *messages: Outgoing) -> None:
    async with db.client.start_session() as session:
        async with await session.start_transaction():
            await write_outbox(db, "w.outbox", list(messages), session, ManualClock().now())


async def test_unpublishable_records_are_parked_and_the_records_behind_them_are_published(relay_setup):
    db, relay, tap, topic = relay_setup
    await write(
        db,
        Outgoing(topic, b"k", b"first"),
        Outgoing(".", b"k", b"to an illegal topic"),
        Outgoing(topic, b"k", b"x" * 200_000),
        Outgoing(topic, b"k", b"last"),
    )

    await relay.relay_once()

    await tap.wait_for(lambda r: r.value == b"last")
    assert [r.value for r in tap.records] == [b"first", b"last"]
    parked = {doc["value"][:5]: doc["reason"] async for doc in db["w.outbox.parked"].find()}
    assert "illegal topic name" in parked[b"to an"] and "exceeds the limit" in parked[b"xxxxx"]
    assert await db["w.outbox"].count_documents({"sent": False}) == 0


async def test_parked_records_go_back_to_the_outbox_and_are_parked_again_while_still_unpublishable(relay_setup):
    db, relay, tap, topic = relay_setup
    await write(db, Outgoing(".", None, b"never"))
    await relay.relay_once()

    assert await unpark(db, "w.outbox", ManualClock().now()) == 1
    assert await db["w.outbox"].count_documents({"sent": False}) == 1 and await db["w.outbox.parked"].count_documents({}) == 0
    await relay.relay_once()
    assert await db["w.outbox.parked"].count_documents({}) == 1


async def test_cartflow_dlq_parked_lists_a_workers_unpublishable_records_and_unpark_sends_them_again(
    backends, cart_deployment
):
    db = cart_deployment.db
    async with asyncio.timeout(60):
        while await db["cart.outbox"].count_documents({"sent": False}):
            await asyncio.sleep(0.1)
    await db["cart.outbox.parked"].insert_one(
        {"_id": 10**12, "topic": "..", "key": None, "value": b"v", "headers": [], "reason": "illegal topic name '..'"}
    )

    listed = await run_cli(cart_deployment, "dlq", "parked", "--worker", "cart")
    status = await run_cli(cart_deployment, "status")
    unparked = await run_cli(cart_deployment, "dlq", "unpark", "--worker", "cart")

    assert "illegal topic name" in listed.stdout, listed.stdout + listed.stderr
    assert "parked" in status.stdout
    assert "sent 1 parked record(s) back" in unparked.stdout, unparked.stdout + unparked.stderr
    async with asyncio.timeout(60):  # the running relay tries again and parks it again
        while not await db["cart.outbox.parked"].count_documents({}):
            await asyncio.sleep(0.1)


class FlakyTopic:
    """The real producer, except that records for one topic fail for a passing reason while ``down``."""

    def __init__(self, producer, topic: str) -> None:
        self.producer, self.topic, self.down = producer, topic, True
        self.client = producer.client

    async def partitions_for(self, topic: str):
        return await self.producer.partitions_for(topic)

    async def send(self, topic, value, key, headers):
        if topic == self.topic and self.down:
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(KafkaTimeoutError("leader not available"))
            return failed
        return await self.producer.send(topic, value=value, key=key, headers=headers)


async def test_a_record_held_back_by_a_passing_failure_goes_later_and_its_neighbours_go_exactly_once(relay_setup):
    db, relay, tap, topic = relay_setup
    flaky_topic = topic + ".flaky"
    relay.producer = FlakyTopic(relay.producer, flaky_topic)
    await write(db, Outgoing(topic, b"a", b"first"), Outgoing(flaky_topic, b"b", b"held"), Outgoing(".", b"c", b"never"))
    await write(db, Outgoing(topic, b"a", b"second"))

    for _ in range(3):  # the same chunks are tried again while the topic is down
        with pytest.raises(RuntimeError, match="passing reason"):
            await relay.relay_once()
    relay.producer.down = False
    await relay.relay_once()

    await tap.wait_for(lambda r: r.value == b"second")
    assert [r.value for r in tap.records] == [b"first", b"second"], "each record once, in order"
    assert await db["w.outbox.parked"].count_documents({}) == 1, "parked once, not once per try"
    assert await db["w.outbox"].count_documents({"sent": False}) == 0
