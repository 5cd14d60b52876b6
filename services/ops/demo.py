"""``cartflow demo``: a scripted session against a running system, printed as a
timeline of the commands sent, the replies received and the events published.

It sets up a catalog and stock, fills a cart, changes a price (detected and
accepted), checks one item out and pays for it, then checks the rest out and
lets that payment deadline pass. Every id carries a run tag, so the demo can be
run again and again against the same system.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer

from contracts.topics import (
    CART_COMMANDS,
    CART_EVENTS,
    CART_REPLIES,
    CATALOG_EVENTS,
    ORDER_EVENTS,
    PAYMENT_EVENTS,
    STOCK_COMMANDS,
    STOCK_EVENTS,
)
from services.ops.client import CartflowClient, fetch_json
from services.runtime.kafka import topic_partitions
from services.runtime.settings import Settings

WATCHED = (CART_REPLIES, CART_EVENTS, STOCK_EVENTS, ORDER_EVENTS)
#: Fields worth a glance on a timeline line, in this order.
SHOWN = (
    "user_id", "product_id", "item_id", "quantity", "price", "on_hand", "available", "success", "error_code",
    "payment_id", "order_id", "total_amount", "amount", "reason", "payment_expires_at",
)


@dataclass
class Timeline:
    started: float = field(default_factory=time.monotonic)
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    echo: Callable[[str], None] = print

    def line(self, arrow: str, topic: str, message: dict[str, Any]) -> None:
        details = []
        for name in SHOWN:
            if message.get(name) is not None:
                details.append(f"{name}={message[name]}")
        if isinstance(message.get("data"), dict) and "changed_items" in message["data"]:
            details.append(f"changed_items={len(message['data']['changed_items'])}")
        elapsed = time.monotonic() - self.started
        self.echo(f"+{elapsed:6.2f}s {arrow} {topic:<16} {message.get('type', '?'):<24} {' '.join(details)}")


class Demo:
    def __init__(self, settings: Settings, *, echo: Callable[[str], None] = print, expiry_wait: float = 120.0) -> None:
        self.settings = settings
        self.tag = uuid.uuid4().hex[:6]
        self.timeline = Timeline(echo=echo)
        self.expiry_wait = expiry_wait
        self.watcher: AIOKafkaConsumer | None = None
        self.topics = {settings.topic(name): name for name in WATCHED}
        #: Everything caused by what the demo sent carries one of these.
        self.correlations: set[str] = set()

    def id(self, name: str) -> str:
        return f"demo-{self.tag}-{name}"

    async def run(self) -> int:
        options = self.settings.kafka_client_options
        bootstrap = self.settings.kafka_bootstrap or ""
        self.watcher = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
            **options,
        )
        await self.watcher.start()
        try:
            partitions = [p for topic in self.topics for p in await topic_partitions(self.watcher, topic)]
            if not partitions:
                raise LookupError("the cartflow topics do not exist: is cartflow running?")
            self.watcher.assign(partitions)
            await self.watcher.seek_to_end()
            for partition in partitions:
                await self.watcher.position(partition)
            replies = self.settings.topic(CART_REPLIES)
            wait = self.settings.kafka_fetch_max_wait_ms
            async with CartflowClient(bootstrap, reply_topic=replies, fetch_max_wait_ms=wait, **options) as client:
                self.client = client
                return await self.script()
        finally:
            await self.watcher.stop()

    # --- the script ---------------------------------------------------------------------

    async def script(self) -> int:
        say = self.timeline.echo
        user, shoe, sock = self.id("buyer"), self.id("trail-shoe"), self.id("wool-socks")
        say(f"cartflow demo {self.tag}: one buyer, two products\n")
        say("1. The catalog and the warehouse announce two products.")
        await self.publish(CATALOG_EVENTS, {"type": "ProductUpserted", "product_id": shoe, "name": "Trail shoe", "price": "74.99"})
        await self.publish(CATALOG_EVENTS, {"type": "ProductUpserted", "product_id": sock, "name": "Wool socks", "price": "9.50"})
        for product, units in ((shoe, 5), (sock, 20)):
            await self.publish(STOCK_COMMANDS, {"type": "SetStock", "product_id": product, "on_hand": units})
            await self.event(STOCK_EVENTS, "StockLevelChanged", product_id=product)

        say("\n2. The buyer fills a cart; each add reserves stock.")
        shoe_item = (await self.command("AddItem", user_id=user, product_id=shoe, quantity=1))["cart_item_id"]
        await self.command("AddItem", user_id=user, product_id=sock, quantity=3)

        say("\n3. The socks get cheaper; the cart notices and the buyer accepts the new price.")
        await self.publish(CATALOG_EVENTS, {"type": "ProductUpserted", "product_id": sock, "name": "Wool socks", "price": "7.90"})
        await asyncio.sleep(0.5)  # the cart worker reads the catalog change
        await self.command("CheckChanges", user_id=user)
        await self.command("AcceptChanges", user_id=user)

        say("\n4. The shoe alone is checked out and paid.")
        payment = {"payment_method": "card", "gateway_name": "demo-gateway", "shipping_address": {"city": "Lyon"}}
        single = await self.command("CheckoutItem", user_id=user, item_id=shoe_item, **payment)
        single_id = single["data"]["payment_id"]
        requested = await self.event(ORDER_EVENTS, "PaymentRequested", payment_id=single_id)
        await self.publish(PAYMENT_EVENTS, {"type": "PaymentSucceeded", "payment_id": single_id, "amount": requested["total_amount"]})
        await self.event(ORDER_EVENTS, "OrderPaid", payment_id=single_id)

        say("\n5. The rest of the cart is checked out and never paid.")
        rest = await self.command("CheckoutCart", user_id=user, **payment)
        rest_id = rest["data"]["payment_id"]
        requested = await self.event(ORDER_EVENTS, "PaymentRequested", payment_id=rest_id)
        say(f"   waiting for the payment deadline ({requested['payment_expires_at']})...")
        try:
            await self.event(ORDER_EVENTS, "OrderCancelled", payment_id=rest_id, timeout=self.expiry_wait)
            await self.event(STOCK_EVENTS, "StockReleased", product_id=sock, timeout=30)
        except TimeoutError:
            say(f"   not within {self.expiry_wait:g}s: start cartflow with a short CARTFLOW_PAYMENT_TIMEOUT_SECONDS to see it")
            return 1
        say("\ndone: one order paid, one cancelled at its deadline, its stock released")
        return 0

    # --- steps ----------------------------------------------------------------------------

    async def publish(self, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        message = await self.client.publish(self.settings.topic(topic), payload)
        self.correlations.add(message["correlation_id"])
        self.timeline.line("->", topic, message)
        return message

    async def command(self, kind: str, **fields: Any) -> dict[str, Any]:
        message = await self.publish(CART_COMMANDS, {"type": kind, **fields})
        reply = await self.event(CART_REPLIES, "CommandResult", correlation_id=message["correlation_id"])
        if not reply.get("success"):
            raise RuntimeError(f"{kind} was refused: {reply.get('error_code')} {reply.get('error_message')}")
        return reply

    async def event(self, topic: str, kind: str, *, timeout: float = 60.0, **fields: Any) -> dict[str, Any]:
        """Wait for a message of ``kind`` on ``topic`` with ``fields``, printing what arrives meanwhile."""
        wanted = self.settings.topic(topic)
        async with asyncio.timeout(timeout):
            while True:
                for index, (seen_topic, message) in enumerate(self.timeline.seen):
                    if seen_topic == wanted and message.get("type") == kind and all(message.get(k) == v for k, v in fields.items()):
                        del self.timeline.seen[index]
                        return message
                await self.read()

    async def read(self) -> None:
        assert self.watcher
        for record, message in await fetch_json(self.watcher):
            if message.get("correlation_id") not in self.correlations and self.tag not in json.dumps(message):
                continue  # another user's traffic
            arrow = "<-" if self.topics[record.topic] == CART_REPLIES else "  "
            self.timeline.line(arrow, self.topics[record.topic], message)
            self.timeline.seen.append((record.topic, message))
