"""Operators' tools against a running deployment: replaying a topic, rewinding a
worker group, and reading the system's status. Every consumer is idempotent, so
a replay or a rewind re-delivers messages and changes nothing."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.runtime import headers as h
from harness.deployment import open_deployment
from harness.support import command, group_lag, run_cli, topic_size

pytestmark = pytest.mark.integration


def summary_numbers(output: str) -> tuple[int, int, int]:
    found = re.search(r"read (\d+), (?:would re-publish|re-published) (\d+) .* skipped (\d+)", output)
    assert found, output
    return tuple(int(n) for n in found.groups())  # type: ignore[return-value]


async def test_replaying_cart_commands_republishes_them_and_changes_nothing(
    cart_deployment,
):
    started = datetime.now(UTC) - timedelta(seconds=1)
    pid, buyer = f"p-{uuid.uuid4().hex[:6]}", f"u-{uuid.uuid4().hex[:6]}"
    await cart_deployment.send(
        "catalog.events",
        command("ProductUpserted", product_id=pid, name="Mug", price="9.50"),
        "product_id",
    )
    async with asyncio.timeout(60):
        while not await cart_deployment.db["cart.catalog"].find_one({"_id": pid}):
            await asyncio.sleep(0.05)
    replies, events = (
        await cart_deployment.tap("cart.replies"),
        await cart_deployment.tap("cart.events"),
    )
    sent = [
        command("AddItem", user_id=buyer, product_id=pid, quantity=2),
        command("AddItem", user_id=buyer, product_id=pid, quantity=1),
        command("GetCart", user_id=buyer),
    ]
    for message in sent:
        await cart_deployment.send("cart.commands", message)
    originals = [await replies.reply(message) for message in sent]
    await events.wait_for(lambda r: r.json.get("user_id") == buyer, count=2)
    cart_before = await cart_deployment.db["cart.carts"].find_one({"_id": buyer})
    events_before = events.json_matching(user_id=buyer)

    replay = ("replay", "--topic", "cart.commands", "--from-time", started.isoformat())
    dry = await run_cli(cart_deployment, *replay, "--dry-run")
    result = await run_cli(cart_deployment, *replay)

    assert dry.returncode == 0, dry.stderr
    read, planned, skipped = summary_numbers(dry.stdout)
    assert read >= len(sent) and planned == read and skipped == 0
    assert result.returncode == 0, result.stderr
    assert summary_numbers(result.stdout)[:2] == (read, read), (
        "the dry run published nothing, so both read the same range"
    )
    for message, original in zip(sent, originals, strict=True):
        again = await replies.wait_json(count=2, correlation_id=message["message_id"], type="CommandResult")
        assert again[1] == original, "a replayed command is answered with its stored reply"
    sentinel = f"u-{uuid.uuid4().hex[:6]}"
    await cart_deployment.send("cart.commands", command("AddItem", user_id=sentinel, product_id=pid))
    await events.wait_json(type="ItemAdded", user_id=sentinel)
    assert await cart_deployment.db["cart.carts"].find_one({"_id": buyer}) == cart_before
    assert events.json_matching(user_id=buyer) == events_before, "no event is published twice"


async def test_replay_into_another_topic_copies_only_the_chosen_time_range(
    cart_deployment,
):
    await cart_deployment.create_topics("audit.source", "audit.copy")
    copy = await cart_deployment.tap("audit.copy")

    def record() -> dict:
        return command("GetCart", user_id=f"u-{uuid.uuid4().hex[:6]}")

    await cart_deployment.send("audit.source", record())
    await asyncio.sleep(1.5)
    since = datetime.now(UTC)
    chosen = [record() for _ in range(3)]
    for message in chosen:
        await cart_deployment.send("audit.source", message)
    await asyncio.sleep(1.5)
    cut = datetime.now(UTC)
    await asyncio.sleep(1.5)
    await cart_deployment.send("audit.source", record())

    result = await run_cli(
        cart_deployment,
        "replay",
        "--topic",
        "audit.source",
        "--from-time",
        since.isoformat(),
        "--to-time",
        cut.isoformat(),
        "--into",
        "audit.copy",
    )

    assert result.returncode == 0, result.stderr
    assert summary_numbers(result.stdout) == (4, 3, 1), "read from --from-time on, skipped what came after --to-time"
    copied = await copy.wait_for(lambda r: True, count=3)
    assert sorted(r.json["message_id"] for r in copied) == sorted(m["message_id"] for m in chosen)
    source = cart_deployment.topic("audit.source").encode()
    assert all(r.headers[h.REPLAYED_FROM].startswith(source) for r in copied)


async def test_a_rewound_stock_group_rereads_everything_and_changes_nothing(backends):
    deployment = await open_deployment(backends)
    try:
        worker = deployment.worker("stock")
        pids = [f"p-{uuid.uuid4().hex[:6]}" for _ in range(3)]
        for units, pid in enumerate(pids, start=1):
            await deployment.send(
                "stock.commands",
                command("SetStock", product_id=pid, on_hand=units),
                "product_id",
            )
        group, topics = (
            deployment.prefix + "cartflow-stock",
            [deployment.topic("stock.commands")],
        )
        async with asyncio.timeout(90):
            while await group_lag(backends.kafka_bootstrap, group, topics):
                await asyncio.sleep(0.2)
        levels_before = sorted(
            [d async for d in deployment.db["stock.levels"].find()],
            key=lambda d: d["_id"],
        )
        events_before = await topic_size(backends.kafka_bootstrap, deployment.topic("stock.events"))
        worker.stop()

        dry = await run_cli(
            deployment,
            "offsets",
            "reset",
            "--group",
            "stock",
            "--to-earliest",
            "--dry-run",
        )
        lag_after_dry_run = await group_lag(backends.kafka_bootstrap, group, topics)
        reset = await run_cli(deployment, "offsets", "reset", "--group", "stock", "--to-earliest")
        status = await run_cli(deployment, "status")

        assert dry.returncode == 0 and "would move" in dry.stdout, dry.stderr
        assert lag_after_dry_run == 0
        assert reset.returncode == 0, reset.stderr
        assert await group_lag(backends.kafka_bootstrap, group, topics) == 3
        assert status.returncode == 0, status.stderr
        assert re.search(rf"{re.escape(group)}: 3\b", status.stdout), status.stdout

        deployment.worker("stock")
        async with asyncio.timeout(90):
            while await group_lag(backends.kafka_bootstrap, group, topics):
                await asyncio.sleep(0.2)
        assert (
            sorted(
                [d async for d in deployment.db["stock.levels"].find()],
                key=lambda d: d["_id"],
            )
            == levels_before
        )
        assert await topic_size(backends.kafka_bootstrap, deployment.topic("stock.events")) == events_before
    finally:
        await deployment.close()
