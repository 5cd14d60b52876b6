"""Checkout sagas through the real broker, with a payment deadline of a few
seconds: single-item and full-cart checkouts, payment in time, too late, never,
and racing the deadline; worker crashes and lost timeout messages."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from services.runtime import headers as h
from services.stock_worker.audit import run_audit
from harness.deployment import running
from harness.support import PAYMENT, ask, cart_with, command, order_events, run_cli, stock_level, stocked

pytestmark = pytest.mark.integration

DEADLINE_SECONDS = 3
#: What the timer consumer guarantees: a deadline fires within this many seconds
#: of its due time (it polls every 0.1 s; the rest is batching and a transaction).
LATENESS_BOUND_SECONDS = 2.0


@pytest_asyncio.fixture(scope="module")
async def shop(backends):
    async with running(
        backends,
        CARTFLOW_PAYMENT_TIMEOUT_SECONDS=str(DEADLINE_SECONDS),
        CARTFLOW_CHECKOUT_DEADLINE_GRACE_SECONDS="2",
        CARTFLOW_CHECKOUT_DEADLINE_SWEEP_SECONDS="1",
    ) as deployment:
        yield deployment
        report = await run_audit(deployment.db)
        assert report.drifts == [], "stock conservation after every checkout of this module"
        async for level in deployment.db["stock.levels"].find():
            assert level["on_hand"] == level["available"] + level["reserved"] + level["sold"]










async def pay(deployment, payment_id: str, amount: str) -> dict:
    return await deployment.send(
        "payment.events", command("PaymentSucceeded", payment_id=payment_id, amount=amount), "payment_id"
    )




async def test_a_single_item_checkout_orders_that_item_and_leaves_the_others_in_the_cart(shop):
    shoe, sock = await stocked(shop, 5, "74.99"), await stocked(shop, 5, "3.50")
    buyer, (shoe_item, sock_item) = await cart_with(shop, (shoe, 2), (sock, 1))

    reply = await ask(shop, "CheckoutItem", user_id=buyer, item_id=shoe_item, **PAYMENT)

    data = reply["data"]
    assert reply["success"] and reply["command_type"] == "CheckoutItem"
    assert data["checkout_type"] == "single_item" and data["order_count"] == 1
    assert data["total_amount"] == "149.98" and data["order"]["status"] == "under_paying"
    assert data["order"]["quantity"] == 2 and data["payment_hash"]
    assert 0 < data["time_remaining_seconds"] <= DEADLINE_SECONDS
    remaining = (await ask(shop, "GetCart", user_id=buyer))["data"]["items"]
    assert [item["item_id"] for item in remaining] == [sock_item]
    (placed,) = await order_events(shop, data["payment_id"], "OrderPlaced")
    assert placed["order_id"] == data["order"]["order_id"] and placed["shipping_address"]["city"] == "Lyon"
    (requested,) = await order_events(shop, data["payment_id"], "PaymentRequested")
    assert requested["order_ids"] == [data["order"]["order_id"]] and requested["total_amount"] == "149.98"
    reservation = await shop.db["stock.reservations"].find_one({"product_id": shoe})
    async with asyncio.timeout(30):
        while not reservation["holder"].startswith("order:"):
            await asyncio.sleep(0.05)
            reservation = await shop.db["stock.reservations"].find_one({"product_id": shoe})
    assert reservation["expires_at"] is None, "the order's deadline, not the cart's TTL, governs it now"


async def test_paying_a_full_cart_in_time_empties_the_cart_and_sells_the_stock(shop):
    shoe, sock = await stocked(shop, 5, "10.00"), await stocked(shop, 5, "2.25")
    buyer, _ = await cart_with(shop, (shoe, 2), (sock, 3))

    reply = await ask(shop, "CheckoutCart", user_id=buyer, **PAYMENT)
    data = reply["data"]
    await order_events(shop, data["payment_id"], "PaymentRequested")
    await pay(shop, data["payment_id"], data["total_amount"])

    assert data["checkout_type"] == "full_cart" and data["order_count"] == 2
    assert data["total_amount"] == "26.75" and len(data["orders"]) == 2
    assert (await ask(shop, "GetCart", user_id=buyer))["data"]["items"] == []
    paid = await order_events(shop, data["payment_id"], "OrderPaid", count=2)
    assert {event["order_id"] for event in paid} == {order["order_id"] for order in data["orders"]}
    await stock_level(shop, shoe, sold=2, reserved=0, available=3)
    await stock_level(shop, sock, sold=3, reserved=0, available=2)
    await asyncio.sleep(DEADLINE_SECONDS + 1)
    events = await shop.tap("order.events")
    assert events.json_matching(type="OrderCancelled", payment_id=data["payment_id"]) == []


async def test_an_unpaid_checkout_is_cancelled_at_its_deadline_and_its_stock_released(shop):
    shoe = await stocked(shop, 4, "10.00")
    buyer, _ = await cart_with(shop, (shoe, 3))
    data = (await ask(shop, "CheckoutCart", user_id=buyer, **PAYMENT))["data"]

    (cancelled,) = await order_events(shop, data["payment_id"], "OrderCancelled", timeout=DEADLINE_SECONDS + 30)

    assert cancelled["reason"] == "payment_timeout"
    lateness = (
        datetime.fromisoformat(cancelled["occurred_at"]) - datetime.fromisoformat(data["payment_expires_at"])
    ).total_seconds()
    print(f"deadline lateness: {lateness:.3f}s")
    assert 0 <= lateness < LATENESS_BOUND_SECONDS, f"fired {lateness:.3f}s after the deadline"
    await stock_level(shop, shoe, reserved=0, sold=0, available=4)
    saga = await shop.db["checkout.sagas"].find_one({"_id": data["payment_id"]})
    assert saga["state"] == "cancelled" and {o["status"] for o in saga["orders"]} == {"cancelled"}


async def test_a_payment_after_the_cancellation_is_reported_and_sells_nothing(shop):
    shoe = await stocked(shop, 2, "5.00")
    buyer, _ = await cart_with(shop, (shoe, 1))
    data = (await ask(shop, "CheckoutCart", user_id=buyer, **PAYMENT))["data"]
    await order_events(shop, data["payment_id"], "OrderCancelled", timeout=DEADLINE_SECONDS + 30)

    await pay(shop, data["payment_id"], data["total_amount"])

    (late,) = await order_events(shop, data["payment_id"], "LatePaymentReceived")
    assert late["amount"] == "5.00"
    await stock_level(shop, shoe, sold=0, reserved=0, available=2)


async def test_a_wrong_amount_is_refused_and_the_right_one_still_pays(shop):
    shoe = await stocked(shop, 2, "5.00")
    buyer, _ = await cart_with(shop, (shoe, 2))
    data = (await ask(shop, "CheckoutCart", user_id=buyer, **PAYMENT))["data"]

    await pay(shop, data["payment_id"], "9.99")
    (mismatch,) = await order_events(shop, data["payment_id"], "PaymentAmountMismatch")
    first = await pay(shop, data["payment_id"], "10.00")
    await pay(shop, data["payment_id"], "10.00")  # the gateway reports it twice
    await shop.publisher.raw(shop.topic("payment.events"), json.dumps(first).encode(), data["payment_id"].encode())

    assert (mismatch["expected"], mismatch["received"]) == ("10.00", "9.99")
    (paid,) = await order_events(shop, data["payment_id"], "OrderPaid")
    await stock_level(shop, shoe, sold=2, reserved=0)
    await asyncio.sleep(1)
    events = await shop.tap("order.events")
    assert len(events.json_matching(type="OrderPaid", payment_id=data["payment_id"])) == 1


async def test_a_payment_racing_the_deadline_ends_in_exactly_one_outcome(shop):
    outcomes = []
    for offset in (-0.3, -0.1, 0.0, 0.1, 0.3):
        shoe = await stocked(shop, 1, "7.00")
        buyer, _ = await cart_with(shop, (shoe, 1))
        data = (await ask(shop, "CheckoutCart", user_id=buyer, **PAYMENT))["data"]
        due = datetime.fromisoformat(data["payment_expires_at"])
        await asyncio.sleep(max(0.0, (due - datetime.now(due.tzinfo)).total_seconds() + offset))
        await pay(shop, data["payment_id"], "7.00")

        async with asyncio.timeout(30):
            while (saga := await shop.db["checkout.sagas"].find_one({"_id": data["payment_id"]}))["state"] == "awaiting_payment":
                await asyncio.sleep(0.05)
        await asyncio.sleep(1)
        events = await shop.tap("order.events")
        paid = events.json_matching(type="OrderPaid", payment_id=data["payment_id"])
        cancelled = events.json_matching(type="OrderCancelled", payment_id=data["payment_id"])
        assert len(paid) + len(cancelled) == 1, (offset, paid, cancelled)
        final = await stock_level(shop, shoe, reserved=0)
        assert (final["sold"], bool(paid)) in ((1, True), (0, False))
        outcomes.append(saga["state"])
    assert set(outcomes) <= {"paid", "cancelled"}


async def test_a_deadline_still_fires_once_after_the_checkout_worker_is_killed(shop):
    shoe = await stocked(shop, 3, "4.00")
    buyer, _ = await cart_with(shop, (shoe, 2))
    data = (await ask(shop, "CheckoutCart", user_id=buyer, **PAYMENT))["data"]
    await order_events(shop, data["payment_id"], "PaymentRequested")

    shop.workers["checkout"].kill()
    await asyncio.sleep(DEADLINE_SECONDS)
    shop.workers["checkout"].start()

    await order_events(shop, data["payment_id"], "OrderCancelled", timeout=90)
    await stock_level(shop, shoe, reserved=0, available=3)
    await asyncio.sleep(DEADLINE_SECONDS)
    events = await shop.tap("order.events")
    assert len({e["message_id"] for e in events.json_matching(type="OrderCancelled", payment_id=data["payment_id"])}) == 1


async def test_the_safety_net_fires_a_deadline_whose_timeout_message_was_lost(shop):
    shoe = await stocked(shop, 3, "4.00")
    buyer, _ = await cart_with(shop, (shoe, 1))
    data = (await ask(shop, "CheckoutCart", user_id=buyer, **PAYMENT))["data"]
    await order_events(shop, data["payment_id"], "PaymentRequested")
    # An operator skips everything on the timeouts topic: the deadline message is lost.
    shop.workers["checkout"].stop()
    await skip_to_end(shop, "checkout.timeouts", shop.prefix + "cartflow-checkout-timeouts")
    shop.workers["checkout"].start()

    (cancelled,) = await order_events(shop, data["payment_id"], "OrderCancelled", timeout=90)

    assert cancelled["reason"] == "payment_timeout"
    await stock_level(shop, shoe, reserved=0, available=3)


async def skip_to_end(deployment, topic: str, group_id: str) -> None:
    """What an operator does to skip a topic: move the group's offsets to the end."""
    consumer = AIOKafkaConsumer(
        deployment.topic(topic),
        bootstrap_servers=deployment.backends.kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(60):
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=200)
        await consumer.seek_to_end()
        for partition in consumer.assignment():
            await consumer.position(partition)
        await consumer.commit()
    finally:
        await consumer.stop()


