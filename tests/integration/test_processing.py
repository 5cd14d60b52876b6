"""The shared batch processor against the real database: one message whose
handling fails is dead-lettered alone, its half-made changes are discarded, and
its neighbours' effects, inbox entries and outbox records commit together."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.runtime import headers as h
from services.runtime.clock import ManualClock
from services.runtime.mongo import connect
from services.runtime.outbox import records_of
from services.runtime.processing import BatchProcessor, UnitOfWork, Work
from services.runtime.records import Incoming, Outgoing

pytestmark = pytest.mark.integration


@dataclass
class Counters(UnitOfWork):
    values: dict[str, int] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)


class CountingLogic:
    """Adds each message's amount to its counter; an amount of 13 fails after changing the counter."""

    name = "counting"

    def decode(self, record: Incoming) -> Work:
        body = json.loads(record.value or b"")
        return Work(record, body["message_id"], body)

    def arrange(self, works: list[Work]) -> list[Work]:
        return works

    async def load(self, db, messages: list[Any]) -> Counters:
        ids = list({m["counter"] for m in messages})
        found = {doc["_id"]: doc["value"] async for doc in db["counting.values"].find({"_id": {"$in": ids}})}
        return Counters({i: found.get(i, 0) for i in ids})

    def handle(self, unit: Counters, message: dict) -> list[Outgoing]:
        unit.values[message["counter"]] += message["amount"]
        unit.dirty.add(message["counter"])
        if message["amount"] == 13:
            raise RuntimeError("unlucky")
        return [Outgoing("counting.events", None, json.dumps(message).encode(), is_reply=True)]

    def failed(self, work: Work, error: Exception) -> list[Outgoing]:
        return []

    async def save(self, unit: Counters, db, session) -> None:
        if any(unit.values[name] >= 99 for name in unit.dirty):
            raise ValueError("counters stop at 99")  # a write the database would always refuse
        for name in unit.dirty:
            await db["counting.values"].replace_one(
                {"_id": name}, {"_id": name, "value": unit.values[name]}, upsert=True, session=session
            )


@pytest.fixture
async def db(backends):
    """A database of its own for one test, dropped afterwards."""
    client = connect(backends.mongo_url)
    database = client[f"processing_{uuid.uuid4().hex[:8]}"]
    try:
        yield database
    finally:
        await client.drop_database(database.name)
        await client.close()


async def written(db) -> list[dict]:
    """Every record the processor wrote to its outbox, in order."""
    return [record for chunk in await db["counting.outbox"].find().sort("_id").to_list() for record in records_of(chunk)]


def record(offset: int, counter: str, amount: int) -> Incoming:
    body = {"message_id": f"m-{uuid.uuid4().hex}", "counter": counter, "amount": amount}
    return Incoming("counting.commands", 0, offset, None, json.dumps(body).encode())


async def test_a_failing_message_is_dead_lettered_alone_and_leaves_no_trace(db):
    processor = BatchProcessor(CountingLogic(), db, ManualClock())
    batch = [record(0, "a", 1), record(1, "a", 13), record(2, "a", 2), record(3, "b", 5)]
    await processor.process(batch)
    await processor.process(batch)  # delivered again: changes nothing

    values = {doc["_id"]: doc["value"] async for doc in db["counting.values"].find()}
    assert values == {"a": 3, "b": 5}
    outbox = await written(db)
    dead = [doc for doc in outbox if doc["topic"] == "counting.commands.dlq"]
    assert len(dead) == 1 and dead[0]["value"] == batch[1].value
    assert dict(dead[0]["headers"])[h.ERROR_CODE] == b"INTERNAL_ERROR"
    assert await db["counting.inbox"].count_documents({}) == 4
    events = [json.loads(doc["value"]) for doc in outbox if doc["topic"] == "counting.events"]
    assert [e["amount"] for e in events] == [1, 2, 5, 1, 2, 5], "replies of repeats are sent again"


async def test_a_message_whose_write_always_fails_is_set_aside_and_its_neighbours_commit(db):
    processor = BatchProcessor(CountingLogic(), db, ManualClock(), retry_max_seconds=1)
    batch = [record(0, "a", 1), record(1, "b", 99), record(2, "c", 2)]
    await processor.process(batch)

    values = {doc["_id"]: doc["value"] async for doc in db["counting.values"].find()}
    assert values == {"a": 1, "c": 2}
    dead = [doc for doc in await written(db) if doc["topic"] == "counting.commands.dlq"]
    assert [doc["value"] for doc in dead] == [batch[1].value]
    assert await db["counting.inbox"].count_documents({}) == 3


