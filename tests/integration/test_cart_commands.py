"""Every cart command, end to end through the real broker and database, driven
with raw JSON as an upstream service written without this repository would."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from harness.support import command

pytestmark = pytest.mark.integration


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def product_id() -> str:
    return f"product-{uuid.uuid4().hex[:8]}"


async def publish_catalog(deployment, message: dict) -> None:
    """Publish a catalog event and wait until the cart worker's read model has it,
    as a storefront does not sell a product before the catalog announced it."""
    await deployment.send("catalog.events", message, "product_id")
    async with asyncio.timeout(60):
        while not await deployment.db["cart.inbox"].find_one({"_id": message["message_id"]}):
            await asyncio.sleep(0.05)


async def upsert_product(deployment, pid: str, name: str, price: str, **extra) -> None:
    await publish_catalog(deployment, command("ProductUpserted", product_id=pid, name=name, price=price, **extra))


async def ask(deployment, kind: str, **fields) -> dict:
    replies = await deployment.tap("cart.replies")
    message = await deployment.send("cart.commands", command(kind, **fields))
    return await replies.reply(message)


async def test_an_added_item_is_answered_with_the_line_and_announced_as_an_event(cart_deployment):
    buyer, shoe = user(), product_id()
    await upsert_product(cart_deployment, shoe, "Trail shoe", "74.99", image_url="https://img/shoe.png")

    reply = await ask(cart_deployment, "AddItem", user_id=buyer, product_id=shoe, quantity=2, properties={"gift": True})

    assert reply["success"] is True and reply["command_type"] == "AddItem"
    assert reply["data"]["unit_price"] == "74.99" and reply["data"]["line_total"] == "149.98"
    assert reply["data"]["properties"] == {"gift": True}
    assert reply["cart_item_id"] == reply["data"]["item_id"]
    events = await cart_deployment.tap("cart.events")
    (added,) = await events.wait_json(type="ItemAdded", user_id=buyer)
    assert added["item_id"] == reply["cart_item_id"] and added["quantity"] == 2
    assert added["correlation_id"] == reply["correlation_id"]


async def test_adding_the_same_product_again_grows_the_line_up_to_the_maximum(cart_deployment):
    buyer, shoe = user(), product_id()
    await upsert_product(cart_deployment, shoe, "Trail shoe", "10.00")
    first = await ask(cart_deployment, "AddItem", user_id=buyer, product_id=shoe, quantity=90)
    second = await ask(cart_deployment, "AddItem", user_id=buyer, product_id=shoe, quantity=5)
    too_many = await ask(cart_deployment, "AddItem", user_id=buyer, product_id=shoe, quantity=5)

    assert second["cart_item_id"] == first["cart_item_id"] and second["data"]["quantity"] == 95
    assert too_many["success"] is False and too_many["error_code"] == "INVALID_QUANTITY"
    assert too_many["available_quantity"] == 4
    assert too_many["error_message"] == "Invalid quantity specified"
    assert too_many["suggested_action"].startswith("Add at most 4 more")
    assert too_many["suggested_action"]


async def test_sized_products_need_an_offered_size_and_charge_that_sizes_price(cart_deployment):
    buyer, shirt = user(), product_id()
    sizes = [{"size": "M", "price": "30.00"}, {"size": "XL", "price": "34.50"}]
    await upsert_product(cart_deployment, shirt, "Linen shirt", "30.00", sizes=sizes)

    no_size = await ask(cart_deployment, "AddItem", user_id=buyer, product_id=shirt)
    bad_size = await ask(cart_deployment, "AddItem", user_id=buyer, product_id=shirt, size="XXS")
    good = await ask(cart_deployment, "AddItem", user_id=buyer, product_id=shirt, size="XL")

    assert no_size["error_code"] == "SIZE_REQUIRED"
    assert bad_size["error_code"] == "SIZE_NOT_AVAILABLE"
    assert good["success"] and good["data"]["unit_price"] == "34.50" and good["data"]["size"] == "XL"


async def test_deleted_and_unknown_products_cannot_be_added(cart_deployment):
    buyer, gone = user(), product_id()
    await upsert_product(cart_deployment, gone, "Old hat", "5.00")
    await publish_catalog(cart_deployment, command("ProductDeleted", product_id=gone))

    deleted = await ask(cart_deployment, "AddItem", user_id=buyer, product_id=gone)
    unknown = await ask(cart_deployment, "AddItem", user_id=buyer, product_id=product_id())

    assert deleted["error_code"] == unknown["error_code"] == "PRODUCT_INACTIVE"


async def test_update_remove_and_clear_change_the_cart_and_say_so(cart_deployment):
    buyer, shoe, sock = user(), product_id(), product_id()
    await upsert_product(cart_deployment, shoe, "Trail shoe", "74.99")
    await upsert_product(cart_deployment, sock, "Wool sock", "9.50")
    shoe_line = (await ask(cart_deployment, "AddItem", user_id=buyer, product_id=shoe))["cart_item_id"]
    sock_line = (await ask(cart_deployment, "AddItem", user_id=buyer, product_id=sock))["cart_item_id"]

    updated = await ask(cart_deployment, "UpdateItemQuantity", user_id=buyer, item_id=shoe_line, quantity=3)
    removed = await ask(cart_deployment, "RemoveItem", user_id=buyer, item_id=sock_line)
    summary = (await ask(cart_deployment, "GetCart", user_id=buyer))["data"]
    cleared = await ask(cart_deployment, "ClearCart", user_id=buyer)
    empty = (await ask(cart_deployment, "GetCart", user_id=buyer))["data"]

    assert updated["success"] and removed["success"] and cleared["success"]
    assert [(i["item_id"], i["quantity"]) for i in summary["items"]] == [(shoe_line, 3)]
    assert summary["total_amount"] == "224.97" and summary["total_items"] == 3
    assert empty["items"] == [] and empty["total_amount"] == "0"
    events = await cart_deployment.tap("cart.events")
    await events.wait_json(type="CartCleared", user_id=buyer)
    kinds = [e["type"] for e in events.json_matching(user_id=buyer)]
    assert kinds == ["ItemAdded", "ItemAdded", "ItemQuantityChanged", "ItemRemoved", "CartCleared"]


async def test_nobody_can_touch_an_item_in_another_users_cart(cart_deployment):
    owner, intruder, shoe = user(), user(), product_id()
    await upsert_product(cart_deployment, shoe, "Trail shoe", "74.99")
    item = (await ask(cart_deployment, "AddItem", user_id=owner, product_id=shoe, quantity=2))["cart_item_id"]

    update = await ask(cart_deployment, "UpdateItemQuantity", user_id=intruder, item_id=item, quantity=9)
    remove = await ask(cart_deployment, "RemoveItem", user_id=intruder, item_id=item)
    owners_cart = (await ask(cart_deployment, "GetCart", user_id=owner))["data"]

    assert update["error_code"] == remove["error_code"] == "ITEM_NOT_FOUND"
    assert owners_cart["items"][0]["quantity"] == 2


async def test_a_price_change_is_detected_reported_and_accepted(cart_deployment):
    buyer, shoe = user(), product_id()
    await upsert_product(cart_deployment, shoe, "Trail shoe", "74.99")
    item = (await ask(cart_deployment, "AddItem", user_id=buyer, product_id=shoe, quantity=2))["cart_item_id"]
    await upsert_product(cart_deployment, shoe, "Trail shoe", "69.99")

    checked = await ask(cart_deployment, "CheckChanges", user_id=buyer)
    invalid = await ask(cart_deployment, "ValidateCart", user_id=buyer)
    accepted = await ask(cart_deployment, "AcceptChanges", user_id=buyer, item_ids=[item])
    valid = await ask(cart_deployment, "ValidateCart", user_id=buyer)

    (changed,) = checked["data"]["changed_items"]
    assert changed["changes"][0] == {
        "field": "price",
        "old": "74.99",
        "new": "69.99",
        "message": "Price decreased from 74.99 to 69.99",
    }
    assert invalid["data"]["is_valid"] is False and invalid["data"]["total_valid_amount"] == "0"
    assert accepted["data"]["accepted_item_ids"] == [item]
    assert valid["data"]["is_valid"] is True and valid["data"]["total_valid_amount"] == "139.98"
    stored = await cart_deployment.db["cart.carts"].find_one({"_id": buyer})
    assert stored["items"][0]["unit_price"] == "69.99" and stored["items"][0]["has_product_changed"] is False
    events = await cart_deployment.tap("cart.events")
    await events.wait_json(type="ChangesAccepted", user_id=buyer)
    assert events.json_matching(type="ProductChangesDetected", user_id=buyer)


async def test_an_unavailable_line_is_listed_apart_and_left_out_of_the_totals(cart_deployment):
    buyer, shoe, hat = user(), product_id(), product_id()
    await upsert_product(cart_deployment, shoe, "Trail shoe", "74.99")
    await upsert_product(cart_deployment, hat, "Hat", "15.00")
    await ask(cart_deployment, "AddItem", user_id=buyer, product_id=shoe)
    await ask(cart_deployment, "AddItem", user_id=buyer, product_id=hat)
    await publish_catalog(cart_deployment, command("ProductDeleted", product_id=hat))

    checked = await ask(cart_deployment, "CheckChanges", user_id=buyer)
    summary = (await ask(cart_deployment, "GetCart", user_id=buyer))["data"]

    assert checked["data"]["changed_items"][0]["changes"][0]["field"] == "availability"
    assert summary["total_amount"] == "74.99"
    assert [i["product_id"] for i in summary["unavailable_items"]] == [hat]
    assert summary["unavailable_items"][0]["is_available"] is False


async def test_empty_carts_cannot_be_validated_or_accepted(cart_deployment):
    buyer = user()
    validate = await ask(cart_deployment, "ValidateCart", user_id=buyer)
    accept = await ask(cart_deployment, "AcceptChanges", user_id=buyer)
    assert validate["error_code"] == accept["error_code"] == "CART_EMPTY"


async def test_an_empty_cart_or_a_missing_item_cannot_be_checked_out(cart_deployment):
    buyer = user()
    payment = {"payment_method": "card", "gateway_name": "stripe", "shipping_address": {"city": "Lyon"}}
    whole = await ask(cart_deployment, "CheckoutCart", user_id=buyer, **payment)
    single = await ask(cart_deployment, "CheckoutItem", user_id=buyer, item_id="no-such-item", **payment)
    assert whole["success"] is False and whole["error_code"] == "CART_EMPTY"
    assert single["error_code"] == "CART_EMPTY"


async def test_a_reply_goes_to_the_topic_named_in_reply_to(cart_deployment):
    buyer = user()
    await cart_deployment.create_topics("replies.storefront")
    custom = await cart_deployment.tap("replies.storefront")
    message = await cart_deployment.send(
        "cart.commands", command("GetCart", user_id=buyer, reply_to=cart_deployment.topic("replies.storefront"))
    )
    reply = await custom.reply(message)
    assert reply["success"] is True and reply["user_id"] == buyer


async def test_cartflow_send_fills_the_envelope_and_prints_the_reply(cart_deployment):
    import json
    import os
    import subprocess
    import sys

    from harness.support import ROOT

    def send(topic: str, body: dict) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "services.ops.cli", "send", topic, json.dumps(body), "--timeout", "60"],
            env={**os.environ, **cart_deployment.settings_env},
            capture_output=True,
            text=True,
            cwd=ROOT,
        )

    pid, buyer = product_id(), user()
    event = await asyncio.to_thread(send, "catalog.events", {"type": "ProductUpserted", "product_id": pid, "name": "Cup", "price": "4.00"})
    async with asyncio.timeout(60):
        while not await cart_deployment.db["cart.catalog"].find_one({"_id": pid}):
            await asyncio.sleep(0.05)
    reply = await asyncio.to_thread(send, "cart.commands", {"type": "AddItem", "user_id": buyer, "product_id": pid})

    assert event.returncode == 0 and json.loads(event.stdout)["message_id"]
    assert reply.returncode == 0, reply.stderr
    answer = json.loads(reply.stdout)
    assert answer["type"] == "CommandResult" and answer["success"] is True and answer["data"]["unit_price"] == "4.00"


async def test_the_client_matches_concurrent_requests_to_their_own_replies(cart_deployment):
    from services.ops.client import CartflowClient

    pid = product_id()
    await cart_deployment.send("catalog.events", command("ProductUpserted", product_id=pid, name="Pen", price="1.20"), "product_id")
    async with asyncio.timeout(60):
        while not await cart_deployment.db["cart.catalog"].find_one({"_id": pid}):
            await asyncio.sleep(0.05)
    buyers = [user() for _ in range(8)]

    async with CartflowClient(cart_deployment.backends.kafka_bootstrap, reply_topic=cart_deployment.topic("cart.replies")) as client:
        replies = await asyncio.gather(
            *(
                client.request(cart_deployment.topic("cart.commands"), {"type": "AddItem", "user_id": buyer, "product_id": pid, "quantity": n + 1}, timeout=60)
                for n, buyer in enumerate(buyers)
            )
        )

    assert [reply["user_id"] for reply in replies] == buyers
    assert [reply["data"]["quantity"] for reply in replies] == list(range(1, 9))
