"""Requests over Kafka: publish a command, await the ``CommandResult`` that
answers it: found by ``correlation_id``, and taken only when it names the
command (``command_message_id``) and its user (``user_id``). Anyone who may write
the reply topic could put a record there with a ``correlation_id`` it has seen;
such a record answers no request.

Every gateway process reads the whole of the gateway's reply topic (no consumer
group: each sees every reply) and keeps the replies its own requests wait for,
so several gateways run side by side and a retried request is answered by
whichever gateway it reaches: the worker sends the stored reply of a repeated
command to the same shared topic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError
from faststream.kafka.fastapi import KafkaMessage, KafkaRouter

from contracts.envelope import is_identifier
from contracts.topics import CART_COMMANDS, CHECKOUT_QUERIES, GATEWAY_REPLIES, PAYMENT_EVENTS
from services.runtime.kafka import ensure_topics
from services.runtime.settings import Settings

log = logging.getLogger(__name__)



#: What the gateway reads and writes on Kafka, and nothing else (the ACL table
#: in docs/security.md is derived from these: services.ops.access). It writes its own
#: reply topic too, to see that its consumer is positioned.
READS = (GATEWAY_REPLIES,)
WRITES = frozenset({CART_COMMANDS, CHECKOUT_QUERIES, PAYMENT_EVENTS, GATEWAY_REPLIES})


async def _raw(message: Any) -> None:
    # Replies are read from the raw bytes: nothing on the topic can fail in a decoder.
    return None


class Unavailable(Exception):
    """Kafka refused the command: nothing was sent."""


@dataclass(frozen=True)
class Expected:
    """What the reply a request waits for says of the command it answers."""

    command_message_id: str
    user_id: str | None

    def answered_by(self, body: dict[str, Any]) -> bool:
        return body.get("command_message_id") == self.command_message_id and body.get("user_id") == self.user_id


class Exchange:
    def __init__(self, settings: Settings, router: KafkaRouter) -> None:
        self.settings = settings
        self.router = router
        self.reply_topic = settings.topic(GATEWAY_REPLIES)
        self._waiting: dict[str, tuple[Expected, asyncio.Future[dict[str, Any]]]] = {}
        #: How many requests await each correlation id (a retry may arrive while the first still waits).
        self._waiters: dict[str, int] = {}
        self._ready = asyncio.Event()
        self._ready_lock = asyncio.Lock()
        router.subscriber(
            self.reply_topic,
            auto_offset_reset="latest",
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            decoder=_raw,
            include_in_schema=False,
        )(self._on_reply)

    async def prepare(self) -> None:
        """Create the reply topic before the broker subscribes to it."""
        await ensure_topics(self.settings, self.settings.kafka_bootstrap or "", [GATEWAY_REPLIES], dead_letters=())

    async def _on_reply(self, message: KafkaMessage) -> None:
        try:
            body = json.loads(message.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return  # not ours to answer: anyone with write access could put it there
        if not isinstance(body, dict):
            return
        correlation_id = body.get("correlation_id")
        waiting = self._waiting.get(correlation_id) if isinstance(correlation_id, str) else None
        if waiting is None:
            return
        expected, waiter = waiting
        if not expected.answered_by(body):
            log.warning("ignored a record on the reply topic that names a request it does not answer")
            return
        if not waiter.done():
            waiter.set_result(body)

    async def ready(self) -> None:
        """Wait until this gateway's reply consumer sees new records: a ping it
        publishes to itself comes back. Until then a reply could pass unseen."""
        if self._ready.is_set():
            return
        async with self._ready_lock:
            while not self._ready.is_set():
                ping = f"gateway-ping-{uuid.uuid4()}"
                waiter = self._expect(ping, Expected(ping, None))
                try:
                    ping_record = {"type": "GatewayPing", "correlation_id": ping, "command_message_id": ping}
                    await self.publish(GATEWAY_REPLIES, ping_record, ping)
                    await asyncio.wait_for(asyncio.shield(waiter), timeout=1)
                    self._ready.set()
                except TimeoutError:
                    log.info("gateway reply consumer not positioned yet; pinging again")
                finally:
                    self._waiting.pop(ping, None)

    def _expect(self, correlation_id: str, expected: Expected) -> asyncio.Future[dict[str, Any]]:
        waiting = self._waiting.get(correlation_id)
        if waiting is None or waiting[1].done() or waiting[0] != expected:
            waiting = (expected, asyncio.get_running_loop().create_future())
            self._waiting[correlation_id] = waiting
        return waiting[1]

    async def ask(self, topic: str, command: dict[str, Any], key: str) -> dict[str, Any] | None:
        """Publish ``command`` (its ``reply_to`` set to the gateway's topic) and
        return its reply, or None when none came within the reply timeout, which
        bounds the whole exchange: readiness, publishing and the reply. A broker
        that refuses the record raises ``Unavailable``."""
        assert is_identifier(command["message_id"])
        command = {**command, "reply_to": self.reply_topic}
        correlation_id = command.setdefault("correlation_id", command["message_id"])
        waiter = self._expect(correlation_id, Expected(command["message_id"], command.get("user_id")))
        self._waiters[correlation_id] = self._waiters.get(correlation_id, 0) + 1
        try:
            async with asyncio.timeout(self.settings.gateway_reply_timeout_seconds):
                try:
                    await self.ready()
                    await self.publish(topic, command, key)
                except KafkaError as error:
                    raise Unavailable(str(error)) from error
                return await asyncio.shield(waiter)
        except TimeoutError:
            return None
        finally:
            self._waiters[correlation_id] -= 1
            if not self._waiters[correlation_id]:
                del self._waiters[correlation_id]
                self._waiting.pop(correlation_id, None)

    async def publish(self, topic: str, message: dict[str, Any], key: str) -> None:
        """Publish ``message`` on the contract topic ``topic`` (under the deployment's prefix)."""
        if topic not in WRITES:
            raise ValueError(f"the gateway does not write {topic}")  # its ACLs would refuse it
        await self._publish(self.settings.topic(topic), message, key)

    async def _publish(self, topic: str, message: dict[str, Any], key: str) -> None:
        await self.router.broker.publish(json.dumps(message).encode(), topic=topic, key=key.encode())
