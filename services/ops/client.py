"""A small async client for upstream services: publish a message, await its reply.

Replies are matched by ``correlation_id`` on the reply topic, read without a
consumer group (every partition, from the end), so a client never joins or
disturbs the workers' groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts.envelope import SCHEMA_VERSION, new_message_id
from contracts.topics import CART_REPLIES
from services.runtime.kafka import topic_partitions

#: Which field keys the messages of a topic (per the contract's topic table).
KEY_FIELDS = ("user_id", "product_id", "payment_id", "checkout_id")
#: Replies kept for requests not awaited yet.
UNCLAIMED_LIMIT = 10_000


def fill_envelope(payload: dict[str, Any]) -> dict[str, Any]:
    message = dict(payload)
    message.setdefault("message_id", new_message_id())
    message.setdefault("schema_version", SCHEMA_VERSION)
    message.setdefault("occurred_at", datetime.now(UTC).isoformat())
    message.setdefault("correlation_id", message["message_id"])
    return message


def message_key(message: dict[str, Any]) -> bytes | None:
    for name in KEY_FIELDS:
        if isinstance(message.get(name), str):
            return message[name].encode()
    return None


async def fetch_json(consumer: AIOKafkaConsumer, timeout_ms: int = 200) -> list[tuple[Any, dict[str, Any]]]:
    """The next records of ``consumer`` whose value is a JSON object, with that object."""
    fetched = []
    for records in (await consumer.getmany(timeout_ms=timeout_ms)).values():
        for record in records:
            try:
                message = json.loads(record.value)
            except (TypeError, ValueError):
                continue
            if isinstance(message, dict):
                fetched.append((record, message))
    return fetched


class CartflowClient:
    def __init__(
        self, bootstrap: str, *, reply_topic: str = CART_REPLIES, fetch_max_wait_ms: int = 50, **kafka_options: Any
    ) -> None:
        self.bootstrap = bootstrap
        self.reply_topic = reply_topic
        self.kafka_options = kafka_options
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._unclaimed: dict[str, dict[str, Any]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CartflowClient:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", **self.kafka_options)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            **self.kafka_options,
        )
        await self._consumer.start()
        partitions = await topic_partitions(self._consumer, self.reply_topic)
        if not partitions:
            await self.__aexit__()
            raise LookupError(f"reply topic {self.reply_topic!r} does not exist: is cartflow running?")
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._consumer:
            await self._consumer.stop()
        if self._producer:
            await self._producer.stop()

    async def publish(self, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Publish one message with its envelope filled in; return the message as sent."""
        assert self._producer, "use the client as an async context manager"
        message = fill_envelope(payload)
        await self._producer.send_and_wait(topic, json.dumps(message).encode(), key=message_key(message))
        return message

    async def request(self, topic: str, payload: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
        """Publish a command and return its ``CommandResult``; TimeoutError if none comes in time."""
        payload = {"reply_to": self.reply_topic, **payload}
        message = await self.publish(topic, payload)
        return await self.reply_to(message["correlation_id"], timeout=timeout)

    async def reply_to(self, correlation_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """The reply with ``correlation_id``; several requests may wait at once."""
        assert self._consumer, "use the client as an async context manager"
        if correlation_id in self._unclaimed:
            return self._unclaimed.pop(correlation_id)
        waiter = self._waiting.setdefault(correlation_id, asyncio.get_running_loop().create_future())
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_replies())
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(waiter)
        finally:
            if not waiter.done():
                self._waiting.pop(correlation_id, None)

    async def _read_replies(self) -> None:
        assert self._consumer
        while self._waiting:
            for _, reply in await fetch_json(self._consumer):
                if not isinstance(reply.get("correlation_id"), str):
                    continue
                waiter = self._waiting.pop(reply["correlation_id"], None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(reply)
                else:
                    # A reply to a request that is not awaited yet (or any more): kept a while.
                    self._unclaimed[reply["correlation_id"]] = reply
                    while len(self._unclaimed) > UNCLAIMED_LIMIT:
                        self._unclaimed.pop(next(iter(self._unclaimed)))
