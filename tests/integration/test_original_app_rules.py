"""The original carts app's rules, end to end with raw JSON as its clients send
it: live prices, partial stock, change details, its error texts, stock checked
at add and update without reservation at add-to-cart, checkout defaults, its
field names, newest first, cart counts, checkout status and validation details.
Every reply's ``data`` is checked against its model in ``contracts.replies``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import pytest_asyncio

from contracts.replies import REJECTION_DATA, REPLY_DATA
from harness.deployment import running
from harness.support import ask, command, new_id, stocked

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module")
async def shop(backends):
    """All three workers, reservation at add-to-cart off (stock is then checked
    against the cart's read model), and a default gateway of the deployment's own."""
    async with running(
        backends, CARTFLOW_CART_STOCK_RESERVATION_ENABLED="false", CARTFLOW_CHECKOUT_DEFAULT_GATEWAY="paygate"
    ) as deployment:
        yield deployment


async def typed(deployment, kind: str, **fields: Any) -> dict:
    """Ask, and check the reply's data against its model."""
    reply = await ask(deployment, kind, **fields)
    model = REPLY_DATA[kind] if reply["success"] else REJECTION_DATA.get(reply["error_code"])
    if model is not None:
        model.model_validate(reply["data"])
    return reply


async def cart_knows_stock(deployment, pid: str, available: int, size: str | None = None) -> None:
    """Wait until the cart's stock read model shows ``available`` units."""
    async with asyncio.timeout(60):
        while (await deployment.db["cart.stock"].find_one({"_id": f"{pid}|{size or ''}"}) or {}).get("available") != available:
            await asyncio.sleep(0.05)


async def reprice(deployment, pid: str, name: str, price: str) -> None:
    message = await deployment.send(
        "catalog.events", command("ProductUpserted", product_id=pid, name=name, price=price), "product_id"
    )
    async with asyncio.timeout(60):
        while not await deployment.db["cart.inbox"].find_one({"_id": message["message_id"]}):
            await asyncio.sleep(0.05)


async def set_stock(deployment, pid: str, on_hand: int) -> None:
    await deployment.send("stock.commands", command("SetStock", product_id=pid, on_hand=on_hand), "product_id")
    await cart_knows_stock(deployment, pid, on_hand)


async def test_an_add_is_answered_in_the_original_shape_and_stock_is_checked_without_reservation(shop):
    shoe = await stocked(shop, 3, "74.99", "Trail shoe")
    await cart_knows_stock(shop, shoe, 3)
    buyer = new_id("buyer")

    too_many = await typed(shop, "AddItem", user_id=buyer, product_id=shoe, quantity=10)
    added = await typed(shop, "AddItem", user_id=buyer, product_id=shoe, quantity="2", size="",
                        product_properties={"color": "red"})
    more = await typed(shop, "AddItem", user_id=buyer, product_id=shoe, quantity=2)
    grow = await typed(shop, "UpdateItemQuantity", user_id=buyer, cart_item_id=added["cart_item_id"], quantity=4)
    update = await typed(shop, "UpdateItemQuantity", user_id=buyer, cart_item_id=added["cart_item_id"], quantity=3)

    assert (too_many["error_code"], too_many["error_message"]) == ("INSUFFICIENT_STOCK", "Only 3 items available (requested 10)")
    assert too_many["available_quantity"] == 3 and too_many["suggested_action"]
    assert added["data"]["message"] == "Item added to cart successfully"
    assert added["data"]["cart_summary"] == {"total_items": 2, "total_price": "149.98"}
    assert added["data"]["properties"] == {"color": "red"} and added["data"]["size"] is None
    assert more["error_message"] == "Cannot add 2 more. Only 1 more available"
    assert grow["error_message"] == "Only 3 items available (requested 4)"
    assert update["data"]["new_quantity"] == 3 and update["data"]["new_subtotal"] == "224.97"


async def test_an_integer_product_id_is_read_as_its_decimal_string(shop):
    pid = str(900_000 + int(new_id("n").split("-")[1], 16) % 99_999)
    await shop.send("catalog.events", command("ProductUpserted", product_id=pid, name="Numbered", price="2.00"), "product_id")
    async with asyncio.timeout(60):
        while not await shop.db["cart.catalog"].find_one({"_id": pid}):
            await asyncio.sleep(0.05)

    added = await typed(shop, "AddItem", user_id=new_id("buyer"), product_id=int(pid), quantity=1)

    assert added["success"] is True and added["data"]["product_id"] == pid


async def test_prices_are_live_and_partial_stock_makes_a_line_unavailable(shop):
    shoe, sock = await stocked(shop, 10, "74.99", "Trail shoe"), await stocked(shop, 10, "3.50", "Sock")
    await cart_knows_stock(shop, sock, 10)
    buyer = new_id("buyer")
    await typed(shop, "AddItem", user_id=buyer, product_id=shoe, quantity=2)
    await typed(shop, "AddItem", user_id=buyer, product_id=sock, quantity=4)

    await reprice(shop, shoe, "Trail shoe II", "69.99")
    await set_stock(shop, sock, 3)
    cart = (await typed(shop, "GetCart", user_id=buyer))["data"]
    count = (await typed(shop, "GetCartCount", user_id=buyer))["data"]

    (line,) = cart["items"]
    assert (line["unit_price"], line["current_price"], line["line_total"]) == ("74.99", "69.99", "139.98")
    assert line["change_details"] == {
        "name": {"old": "Trail shoe", "new": "Trail shoe II"}, "price": {"old": "74.99", "new": "69.99"}
    }
    assert line["product_last_checked"]
    (short,) = cart["unavailable_items"]
    assert short["product_id"] == sock and short["is_available"] is False
    assert short["change_details"]["availability"] == {"available": False, "reason": "Out of stock or product deleted"}
    assert cart["total_amount"] == "139.98" and cart["total_items"] == 2
    assert (count["count"], count["total_amount"]) == (2, "139.98")


async def test_lines_come_newest_first_and_validation_carries_the_original_fields(shop):
    first, second = await stocked(shop, 9, "1.00", "First"), await stocked(shop, 9, "2.00", "Second")
    await cart_knows_stock(shop, second, 9)
    buyer = new_id("buyer")
    a = await typed(shop, "AddItem", user_id=buyer, product_id=first, quantity=1)
    b = await typed(shop, "AddItem", user_id=buyer, product_id=second, quantity=2)

    cart = (await typed(shop, "GetCart", user_id=buyer))["data"]
    validation = await typed(shop, "ValidateCart", user_id=buyer, cart_item_ids=[b["cart_item_id"]])

    assert [line["item_id"] for line in cart["items"]] == [b["cart_item_id"], a["cart_item_id"]]
    (detail,) = validation["data"]["validation_details"]
    assert detail["cart_item_id"] == b["cart_item_id"] and detail["product_name"] == "Second"
    assert (detail["requested_quantity"], detail["available_quantity"], detail["item_total"]) == (2, 9, "4.00")


async def test_a_checkout_without_payment_details_takes_the_defaults_and_its_status_can_be_asked(shop):
    shoe = await stocked(shop, 5, "74.99", "Trail shoe")
    buyer = new_id("buyer")
    added = await typed(shop, "AddItem", user_id=buyer, product_id=shoe, quantity=1)

    started = await typed(shop, "CheckoutItem", user_id=buyer, cart_item_id=added["cart_item_id"],
                          shipping_address="123 Test St")
    payment_id = started["data"]["payment_id"]
    replies = await shop.tap("cart.replies")
    query = await shop.send("checkout.queries", command("GetCheckout", user_id=buyer, payment_id=payment_id), "payment_id")
    status = await replies.reply(query)
    stranger_query = await shop.send(
        "checkout.queries", command("GetCheckout", user_id="someone-else", payment_id=payment_id), "payment_id"
    )
    stranger = await replies.reply(stranger_query)
    events = await shop.tap("order.events")
    (requested,) = await events.wait_json(type="PaymentRequested", payment_id=payment_id)

    assert started["data"]["checkout_type"] == "single_item" and started["data"]["time_remaining_seconds"] > 0
    REPLY_DATA["GetCheckout"].model_validate(status["data"])
    assert status["data"]["state"] == "awaiting_payment" and status["data"]["orders"][0]["status"] == "under_paying"
    assert 0 < status["data"]["time_remaining_seconds"] <= 900
    assert (requested["payment_method"], requested["gateway_name"]) == ("credit_card", "paygate")
    assert (stranger["success"], stranger["error_code"]) == (False, "CHECKOUT_NOT_FOUND")


async def test_a_checkout_of_a_line_the_stock_no_longer_covers_fails_with_the_original_text(shop):
    shoe = await stocked(shop, 5, "10.00", "Shoe")
    await cart_knows_stock(shop, shoe, 5)
    buyer = new_id("buyer")
    await typed(shop, "AddItem", user_id=buyer, product_id=shoe, quantity=4)
    await set_stock(shop, shoe, 2)

    refused = await typed(shop, "CheckoutCart", user_id=buyer)

    assert (refused["error_code"], refused["error_message"]) == (
        "CHECKOUT_VALIDATION_FAILED", "Cart validation failed for checkout"
    )
    (detail,) = refused["data"]["validation_details"]
    assert detail["is_valid"] is False and detail["available_quantity"] == 2
