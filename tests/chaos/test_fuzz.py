"""Property-based fuzzing of every input topic with malformed and hostile
messages: each is answered with a rejection or dead-lettered, no worker dies,
no partition stalls, and no state changes for rejected input."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.envelope import is_identifier
from harness.deployment import open_deployment
from harness.support import command

pytestmark = pytest.mark.chaos

VICTIM = "fuzz-victim"
PRODUCT = "fuzz-product"
CART_TYPES = ["AddItem", "UpdateItemQuantity", "RemoveItem", "ClearCart", "GetCart", "GetCartCount", "CheckChanges",
              "AcceptChanges", "ValidateCart", "CheckoutItem", "CheckoutCart"]
TOPICS = [
    "cart.commands", "catalog.events", "stock.commands", "payment.events", "checkout.commands", "checkout.queries",
    "checkout.timeouts", "stock.events",
]

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    st.text(max_size=50),
    st.text(min_size=5000, max_size=6000),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@st.composite
def hostile_cart_command(draw, victim_item: str) -> dict[str, Any]:
    """A cart command from an attacker: almost right, with one or more fields wrong."""
    message = command(
        draw(st.sampled_from([*CART_TYPES, "DropTables", ""])),
        user_id=draw(st.sampled_from(["fuzz-attacker", "", " padded ", "x" * 300])),
        product_id="fuzz-ghost",  # not in the catalog: no hostile add can reserve
        item_id=victim_item,  # another user's item id
        quantity=draw(st.sampled_from([-1, 0, 100, 10**12, 2**63, "3", 2.5, True, None])),
        payment_method="card",
        gateway_name="gw",
        shipping_address={},
    )
    for name in draw(st.lists(st.sampled_from(sorted(message)), max_size=3)):
        if draw(st.booleans()):
            message.pop(name, None)
        else:
            message[name] = draw(junk)
    if draw(st.booleans()):
        message["schema_version"] = draw(st.sampled_from([0, 2, "1", None]))
    return message


@st.composite
def hostile_record(draw, victim_item: str) -> tuple[str, bytes]:
    topic = draw(st.sampled_from(TOPICS))
    kind = draw(st.sampled_from(["bytes", "json", "command"]))
    if kind == "bytes":
        return topic, draw(st.binary(max_size=200))
    if kind == "json":
        return topic, json.dumps(draw(junk)).encode()
    return topic, json.dumps(draw(hostile_cart_command(victim_item))).encode()


@pytest_asyncio.fixture(scope="module")
async def target(backends):
    deployment = await open_deployment(backends)
    for worker in ("cart", "stock", "checkout"):
        deployment.worker(worker)
    await deployment.send("catalog.events", command("ProductUpserted", product_id=PRODUCT, name="Bait", price="1.00"), "product_id")
    await deployment.send("stock.commands", command("SetStock", product_id=PRODUCT, on_hand=5), "product_id")
    replies = await deployment.tap("cart.replies")
    reply: dict = {}
    async with asyncio.timeout(60):
        while not reply.get("success"):
            add = await deployment.send("cart.commands", command("AddItem", user_id=VICTIM, product_id=PRODUCT, quantity=2))
            reply = await replies.reply(add)
    try:
        yield deployment, reply["cart_item_id"]
    finally:
        await deployment.close()


async def state(deployment) -> dict:
    """Everything rejected input must not touch."""
    return {
        "victim": await deployment.db["cart.carts"].find_one({"_id": VICTIM}),
        "levels": await deployment.db["stock.levels"].find().sort("_id").to_list(),
        "reservations": await deployment.db["stock.reservations"].find().sort("_id").to_list(),
        "catalog": await deployment.db["cart.catalog"].find_one({"_id": PRODUCT}),
        "sagas": await deployment.db["checkout.sagas"].count_documents({}),
    }


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_hostile_input_is_rejected_or_dead_lettered_and_changes_nothing(target, data):
    deployment, victim_item = target
    records = data.draw(st.lists(hostile_record(victim_item), min_size=40, max_size=40))
    records += records[:5]  # duplicated
    records.reverse()  # and reordered
    before = await state(deployment)
    replies = await deployment.tap("cart.replies")
    answered_before = replies.correlation_ids()

    for topic, value in records:
        await deployment.publisher.raw(deployment.topic(topic), value, data.draw(st.sampled_from([None, b"k", VICTIM.encode()])))
    # A well-formed command behind the hostile ones on every partition must still be answered.
    sentinels = [command("GetCart", user_id=f"fuzz-sentinel-{uuid.uuid4().hex[:6]}-{n}") for n in range(12)]
    for sentinel in sentinels:
        await deployment.send("cart.commands", sentinel)
    for sentinel in sentinels:
        assert (await replies.reply(sentinel, timeout=120))["success"]

    answered = replies.correlation_ids() - answered_before
    for topic, value in records:
        body = _json(value)
        if topic == "cart.commands" and isinstance(body, dict) and _usable_id(body.get("message_id")):
            correlation = body.get("correlation_id") if _usable_id(body.get("correlation_id")) else body["message_id"]
            if body.get("reply_to") is None or not isinstance(body.get("reply_to"), str):
                assert correlation in answered or correlation in answered_before, body
    assert all(worker.alive for worker in deployment.workers.values())
    after = await state(deployment)
    assert after == before


def _json(value: bytes) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return None


def _usable_id(value: Any) -> bool:
    return is_identifier(value)