async def test_operators_can_show_a_checkout(shop):
    shoe = await stocked(shop, 2, "5.00")
    buyer, _ = await cart_with(shop, (shoe, 1))
    data = (await ask(shop, "CheckoutCart", user_id=buyer, **PAYMENT))["data"]

    shown = await run_cli(shop, "checkout", "show", data["payment_id"])
    missing = await run_cli(shop, "checkout", "show", "pay-nope")

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"] == "awaiting_payment"
    assert missing.returncode == 1


async def test_a_checkout_nobody_closed_past_its_deadline_is_listed_as_stuck_until_the_worker_closes_it(backends):
    async with running(backends, CARTFLOW_PAYMENT_TIMEOUT_SECONDS="2") as deployment:
        shoe = await stocked(deployment, 2, "5.00")
        buyer, _ = await cart_with(deployment, (shoe, 1))
        payment_id = (await ask(deployment, "CheckoutCart", user_id=buyer, **PAYMENT))["data"]["payment_id"]
        deployment.workers["checkout"].stop()  # nobody left to fire the deadline
        await asyncio.sleep(3)  # the deadline passes

        stuck = await run_cli(deployment, "checkout", "stuck", "--grace", "0.5")
        deployment.worker("checkout")
        await order_events(deployment, payment_id, "OrderCancelled")
        after = await run_cli(deployment, "checkout", "stuck", "--grace", "0.5")

    assert stuck.returncode == 1 and payment_id in stuck.stdout
    assert after.returncode == 0 and "no checkout is open" in after.stdout


