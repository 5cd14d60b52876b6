"""The shared batch processor, one test body per behaviour run against both
storages: in memory (a unit test, milliseconds) and on the real MongoDB server.
A message whose handling fails is dead-lettered alone and its half-made changes
are discarded; a repeat is answered again and changes nothing; a write that
keeps failing sets its message aside without holding back its neighbours; a
passing fault is retried with nothing applied twice; a deferred reply joins the
entry of the command it answers; a redrive is honoured only with the token an
operator was handed."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.runtime import headers as h
from services.runtime.clock import ManualClock
from services.runtime.memory_storage import MemoryState, MemoryStorage
from services.runtime.mongo import connect
from services.runtime.mongo_storage import REDRIVES, MongoState, MongoStorage
from services.runtime.outbox import records_of
from services.runtime.processing import BatchProcessor, UnitOfWork, Work
from services.runtime.records import Incoming, Outgoing
from services.runtime.storage import Storage

VALUES = "counting.values"


@dataclass
class Counters(UnitOfWork):
    values: dict[str, int] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)


class CountingLogic:
    """Adds each message's amount to its counter and answers with the message;
    an amount of 13 fails after changing the counter; a counter reaching 99 is a
    write the storage always refuses; a message naming ``answers`` also sends a
    deferred reply to that earlier command; an ``idempotent`` one sets its
    counter instead, so that its repeat changes nothing."""

    name = "counting"

    def decode(self, record: Incoming) -> Work:
        body = json.loads(record.value or b"")
        return Work(record, body["message_id"], body, idempotent=body.get("idempotent", False))

    def arrange(self, works: list[Work]) -> list[Work]:
        return works

    async def load(self, store, messages: list[Any]) -> Counters:
        ids = list({m["counter"] for m in messages})
        found = await store.values(ids)
        return Counters({i: found.get(i, 0) for i in ids})

    def handle(self, unit: Counters, message: dict) -> list[Outgoing]:
        if message.get("idempotent"):
            unit.values[message["counter"]] = message["amount"]  # a repeat sets the same value again
        else:
            unit.values[message["counter"]] += message["amount"]
        unit.dirty.add(message["counter"])
        if message["amount"] == 13:
            raise RuntimeError("unlucky")
        out = [Outgoing("counting.events", None, json.dumps(message).encode(), is_reply=True)]
        if "answers" in message:
            late = {"late_answer_to": message["answers"]}
            out.append(Outgoing("counting.events", None, json.dumps(late).encode(), is_reply=True, answers=message["answers"]))
        return out

    def failed(self, work: Work, error: Exception) -> list[Outgoing]:
        return []

    async def save(self, unit: Counters, store) -> None:
        if any(unit.values[name] >= 99 for name in unit.dirty):
            raise ValueError("counters stop at 99")
        await store.put({name: unit.values[name] for name in unit.dirty})


class MongoCounters:
    def __init__(self, state: MongoState) -> None:
        self.state = state

    async def values(self, ids: list[str]) -> dict[str, int]:
        return {doc["_id"]: doc["value"] async for doc in self.state.db[VALUES].find({"_id": {"$in": ids}})}

    async def put(self, values: dict[str, int]) -> None:
        for name, value in values.items():
            await self.state.db[VALUES].replace_one(
                {"_id": name}, {"_id": name, "value": value}, upsert=True, session=self.state.session
            )


class MemoryCounters:
    def __init__(self, state: MemoryState) -> None:
        self.state = state

    async def values(self, ids: list[str]) -> dict[str, int]:
        return {name: doc["value"] for name, doc in (await self.state.find(VALUES, ids)).items()}

    async def put(self, values: dict[str, int]) -> None:
        await self.state.put(VALUES, [{"_id": name, "value": value} for name, value in values.items()])


class Backend:
    """One storage under test, with what the tests observe of it."""

    storage: Storage[Any]
    store: Any

    async def values(self) -> dict[str, int]: ...
    async def records(self) -> list[dict]: ...
    async def processed(self, internal: bool = False) -> list[str]: ...
    async def hand_out_redrive(self, token: str, fingerprint: str) -> None: ...


class InMemory(Backend):
    def __init__(self) -> None:
        self.storage = self.memory = MemoryStorage()
        self.store = MemoryCounters

    async def values(self) -> dict[str, int]:
        return {name: doc["value"] for name, doc in self.memory.collections.get(VALUES, {}).items()}

    async def records(self) -> list[dict]:
        return [record.to_doc() for record in self.memory.records()]

    async def processed(self, internal: bool = False) -> list[str]:
        return sorted(self.memory.inboxes[internal])

    async def hand_out_redrive(self, token: str, fingerprint: str) -> None:
        self.memory.redrives[token] = fingerprint


class OnMongo(Backend):
    def __init__(self, db) -> None:
        self.db = db
        self.storage = MongoStorage(db, "counting")
        self.store = MongoCounters

    async def values(self) -> dict[str, int]:
        return {doc["_id"]: doc["value"] async for doc in self.db[VALUES].find()}

    async def records(self) -> list[dict]:
        return [record for chunk in await self.db["counting.outbox"].find().sort("_id").to_list() for record in records_of(chunk)]

    async def processed(self, internal: bool = False) -> list[str]:
        inbox = "counting.internal-inbox" if internal else "counting.inbox"
        return sorted([doc["_id"] async for doc in self.db[inbox].find()])

    async def hand_out_redrive(self, token: str, fingerprint: str) -> None:
        await self.db[REDRIVES].insert_one({"_id": token, "fingerprint": fingerprint})


@pytest.fixture
async def mongo_db(backends):
    """A database of its own for one test, dropped afterwards."""
    client = connect(backends.mongo_url)
    database = client[f"processing_{uuid.uuid4().hex[:8]}"]
    try:
        yield database
    finally:
        await client.drop_database(database.name)
        await client.close()


@pytest.fixture(params=[pytest.param("memory", marks=pytest.mark.unit), pytest.param("mongo", marks=pytest.mark.integration)])
def backend(request) -> Backend:
    if request.param == "memory":
        return InMemory()
    return OnMongo(request.getfixturevalue("mongo_db"))


def processor_on(backend: Backend, storage: Storage[Any] | None = None, **options: Any) -> BatchProcessor:
    return BatchProcessor(CountingLogic(), storage or backend.storage, ManualClock(), store=backend.store, **options)


def record(offset: int, counter: str, amount: int, **extra: Any) -> Incoming:
    body = {"message_id": f"m-{uuid.uuid4().hex}", "counter": counter, "amount": amount, **extra}
    return Incoming("counting.commands", 0, offset, None, json.dumps(body).encode())


def amounts(records: list[dict], topic: str = "counting.events") -> list[int]:
    return [json.loads(r["value"]).get("amount") for r in records if r["topic"] == topic]


async def test_a_failing_message_is_dead_lettered_alone_and_leaves_no_trace(backend):
    processor = processor_on(backend)
    batch = [record(0, "a", 1), record(1, "a", 13), record(2, "a", 2), record(3, "b", 5)]
    await processor.process(batch)
    await processor.process(batch)  # delivered again: changes nothing

    assert await backend.values() == {"a": 3, "b": 5}
    outbox = await backend.records()
    dead = [doc for doc in outbox if doc["topic"] == "counting.commands.dlq"]
    assert len(dead) == 1 and dead[0]["value"] == batch[1].value
    assert dict(dead[0]["headers"])[h.ERROR_CODE] == b"INTERNAL_ERROR"
    assert len(await backend.processed()) == 4
    assert amounts(outbox) == [1, 2, 5, 1, 2, 5], "replies of repeats are sent again"


async def test_a_message_delivered_twice_in_one_batch_counts_once_and_is_answered_twice(backend):
    processor = processor_on(backend)
    once = record(0, "a", 4)
    await processor.process([once, once])

    assert await backend.values() == {"a": 4}
    assert amounts(await backend.records()) == [4, 4]


async def test_a_message_whose_write_always_fails_is_set_aside_and_its_neighbours_commit(backend):
    processor = processor_on(backend, retry_max_seconds=1)
    batch = [record(0, "a", 1), record(1, "b", 99), record(2, "c", 2)]
    await processor.process(batch)

    assert await backend.values() == {"a": 1, "c": 2}
    dead = [doc for doc in await backend.records() if doc["topic"] == "counting.commands.dlq"]
    assert [doc["value"] for doc in dead] == [batch[1].value]
    assert len(await backend.processed()) == 3


async def test_a_lone_message_whose_write_always_fails_is_dead_lettered_not_fetched_again_forever(backend):
    processor = processor_on(backend, retry_max_seconds=1)
    lone = [record(0, "b", 99)]
    await processor.process(lone)  # returns: the offset can be committed

    dead = [doc for doc in await backend.records() if doc["topic"] == "counting.commands.dlq"]
    assert [doc["value"] for doc in dead] == [lone[0].value]
    assert await backend.values() == {}


class Hiccup(Exception):
    """A fault that passes."""


class Flaky:
    """The storage under test, whose first ``failures`` commits fail with a passing
    fault after every write of the batch was made (so they must all be undone)."""

    def __init__(self, inner: Storage[Any], failures: int) -> None:
        self.inner, self.failures = inner, failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def transaction(self):
        flaky = self

        class Failing:
            async def __aenter__(self):
                self.block = flaky.inner.transaction()
                return await self.block.__aenter__()

            async def __aexit__(self, kind, error, trace):
                if kind is None and flaky.failures:
                    flaky.failures -= 1
                    fault = Hiccup("the storage went away before the commit")
                    await self.block.__aexit__(Hiccup, fault, None)
                    raise fault
                return await self.block.__aexit__(kind, error, trace)

        return Failing()

    def is_transient(self, error: BaseException) -> bool:
        return isinstance(error, Hiccup) or self.inner.is_transient(error)


async def test_a_passing_fault_is_retried_and_the_batch_takes_effect_once(backend):
    processor = processor_on(backend, Flaky(backend.storage, failures=2))
    await processor.process([record(0, "a", 3), record(1, "b", 4)])

    assert await backend.values() == {"a": 3, "b": 4}
    assert amounts(await backend.records()) == [3, 4], "nothing of the failed attempts was kept"
    assert len(await backend.processed()) == 2


async def test_a_deferred_reply_joins_the_entry_of_the_command_it_answers(backend):
    processor = processor_on(backend)
    command = record(0, "a", 1)
    await processor.process([command])
    first_id = json.loads(command.value)["message_id"]
    await processor.process([record(1, "b", 2, answers=first_id)])

    await processor.process([command])  # the command again: both its answers are sent again, nothing applied

    assert await backend.values() == {"a": 1, "b": 2}
    late = [json.loads(r["value"]) for r in await backend.records() if "late_answer_to" in json.loads(r["value"])]
    assert late == [{"late_answer_to": first_id}] * 2


async def test_a_message_whose_repeat_changes_nothing_is_handled_without_a_dedup_entry(backend):
    processor = processor_on(backend)
    answer = record(0, "a", 5, idempotent=True)
    await processor.process([answer])
    await processor.process([answer])  # delivered again: handled again, to the same effect

    assert await backend.values() == {"a": 5}
    assert await backend.processed() == [], "no entry kept for it"
    assert amounts(await backend.records()) == [5, 5]


async def test_such_a_message_whose_handling_fails_keeps_its_entry_and_is_dead_lettered_once(backend):
    processor = processor_on(backend)
    poison = record(0, "a", 13, idempotent=True)
    await processor.process([poison])
    await processor.process([poison])

    dead = [doc for doc in await backend.records() if doc["topic"] == "counting.commands.dlq"]
    assert [doc["value"] for doc in dead] == [poison.value]
    assert await backend.processed() == [json.loads(poison.value)["message_id"]]


async def test_internal_work_that_fails_is_not_recorded_as_done_and_is_tried_again(backend):
    processor = processor_on(backend)
    unlucky = {"message_id": "timer-1", "counter": "a", "amount": 13}
    fine = {"message_id": "timer-2", "counter": "b", "amount": 1}
    failed = await processor.process_internal([unlucky, fine], key=lambda m: m["message_id"])

    assert failed == {"timer-1"}
    assert await backend.processed(internal=True) == ["timer-2"]
    unlucky["amount"] = 2  # whatever made it fail has passed
    assert await processor.process_internal([unlucky], key=lambda m: m["message_id"]) == set()
    assert await backend.values() == {"a": 2, "b": 1}


async def test_a_client_message_id_equal_to_an_internal_key_suppresses_nothing(backend):
    processor = processor_on(backend)
    squatter = Incoming(
        "counting.commands", 0, 0, None, json.dumps({"message_id": "expire:r-1", "counter": "a", "amount": 1}).encode()
    )
    await processor.process([squatter])
    failed = await processor.process_internal(
        [{"message_id": "expire:r-1", "counter": "a", "amount": 5}], key=lambda m: m["message_id"]
    )

    assert failed == set()
    assert await backend.values() == {"a": 6}, "both applied"


async def test_a_redriven_record_is_processed_afresh_only_with_the_token_handed_out_for_it(backend):
    processor = processor_on(backend)
    original = record(0, "a", 2)
    await processor.process([original])
    await backend.hand_out_redrive("tok-1", original.fingerprint)

    forged = Incoming(original.topic, 0, 1, None, original.value, ((h.REDRIVE_TOKEN, b"tok-unknown"),))
    await processor.process([forged])
    assert await backend.values() == {"a": 2}, "a token nobody handed out is a plain repeat"

    redriven = Incoming(original.topic, 0, 2, None, original.value, ((h.REDRIVE_TOKEN, b"tok-1"),))
    await processor.process([redriven, redriven])
    assert await backend.values() == {"a": 4}, "processed afresh once per redrive"


async def test_outbox_records_are_numbered_in_commit_order_whatever_the_writers_clocks(backend, monkeypatch):
    processor = processor_on(backend)
    real_time_ns = time.time_ns
    for hours_behind, amount in ((0, 1), (1, 2), (2, 3)):
        # Each write comes from a host whose clock is further behind.
        monkeypatch.setattr(time, "time_ns", lambda h=hours_behind: real_time_ns() - h * 3600 * 10**9)
        await processor.process([record(amount, "a", amount)])
    monkeypatch.setattr(time, "time_ns", real_time_ns)

    assert amounts(await backend.records()) == [1, 2, 3]


@pytest.mark.integration
async def test_one_command_with_an_unstorable_property_key_is_refused_alone_and_its_batch_is_written_once(mongo_db):
    from services.cart_worker.handlers import CartLogic
    from services.cart_worker.repository import CartStore
    from services.runtime.settings import Settings

    settings = Settings(cart_stock_reservation_enabled=False)
    processor = BatchProcessor(CartLogic(settings, ManualClock()), MongoStorage(mongo_db, "cart"), ManualClock(), store=CartStore)

    def add(user: str, properties: dict) -> dict:
        return {"message_id": f"m-{uuid.uuid4().hex}", "type": "AddItem", "occurred_at": "2026-12-01T10:00:00Z",
                "user_id": user, "product_id": "p-1", "properties": properties, "reply_to": "replies.storefront"}

    def cart_record(offset: int, fields: dict) -> Incoming:
        topic = "cart.commands" if fields["type"] != "ProductUpserted" else "catalog.events"
        return Incoming(topic, 0, offset, b"k", json.dumps(fields).encode())

    product = {"message_id": f"m-{uuid.uuid4().hex}", "type": "ProductUpserted", "occurred_at": "2026-12-01T09:00:00Z",
               "product_id": "p-1", "name": "Shoe", "price": "74.99"}
    commands = [add(f"buyer-{n}", {"color": "red"}) for n in range(24)]
    commands.insert(12, add("buyer-nul", {"col\u0000or": "red"}))
    batch = [cart_record(0, product), *(cart_record(n + 1, c) for n, c in enumerate(commands))]

    await processor.process(batch)

    assert processor.times.batches == 1, "the batch is written in one transaction"
    outbox = [record for chunk in await mongo_db["cart.outbox"].find().sort("_id").to_list() for record in records_of(chunk)]
    replies = {json.loads(r["value"])["correlation_id"]: json.loads(r["value"]) for r in outbox if r["topic"] == "replies.storefront"}
    refused = replies[commands[12]["message_id"]]
    assert refused["success"] is False and refused["error_code"] == "INVALID_MESSAGE"
    assert all(replies[c["message_id"]]["success"] for i, c in enumerate(commands) if i != 12)
    assert await mongo_db["cart.carts"].count_documents({}) == 24
