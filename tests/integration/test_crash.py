"""A cart worker killed with SIGKILL in the middle of a stream loses nothing and
duplicates nothing: after restarts its carts and events equal those of a run
that was never interrupted."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict

import pytest

from harness.deployment import open_deployment
from harness.support import command
from harness.workloads import PRODUCTS, workload

pytestmark = pytest.mark.integration


async def run(deployment, stream: list[dict], kills: tuple[int, ...] = ()) -> None:
    for pid, fields in PRODUCTS.items():
        await deployment.send("catalog.events", command("ProductUpserted", product_id=pid, **fields), "product_id")
    async with asyncio.timeout(60):
        while await deployment.db["cart.catalog"].count_documents({}) < len(PRODUCTS):
            await asyncio.sleep(0.05)
    replies = await deployment.tap("cart.replies")
    chunk = 10
    for start in range(0, len(stream), chunk):
        if start in kills:
            # Kill while the worker is busy: some commands answered, others in flight.
            await replies.wait_until(lambda: len(replies.correlation_ids()) >= start - 2 * chunk, timeout=120)
            deployment.workers["cart"].kill()
            deployment.workers["cart"].start()
        await deployment.publisher.send_many(deployment.topic("cart.commands"), stream[start : start + chunk])
        await asyncio.sleep(0.02)
    wanted = {message["message_id"] for message in stream}
    await replies.wait_until(lambda: wanted <= replies.correlation_ids(), timeout=240)


def comparable_carts(documents) -> dict:
    def line(item):
        return {k: v for k, v in item.items() if k not in ("added_at", "updated_at")}

    # The version counts writes, and writes are per batch: batches differ between runs.
    return {doc["_id"]: [line(item) for item in doc["items"]] for doc in documents}


def comparable(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in ("occurred_at", "added_at", "data")}


async def test_a_worker_killed_mid_stream_ends_with_the_same_carts_and_events(backends):
    stream = workload(300)
    reference = await open_deployment(backends, CARTFLOW_CART_STOCK_RESERVATION_ENABLED="false")
    crashed = await open_deployment(backends, CARTFLOW_CART_STOCK_RESERVATION_ENABLED="false")
    try:
        reference.worker("cart")
        crashed.worker("cart")
        await asyncio.gather(run(reference, stream), run(crashed, stream, kills=(100, 200)))
        # Let the outboxes drain, then compare everything that was published.
        for deployment in (reference, crashed):
            async with asyncio.timeout(60):
                while await deployment.db["cart.outbox"].count_documents({"sent": False}):
                    await asyncio.sleep(0.1)
        await asyncio.sleep(1)

        expected = comparable_carts(await reference.db["cart.carts"].find().to_list())
        actual = comparable_carts(await crashed.db["cart.carts"].find().to_list())
        assert actual == expected

        for topic in ("cart.events", "cart.replies"):
            reference_bodies = {r.json["message_id"]: r.value for r in (await reference.tap(topic)).records}
            copies = defaultdict(set)
            for record in (await crashed.tap(topic)).records:
                copies[record.json["message_id"]].add(record.value)
            assert set(copies) == set(reference_bodies), f"{topic}: the same messages, none lost or invented"
            assert all(len(versions) == 1 for versions in copies.values()), f"{topic}: a repeat is an exact copy"
            for message_id, (value,) in copies.items():
                assert comparable(json.loads(value)) == comparable(json.loads(reference_bodies[message_id]))
        assert len((await crashed.tap("cart.replies")).records) >= len(stream)
    finally:
        await reference.close()
        await crashed.close()
