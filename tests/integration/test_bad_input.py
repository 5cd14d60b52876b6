"""Bad input never crashes a worker, never stalls a partition and never changes
state: it gets a rejection reply where one can be addressed, and a dead-letter
entry where it cannot."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from services.runtime import headers as h
from harness.support import command

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def shop(cart_deployment):
    """A product and a buyer with one line in the cart."""
    pid, buyer = f"p-{uuid.uuid4().hex[:6]}", f"u-{uuid.uuid4().hex[:6]}"
    message = command("ProductUpserted", product_id=pid, name="Shoe", price="74.99")
    await cart_deployment.send("catalog.events", message, "product_id")
    replies = await cart_deployment.tap("cart.replies")
    reply = {}
    async with asyncio.timeout(60):
        while not reply.get("success"):  # the catalog event may land after the first try
            add = await cart_deployment.send("cart.commands", command("AddItem", user_id=buyer, product_id=pid))
            reply = await replies.reply(add)
    return {"product_id": pid, "user_id": buyer, "item_id": reply["cart_item_id"]}


async def cart_document(deployment, user_id):
    return await deployment.db["cart.carts"].find_one({"_id": user_id})


async def rejection(deployment, message: dict) -> dict:
    replies = await deployment.tap("cart.replies")
    await deployment.publisher.raw(
        deployment.topic("cart.commands"), json.dumps(message).encode(), message.get("user_id", "k").encode()
    )
    reply = await replies.reply(message)
    assert reply["success"] is False
    assert reply["error_message"] and reply["suggested_action"]
    return reply


async def dead_letter(deployment, topic: str, value: bytes) -> dict[str, bytes]:
    dlq = await deployment.tap(topic + ".dlq")
    await deployment.publisher.raw(deployment.topic(topic), value, b"some-key")
    (record,) = await dlq.wait_for(lambda r: r.value == value)
    return record.headers


def add_item(shop, **overrides):
    return command("AddItem", user_id=shop["user_id"], product_id=shop["product_id"]) | overrides


@pytest.mark.parametrize(
    "value",
    [b"\xff\xfe not json", b"[1, 2, 3]", b"", b'{"type": "AddItem", "user_id": "u"}'],
    ids=["not-json", "not-an-object", "empty", "no-message-id"],
)
async def test_a_command_that_cannot_be_answered_is_dead_lettered_with_the_reason(cart_deployment, value):
    headers = await dead_letter(cart_deployment, "cart.commands", value)
    assert headers[h.ERROR_CODE] == b"INVALID_MESSAGE"
    assert headers[h.SOURCE_TOPIC] == cart_deployment.topic("cart.commands").encode()
    assert headers[h.ERROR]


async def test_a_malformed_catalog_event_is_dead_lettered(cart_deployment):
    bad = json.dumps(command("ProductUpserted", product_id="p", name="x", price=74.99)).encode()
    headers = await dead_letter(cart_deployment, "catalog.events", bad)
    assert b"decimal string" in headers[h.ERROR]


@pytest.mark.parametrize(
    ("overrides", "in_reason"),
    [
        ({"type": "BuyEverything"}, "unknown message type"),
        ({"schema_version": 2}, "unsupported schema_version"),
        ({"product_id": None}, "product_id"),
        ({"quantity": "two"}, "quantity"),
        ({"quantity": 10**30}, "quantity"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
    ],
    ids=["unknown-type", "unknown-version", "missing-field", "mistyped-field", "huge-number", "bad-timestamp"],
)
async def test_a_malformed_command_with_an_id_gets_an_invalid_message_reply_and_changes_nothing(
    cart_deployment, shop, overrides, in_reason
):
    before = await cart_document(cart_deployment, shop["user_id"])
    message = {k: v for k, v in add_item(shop, **overrides).items() if v is not None}

    reply = await rejection(cart_deployment, message)

    assert reply["error_code"] == "INVALID_MESSAGE" and in_reason in reply["error_message"]
    assert reply["correlation_id"] == message["message_id"]
    assert await cart_document(cart_deployment, shop["user_id"]) == before


@pytest.mark.parametrize("quantity", [-1, 0, 1_000_000])
async def test_an_out_of_range_quantity_is_refused_and_changes_nothing(cart_deployment, shop, quantity):
    before = await cart_document(cart_deployment, shop["user_id"])
    reply = await rejection(cart_deployment, add_item(shop, quantity=quantity))
    assert reply["error_code"] == "INVALID_QUANTITY"
    assert await cart_document(cart_deployment, shop["user_id"]) == before


async def test_unknown_products_and_items_are_refused_and_change_nothing(cart_deployment, shop):
    before = await cart_document(cart_deployment, shop["user_id"])
    unknown_product = await rejection(cart_deployment, add_item(shop, product_id="no-such-product"))
    unknown_item = await rejection(
        cart_deployment, command("RemoveItem", user_id=shop["user_id"], item_id="no-such-item")
    )
    someone_elses = await rejection(
        cart_deployment, command("RemoveItem", user_id="intruder", item_id=shop["item_id"])
    )
    assert unknown_product["error_code"] == "PRODUCT_INACTIVE"
    assert unknown_item["error_code"] == someone_elses["error_code"] == "ITEM_NOT_FOUND"
    assert await cart_document(cart_deployment, shop["user_id"]) == before


async def test_bad_messages_in_a_batch_do_not_hold_back_their_neighbours(cart_deployment, shop):
    replies = await cart_deployment.tap("cart.replies")
    good = [command("GetCart", user_id=shop["user_id"]) for _ in range(5)]
    bad = [b"garbage", json.dumps(add_item(shop, quantity="x")).encode(), b"{}"]
    topic, key = cart_deployment.topic("cart.commands"), shop["user_id"].encode()
    for index, message in enumerate(good):
        await cart_deployment.publisher.raw(topic, json.dumps(message).encode(), key)
        if index < len(bad):
            await cart_deployment.publisher.raw(topic, bad[index], key)

    answers = [await replies.reply(message) for message in good]

    assert all(answer["success"] for answer in answers)
