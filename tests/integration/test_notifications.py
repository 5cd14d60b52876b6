"""Cart housekeeping through the real servers: change alerts from the periodic
check, abandoned-cart reminders, expiry that gives stock back, and auto-removal
of unavailable lines. The day-long settings are shortened to seconds."""

from __future__ import annotations

import pytest

from harness.deployment import open_deployment
from harness.support import ask, settled_level, stock_product
from harness.support import command

pytestmark = pytest.mark.integration

SECOND_IN_DAYS, SECOND_IN_HOURS = 1 / 86400, 1 / 3600


def notifications_of(tap, user_id: str) -> list[dict]:
    return [record.json for record in tap.records if record.json.get("user_id") == user_id]


async def test_an_idle_cart_is_alerted_reminded_and_then_expired_with_its_stock_released(backends):
    deployment = await open_deployment(
        backends,
        CARTFLOW_CART_CHANGE_CHECK_INTERVAL_HOURS=str(1 * SECOND_IN_HOURS),
        CARTFLOW_CART_ABANDONED_THRESHOLD_DAYS=str(3 * SECOND_IN_DAYS),
        CARTFLOW_CART_SESSION_TIMEOUT_DAYS=str(6 * SECOND_IN_DAYS),
        CARTFLOW_CART_HOUSEKEEPING_SWEEP_SECONDS="0.3",
    )
    try:
        deployment.worker("cart")
        deployment.worker("stock")
        notifications = await deployment.tap("notifications.events")
        events = await deployment.tap("cart.events")
        pid = await stock_product(deployment, 5, price="12.00")
        added = await ask(deployment, "AddItem", user_id="ann", product_id=pid, quantity=2)
        assert added["success"], added
        await settled_level(deployment, pid, reserved=2)

        cheaper = command("ProductUpserted", product_id=pid, name="Thing", price="9.00")
        await deployment.send("catalog.events", cheaper, "product_id")
        (alert,) = await notifications.wait_json(type="CartChangeAlert", user_id="ann")
        (reminder,) = await notifications.wait_json(type="AbandonedCartReminder", user_id="ann")
        (expired,) = await notifications.wait_json(type="CartExpired", user_id="ann")
        await settled_level(deployment, pid, reserved=0, available=5)
        await events.wait_json(type="CartCleared", user_id="ann")
        # A barrier, not a pause: the sweeps that take a later cart through
        # all its timers also look at ann's, which must announce nothing more.
        later = await ask(deployment, "AddItem", user_id="bob", product_id=pid, quantity=1)
        assert later["success"], later
        await notifications.wait_json(type="CartExpired", user_id="bob")
        cart = await ask(deployment, "GetCart", user_id="ann")
    finally:
        await deployment.close()

    assert alert["items"][0]["changes"] == [
        {"field": "price", "old": "12.00", "new": "9.00", "message": "Price decreased from 12.00 to 9.00"}
    ]
    assert (reminder["item_count"], reminder["subtotal"]) == (2, "18.00"), "at the price of the day"
    assert expired["item_ids"] == [added["cart_item_id"]] and len(expired["released_reservation_ids"]) == 1
    assert [n["type"] for n in notifications_of(notifications, "ann")] == [
        "CartChangeAlert",
        "AbandonedCartReminder",
        "CartExpired",
    ]
    assert cart["data"]["items"] == []


async def test_the_change_check_can_take_unavailable_lines_out_of_carts(backends):
    deployment = await open_deployment(
        backends,
        CARTFLOW_CART_STOCK_RESERVATION_ENABLED="false",
        CARTFLOW_CART_AUTO_REMOVE_UNAVAILABLE="true",
        CARTFLOW_CART_CHANGE_CHECK_INTERVAL_HOURS=str(1 * SECOND_IN_HOURS),
        CARTFLOW_CART_HOUSEKEEPING_SWEEP_SECONDS="0.3",
    )
    try:
        deployment.worker("cart")
        notifications = await deployment.tap("notifications.events")
        events = await deployment.tap("cart.events")
        kept, withdrawn = "p-kept", "p-withdrawn"
        for pid in (kept, withdrawn):
            await deployment.send("catalog.events", command("ProductUpserted", product_id=pid, name=pid, price="3.00"), "product_id")
        for pid in (kept, withdrawn):
            assert (await ask(deployment, "AddItem", user_id="bob", product_id=pid))["success"]
        await deployment.send("catalog.events", command("ProductDeleted", product_id=withdrawn), "product_id")
        (alert,) = await notifications.wait_json(type="CartChangeAlert", user_id="bob")
        (stock_alert,) = await notifications.wait_json(type="StockAlert", user_id="bob")
        (removed,) = await events.wait_json(type="ItemRemoved", user_id="bob")
        cart = await ask(deployment, "GetCart", user_id="bob")
    finally:
        await deployment.close()

    assert alert["removed_item_ids"] == [removed["item_id"]]
    assert stock_alert["product_id"] == withdrawn == removed["product_id"]
    assert [item["product_id"] for item in cart["data"]["items"]] == [kept]
