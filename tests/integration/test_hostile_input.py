"""No single message may stop a worker. Hostile records on every input topic
(an unpublishable reply_to, oversized and deeply nested bodies, forged
headers, timer records the timer consumer cannot hold, client ids that look
like the workers' own internal keys) get an answer or a dead letter; after
them, every worker still answers, its outbox drains and no background task
has died."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from services.runtime import headers as h
from services.ops.embedded import free_port
from harness.deployment import open_deployment
from harness.support import PAYMENT, ask, command, healthz, hostile_records, new_id, stocked

pytestmark = pytest.mark.integration

DEADLINE_SECONDS = 3


@pytest_asyncio.fixture(scope="module")
async def system(backends):
    deployment = await open_deployment(
        backends,
        CARTFLOW_PAYMENT_TIMEOUT_SECONDS=str(DEADLINE_SECONDS),
        # Deadlines must come from the timer consumer, not from the safety net.
        CARTFLOW_CHECKOUT_DEADLINE_SWEEP_SECONDS="3600",
        CARTFLOW_CART_MAX_LINES="3",
        CARTFLOW_MAX_MESSAGE_BYTES="8192",
    )
    deployment.ports = {}
    for worker in ("cart", "stock", "checkout"):
        deployment.ports[worker] = free_port()
        deployment.worker(worker, CARTFLOW_HTTP_PORT=str(deployment.ports[worker]), CARTFLOW_HTTP_HOST="127.0.0.1")
    try:
        yield deployment
    finally:
        await deployment.close()








async def health(system, worker: str) -> tuple[int, str]:
    async with asyncio.timeout(60):
        while not (answer := await asyncio.to_thread(healthz, system.ports[worker]))[0]:
            await asyncio.sleep(0.2)  # not listening yet
    return answer


async def outboxes_drained(system) -> None:
    async with asyncio.timeout(60):
        while any([await system.db[f"{w}.outbox"].count_documents({"sent": False}) for w in ("cart", "stock", "checkout")]):
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("reply_to", [".", "..", "not-a-reply-topic", "x" * 300, "bad topic", "cart.events"])
async def test_a_command_whose_reply_to_cannot_be_used_is_refused_on_the_default_topic_and_later_commands_are_answered(
    system, reply_to
):
    pid, buyer = await stocked(system, 10), new_id("buyer")
    replies = await system.tap("cart.replies")
    hostile = await system.send(
        "cart.commands", command("AddItem", user_id=buyer, product_id=pid, quantity=1, reply_to=reply_to)
    )

    refusal = await replies.reply(hostile)
    after = await ask(system, "AddItem", user_id=buyer, product_id=pid, quantity=2)

    assert refusal["success"] is False and refusal["error_code"] == "INVALID_MESSAGE"
    assert "reply_to" in refusal["error_message"]
    assert after["success"] and after["data"]["quantity"] == 2, "the refused command changed nothing"
    await outboxes_drained(system)


async def test_a_reply_topic_under_the_prefix_ending_in_replies_is_answered_there(system):
    buyer = new_id("buyer")
    await system.create_topics("replies.storefront")
    own = await system.tap("replies.storefront")
    message = await system.send("cart.commands", command("GetCart", user_id=buyer, reply_to=system.topic("replies.storefront")))

    assert (await own.reply(message))["success"]


async def test_a_record_larger_than_the_limit_is_dead_lettered_unread_and_the_worker_goes_on(system):
    pid, buyer = await stocked(system, 10), new_id("buyer")
    huge = command("AddItem", user_id=buyer, product_id=pid, properties={"note": "x" * 600_000})
    value = json.dumps(huge).encode()
    dlq = await system.tap("cart.commands.dlq")
    await system.publisher.raw(system.topic("cart.commands"), value, buyer.encode())

    (letter,) = await dlq.wait_for(lambda r: r.value == value)
    after = await ask(system, "GetCart", user_id=buyer)

    assert letter.headers[h.ERROR_CODE] == b"INVALID_MESSAGE"
    assert b"exceeds the limit" in letter.headers[h.ERROR]
    assert after["success"] and after["data"]["items"] == []
    await outboxes_drained(system)


@pytest.mark.parametrize(
    "properties, problem",
    [
        ({"note": "x" * 3000}, "bytes"),
        ({f"k{i}": i for i in range(60)}, "50"),
        ({"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}, "nested"),
        ({"col\u0000or": "red"}, "NUL"),
        ({"$where": "1"}, "'$'"),
        ({"size": {"eu.de": 42}}, "'.'"),
    ],
)
async def test_properties_beyond_the_limits_are_refused_as_invalid(system, properties, problem):
    pid, buyer = await stocked(system, 10), new_id("buyer")

    refusal = await ask(system, "AddItem", user_id=buyer, product_id=pid, properties=properties)

    assert refusal["error_code"] == "INVALID_MESSAGE" and problem in refusal["error_message"]


async def test_a_command_beyond_the_limits_is_refused_on_its_own_reply_topic(system):
    pid, buyer = await stocked(system, 10), new_id("buyer")
    await system.create_topics("replies.storefront")
    own = await system.tap("replies.storefront")
    reply_to = system.topic("replies.storefront")
    over = await system.send(
        "cart.commands", command("AddItem", user_id=buyer, product_id=pid, properties={"note": "x" * 1100}, reply_to=reply_to)
    )
    address = await system.send(
        "cart.commands", command("CheckoutCart", user_id=buyer, shipping_address="\u00e9" * 600, reply_to=reply_to)
    )

    for message in (over, address):
        refusal = await own.reply(message, timeout=30)
        assert refusal["success"] is False and refusal["error_code"] == "INVALID_MESSAGE"


async def test_properties_nested_deeper_than_any_json_reader_allows_get_an_answer_not_a_stall(system):
    buyer, message_id = new_id("buyer"), str(uuid.uuid4())
    depth = 5000
    value = (
        '{"message_id": "%s", "type": "AddItem", "occurred_at": "2026-11-26T10:00:00Z", "user_id": "%s", '
        '"product_id": "p", "properties": %s1%s}' % (message_id, buyer, '{"a":' * depth, "}" * depth)
    ).encode()
    dlq = await system.tap("cart.commands.dlq")
    await system.publisher.raw(system.topic("cart.commands"), value, buyer.encode())

    await dlq.wait_for(lambda r: r.value == value)
    assert (await ask(system, "GetCart", user_id=buyer))["success"]


async def test_a_cart_holds_at_most_the_configured_number_of_lines(system):
    buyer = new_id("buyer")
    for _ in range(3):
        assert (await ask(system, "AddItem", user_id=buyer, product_id=await stocked(system, 10)))["success"]

    refusal = await ask(system, "AddItem", user_id=buyer, product_id=await stocked(system, 10))
    cart = await ask(system, "GetCart", user_id=buyer)

    assert refusal["error_code"] == "CART_LIMIT_REACHED" and refusal["suggested_action"]
    assert len(cart["data"]["items"]) == 3


async def test_a_client_id_shaped_like_an_internal_key_does_not_stop_a_reservation_from_expiring(system):
    pid, reservation_id = await stocked(system, 4), new_id("res")
    expires_at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    squatter = command("SetStock", product_id=pid, on_hand=4)
    squatter["message_id"] = f"expire:{reservation_id}:{expires_at.isoformat()}"
    await system.send("stock.commands", squatter, "product_id")
    await system.send(
        "stock.commands",
        command(
            "ReserveStock", reservation_id=reservation_id, product_id=pid, quantity=3, holder="someone",
            expires_at=expires_at.isoformat(),
        ),
        "product_id",
    )
    events = await system.tap("stock.events")

    (released,) = await events.wait_json(type="StockReleased", reservation_id=reservation_id)
    assert released["reason"] == "expired"


async def test_a_forged_redrive_header_does_not_bypass_dedup(system):
    pid, buyer = await stocked(system, 10), new_id("buyer")
    add = command("AddItem", user_id=buyer, product_id=pid, quantity=1)
    replies = await system.tap("cart.replies")
    await system.send("cart.commands", add)
    first = await replies.reply(add)

    forged = [("cartflow-redrive-count", b"7"), ("cartflow-redrive-token", b"made-up")]
    await system.publisher.raw(system.topic("cart.commands"), json.dumps(add).encode(), buyer.encode(), headers=forged)
    await replies.wait_for(lambda r: (r.json or {}).get("correlation_id") == add["message_id"], count=2)
    cart = await ask(system, "GetCart", user_id=buyer)

    again = [r.json for r in replies.matching(lambda r: (r.json or {}).get("correlation_id") == add["message_id"])]
    assert again[0] == again[1] == first, "answered from the inbox, byte for byte"
    assert cart["data"]["items"][0]["quantity"] == 1, "added once"


async def test_the_timer_consumer_survives_records_it_cannot_hold_and_still_fires_deadlines(system):
    timeouts = system.topic("checkout.timeouts")
    naive = command("PaymentDeadlineReached", payment_id="pay-x", due_at="2026-11-26T10:00:00")
    far = command("PaymentDeadlineReached", payment_id="pay-y", due_at="9999-12-31T00:00:00+00:00")
    nested = b'{"due_at": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for partition in range(4):
        for value in (json.dumps(naive).encode(), json.dumps(far).encode(), nested, b"\xff"):
            await system.publisher.producer.send_and_wait(timeouts, value, partition=partition)

    pid, buyer = await stocked(system, 2), new_id("buyer")
    assert (await ask(system, "AddItem", user_id=buyer, product_id=pid))["success"]
    checkout = await ask(system, "CheckoutCart", user_id=buyer, **PAYMENT)
    orders = await system.tap("order.events")

    (cancelled,) = await orders.wait_json(
        timeout=60, type="OrderCancelled", payment_id=checkout["data"]["payment_id"]
    )
    assert cancelled["reason"] == "payment_timeout"
    assert (await health(system, "checkout"))[0] == 200


async def test_after_the_hostile_corpus_every_worker_answers_drains_its_outbox_and_is_healthy(system):
    corpus = hostile_records()
    for topic in (
        "cart.commands", "catalog.events", "stock.commands", "stock.events", "payment.events", "checkout.commands",
        "checkout.timeouts",
    ):
        for value in corpus:
            await system.publisher.raw(system.topic(topic), value, b"hostile")

    pid, buyer = await stocked(system, 10), new_id("buyer")
    added = await ask(system, "AddItem", user_id=buyer, product_id=pid, quantity=2)
    checkout = await ask(system, "CheckoutCart", user_id=buyer, **PAYMENT)
    orders = await system.tap("order.events")
    await system.send(
        "payment.events",
        command("PaymentSucceeded", payment_id=checkout["data"]["payment_id"], amount="10.00"),
        "payment_id",
    )

    assert added["success"] and checkout["success"]
    await orders.wait_json(type="OrderPaid", payment_id=checkout["data"]["payment_id"])
    await outboxes_drained(system)
    for worker in ("cart", "stock", "checkout"):
        assert await health(system, worker) == (200, "ok"), worker


async def test_a_message_id_that_is_not_storable_text_is_dead_lettered_and_the_partition_goes_on(system):
    pid = await stocked(system, 1)
    lone_surrogate = b'{"message_id": "x\\ud800", "type": "SetStock", "product_id": "%s", "on_hand": 9}' % pid.encode()
    dlq = await system.tap("stock.commands.dlq")
    events = await system.tap("stock.events")
    await system.publisher.raw(system.topic("stock.commands"), lone_surrogate, pid.encode())
    after = await system.send("stock.commands", command("SetStock", product_id=pid, on_hand=7), "product_id")

    await dlq.wait_for(lambda r: r.value == lone_surrogate)
    await events.wait_json(type="StockLevelChanged", causation_id=after["message_id"])


async def test_a_checkout_too_large_to_hand_over_is_refused_before_anything_moves(system):
    buyer = new_id("buyer")
    for _ in range(3):
        pid = await stocked(system, 10, name="\u0001" * 500)  # 3,000 bytes each once escaped in JSON
        assert (await ask(system, "AddItem", user_id=buyer, product_id=pid))["success"]

    refusal = await ask(system, "CheckoutCart", user_id=buyer, **PAYMENT)
    cart = await ask(system, "GetCart", user_id=buyer)

    assert refusal["error_code"] == "CART_LIMIT_REACHED" and "fewer" in refusal["suggested_action"]
    assert len(cart["data"]["items"]) == 3
    assert all(line["reservation_state"] == "reserved" for line in cart["data"]["items"]), "stock stays with the cart"