async def test_checkout_reserves_again_a_line_whose_cart_reservation_expired(backends):
    async with running(backends, CARTFLOW_CART_RESERVATION_TTL="1") as deployment:
        shoe = await stocked(deployment, 3, "8.00")
        buyer, _ = await cart_with(deployment, (shoe, 2))
        stock_events = await deployment.tap("stock.events")
        await stock_events.wait_json(type="StockReleased", product_id=shoe, reason="expired")
        await stock_level(deployment, shoe, reserved=0)

        reply = await ask(deployment, "CheckoutCart", user_id=buyer, **PAYMENT)

        assert reply["success"] and reply["data"]["total_amount"] == "16.00"
        await stock_level(deployment, shoe, reserved=2, available=1)


async def test_with_reservation_at_add_to_cart_off_checkout_reserves_or_refuses(backends):
    async with running(backends, CARTFLOW_CART_STOCK_RESERVATION_ENABLED="false") as deployment:
        shoe = await stocked(deployment, 3, "8.00")
        buyer, _ = await cart_with(deployment, (shoe, 2))
        greedy, _ = await cart_with(deployment, (shoe, 3))
        untouched = await stock_level(deployment, shoe)
        assert untouched["reserved"] == 0, "adding to a cart reserved nothing"

        bought = await ask(deployment, "CheckoutCart", user_id=buyer, **PAYMENT)
        refused = await ask(deployment, "CheckoutCart", user_id=greedy, **PAYMENT)

        assert bought["success"]
        assert refused["error_code"] == "CHECKOUT_VALIDATION_FAILED"
        (detail,) = refused["data"]["validation_details"]
        assert detail["is_valid"] is False and detail["issues"][0]["message"] == "Only 1 items available (requested 3)"
        cart = (await ask(deployment, "GetCart", user_id=greedy))["data"]
        assert cart["items"] == [] and cart["unavailable_items"][0]["quantity"] == 3, "kept, but not buyable as it is"
        await stock_level(deployment, shoe, reserved=2, available=1)


