"""A database that goes away for a while delays answers; it does not lose them,
dead-letter them or crash the worker."""

from __future__ import annotations

import asyncio

import pytest

from contracts.topics import ALL_TOPICS
from services.ops.embedded import EmbeddedMongo
from services.runtime.kafka import ensure_topics
from services.runtime.settings import Settings
from harness.deployment import LOG_DIR
from harness.support import Publisher, Tap, WorkerProcess, command

pytestmark = pytest.mark.integration


async def test_commands_sent_while_mongodb_is_down_are_answered_once_it_is_back(backends, tmp_path):
    if backends.kind != "embedded":
        pytest.skip("needs a database this test can kill and restart")
    mongo = EmbeddedMongo(storage_path=tmp_path / "mongo", log_path=LOG_DIR / "outage-mongo.log")
    mongo.start()
    prefix = "outage."
    settings = Settings(kafka_bootstrap=backends.kafka_bootstrap, topic_prefix=prefix)
    await ensure_topics(settings, backends.kafka_bootstrap, ALL_TOPICS)
    worker = WorkerProcess(
        "cart",
        {
            "CARTFLOW_KAFKA_BOOTSTRAP": backends.kafka_bootstrap,
            "CARTFLOW_MONGO_URL": mongo.url,
            "CARTFLOW_TOPIC_PREFIX": prefix,
            "CARTFLOW_RETRY_MAX_SECONDS": "3",
            "CARTFLOW_CART_STOCK_RESERVATION_ENABLED": "false",
        },
        LOG_DIR / "outage-cart.log",
    ).start()
    publisher = Publisher(backends.kafka_bootstrap)
    await publisher.start()
    replies = await Tap(backends.kafka_bootstrap, prefix + "cart.replies").start()
    dead = await Tap(backends.kafka_bootstrap, prefix + "cart.commands.dlq").start()
    try:
        product = command("ProductUpserted", product_id="lamp", name="Lamp", price="20.00")
        await publisher.send(prefix + "catalog.events", product, "product_id")
        first = command("GetCart", user_id="ada")
        await publisher.send(prefix + "cart.commands", first)
        await replies.reply(first)

        mongo.kill()
        during = [command("AddItem", user_id="ada", product_id="lamp", quantity=n) for n in (1, 2)]
        for message in during:
            await publisher.send(prefix + "cart.commands", message)
        await asyncio.sleep(6)  # longer than one round of retries: the batch is redelivered
        assert worker.alive
        mongo.start()

        answers = [await replies.reply(message, timeout=90) for message in during]
        assert [answer["success"] for answer in answers] == [True, True]
        assert answers[1]["data"]["quantity"] == 3
        assert dead.records == []
    finally:
        worker.stop()
        await replies.stop()
        await dead.stop()
        await publisher.stop()
        mongo.stop()
