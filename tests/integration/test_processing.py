"""The shared batch processor against the real database: one message whose
handling fails is dead-lettered alone, its half-made changes are discarded, and
its neighbours' effects, inbox entries and outbox records commit together."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.runtime.clock import ManualClock
from services.runtime.mongo import connect
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


def record(offset: int, counter: str, amount: int) -> Incoming:
    body = {"message_id": f"m-{uuid.uuid4().hex}", "counter": counter, "amount": amount}
    return Incoming("counting.commands", 0, offset, None, json.dumps(body).encode())


async def test_a_failing_message_is_dead_lettered_alone_and_leaves_no_trace(backends):
    client = connect(backends.mongo_url)
    db = client[f"processing_{uuid.uuid4().hex[:8]}"]
    processor = BatchProcessor(CountingLogic(), db, ManualClock())
    batch = [record(0, "a", 1), record(1, "a", 13), record(2, "a", 2), record(3, "b", 5)]
    try:
        await processor.process(batch)
        await processor.process(batch)  # delivered again: changes nothing

        values = {doc["_id"]: doc["value"] async for doc in db["counting.values"].find()}
        assert values == {"a": 3, "b": 5}
        outbox = [doc async for doc in db["counting.outbox"].find().sort("_id")]
        dead = [doc for doc in outbox if doc["topic"] == "counting.commands.dlq"]
        assert len(dead) == 1 and dead[0]["value"] == batch[1].value
        assert dict(dead[0]["headers"])["cartflow-error-code"] == b"INTERNAL_ERROR"
        assert await db["counting.inbox"].count_documents({}) == 4
        events = [json.loads(doc["value"]) for doc in outbox if doc["topic"] == "counting.events"]
        assert [e["amount"] for e in events] == [1, 2, 5, 1, 2, 5], "replies of repeats are sent again"
    finally:
        await client.drop_database(db.name)
        await client.close()


async def test_a_message_whose_write_always_fails_is_set_aside_and_its_neighbours_commit(backends):
    client = connect(backends.mongo_url)
    db = client[f"processing_{uuid.uuid4().hex[:8]}"]
    processor = BatchProcessor(CountingLogic(), db, ManualClock(), retry_max_seconds=1)
    batch = [record(0, "a", 1), record(1, "b", 99), record(2, "c", 2)]
    try:
        await processor.process(batch)

        values = {doc["_id"]: doc["value"] async for doc in db["counting.values"].find()}
        assert values == {"a": 1, "c": 2}
        dead = [doc async for doc in db["counting.outbox"].find({"topic": "counting.commands.dlq"})]
        assert [doc["value"] for doc in dead] == [batch[1].value]
        assert await db["counting.inbox"].count_documents({}) == 3
    finally:
        await client.drop_database(db.name)
        await client.close()