async def test_a_payment_parked_before_its_checkout_existed_is_redriven_and_pays(shop):
    from contracts.derived_ids import payment_id_for

    shoe = await stocked(shop, 2, "6.00")
    buyer, _ = await cart_with(shop, (shoe, 1))
    checkout = command("CheckoutCart", user_id=buyer, **PAYMENT)
    payment_id = payment_id_for(checkout["message_id"])
    early = await pay(shop, payment_id, "6.00")
    dlq = await shop.tap("payment.events.dlq")
    await dlq.wait_for(lambda r: (r.json or {}).get("message_id") == early["message_id"])
    listed = await run_cli(shop, "dlq", "list", "payment.events")
    assert early["message_id"] in listed.stdout and "UnknownPayment" in listed.stdout

    replies = await shop.tap("cart.replies")
    await shop.send("cart.commands", checkout)
    assert (await replies.reply(checkout))["success"]
    redriven = await run_cli(shop, "dlq", "redrive", "payment.events", "--message-id", early["message_id"])

    assert "re-published 1" in redriven.stdout, redriven.stdout + redriven.stderr
    (paid,) = await order_events(shop, payment_id, "OrderPaid")
    await stock_level(shop, shoe, sold=1, reserved=0)

    again = await run_cli(shop, "dlq", "redrive", "payment.events", "--message-id", early["message_id"])
    assert "re-published 1" in again.stdout, again.stdout + again.stderr
    payments = await shop.tap("payment.events")
    await payments.wait_for(lambda r: (r.json or {}).get("message_id") == early["message_id"], count=3)
    # A later charge of the same checkout, behind the redrive on its partition: once it is
    # refunded, whatever the redrive would have caused has been published before it.
    await pay(shop, payment_id, "6.00")
    await order_events(shop, payment_id, "PaymentRefundRequired")
    assert len(await order_events(shop, payment_id, "OrderPaid")) == 1
    handled = await shop.db["checkout.inbox"].count_documents({"_id": {"$regex": f"^{early['message_id']}"}})
    assert handled == 2, "parked once, processed once: the second redrive of one letter is a repeat"


