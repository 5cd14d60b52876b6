"""Stock reservations through the real broker: the cart reserves on add, adjusts
on update, releases on remove, and never oversells, whatever the contention,
replays or crashes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest
import pytest_asyncio

from services.runtime import headers as h
from services.stock_worker.audit import run_audit
from harness.deployment import open_deployment
from harness.support import ROOT, command, level, settled_level, stock_product

pytestmark = pytest.mark.integration


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(scope="module")
async def shop(backends):
    """A deployment with the cart and stock workers, reserving at add-to-cart."""
    deployment = await open_deployment(backends)
    deployment.worker("cart")
    deployment.worker("stock")
    try:
        yield deployment
    finally:
        await deployment.close()








async def ask(deployment, kind: str, **fields) -> dict:
    replies = await deployment.tap("cart.replies")
    message = await deployment.send("cart.commands", command(kind, **fields))
    return await replies.reply(message)


async def no_drift(deployment) -> None:
    report = await run_audit(deployment.db)
    assert report.drifts == [], report.drifts


async def contention(deployment, pid: str, buyers: int, sizes: list[str | None]) -> Counter:
    replies = await deployment.tap("cart.replies")
    adds = [
        command("AddItem", user_id=new_id("buyer"), product_id=pid, **({"size": sizes[n % len(sizes)]} if sizes[0] else {}))
        for n in range(buyers)
    ]
    await deployment.publisher.send_many(deployment.topic("cart.commands"), adds)
    answers = [await replies.reply(add, timeout=180) for add in adds]
    return Counter(answer.get("error_code") or "OK" for answer in answers)


async def test_two_hundred_buyers_for_ten_units_exactly_ten_get_one(shop):
    pid = await stock_product(shop, 10)

    outcomes = await contention(shop, pid, 200, [None])

    assert outcomes == Counter({"OK": 10, "INSUFFICIENT_STOCK": 190})
    final = await level(shop, pid)
    assert (final["on_hand"], final["reserved"], final["sold"], final["available"]) == (10, 10, 0, 0)
    await no_drift(shop)


async def test_two_hundred_buyers_for_two_sizes_of_five_units_exactly_ten_get_one(shop):
    pid = await stock_product(shop, {"M": 5, "L": 5})

    outcomes = await contention(shop, pid, 200, ["M", "L"])

    assert outcomes == Counter({"OK": 10, "INSUFFICIENT_STOCK": 190})
    assert [(await level(shop, pid, size))["available"] for size in ("M", "L")] == [0, 0]
    await no_drift(shop)


async def test_a_refused_add_says_how_many_are_left_in_the_words_buyers_know(shop):
    pid = await stock_product(shop, 3)
    buyer = new_id("buyer")

    too_many = await ask(shop, "AddItem", user_id=buyer, product_id=pid, quantity=5)
    two = await ask(shop, "AddItem", user_id=buyer, product_id=pid, quantity=2)
    two_more = await ask(shop, "AddItem", user_id=buyer, product_id=pid, quantity=2)

    assert too_many["error_code"] == "INSUFFICIENT_STOCK" and too_many["available_quantity"] == 3
    assert too_many["error_message"] == "Only 3 items available (requested 5)"
    assert two["success"] and two["data"]["reservation_state"] == "reserved"
    assert two["data"]["cart_summary"]["total_items"] == 2
    assert two_more["error_code"] == "INSUFFICIENT_STOCK"
    assert two_more["error_message"] == "Cannot add 2 more. Only 1 more available"
    cart = (await ask(shop, "GetCart", user_id=buyer))["data"]
    assert [item["quantity"] for item in cart["items"]] == [2], "the refused add left the earlier quantity"


async def test_update_adjusts_and_remove_and_clear_release_the_reservation(shop):
    pid = await stock_product(shop, 10)
    buyer = new_id("buyer")
    item = (await ask(shop, "AddItem", user_id=buyer, product_id=pid, quantity=2))["cart_item_id"]

    grown = await ask(shop, "UpdateItemQuantity", user_id=buyer, item_id=item, quantity=6)
    await settled_level(shop, pid, reserved=6)
    refused = await ask(shop, "UpdateItemQuantity", user_id=buyer, item_id=item, quantity=11)
    shrunk = await ask(shop, "UpdateItemQuantity", user_id=buyer, item_id=item, quantity=1)
    await settled_level(shop, pid, reserved=1)
    removed = await ask(shop, "RemoveItem", user_id=buyer, item_id=item)
    await settled_level(shop, pid, reserved=0, available=10)
    await ask(shop, "AddItem", user_id=buyer, product_id=pid, quantity=4)
    await settled_level(shop, pid, reserved=4)
    cleared = await ask(shop, "ClearCart", user_id=buyer)

    assert grown["success"] and shrunk["success"] and removed["success"] and cleared["success"]
    assert refused["error_code"] == "INSUFFICIENT_STOCK" and refused["available_quantity"] == 10
    await settled_level(shop, pid, reserved=0, available=10)
    await no_drift(shop)


async def test_commands_sent_while_a_stock_step_is_pending_keep_their_order(shop):
    pid = await stock_product(shop, 10)
    buyer = new_id("buyer")
    burst = [
        command("AddItem", user_id=buyer, product_id=pid, quantity=1),
        command("AddItem", user_id=buyer, product_id=pid, quantity=2),
        command("GetCart", user_id=buyer),
        command("AddItem", user_id=buyer, product_id=pid, quantity=3),
        command("GetCart", user_id=buyer),
    ]
    replies = await shop.tap("cart.replies")
    await shop.publisher.send_many(shop.topic("cart.commands"), burst)

    answers = [await replies.reply(message) for message in burst]

    assert [a["success"] for a in answers] == [True] * 5
    assert answers[2]["data"]["total_items"] == 3 and answers[4]["data"]["total_items"] == 6
    await settled_level(shop, pid, reserved=6)


async def test_deleting_a_product_releases_what_carts_held_and_the_cart_shows_it(shop):
    pid = await stock_product(shop, 5)
    buyer = new_id("buyer")
    await ask(shop, "AddItem", user_id=buyer, product_id=pid, quantity=2)
    await settled_level(shop, pid, reserved=2)

    await shop.send("catalog.events", command("ProductDeleted", product_id=pid), "product_id")

    await settled_level(shop, pid, reserved=0)
    stock_events = await shop.tap("stock.events")
    (released,) = await stock_events.wait_json(type="StockReleased", product_id=pid)
    assert released["reason"] == "product_deleted"
    summary = (await ask(shop, "GetCart", user_id=buyer))["data"]
    assert summary["unavailable_items"][0]["reservation_state"] == "unreserved"


async def test_a_recount_below_what_carts_hold_takes_back_the_newest_and_nothing_is_sold_beyond_it(shop):
    pid = await stock_product(shop, 3)
    buyers = [new_id("buyer") for _ in range(3)]
    for buyer in buyers:  # one after the other: the last buyer's reservation is the newest
        assert (await ask(shop, "AddItem", user_id=buyer, product_id=pid))["success"]
    await settled_level(shop, pid, reserved=3, available=0)
    stock_events = await shop.tap("stock.events")
    reserved = {
        e["holder"].split(":")[1]: e["reservation_id"]
        for e in await stock_events.wait_json(type="StockReserved", product_id=pid, count=3)
    }

    recount = await shop.send("stock.commands", command("SetStock", product_id=pid, on_hand=1), "product_id")

    released = await stock_events.wait_json(type="StockReleased", product_id=pid, reason="stock_reduced", count=2)
    assert sorted(e["reservation_id"] for e in released) == sorted(reserved[b] for b in buyers[1:])
    assert {e["causation_id"] for e in released} == {recount["message_id"]}
    assert {e["holder"].split(":")[1] for e in released} == set(buyers[1:])
    await settled_level(shop, pid, on_hand=1, reserved=1, sold=0, available=0)
    async with asyncio.timeout(30):  # the cart reads the releases and the level after them
        while (await ask(shop, "GetCart", user_id=buyers[2]))["data"]["items"]:
            await asyncio.sleep(0.1)
    (line,) = (await ask(shop, "GetCart", user_id=buyers[2]))["data"]["unavailable_items"]
    assert (line["reservation_state"], line["is_available"]) == ("unreserved", False)
    kept = (await ask(shop, "GetCart", user_id=buyers[0]))["data"]["items"]
    assert [item["reservation_state"] for item in kept] == ["reserved"]

    commits = [
        command("CommitReservation", reservation_id=reserved[buyer], product_id=pid, order_id=new_id("order"))
        for buyer in buyers
    ]
    for commit in commits:
        await shop.send("stock.commands", commit, "product_id")
    commit_ids = {c["message_id"] for c in commits}

    def answers_a_commit(record) -> bool:
        body = record.json or {}
        return body.get("causation_id") in commit_ids and body.get("type") != "StockLevelChanged"

    answers = {r.json["causation_id"]: r.json["type"] for r in await stock_events.wait_for(answers_a_commit, count=3)}
    assert [answers[c["message_id"]] for c in commits] == [
        "StockCommitted", "StockCommandRejected", "StockCommandRejected"
    ], "only the reservation the recount left can be sold"
    await settled_level(shop, pid, on_hand=1, reserved=0, sold=1, available=0)
    await no_drift(shop)


async def test_replaying_every_stock_and_cart_command_changes_no_level(shop):
    pid = await stock_product(shop, 4)
    buyers = [new_id("buyer") for _ in range(6)]
    for buyer in buyers:
        await ask(shop, "AddItem", user_id=buyer, product_id=pid)
    item = (await ask(shop, "GetCart", user_id=buyers[0]))["data"]["items"][0]["item_id"]
    await ask(shop, "UpdateItemQuantity", user_id=buyers[0], item_id=item, quantity=2)
    await ask(shop, "RemoveItem", user_id=buyers[1], item_id=(await ask(shop, "GetCart", user_id=buyers[1]))["data"]["items"][0]["item_id"])
    before = await settled_level(shop, pid, reserved=3, available=1)
    carts_before = await shop.db["cart.carts"].find({"_id": {"$in": buyers}}).sort("_id").to_list()

    replies = await shop.tap("cart.replies")
    for name in ("stock.commands", "cart.commands"):
        tap = await shop.tap(name)
        for record in list(tap.records):
            body = record.json or {}
            if pid in record.value.decode(errors="replace") or body.get("user_id") in buyers:
                await shop.publisher.raw(shop.topic(name), record.value, record.key)
    replayed = [r.json["message_id"] for r in (await shop.tap("cart.commands")).records if (r.json or {}).get("user_id") in buyers]
    for message_id in replayed:
        await replies.wait_json(count=2, correlation_id=message_id, type="CommandResult")
    sentinel = command("SetStock", product_id=pid, on_hand=4)  # same level: applied after the replay, changes nothing
    await shop.send("stock.commands", sentinel, "product_id")
    async with asyncio.timeout(60):
        while not await shop.db["stock.inbox"].find_one({"_id": sentinel["message_id"]}):
            await asyncio.sleep(0.05)

    after = await level(shop, pid)
    assert {k: after[k] for k in ("on_hand", "reserved", "sold", "version")} == {
        k: before[k] for k in ("on_hand", "reserved", "sold", "version")
    }
    assert await shop.db["cart.carts"].find({"_id": {"$in": buyers}}).sort("_id").to_list() == carts_before
    await no_drift(shop)


async def test_the_stock_audit_command_reports_no_drift(shop):
    await stock_product(shop, 1)
    env = {**shop.settings_env}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.ops.cli", "stock", "audit"],
        env={**__import__("os").environ, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no drift" in result.stdout


async def test_a_malformed_stock_command_is_dead_lettered(shop):
    dlq = await shop.tap("stock.commands.dlq")
    bad = json.dumps(command("SetStock", product_id="p", on_hand=-5)).encode()
    await shop.publisher.raw(shop.topic("stock.commands"), bad, b"p")
    (record,) = await dlq.wait_for(lambda r: r.value == bad)
    assert record.headers[h.ERROR_CODE] == b"INVALID_MESSAGE"


async def test_an_idle_carts_reservation_expires_on_time_and_the_cart_shows_it(backends):
    ttl = 2
    deployment = await open_deployment(backends, CARTFLOW_CART_RESERVATION_TTL=str(ttl))
    deployment.worker("cart")
    deployment.worker("stock")
    try:
        pid = await stock_product(deployment, 3)
        buyer = new_id("buyer")
        added = await ask(deployment, "AddItem", user_id=buyer, product_id=pid, quantity=2)
        assert added["data"]["reservation_state"] == "reserved"
        reserved_at = time.monotonic()

        stock_events = await deployment.tap("stock.events")
        (released,) = await stock_events.wait_json(type="StockReleased", product_id=pid, timeout=30)
        lateness = time.monotonic() - reserved_at - ttl

        assert released["reason"] == "expired"
        assert lateness < 5, f"released {lateness:.1f}s after the deadline"
        await settled_level(deployment, pid, reserved=0, available=3)
        async with asyncio.timeout(30):
            while True:
                line = (await ask(deployment, "GetCart", user_id=buyer))["data"]["items"][0]
                if line["reservation_state"] == "unreserved":
                    break
                await asyncio.sleep(0.1)
        await no_drift(deployment)
    finally:
        await deployment.close()


async def test_without_a_stock_worker_an_add_fails_in_time_and_the_late_reservation_is_released(backends):
    deployment = await open_deployment(backends, CARTFLOW_STOCK_REPLY_TIMEOUT_SECONDS="2")
    deployment.worker("cart")
    try:
        pid = new_id("prod")
        await deployment.send("catalog.events", command("ProductUpserted", product_id=pid, name="Lamp", price="5.00"), "product_id")
        await deployment.send("stock.commands", command("SetStock", product_id=pid, on_hand=3), "product_id")
        async with asyncio.timeout(60):
            while not await deployment.db["cart.catalog"].find_one({"_id": pid}):
                await asyncio.sleep(0.05)

        failed = await ask(deployment, "AddItem", user_id="ada", product_id=pid, quantity=2)
        assert failed["error_code"] == "RESERVATION_FAILED"
        assert (await ask(deployment, "GetCart", user_id="ada"))["data"]["items"] == []

        deployment.worker("stock")  # it now reserves late, then applies the release
        final = await settled_level(deployment, pid, on_hand=3, reserved=0)
        assert final["available"] == 3
        reservation = await deployment.db["stock.reservations"].find_one({"product_id": pid})
        assert reservation["state"] == "released" and reservation["reason"] == "reservation_timeout"
    finally:
        await deployment.close()


async def test_a_stock_worker_killed_during_contention_still_never_oversells(backends):
    deployment = await open_deployment(backends, CARTFLOW_STOCK_REPLY_TIMEOUT_SECONDS="120")
    deployment.worker("cart")
    stock = deployment.worker("stock")
    try:
        pid = await stock_product(deployment, 10)
        replies = await deployment.tap("cart.replies")
        adds = [command("AddItem", user_id=new_id("buyer"), product_id=pid) for _ in range(200)]
        await deployment.publisher.send_many(deployment.topic("cart.commands"), adds)
        await replies.wait_until(lambda: len(replies.correlation_ids()) >= 40, timeout=120)
        stock.kill()
        stock.start()

        answers = [await replies.reply(add, timeout=240) for add in adds]

        outcomes = Counter(answer.get("error_code") or "OK" for answer in answers)
        assert outcomes == Counter({"OK": 10, "INSUFFICIENT_STOCK": 190})
        final = await settled_level(deployment, pid, reserved=10)
        assert final["available"] == 0 and final["on_hand"] == final["available"] + final["reserved"] + final["sold"]
        await no_drift(deployment)
    finally:
        await deployment.close()
