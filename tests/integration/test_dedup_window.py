"""The dedup window: inbox entries older than CARTFLOW_INBOX_RETENTION_HOURS are
pruned on the real database, a message seen again after that is processed
afresh (as documented), and `cartflow replay` warns about such ranges."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from harness.deployment import open_deployment
from harness.support import ask, command, run_cli, stocked
from services.runtime.retention import prune_inbox

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


async def test_pruning_removes_only_entries_older_than_the_window_from_both_inboxes(backends):
    deployment = await open_deployment(backends)
    try:
        db = deployment.db
        for name in ("cart.inbox", "cart.internal-inbox"):
            await db[name].insert_many(
                [{"_id": f"old-{n}", "processed_at": NOW - timedelta(days=8, minutes=n)} for n in range(5)]
                + [{"_id": f"new-{n}", "processed_at": NOW - timedelta(days=6)} for n in range(3)]
            )

        removed = await prune_inbox(db, "cart", NOW - timedelta(days=7), batch=2)

        assert removed == 10
        for name in ("cart.inbox", "cart.internal-inbox"):
            assert sorted([doc["_id"] async for doc in db[name].find()]) == ["new-0", "new-1", "new-2"]
    finally:
        await deployment.close()


async def test_a_command_seen_again_after_the_window_is_processed_afresh(backends):
    # A window of about a second, pruned every 0.2 s.
    deployment = await open_deployment(
        backends, CARTFLOW_INBOX_RETENTION_HOURS=str(1 / 3600), CARTFLOW_INBOX_PRUNE_INTERVAL_SECONDS="0.2",
        CARTFLOW_CART_STOCK_RESERVATION_ENABLED="false",
    )
    try:
        deployment.worker("cart")
        deployment.worker("stock")
        pid = await stocked(deployment, 50, "1.00")
        add = command("AddItem", user_id="window-user", product_id=pid, quantity=2)
        replies = await deployment.tap("cart.replies")
        await deployment.send("cart.commands", add)
        first = await replies.reply(add)
        async with asyncio.timeout(60):
            while await deployment.db["cart.inbox"].find_one({"_id": add["message_id"]}):
                await asyncio.sleep(0.2)

        await deployment.send("cart.commands", add)  # the same message, after its entry was pruned
        async with asyncio.timeout(60):
            while (await ask(deployment, "GetCart", user_id="window-user"))["data"]["total_items"] != 4:
                await asyncio.sleep(0.2)
    finally:
        await deployment.close()

    assert first["success"] is True


async def test_replay_warns_when_its_range_starts_beyond_the_dedup_window(backends):
    deployment = await open_deployment(backends, CARTFLOW_INBOX_RETENTION_HOURS="24")
    try:
        old = await run_cli(deployment, "replay", "--topic", "cart.commands", "--from-time", "2020-01-01T00:00:00Z", "--dry-run")
        recent = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        fresh = await run_cli(deployment, "replay", "--topic", "cart.commands", "--from-time", recent, "--dry-run")
    finally:
        await deployment.close()

    assert old.returncode == 0 and "beyond the dedup window" in old.stderr
    assert fresh.returncode == 0 and "dedup window" not in fresh.stderr
