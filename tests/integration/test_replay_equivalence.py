"""After a mixed workload, replaying every input topic from the start into fresh
consumer groups leaves the MongoDB state unchanged and publishes no new event."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from services.ops.workers import worker_groups
from harness.deployment import open_deployment
from harness.workloads import PRODUCTS, workload
from harness.support import command, group_lag, topic_size

pytestmark = pytest.mark.integration

STATE = ["cart.carts", "cart.catalog", "cart.stock", "stock.levels", "stock.reservations", "checkout.sagas"]
EVENT_TOPICS = ["cart.events", "stock.events", "order.events"]
#: What each worker group consumes, and so what a replay feeds it again.
INPUTS = worker_groups()
PAYMENT = {"payment_method": "card", "gateway_name": "stripe", "shipping_address": {"city": "Lyon"}}


async def state_hash(deployment) -> str:
    digest = hashlib.sha256()
    for name in STATE:
        async for doc in deployment.db[name].find().sort("_id"):
            digest.update(repr(sorted(doc.items())).encode())
    return digest.hexdigest()


async def event_counts(deployment) -> dict[str, int]:
    return {t: await topic_size(deployment.backends.kafka_bootstrap, deployment.topic(t)) for t in EVENT_TOPICS}


async def settled(deployment) -> None:
    async with asyncio.timeout(120):
        while (
            await deployment.db["checkout.sagas"].count_documents({"state": "awaiting_payment"})
            or any([await deployment.db[f"{w}.outbox"].count_documents({"sent": False}) for w in ("cart", "stock", "checkout")])
            or await deployment.db["cart.carts"].count_documents({"pending": {"$ne": None}})
        ):
            await asyncio.sleep(0.2)
    await asyncio.sleep(1)


async def test_replaying_every_input_topic_changes_no_state_and_publishes_no_event(backends):
    deployment = await open_deployment(backends, CARTFLOW_PAYMENT_TIMEOUT_SECONDS="2")
    for worker in ("cart", "stock", "checkout"):
        deployment.worker(worker)
    try:
        for pid, fields in PRODUCTS.items():
            await deployment.send("catalog.events", command("ProductUpserted", product_id=pid, **fields), "product_id")
            size = "M" if "sizes" in fields else None
            await deployment.send("stock.commands", command("SetStock", product_id=pid, size=size, on_hand=25), "product_id")
        stream = workload(150, seed=11)
        replies = await deployment.tap("cart.replies")
        await deployment.publisher.send_many(deployment.topic("cart.commands"), stream)
        wanted = {message["message_id"] for message in stream}
        await replies.wait_until(lambda: wanted <= replies.correlation_ids(), timeout=180)
        checkouts = [command("CheckoutCart", user_id=user, **PAYMENT) for user in ("crash-user-1", "crash-user-2", "crash-user-3")]
        answers = []
        for checkout in checkouts:
            await deployment.send("cart.commands", checkout)
            answers.append(await replies.reply(checkout))
        paid = next(a["data"] for a in answers if a["success"])
        await deployment.send("payment.events", command("PaymentSucceeded", payment_id=paid["payment_id"], amount=paid["total_amount"]), "payment_id")
        await settled(deployment)
        before = await state_hash(deployment)
        events_before = await event_counts(deployment)
        assert all(events_before.values())

        for worker in list(deployment.workers.values()):
            worker.stop()
        for worker in ("cart", "stock", "checkout"):
            deployment.worker(worker, CARTFLOW_CONSUMER_GROUP_SUFFIX="-replay")
        async with asyncio.timeout(240):
            for group, topics in INPUTS.items():
                while await group_lag(
                    backends.kafka_bootstrap, f"{deployment.prefix}cartflow-{group}-replay", [deployment.topic(t) for t in topics]
                ):
                    await asyncio.sleep(0.5)
        await settled(deployment)

        assert await state_hash(deployment) == before
        assert await event_counts(deployment) == events_before
    finally:
        await deployment.close()
