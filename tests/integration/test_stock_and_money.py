"""No order is paid without its units, no unit is sold twice, and no money is
kept that no order keeps: through the real broker and database, with raw JSON
as a foreign client sends it."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from services.runtime import headers as h
from services.runtime.mongo import ConcurrentModification, connect
from services.stock_worker import domain as stock_domain
from services.stock_worker import repository as stock_repository
from harness.deployment import running
from harness.support import PAYMENT, ask, command, new_id, stock_level, stocked

pytestmark = pytest.mark.integration

CART_TTL_SECONDS = 2


@pytest_asyncio.fixture(scope="module")
async def shop(backends):
    async with running(
        backends,
        CARTFLOW_CART_RESERVATION_TTL=str(CART_TTL_SECONDS),
        CARTFLOW_STOCK_EXPIRY_SWEEP_SECONDS="0.2",
    ) as deployment:
        yield deployment










async def pay(shop, payment_id: str, amount: str, reference: str | None = None) -> dict:
    fields = {"payment_id": payment_id, "amount": amount}
    if reference:
        fields["gateway_reference"] = reference
    return await shop.send("payment.events", command("PaymentSucceeded", **fields), "payment_id")


async def order_events(shop, payment_id: str, kind: str, count: int = 1) -> list[dict]:
    events = await shop.tap("order.events")
    return await events.wait_json(count=count, type=kind, payment_id=payment_id)


async def test_a_paid_checkout_whose_cart_reservations_expired_still_has_every_unit_committed(shop):
    products = [await stocked(shop, 5, "3.00") for _ in range(3)]
    buyer = new_id("buyer")
    for pid in products:
        assert (await ask(shop, "AddItem", user_id=buyer, product_id=pid, quantity=2))["success"]
    await asyncio.sleep(CART_TTL_SECONDS + 1)  # every cart reservation has expired

    checkout = await ask(shop, "CheckoutCart", user_id=buyer, **PAYMENT)
    payment_id = checkout["data"]["payment_id"]
    await pay(shop, payment_id, "18.00")

    assert len(await order_events(shop, payment_id, "OrderPaid", count=3)) == 3
    for pid in products:
        await stock_level(shop, pid, sold=2, reserved=0, available=3)
    committed = await shop.db["stock.reservations"].count_documents({"product_id": {"$in": products}, "state": "committed"})
    assert committed == 3


async def test_a_paid_order_whose_units_were_sold_meanwhile_is_cancelled_and_its_money_refunded(shop):
    scarce, plenty = await stocked(shop, 1, "3.00"), await stocked(shop, 5, "3.00")
    assert (await ask(shop, "AddItem", user_id=new_id("rival"), product_id=scarce))["success"], "a rival holds the last unit"
    buyer, payment_id = new_id("buyer"), new_id("pay")
    # The hand-over as the cart sends it, naming reservations that lapsed on the way.
    lines = [
        {"order_id": f"{payment_id}-{n}", "item_id": f"i{n}", "product_id": pid, "product_name": "Thing",
         "quantity": 1, "unit_price": "3.00", "total_price": "3.00", "reservation_id": new_id("lapsed")}
        for n, pid in enumerate((scarce, plenty))
    ]
    start = command(
        "StartCheckout", payment_id=payment_id, payment_hash="h", user_id=buyer, checkout_type="full_cart",
        lines=lines, total_amount="6.00", command_type="CheckoutCart", command_message_id=new_id("cmd"), **PAYMENT,
    )
    await shop.send("checkout.commands", start, "payment_id")
    await order_events(shop, payment_id, "PaymentRequested")
    await pay(shop, payment_id, "6.00")

    (refund,) = await order_events(shop, payment_id, "PaymentRefundRequired")
    (paid,) = await order_events(shop, payment_id, "OrderPaid")
    (cancelled,) = await order_events(shop, payment_id, "OrderCancelled")
    assert refund["amount"] == "3.00" and refund["reason"] == "out_of_stock"
    assert (cancelled["order_id"], paid["order_id"]) == (lines[0]["order_id"], lines[1]["order_id"])
    assert cancelled["reason"] == "out_of_stock" and refund["order_ids"] == [cancelled["order_id"]]
    await stock_level(shop, scarce, on_hand=1, reserved=1, sold=0)
    await stock_level(shop, plenty, sold=1, reserved=0)


async def test_a_full_checkout_of_12_lines_with_reservation_at_checkout_commits_all_12(backends):
    async with running(backends, CARTFLOW_CART_STOCK_RESERVATION_ENABLED="false") as deployment:
        products = [await stocked(deployment, 2, "1.00") for _ in range(12)]
        buyer = new_id("buyer")
        for pid in products:
            assert (await ask(deployment, "AddItem", user_id=buyer, product_id=pid))["success"]

        checkout = await ask(deployment, "CheckoutCart", user_id=buyer, **PAYMENT)
        payment_id = checkout["data"]["payment_id"]
        await pay(deployment, payment_id, "12.00")

        assert len(await order_events(deployment, payment_id, "OrderPaid", count=12)) == 12
        for pid in products:
            await stock_level(deployment, pid, sold=1, reserved=0)


async def test_a_second_distinct_payment_of_a_paid_checkout_asks_for_a_refund_and_sells_nothing_more(shop):
    pid, buyer = await stocked(shop, 3, "3.00"), new_id("buyer")
    assert (await ask(shop, "AddItem", user_id=buyer, product_id=pid))["success"]
    payment_id = (await ask(shop, "CheckoutItem", user_id=buyer, item_id=(await ask(shop, "GetCart", user_id=buyer))["data"]["items"][0]["item_id"], **PAYMENT))["data"]["payment_id"]
    await pay(shop, payment_id, "3.00", reference="ch_first")
    await order_events(shop, payment_id, "OrderPaid")

    await pay(shop, payment_id, "3.00", reference="ch_first")  # the gateway retrying the same charge
    await pay(shop, payment_id, "3.00", reference="ch_second")  # a double charge

    (refund,) = await order_events(shop, payment_id, "PaymentRefundRequired")
    assert refund["reason"] == "duplicate_payment" and refund["gateway_reference"] == "ch_second"
    await stock_level(shop, pid, sold=1)


async def test_a_payment_for_no_known_checkout_is_announced_and_parked(shop):
    payment = await pay(shop, "pay-nobody-" + uuid.uuid4().hex[:6], "9.99", reference="ch_lost")
    dlq = await shop.tap("payment.events.dlq")

    (unmatched,) = await order_events(shop, payment["payment_id"], "UnmatchedPaymentReceived")
    await dlq.wait_for(lambda r: (r.json or {}).get("message_id") == payment["message_id"])
    assert unmatched["amount"] == "9.99" and unmatched["gateway_reference"] == "ch_lost"


async def test_stock_commands_naming_another_holder_or_product_are_refused_and_change_nothing(shop):
    pid, reservation_id = await stocked(shop, 4, "3.00"), new_id("res")
    events = await shop.tap("stock.events")
    reserve = await shop.send(
        "stock.commands",
        command("ReserveStock", reservation_id=reservation_id, product_id=pid, quantity=2, holder="cart:owner:1"),
        "product_id",
    )
    await events.wait_json(type="StockReserved", causation_id=reserve["message_id"])

    thief = await shop.send(
        "stock.commands",
        command("ReleaseReservation", reservation_id=reservation_id, product_id=pid, reason="x", holder="cart:thief:1"),
        "product_id",
    )
    other = await shop.send(
        "stock.commands",
        command("CommitReservation", reservation_id=reservation_id, product_id="another", order_id="o", holder=None),
        "product_id",
    )

    for message in (thief, other):
        (refused,) = await events.wait_json(type="StockCommandRejected", causation_id=message["message_id"])
        assert refused["error_code"] == "RESERVATION_HOLDER_MISMATCH"
    await stock_level(shop, pid, reserved=2, sold=0)


async def test_a_start_checkout_whose_total_is_not_the_sum_of_its_lines_is_dead_lettered(shop):
    start = command(
        "StartCheckout", payment_id="pay-forged", payment_hash="h", user_id="mallory", checkout_type="full_cart",
        lines=[{"order_id": "o1", "item_id": "i1", "product_id": "p", "product_name": "n", "quantity": 5,
                "unit_price": "10.00", "total_price": "50.00", "reservation_id": "someone-elses"}],
        total_amount="0.01", payment_method="card", gateway_name="gw", shipping_address={},
        command_type="CheckoutCart", command_message_id="c1",
    )
    dlq = await shop.tap("checkout.commands.dlq")
    value = json.dumps(start).encode()
    await shop.publisher.raw(shop.topic("checkout.commands"), value, b"pay-forged")

    (letter,) = await dlq.wait_for(lambda r: r.value == value)
    assert b"sum of the lines" in letter.headers[h.ERROR]
    assert await shop.db["checkout.sagas"].find_one({"_id": "pay-forged"}) is None


async def test_a_reservation_write_over_a_stale_read_is_refused(backends):
    client = connect(backends.mongo_url)
    db = client[f"races_{uuid.uuid4().hex[:8]}"]
    now = datetime.now(UTC)
    try:
        level = stock_domain.StockLevel("p", None, on_hand=5)
        made = stock_domain.reserve(
            level, None, reservation_id="R", quantity=2, holder="cart:u:i", expires_at=now, now=now
        )
        await save(db, made.level, made.reservation)
        (as_expiry_read,) = (await stock_repository.load_reservations(db, ["R"])).values()
        (as_transfer_read,) = (await stock_repository.load_reservations(db, ["R"])).values()
        (level_read,) = (await stock_repository.load_levels(db, ["p|"])).values()

        expired = stock_domain.expire(level_read, as_expiry_read, now=now + timedelta(seconds=1))
        await save(db, expired.level, expired.reservation)
        moved = stock_domain.transfer(as_transfer_read, holder="order:o", expires_at=None, now=now)

        with pytest.raises(ConcurrentModification):
            await save(db, None, moved.reservation)
        stored = await db["stock.reservations"].find_one({"_id": "R"})
        assert (stored["state"], stored["holder"]) == ("expired", "cart:u:i"), "the expiry stands; nothing came back to life"
    finally:
        await client.drop_database(db.name)
        await client.close()


async def save(db, level, reservation) -> None:
    async with db.client.start_session() as session:
        async with await session.start_transaction():
            await stock_repository.save(db, [level] if level else [], [reservation], session)


async def test_a_reservation_stored_without_a_version_is_written_over_once_and_versioned_from_then_on(backends):
    client = connect(backends.mongo_url)
    db = client[f"races_{uuid.uuid4().hex[:8]}"]
    now = datetime.now(UTC)
    try:
        made = stock_domain.reserve(
            stock_domain.StockLevel("p", None, on_hand=5), None, reservation_id="R", quantity=2,
            holder="cart:u:i", expires_at=None, now=now,
        )
        await save(db, made.level, made.reservation)
        await db["stock.reservations"].update_one({"_id": "R"}, {"$unset": {"version": ""}})  # as an older release wrote it
        (legacy,) = (await stock_repository.load_reservations(db, ["R"])).values()
        (stale,) = (await stock_repository.load_reservations(db, ["R"])).values()

        await save(db, None, stock_domain.transfer(legacy, holder="order:o", expires_at=None, now=now).reservation)
        with pytest.raises(ConcurrentModification):
            await save(db, None, stock_domain.transfer(stale, holder="order:x", expires_at=None, now=now).reservation)
        stored = await db["stock.reservations"].find_one({"_id": "R"})
        assert (stored["holder"], stored["version"]) == ("order:o", 1)
    finally:
        await client.drop_database(db.name)
        await client.close()
