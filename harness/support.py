"""Test helpers that speak to the system as a foreign client would: raw bytes on
topics, raw records read back, and worker processes started and killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.runtime.kafka import topic_partitions
from services.runtime.offsets import group_positions

ROOT = Path(__file__).resolve().parent.parent


def command(kind: str, **fields: Any) -> dict[str, Any]:
    """A contract v1 message, envelope filled in, as an upstream service would write it."""
    return {
        "message_id": str(uuid.uuid4()),
        "type": kind,
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        **fields,
    }


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.value)
        except (ValueError, RecursionError):  # taps also see the hostile records tests send
            return None


class Publisher:
    def __init__(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def raw(
        self, topic: str, value: bytes, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        await self.producer.send_and_wait(topic, value, key=key, headers=headers)

    async def send(self, topic: str, message: dict[str, Any], key_field: str = "user_id") -> dict[str, Any]:
        key = message.get(key_field)
        await self.raw(topic, json.dumps(message).encode(), key.encode() if isinstance(key, str) else None)
        return message

    async def send_many(self, topic: str, messages: list[dict[str, Any]], key_field: str = "user_id") -> None:
        futures = []
        for message in messages:
            key = message.get(key_field)
            futures.append(
                await self.producer.send(
                    topic, json.dumps(message).encode(), key=key.encode() if isinstance(key, str) else None
                )
            )
        await asyncio.gather(*futures)


@dataclass
class Tap:
    """Everything published on a topic since the beginning, collected in the background."""

    bootstrap: str
    topic: str
    records: list[Record] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _task: asyncio.Task | None = None
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> Tap:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
        await self._consumer.start()
        self._consumer.assign(await topic_partitions(self._consumer, self.topic, wait=True))
        await self._consumer.seek_to_beginning()
        self._task = asyncio.create_task(self._collect())
        return self

    async def _collect(self) -> None:
        assert self._consumer
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            if not batches:
                continue
            async with self._changed:
                for records in batches.values():
                    self.records.extend(
                        Record(r.topic, r.partition, r.offset, r.key, r.value or b"", dict(r.headers or ()))
                        for r in records
                    )
                self._changed.notify_all()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._consumer:
            await self._consumer.stop()

    def matching(self, predicate: Callable[[Record], bool]) -> list[Record]:
        return [record for record in self.records if predicate(record)]

    def json_matching(self, **fields: Any) -> list[dict[str, Any]]:
        found = []
        for record in self.records:
            body = record.json
            if isinstance(body, dict) and all(body.get(k) == v for k, v in fields.items()):
                found.append(body)
        return found

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(condition)

    async def wait_for(
        self, predicate: Callable[[Record], bool], count: int = 1, timeout: float = 60.0
    ) -> list[Record]:
        await self.wait_until(lambda: len(self.matching(predicate)) >= count, timeout)
        return self.matching(predicate)

    def correlation_ids(self) -> set[str]:
        """The commands answered so far."""
        return {body["correlation_id"] for body in self.json_matching(type="CommandResult")}

    async def wait_json(self, timeout: float = 60.0, count: int = 1, **fields: Any) -> list[dict[str, Any]]:
        def predicate(record: Record) -> bool:
            body = record.json
            return isinstance(body, dict) and all(body.get(k) == v for k, v in fields.items())

        records = await self.wait_for(predicate, count, timeout)
        return [record.json for record in records]

    async def reply(self, message: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        """The CommandResult that answers ``message``."""
        correlation_id = message.get("correlation_id", message["message_id"])
        (reply, *_) = await self.wait_json(timeout, correlation_id=correlation_id, type="CommandResult")
        return reply


class WorkerProcess:
    """A worker in its own process, as production runs it, that a test may SIGKILL."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path, command: tuple[str, ...] | None = None) -> None:
        self.name = name
        self.env = env
        self.log_path = log_path
        self.command = command or ("worker", name)
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.ops.cli", *self.command],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        log.close()
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode if self.process else None

    @property
    def alive(self) -> bool:
        return bool(self.process and self.process.poll() is None)


async def group_lag(bootstrap: str, group_id: str, topics: list[str]) -> int:
    """Records on ``topics`` that consumer group ``group_id`` has not committed yet."""
    return sum(position.lag for position in await group_positions(bootstrap, group_id, topics))


