"""A replayed command changes nothing: the stored reply is sent again, unchanged,
and no event is published a second time."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from harness.support import command

pytestmark = pytest.mark.integration


async def test_publishing_the_same_commands_twice_changes_nothing_the_second_time(cart_deployment):
    buyer, pid = f"u-{uuid.uuid4().hex[:6]}", f"p-{uuid.uuid4().hex[:6]}"
    catalog = command("ProductUpserted", product_id=pid, name="Shoe", price="74.99")
    await cart_deployment.send("catalog.events", catalog, "product_id")
    replies = await cart_deployment.tap("cart.replies")
    events = await cart_deployment.tap("cart.events")
    async with asyncio.timeout(60):
        while not await cart_deployment.db["cart.catalog"].find_one({"_id": pid}):
            await asyncio.sleep(0.05)

    add = command("AddItem", user_id=buyer, product_id=pid, quantity=2)
    first_add = await replies.reply(await cart_deployment.send("cart.commands", add))
    item = first_add["cart_item_id"]
    commands = [
        add,
        command("AddItem", user_id=buyer, product_id=pid, quantity=1),
        command("UpdateItemQuantity", user_id=buyer, item_id=item, quantity=7),
        command("GetCart", user_id=buyer),
        command("AddItem", user_id=buyer, product_id=pid, quantity=500),
    ]
    for message in commands[1:]:
        await cart_deployment.send("cart.commands", message)
    originals = [await replies.reply(message) for message in commands]
    await events.wait_json(type="ItemQuantityChanged", user_id=buyer)
    cart_before = await cart_deployment.db["cart.carts"].find_one({"_id": buyer})
    events_before = events.json_matching(user_id=buyer)

    for message in commands:  # the very same bytes, same message_ids
        await cart_deployment.send("cart.commands", message)
        await cart_deployment.send("catalog.events", catalog, "product_id")
    # A fresh command after the replay: once its event is out, everything the
    # replay could have published is out too (the outbox leaves in order).
    sentinel_user = f"u-{uuid.uuid4().hex[:6]}"
    await cart_deployment.send("cart.commands", command("AddItem", user_id=sentinel_user, product_id=pid))
    await events.wait_json(type="ItemAdded", user_id=sentinel_user)

    for message, original in zip(commands, originals, strict=True):
        again = await replies.wait_json(count=2, correlation_id=message["message_id"], type="CommandResult")
        assert again[1] == original, "a replayed command is answered with its original reply"
    assert await cart_deployment.db["cart.carts"].find_one({"_id": buyer}) == cart_before
    assert events.json_matching(user_id=buyer) == events_before