async def test_a_lone_message_whose_write_always_fails_is_dead_lettered_not_fetched_again_forever(db):
    processor = BatchProcessor(CountingLogic(), db, ManualClock(), retry_max_seconds=1)
    lone = [record(0, "b", 99)]
    await processor.process(lone)  # returns: the offset can be committed

    dead = [doc for doc in await written(db) if doc["topic"] == "counting.commands.dlq"]
    assert [doc["value"] for doc in dead] == [lone[0].value]
    assert await db["counting.values"].count_documents({}) == 0


async def test_internal_work_that_fails_is_not_recorded_as_done_and_is_tried_again(db):
    processor = BatchProcessor(CountingLogic(), db, ManualClock())
    unlucky = {"message_id": "timer-1", "counter": "a", "amount": 13}
    fine = {"message_id": "timer-2", "counter": "b", "amount": 1}
    failed = await processor.process_internal([unlucky, fine], key=lambda m: m["message_id"])

    assert failed == {"timer-1"}
    assert [doc["_id"] async for doc in db["counting.internal-inbox"].find()] == ["timer-2"]
    unlucky["amount"] = 2  # whatever made it fail has passed
    assert await processor.process_internal([unlucky], key=lambda m: m["message_id"]) == set()
    values = {doc["_id"]: doc["value"] async for doc in db["counting.values"].find()}
    assert values == {"a": 2, "b": 1}


async def test_a_client_message_id_equal_to_an_internal_key_suppresses_nothing(db):
    processor = BatchProcessor(CountingLogic(), db, ManualClock())
    squatter = Incoming(
        "counting.commands", 0, 0, None, json.dumps({"message_id": "expire:r-1", "counter": "a", "amount": 1}).encode()
    )
    await processor.process([squatter])
    failed = await processor.process_internal(
        [{"message_id": "expire:r-1", "counter": "a", "amount": 5}], key=lambda m: m["message_id"]
    )

    assert failed == set()
    assert (await db["counting.values"].find_one({"_id": "a"}))["value"] == 6, "both applied"


async def test_outbox_records_are_numbered_in_commit_order_whatever_the_writers_clocks(db, monkeypatch):
    processor = BatchProcessor(CountingLogic(), db, ManualClock())
    real_time_ns = time.time_ns
    for hours_behind, amount in ((0, 1), (1, 2), (2, 3)):
        # Each write comes from a host whose clock is further behind.
        monkeypatch.setattr(time, "time_ns", lambda h=hours_behind: real_time_ns() - h * 3600 * 10**9)
        await processor.process([record(amount, "a", amount)])
    monkeypatch.setattr(time, "time_ns", real_time_ns)

    outbox = [json.loads(doc["value"])["amount"] for doc in await written(db)]
    assert outbox == [1, 2, 3]


def cart_record(offset: int, fields: dict) -> Incoming:
    topic = "cart.commands" if fields["type"] != "ProductUpserted" else "catalog.events"
    return Incoming(topic, 0, offset, b"k", json.dumps(fields).encode())


async def test_one_command_with_an_unstorable_property_key_is_refused_alone_and_its_batch_is_written_once(db):
    from services.cart_worker.handlers import CartLogic
    from services.runtime.settings import Settings

    settings = Settings(cart_stock_reservation_enabled=False)
    processor = BatchProcessor(CartLogic(settings, ManualClock()), db, ManualClock())

    def add(user: str, properties: dict) -> dict:
        return {"message_id": f"m-{uuid.uuid4().hex}", "type": "AddItem", "occurred_at": "2026-12-01T10:00:00Z",
                "user_id": user, "product_id": "p-1", "properties": properties, "reply_to": "replies.storefront"}

    product = {"message_id": f"m-{uuid.uuid4().hex}", "type": "ProductUpserted", "occurred_at": "2026-12-01T09:00:00Z",
               "product_id": "p-1", "name": "Shoe", "price": "74.99"}
    commands = [add(f"buyer-{n}", {"color": "red"}) for n in range(24)]
    commands.insert(12, add("buyer-nul", {"col\u0000or": "red"}))
    batch = [cart_record(0, product), *(cart_record(n + 1, c) for n, c in enumerate(commands))]

    await processor.process(batch)

    assert processor.times.batches == 1, "the batch is written in one transaction"
    replies = {json.loads(r["value"])["correlation_id"]: json.loads(r["value"])
               for r in await written_to(db, "cart.outbox") if r["topic"] == "replies.storefront"}
    refused = replies[commands[12]["message_id"]]
    assert refused["success"] is False and refused["error_code"] == "INVALID_MESSAGE"
    assert all(replies[c["message_id"]]["success"] for i, c in enumerate(commands) if i != 12)
    assert await db["cart.carts"].count_documents({}) == 24


async def written_to(db, outbox: str) -> list[dict]:
    return [record for chunk in await db[outbox].find().sort("_id").to_list() for record in records_of(chunk)]