async def topic_size(bootstrap: str, topic: str) -> int:
    """How many records were ever written to ``topic`` (the sum of its end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(await topic_partitions(consumer, topic, wait=True))
        return sum(ends.values())
    finally:
        await consumer.stop()


async def run_cli(deployment: Any, *args: str) -> subprocess.CompletedProcess:
    """Run ``cartflow ARGS`` against ``deployment`` as an operator would."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.ops.cli", *args],
        env={**os.environ, **deployment.settings_env},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def hostile_records() -> list[bytes]:
    """Records any producer could send: not JSON, wrong shapes, lies in every field."""
    envelope = {"occurred_at": "2026-11-26T10:00:00Z"}
    bad = [
        {"type": "AddItem", "user_id": "u", "product_id": "p", "reply_to": "."},
        {"type": "AddItem", "user_id": "u", "product_id": "p", "reply_to": ".."},
        {"type": "AddItem", "user_id": "u", "product_id": "p", "quantity": 2**70},
        {"type": "AddItem", "user_id": "u", "product_id": "p", "properties": {"a": "x" * 10_000}},
        {"type": "ProductUpserted", "product_id": "p", "name": "n", "price": "7_499"},
        {"type": "ProductUpserted", "product_id": "p", "name": "n", "price": "1E+2"},
        {"type": "SetStock", "product_id": "p", "on_hand": -5},
        {"type": "ReleaseReservation", "reservation_id": "nope", "product_id": "p", "reason": "x"},
        {"type": "PaymentSucceeded", "payment_id": "pay-unknown", "amount": "-0"},
        {"type": "StartCheckout", "payment_id": "p", "reply_to": ".."},
        {"type": "StockReserved", "reservation_id": "r", "product_id": "p", "holder": "\u0000"},
        {"type": "PaymentDeadlineReached", "payment_id": "p", "due_at": "2026-11-26T10:00:00"},
        {"type": "PaymentDeadlineReached", "payment_id": "p", "due_at": "9999-12-31T00:00:00+00:00"},
        {"type": "GetCart", "user_id": "u", "message_id": "expire:r:2026-11-26T10:00:00+00:00"},
    ]
    return [
        b"",
        b"\xff\xfe",
        b"null",
        b"[]",
        b'"text"',
        b"{" * 50_000,
        b'{"a": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        *(json.dumps({**envelope, "message_id": str(uuid.uuid4()), **fields}).encode() for fields in bad),
    ]


def healthz(port: int) -> tuple[int, str]:
    """A worker's /healthz answer: status and body (0 when nothing listens)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def ask(deployment: Any, kind: str, timeout: float = 60, **fields: Any) -> dict[str, Any]:
    """Send a cart command as raw JSON and wait for its CommandResult."""
    replies = await deployment.tap("cart.replies")
    message = await deployment.send("cart.commands", command(kind, **fields))
    return await replies.reply(message, timeout=timeout)


async def stocked(deployment: Any, on_hand: int, price: str = "5.00", name: str = "Thing") -> str:
    """A new product in the catalog with ``on_hand`` units, once both workers know it."""
    pid = new_id("prod")
    await deployment.send("catalog.events", command("ProductUpserted", product_id=pid, name=name, price=price), "product_id")
    await deployment.send("stock.commands", command("SetStock", product_id=pid, on_hand=on_hand), "product_id")
    async with asyncio.timeout(60):
        while not (
            await deployment.db["cart.catalog"].find_one({"_id": pid})
            and await deployment.db["stock.levels"].find_one({"_id": f"{pid}|"})
        ):
            await asyncio.sleep(0.05)
    return pid


async def stock_level(deployment: Any, pid: str, **expected: Any) -> dict[str, Any]:
    """The product's stock level once it has the ``expected`` values."""
    async with asyncio.timeout(60):
        while True:
            current = await deployment.db["stock.levels"].find_one({"_id": f"{pid}|"})
            if current and all(current[k] == v for k, v in expected.items()):
                return current
            await asyncio.sleep(0.05)


async def stock_product(
    deployment, on_hand: int | dict[str, int], price: str = "10.00", *, product_id: str | None = None
) -> str:
    """A product in the catalog with stock on hand (per size when a dict)."""
    pid = product_id or new_id("prod")
    sizes = [{"size": s, "price": price} for s in on_hand] if isinstance(on_hand, dict) else None
    upsert = command("ProductUpserted", product_id=pid, name="Thing", price=price, **({"sizes": sizes} if sizes else {}))
    await deployment.send("catalog.events", upsert, "product_id")
    levels = on_hand if isinstance(on_hand, dict) else {None: on_hand}
    for size, units in levels.items():
        await deployment.send("stock.commands", command("SetStock", product_id=pid, size=size, on_hand=units), "product_id")
    async with asyncio.timeout(60):
        while (
            not await deployment.db["cart.catalog"].find_one({"_id": pid})
            or await deployment.db["stock.levels"].count_documents({"product_id": pid}) < len(levels)
        ):
            await asyncio.sleep(0.05)
    return pid


async def level(deployment, pid: str, size: str | None = None) -> dict:
    return await deployment.db["stock.levels"].find_one({"_id": f"{pid}|{size or ''}"})


async def settled_level(deployment, pid, size=None, **expected) -> dict:
    """The level once it shows ``expected`` (the stock worker applies messages asynchronously)."""
    async with asyncio.timeout(60):
        while True:
            current = await level(deployment, pid, size)
            if current and all(current[k] == v for k, v in expected.items()):
                return current
            await asyncio.sleep(0.05)


PAYMENT = {"payment_method": "card", "gateway_name": "stripe", "shipping_address": {"city": "Lyon", "zip": "69001"}}


async def cart_with(deployment, *lines: tuple[str, int]) -> tuple[str, list[str]]:
    buyer = new_id("buyer")
    items = []
    for pid, quantity in lines:
        added = await ask(deployment, "AddItem", user_id=buyer, product_id=pid, quantity=quantity)
        assert added["success"], added
        items.append(added["cart_item_id"])
    return buyer, items


async def order_events(deployment, payment_id: str, kind: str, count: int = 1, timeout: float = 60) -> list[dict]:
    events = await deployment.tap("order.events")
    return await events.wait_json(timeout=timeout, count=count, type=kind, payment_id=payment_id)
