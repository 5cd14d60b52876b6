"""The dedup window: inbox entries older than CARTFLOW_INBOX_RETENTION_HOURS are
pruned on the real database, a message seen again after that is processed
afresh (as documented), and `cartflow replay` warns about such ranges; finished
aggregates go once older than their own retention."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from harness.deployment import open_deployment
from harness.support import ask, command, run_cli, stocked
from services.cart_worker import repository as cart_repository
from services.cart_worker.app import SPEC as CART
from services.checkout_worker.app import SPEC as CHECKOUT
from services.runtime.pruning import prune_finished, prune_inbox
from services.runtime.settings import Settings
from services.stock_worker.app import SPEC as STOCK

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


async def test_pruning_removes_only_entries_older_than_the_window_from_both_inboxes_and_the_outbox(backends):
    deployment = await open_deployment(backends)
    try:
        db = deployment.db
        for name in ("cart.inbox", "cart.internal-inbox"):
            await db[name].insert_many(
                [{"_id": f"old-{n}", "processed_at": NOW - timedelta(days=8, minutes=n)} for n in range(5)]
                + [{"_id": f"new-{n}", "processed_at": NOW - timedelta(days=6)} for n in range(3)]
            )

        await db["cart.outbox"].insert_many([
            {"_id": 1, "sent": True, "written_at": NOW - timedelta(days=8)},
            {"_id": 2, "sent": False, "written_at": NOW - timedelta(days=8)},  # never published: kept
            {"_id": 3, "sent": True, "written_at": NOW - timedelta(days=6)},
        ])

        removed = await prune_inbox(db, "cart", NOW - timedelta(days=7), batch=2)

        assert removed == 10
        for name in ("cart.inbox", "cart.internal-inbox"):
            assert sorted([doc["_id"] async for doc in db[name].find()]) == ["new-0", "new-1", "new-2"]
        assert sorted(await db["cart.outbox"].distinct("_id")) == [2, 3], "sent chunks go with the window"
    finally:
        await deployment.close()


async def test_finished_checkouts_closed_reservations_and_empty_carts_of_this_or_an_earlier_release_go_once_older_than_their_retention(backends):
    deployment = await open_deployment(backends)
    old, recent = NOW - timedelta(days=40), NOW - timedelta(hours=1)
    try:
        db = deployment.db
        await db["checkout.sagas"].insert_many([
            {"_id": "paid-long-ago", "state": "paid", "closed_at": old},
            {"_id": "cancelled-long-ago", "state": "cancelled", "closed_at": old},
            {"_id": "paid-recently", "state": "paid", "closed_at": recent},
            {"_id": "still-open", "state": "awaiting_payment", "closed_at": None},
        ])
        await db["stock.reservations"].insert_many([
            {"_id": f"{state}-long-ago", "state": state, "updated_at": old} for state in ("released", "expired")
        ] + [
            {"_id": "active-long-ago", "state": "active", "updated_at": old},
            {"_id": "committed-long-ago", "state": "committed", "updated_at": old},  # what was sold: the audit counts it
            {"_id": "released-recently", "state": "released", "updated_at": recent},
        ])
        await db["cart.carts"].insert_many([
            {"_id": "emptied-long-ago", "items": [], "pending": None, "queue": [], "updated_at": old},
            {"_id": "full-long-ago", "items": [{"item_id": "i"}], "pending": None, "queue": [], "updated_at": old},
            {"_id": "waiting-long-ago", "items": [], "pending": {"item_id": "i"}, "queue": [], "updated_at": old},
            {"_id": "emptied-recently", "items": [], "pending": None, "queue": [], "updated_at": recent},
            {"_id": "older-release", "items": [], "updated_at": old},  # written before carts had a queue
        ])
        # Written by a release that indexed every cart by its last change: the
        # worker's start-up gives them the fields pruning looks for.
        await db["cart.carts"].create_index("updated_at")
        await cart_repository.prepare(db)

        removed = sum([await prune_finished(db, spec, Settings(), NOW) for spec in (CART, STOCK, CHECKOUT)])

        assert removed == 6
        assert sorted(await db["checkout.sagas"].distinct("_id")) == ["paid-recently", "still-open"]
        assert sorted(await db["stock.reservations"].distinct("_id")) == [
            "active-long-ago", "committed-long-ago", "released-recently"
        ]
        assert sorted(await db["cart.carts"].distinct("_id")) == ["emptied-recently", "full-long-ago", "waiting-long-ago"]
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


async def test_a_charge_announced_again_after_its_paid_checkout_was_pruned_is_not_taken_for_an_unmatched_payment(backends):
    from decimal import Decimal

    from contracts.payment import PaymentSucceeded
    from services.checkout_worker import domain
    from services.checkout_worker import repository as checkout_repository
    from services.checkout_worker.handlers import CheckoutLogic, UnknownPayment
    from services.runtime.clock import ManualClock
    from services.checkout_worker.repository import CheckoutStore
    from services.runtime.mongo_storage import MongoStorage

    deployment = await open_deployment(backends)
    clock = ManualClock(NOW)
    logic = CheckoutLogic(Settings(), clock)
    order = domain.Order("o1", "i1", "p1", "Thing", None, 1, Decimal("5.00"), Decimal("5.00"), "r1")
    saga = domain.Checkout(
        "pay-pruned", "h", "ada", "single_item", (order,), Decimal("5.00"), "card", "gw", None, NOW, NOW + timedelta(minutes=15)
    )

    def charge(message_id: str, payment_id: str = "pay-pruned") -> PaymentSucceeded:
        return PaymentSucceeded(
            message_id=message_id, occurred_at=clock.now(), payment_id=payment_id, amount=Decimal("5.00"), gateway_reference="ch_kept"
        )

    storage = MongoStorage(deployment.db, "checkout")

    async def process(message) -> list:
        unit = await logic.load(CheckoutStore(storage.state), [message])
        out = logic.handle(unit, message)
        async with storage.transaction() as transaction:
            await logic.save(unit, CheckoutStore(transaction.state))
        return out

    try:
        await checkout_repository.prepare(deployment.db)
        await checkout_repository.save(deployment.db, [saga], None)
        assert [b'"OrderPaid"' in out.value for out in await process(charge("announce-1"))] == [True, False]
        clock.advance(40 * 86400)
        assert await prune_finished(deployment.db, CHECKOUT, Settings(), clock.now()) == 1

        assert await process(charge("announce-2")) == [], "the same charge, announced again, is answered once"
        with pytest.raises(UnknownPayment):  # a charge nobody answered still goes to the payments team
            await process(charge("announce-3", payment_id="pay-never"))
    finally:
        await deployment.close()