async def test_a_redriven_record_that_fails_again_is_parked_again_not_looped(shop):
    payment = command("PaymentSucceeded", payment_id="pay-never", amount="1.00")
    bad = json.dumps(payment).encode()
    dlq = await shop.tap("payment.events.dlq")
    await shop.publisher.raw(shop.topic("payment.events"), bad, b"pay-never")
    await dlq.wait_for(lambda r: r.value == bad)

    only = ("--message-id", payment["message_id"], "--max-redrives", "1")
    first = await run_cli(shop, "dlq", "redrive", "payment.events", *only)
    parked = await dlq.wait_for(lambda r: r.value == bad, count=2)
    second = await run_cli(shop, "dlq", "redrive", "payment.events", *only)

    assert "re-published 1" in first.stdout
    assert parked[-1].headers[h.REDRIVE_COUNT] == b"1"
    assert "skipped 1" in second.stdout and "re-published 0" in second.stdout


async def test_cartflow_demo_runs_a_whole_session_and_prints_its_timeline(shop):
    result = await run_cli(shop, "demo", "--expiry-wait", "60")

    assert result.returncode == 0, result.stdout + result.stderr
    timeline = result.stdout
    for step in ("AddItem", "ProductChangesDetected", "ChangesAccepted", "OrderPaid", "OrderCancelled", "StockReleased"):
        assert step in timeline, (step, timeline)
    assert timeline.index("OrderPaid") < timeline.index("OrderCancelled")
    assert "done: one order paid, one cancelled at its deadline" in timeline


async def test_a_hand_over_the_checkout_worker_cannot_keep_is_set_aside_and_refused_to_the_cart(shop):
    handovers = await shop.tap("checkout.handovers")
    dlq = await shop.tap("checkout.commands.dlq")
    start = command(
        "StartCheckout", payment_id="pay-unkeepable", payment_hash="h", user_id="ada-unkeepable",
        checkout_type="single_item", total_amount="5.00", payment_method="card", gateway_name="gw",
        shipping_address={"stre\u0000et": "1 Main St"}, command_type="CheckoutItem", command_message_id="c-1",
        lines=[{"order_id": "o-1", "item_id": "i-1", "product_id": "p-1", "product_name": "Thing",
                "quantity": 1, "unit_price": "5.00", "total_price": "5.00"}],
    )
    await shop.send("checkout.commands", start, "payment_id")

    (refusal,) = await handovers.wait_json(type="CheckoutRefused", causation_id=start["message_id"])
    assert refusal["user_id"] == "ada-unkeepable" and refusal["item_ids"] == ["i-1"]
    await dlq.wait_for(lambda r: (r.json or {}).get("message_id") == start["message_id"])
    assert await shop.db["checkout.sagas"].find_one({"_id": "pay-unkeepable"}) is None
