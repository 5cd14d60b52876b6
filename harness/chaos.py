"""Fault injection: a mixed workload while workers and the database are killed,
then the invariants that must hold whatever happened.

The workload: catalog price changes, stock top-ups and recounts (often below
what is reserved or sold), many buyers adding, updating, removing and reading,
both kinds of checkout, and payments on time, late and never, some charged
twice, some announced again by the payment provider (same
``gateway_reference``, new ``message_id``). The faults, at random moments: SIGKILL of a random worker
(restarted after a pause), SIGKILL of the MongoDB server (restarted on the same
data), and the loss of the payment-deadline timer messages (the timer group is
moved past them while the checkout worker is down). Carts grow to 30 lines,
lines are decreased and increased again before the first change is answered,
and cart reservations lapse before the payment deadline. Mixed in all along: hostile
records on every input topic (see ``harness.support.hostile_records``).

Then, once everything settled, the invariants:

1. every command got exactly one reply (redeliveries repeat it byte for byte);
2. no message id was ever published with two different contents;
3. every checkout ended exactly once: each order paid xor cancelled;
4. on_hand = available + reserved + sold for every stock level, and
   reserved + sold <= on_hand (unless a recount went below what was sold, and
   then nothing is reserved), at the end and in every level published during
   the run;
5. the stock audit finds no drift between counters and reservation records;
6. no cart change was lost: every cart equals the fold of its events;
7. every paid order has exactly its units committed, and every committed unit
   belongs to one paid order;
8. every outbox drained and nothing was parked;
9. no background task died: every worker's /healthz answers 200;
10. per distinct charge (its ``gateway_reference``, else its ``message_id``),
    the money its orders keep plus the refunds announced for it equal what was
    charged: no charge refunded twice, kept and refunded, or forgotten.

``python -m harness.chaos --duration 300`` (``make chaos``) runs it on its own
servers and writes docs/chaos/report.md; a short run is part of ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from contracts.topics import ALL_TOPICS
from services.ops.workers import load_spec
from services.ops.embedded import EmbeddedKafka, EmbeddedMongo
from services.runtime.kafka import ensure_topics
from services.runtime.mongo import connect
from services.ops.offsets import reset_group_offsets
from services.runtime.settings import Settings
from services.stock_worker.audit import run_audit
from services.ops.embedded import free_port
from harness.support import Publisher, Tap, WorkerProcess, command, group_lag, healthz, hostile_records

WATCHED = ("cart.replies", "cart.events", "stock.events", "order.events", "stock.commands", "checkout.commands")
WORKERS = ("cart", "stock", "checkout")
HOSTILE_KEY = b"hostile"
PAYMENT = {"payment_method": "card", "gateway_name": "chaos-pay", "shipping_address": {"city": "Lyon"}}
#: order.events that give money back: the amount of each, and the charge it belongs to.
REFUNDS = ("PaymentRefundRequired", "LatePaymentReceived", "UnmatchedPaymentReceived", "PaymentAmountMismatch")


@dataclass
class ChaosConfig:
    duration: float = 60.0
    users: int = 16
    products: int = 30
    units: int = 40
    deadline_seconds: float = 4.0
    #: Shorter than the payment deadline: cart reservations lapse before buyers pay.
    cart_reservation_ttl: int = 3
    fault_every: tuple[float, float] = (4.0, 9.0)
    seed: int = 7
    reply_timeout: float = 180.0


@dataclass
class Invariant:
    name: str
    checked: int
    violations: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return not self.violations


@dataclass
class ChaosReport:
    config: ChaosConfig
    faults: dict[str, int]
    commands: int
    checkouts: int
    payments: dict[str, int]
    invariants: list[Invariant]
    seconds: float

    @property
    def holds(self) -> bool:
        return all(invariant.holds for invariant in self.invariants)

    def markdown(self) -> str:
        lines = [
            f"Workload: {self.commands} commands from {self.config.users} buyers on {self.config.products} products, "
            f"{self.checkouts} checkouts, payments {dict(self.payments)}, over {self.config.duration:g} s "
            f"(settled after {self.seconds:.0f} s).",
            f"Faults injected: {', '.join(f'{k}: {n}' for k, n in sorted(self.faults.items()))}.",
            "",
            "| invariant | checked | violations | holds |",
            "| --- | --- | --- | --- |",
        ]
        for invariant in self.invariants:
            lines.append(
                f"| {invariant.name} | {invariant.checked} | {len(invariant.violations)} | {'yes' if invariant.holds else '**no**'} |"
            )
        for invariant in self.invariants:
            for violation in invariant.violations[:10]:
                lines.append(f"\n- {invariant.name}: {violation}")
        return "\n".join(lines) + "\n"


class Index:
    """Records of a tap by a key, built incrementally (the taps grow to thousands of records)."""

    def __init__(self, tap: Tap, key: Callable[[dict[str, Any]], str | None]) -> None:
        self.tap, self.key = tap, key
        self.found: dict[str, dict[str, Any]] = {}
        self.scanned = 0

    async def find(self, key: str, timeout: float) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                records = self.tap.records
                for record in records[self.scanned :]:
                    found = self.key(record.json)
                    if found is not None:
                        self.found.setdefault(found, record.json)
                self.scanned = len(records)
                if key in self.found:
                    return self.found[key]
                await asyncio.sleep(0.05)


class Chaos:
    def __init__(self, bootstrap: str, mongo: EmbeddedMongo, log_dir: Path, config: ChaosConfig, echo: Callable[[str], None]) -> None:
        self.bootstrap = bootstrap
        self.mongo = mongo
        self.log_dir = log_dir
        self.config = config
        self.echo = echo
        self.rng = random.Random(config.seed)
        tag = uuid.uuid4().hex[:6]
        self.prefix, self.db_name = f"chaos{tag}.", f"chaos_{tag}"
        self.env = {
            "CARTFLOW_KAFKA_BOOTSTRAP": bootstrap,
            "CARTFLOW_MONGO_URL": mongo.url,
            "CARTFLOW_MONGO_DB": self.db_name,
            "CARTFLOW_TOPIC_PREFIX": self.prefix,
            "CARTFLOW_TEST_BACKEND": "external",
            "CARTFLOW_RELAY_LEASE_SECONDS": "2",
            "CARTFLOW_PAYMENT_TIMEOUT_SECONDS": str(config.deadline_seconds),
            "CARTFLOW_CHECKOUT_DEADLINE_GRACE_SECONDS": "2",
            "CARTFLOW_CHECKOUT_DEADLINE_SWEEP_SECONDS": "1",
            "CARTFLOW_STOCK_REPLY_TIMEOUT_SECONDS": "30",
            "CARTFLOW_CART_RESERVATION_TTL": str(config.cart_reservation_ttl),
            "CARTFLOW_STOCK_EXPIRY_SWEEP_SECONDS": "0.5",
            "CARTFLOW_LOG_FORMAT": "text",
        }
        self.ports = {name: free_port() for name in WORKERS}
        self.workers = {
            name: WorkerProcess(
                name,
                {**self.env, "CARTFLOW_HTTP_PORT": str(self.ports[name]), "CARTFLOW_HTTP_HOST": "127.0.0.1"},
                log_dir / f"{self.prefix}{name}.log",
            )
            for name in WORKERS
        }
        self.faults: dict[str, int] = defaultdict(int)
        self.sent: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, int] = defaultdict(int)
        #: Each distinct charge (gateway_reference, else message_id): its checkout and amount.
        self.charges: dict[str, tuple[str, Decimal]] = {}
        #: The charge each PaymentSucceeded we sent announced, by its message_id.
        self.charge_of: dict[str, str] = {}
        self.checkouts = 0
        self.late_payments: list[asyncio.Task] = []
        self.stop_at = 0.0

    def topic(self, name: str) -> str:
        return self.prefix + name

    # --- run ---------------------------------------------------------------------------------

    async def run(self) -> ChaosReport:
        started = time.monotonic()
        settings = Settings(kafka_bootstrap=self.bootstrap, topic_prefix=self.prefix)
        await ensure_topics(settings, self.bootstrap, ALL_TOPICS)
        self.publisher = Publisher(self.bootstrap)
        await self.publisher.start()
        self.taps = {name: await Tap(self.bootstrap, self.topic(name)).start() for name in WATCHED}
        self.replies = Index(self.taps["cart.replies"], lambda m: m.get("command_message_id"))
        self.payment_requests = Index(
            self.taps["order.events"], lambda m: m.get("payment_id") if m.get("type") == "PaymentRequested" else None
        )
        for worker in self.workers.values():
            worker.start()
        try:
            await self.set_up_shop()
            self.stop_at = time.monotonic() + self.config.duration
            self.echo(f"chaos: {self.config.users} buyers for {self.config.duration:g}s with faults")
            buyers = [asyncio.create_task(self.buyer(n)) for n in range(self.config.users)]
            shop = asyncio.create_task(self.shopkeeper())
            faults = asyncio.create_task(self.inject_faults())
            hostile = asyncio.create_task(self.hostile_producer())
            await asyncio.gather(*buyers, shop, faults, hostile)
            while waiting := [task for task in self.late_payments if not task.done()]:
                await asyncio.gather(*waiting)  # a late payment may announce its charge again, later still
            self.echo("chaos: workload over; settling")
            await self.settle()
            invariants = await self.check()
        finally:
            for worker in self.workers.values():
                worker.stop()
            for tap in self.taps.values():
                await tap.stop()
            await self.publisher.stop()
        return ChaosReport(
            self.config, dict(self.faults), len(self.sent), self.checkouts, dict(self.payments), invariants,
            time.monotonic() - started,
        )

    async def set_up_shop(self) -> None:
        self.products = [f"p{n}" for n in range(self.config.products)]
        for n, pid in enumerate(self.products):
            price = f"{5 + n}.{n % 10}0"
            await self.publisher.send(self.topic("catalog.events"), command("ProductUpserted", product_id=pid, name=f"Thing {n}", price=price), "product_id")
            await self.publisher.send(self.topic("stock.commands"), command("SetStock", product_id=pid, on_hand=self.config.units), "product_id")
        self.on_hand = dict.fromkeys(self.products, self.config.units)

    # --- workload ----------------------------------------------------------------------------

    async def ask(self, kind: str, **fields: Any) -> dict[str, Any]:
        message = command(kind, **fields)
        self.sent[message["message_id"]] = message
        await self.publisher.send(self.topic("cart.commands"), message)
        return await self.replies.find(message["message_id"], self.config.reply_timeout)

    async def buyer(self, number: int) -> None:
        rng, user = random.Random(self.config.seed * 1000 + number), f"buyer-{number}"
        while time.monotonic() < self.stop_at:
            lines = (await self.ask("GetCart", user_id=user))["data"]["items"]
            roll = rng.random()
            if not lines or roll < 0.35:
                await self.ask("AddItem", user_id=user, product_id=rng.choice(self.products[:8]), quantity=rng.randint(1, 2))
            elif roll < 0.4:
                # A big cart: up to 30 lines.
                for pid in rng.sample(self.products, rng.randint(5, len(self.products))):
                    await self.ask("AddItem", user_id=user, product_id=pid, quantity=1)
            elif roll < 0.45:
                await self.decrease_then_increase(user, rng.choice(lines)["item_id"])
            elif roll < 0.6:
                await self.ask("UpdateItemQuantity", user_id=user, item_id=rng.choice(lines)["item_id"], quantity=rng.randint(1, 3))
            elif roll < 0.65:
                await self.ask("RemoveItem", user_id=user, item_id=rng.choice(lines)["item_id"])
            else:
                await self.check_out(rng, user, lines)
            await asyncio.sleep(rng.uniform(0.05, 0.4))

    async def decrease_then_increase(self, user: str, item_id: str) -> None:
        """Two changes of one line sent together, the second before the first is answered."""
        first = command("UpdateItemQuantity", user_id=user, item_id=item_id, quantity=1)
        second = command("UpdateItemQuantity", user_id=user, item_id=item_id, quantity=3)
        for message in (first, second):
            self.sent[message["message_id"]] = message
            await self.publisher.send(self.topic("cart.commands"), message)
        for message in (first, second):
            await self.replies.find(message["message_id"], self.config.reply_timeout)

    async def check_out(self, rng: random.Random, user: str, lines: list[dict[str, Any]]) -> None:
        if rng.random() < 0.5:
            reply = await self.ask("CheckoutItem", user_id=user, item_id=rng.choice(lines)["item_id"], **PAYMENT)
        else:
            reply = await self.ask("CheckoutCart", user_id=user, **PAYMENT)
        if not reply["success"]:
            if reply.get("error_code") == "CHECKOUT_VALIDATION_FAILED":
                await self.ask("AcceptChanges", user_id=user)
            return
        self.checkouts += 1
        payment_id = reply["data"]["payment_id"]
        requested = await self.payment_requests.find(payment_id, self.config.reply_timeout)
        amount = requested["total_amount"]
        fate = rng.choices(("on_time", "late", "never", "twice"), weights=(5, 2, 3, 1))[0]
        self.payments[fate] += 1
        if fate in ("on_time", "twice"):
            await self.pay(rng, payment_id, amount, f"{payment_id}/1")
        if fate == "twice":
            # A second, distinct charge of the same checkout: refunded once.
            await self.pay(rng, payment_id, amount, f"{payment_id}/2")
        elif fate == "late":
            self.late_payments.append(
                asyncio.create_task(self.pay(rng, payment_id, amount, f"{payment_id}/1", after=self.config.deadline_seconds + 3))
            )

    async def pay(self, rng: random.Random, payment_id: str, amount: str, reference: str, after: float = 0.0) -> None:
        """One charge; now and then the payment provider announces it again (same
        ``gateway_reference``, a new ``message_id``), soon or after the deadline."""
        await asyncio.sleep(after)
        await self.announce(payment_id, amount, reference)
        if rng.random() < 0.3:
            delay = rng.choice((0.0, 0.5, self.config.deadline_seconds + 2))
            self.late_payments.append(asyncio.create_task(self.announce(payment_id, amount, reference, after=delay)))
            self.payments["announced again"] += 1

    async def announce(self, payment_id: str, amount: str, reference: str, after: float = 0.0) -> None:
        await asyncio.sleep(after)
        payment = command("PaymentSucceeded", payment_id=payment_id, amount=amount, gateway_reference=reference)
        self.charges.setdefault(reference, (payment_id, Decimal(amount)))
        self.charge_of[payment["message_id"]] = reference
        await self.publisher.send(self.topic("payment.events"), payment, "payment_id")

    async def shopkeeper(self) -> None:
        """Price changes, stock top-ups and recounts while buyers shop. Buyers
        want the first 8 products most: recounts of those often go below what
        is reserved, sometimes below what was sold."""
        while time.monotonic() < self.stop_at:
            await asyncio.sleep(self.rng.uniform(1.0, 3.0))
            roll = self.rng.random()
            if roll < 0.4:
                pid = self.rng.choice(self.products)
                price = f"{self.rng.randint(4, 12)}.{self.rng.randint(0, 99):02d}"
                message = command("ProductUpserted", product_id=pid, name=f"Thing {pid}", price=price)
                await self.publisher.send(self.topic("catalog.events"), message, "product_id")
            elif roll < 0.7:
                pid = self.rng.choice(self.products)
                self.on_hand[pid] += 5
                message = command("SetStock", product_id=pid, on_hand=self.on_hand[pid])
                await self.publisher.send(self.topic("stock.commands"), message, "product_id")
            else:
                pid = self.rng.choice(self.products[:8])
                held = self.last_level(pid)
                if held is not None and held["reserved"] and self.rng.random() < 0.7:
                    # Below what the last published level holds: some reservations must go.
                    below = held["reserved"] + held["sold"] - self.rng.randint(1, max(1, held["reserved"]))
                    self.on_hand[pid] = max(0, below)
                else:
                    self.on_hand[pid] = max(0, self.on_hand[pid] - self.rng.randint(1, 30))
                message = command("SetStock", product_id=pid, on_hand=self.on_hand[pid])
                await self.publisher.send(self.topic("stock.commands"), message, "product_id")
                self.faults["stock recounts down"] += 1

    def last_level(self, product_id: str) -> dict[str, Any] | None:
        """The stock worker's latest published level of a product, as seen so far."""
        for record in reversed(self.taps["stock.events"].records):
            if record.key == HOSTILE_KEY:
                continue
            event = record.json
            if isinstance(event, dict) and event.get("type") == "StockLevelChanged" and event.get("product_id") == product_id:
                return event
        return None

    async def hostile_producer(self) -> None:
        """A buggy or hostile producer on every input topic, all along."""
        corpus = hostile_records()
        topics = ("cart.commands", "catalog.events", "stock.commands", "stock.events", "payment.events",
                  "checkout.commands", "checkout.timeouts")
        while time.monotonic() < self.stop_at:
            await asyncio.sleep(self.rng.uniform(0.2, 1.0))
            await self.publisher.raw(self.topic(self.rng.choice(topics)), self.rng.choice(corpus), HOSTILE_KEY)
            self.faults["hostile records"] += 1

    # --- faults ------------------------------------------------------------------------------

    async def inject_faults(self) -> None:
        while True:
            await asyncio.sleep(self.rng.uniform(*self.config.fault_every))
            if time.monotonic() >= self.stop_at:
                return
            roll = self.rng.random()
            if roll < 0.6:
                name = self.rng.choice(WORKERS)
                self.echo(f"chaos: SIGKILL {name} worker")
                self.workers[name].kill()
                await asyncio.sleep(self.rng.uniform(0.0, 2.0))
                self.workers[name].start()
                self.faults[f"{name} worker kills"] += 1
            elif roll < 0.85:
                self.echo("chaos: SIGKILL MongoDB")
                self.mongo.kill()
                await asyncio.sleep(self.rng.uniform(1.0, 4.0))
                await asyncio.to_thread(self.mongo.start)
                self.faults["MongoDB kills"] += 1
            else:
                self.echo("chaos: losing the payment deadline messages")
                self.workers["checkout"].kill()
                await reset_group_offsets(
                    self.bootstrap, f"{self.prefix}cartflow-checkout-timeouts", [self.topic("checkout.timeouts")],
                    to_time=datetime.now(UTC),
                )
                self.workers["checkout"].start()
                self.faults["timeout topic losses"] += 1

    async def settle(self) -> None:
        """Wait until every worker caught up, published everything and every checkout ended."""
        # The workers' own groups; the timer group holds records until they are due.
        groups = {name: load_spec(name).consumes for name in WORKERS}
        client = connect(self.mongo.url)
        db = client[self.db_name]
        try:
            async with asyncio.timeout(300):
                while True:
                    lag = 0
                    for group, topics in groups.items():
                        lag += await group_lag(self.bootstrap, f"{self.prefix}cartflow-{group}", [self.topic(t) for t in topics])
                    backlog = sum([await db[f"{w}.outbox"].count_documents({"sent": False}) for w in WORKERS])
                    open_sagas = await db["checkout.sagas"].count_documents({"state": "awaiting_payment"})
                    pending = await db["cart.carts"].count_documents({"pending": {"$ne": None}})
                    if lag == backlog == open_sagas == pending == 0:
                        break
                    await asyncio.sleep(1.0)
            await asyncio.sleep(3.0)  # the taps read the last records
        finally:
            await client.close()

    # --- invariants --------------------------------------------------------------------------

    async def check(self) -> list[Invariant]:
        records = {name: tap.records for name, tap in self.taps.items()}
        client = connect(self.mongo.url)
        db = client[self.db_name]
        try:
            return [
                self.one_reply_per_command(records["cart.replies"]),
                self.one_content_per_message_id(records),
                await self.checkouts_end_once(records["order.events"], db),
                await self.stock_conserved(db),
                self.no_level_ever_promised_more_than_on_hand(records["stock.events"]),
                await self.audit_clean(db),
                await self.carts_match_their_events(records["cart.events"], db),
                await self.paid_orders_have_their_units(records["order.events"], db),
                await self.outboxes_drained(db),
                await self.background_tasks_alive(),
                await self.every_charge_kept_or_refunded_once(records["order.events"], db),
            ]
        finally:
            await client.close()

    def one_reply_per_command(self, replies: list[Any]) -> Invariant:
        seen: dict[str, set[bytes]] = defaultdict(set)
        for record in replies:
            seen[record.json.get("command_message_id")].add(record.value)
        invariant = Invariant("every command got exactly one reply", len(self.sent))
        for message_id, message in self.sent.items():
            if len(seen.get(message_id, ())) != 1:
                invariant.violations.append(f"{message['type']} {message_id}: {len(seen.get(message_id, ()))} distinct replies")
        return invariant

    def one_content_per_message_id(self, records: dict[str, list[Any]]) -> Invariant:
        contents: dict[str, set[bytes]] = defaultdict(set)
        for topic_records in records.values():
            for record in topic_records:
                if record.key == HOSTILE_KEY:
                    continue  # the hostile producer's own records, not cartflow's
                contents[record.json.get("message_id")].add(record.value)
        invariant = Invariant("no message id published with two contents", len(contents))
        invariant.violations = [f"{mid}: {len(values)} versions" for mid, values in contents.items() if len(values) > 1]
        return invariant

    async def checkouts_end_once(self, orders: list[Any], db: Any) -> Invariant:
        placed = {r.json["order_id"]: r.json["payment_id"] for r in orders if r.json.get("type") == "OrderPlaced"}
        endings: dict[str, set[str]] = defaultdict(set)
        for record in orders:
            if record.json.get("type") in ("OrderPaid", "OrderCancelled"):
                endings[record.json["order_id"]].add(record.json["type"])
        # A paid order whose units a recount took back before they were
        # committed is cancelled (out_of_stock) and refunded: that ends it too.
        taken_back = _taken_back_after_payment(orders)
        invariant = Invariant("every checkout ended exactly once (paid xor cancelled)", len(placed))
        for order_id in placed:
            ended = endings.get(order_id, set())
            if len(ended) != 1 and not (order_id in taken_back and ended == {"OrderPaid", "OrderCancelled"}):
                invariant.violations.append(f"order {order_id}: {sorted(ended) or 'no ending'}")
        async for saga in db["checkout.sagas"].find({"state": {"$nin": ["paid", "cancelled"]}}):
            invariant.violations.append(f"checkout {saga['_id']} still {saga['state']}")
        return invariant

    async def stock_conserved(self, db: Any) -> Invariant:
        levels = [level async for level in db["stock.levels"].find()]
        invariant = Invariant(
            "on_hand = available + reserved + sold; reserved + sold <= on_hand (nothing reserved after a recount below sold)",
            len(levels),
        )
        for level in levels:
            if level["on_hand"] != level["available"] + level["reserved"] + level["sold"]:
                invariant.violations.append(f"{level['_id']}: counters do not add up: {level}")
            elif level["reserved"] + level["sold"] > level["on_hand"] and level["reserved"] > 0:
                invariant.violations.append(f"{level['_id']}: more promised than on hand: {level}")
        return invariant

    def no_level_ever_promised_more_than_on_hand(self, events: list[Any]) -> Invariant:
        """Every level the stock worker published all along (one per level per
        batch, as the batch left it): reserved + sold <= on_hand, unless a
        recount went below what was sold, and then nothing is reserved."""
        levels = [
            r.json for r in events
            if r.key != HOSTILE_KEY and isinstance(r.json, dict) and r.json.get("type") == "StockLevelChanged"
        ]
        invariant = Invariant("every published level: reserved + sold <= on_hand (or nothing reserved)", len(levels))
        for level in levels:
            if level["reserved"] + level["sold"] > level["on_hand"] and level["reserved"] > 0:
                invariant.violations.append(
                    f"{level['product_id']}: on_hand {level['on_hand']}, reserved {level['reserved']}, sold {level['sold']}"
                )
        return invariant

    async def audit_clean(self, db: Any) -> Invariant:
        report = await run_audit(db)
        invariant = Invariant("stock audit: no drift", report.levels)
        invariant.violations = [str(drift) for drift in report.drifts]
        return invariant

    async def carts_match_their_events(self, events: list[Any], db: Any) -> Invariant:
        folded: dict[str, dict[str, int]] = defaultdict(dict)
        seen: set[str] = set()
        for record in events:  # in partition order, which is per-user order
            event = record.json
            if event["message_id"] in seen:
                continue  # a redelivered copy
            seen.add(event["message_id"])
            lines = folded[event["user_id"]]
            match event["type"]:
                case "ItemAdded":
                    lines[event["item_id"]] = event["line_quantity"]
                case "ItemQuantityChanged":
                    lines[event["item_id"]] = event["new_quantity"]
                case "ItemRemoved":
                    lines.pop(event["item_id"], None)
                case "CartCleared" | "CartCheckedOut":
                    for item_id in event["item_ids"]:
                        lines.pop(item_id, None)
        carts = {cart["_id"]: {line["item_id"]: line["quantity"] for line in cart.get("items", ())} async for cart in db["cart.carts"].find()}
        users = set(carts) | set(folded)
        invariant = Invariant("every cart equals the fold of its events", len(users))
        for user in sorted(users):
            if carts.get(user, {}) != folded.get(user, {}):
                invariant.violations.append(f"{user}: stored {carts.get(user)} vs events {folded.get(user)}")
        return invariant


    async def paid_orders_have_their_units(self, orders: list[Any], db: Any) -> Invariant:
        """Every paid order has exactly its units committed; every committed unit one paid order."""
        placed = {r.json["order_id"]: r.json["quantity"] for r in orders if (r.json or {}).get("type") == "OrderPlaced"}
        paid = {r.json["order_id"] for r in orders if (r.json or {}).get("type") == "OrderPaid"}
        paid -= _taken_back_after_payment(orders)
        committed = [doc async for doc in db["stock.reservations"].find({"state": "committed"})]
        by_order: dict[str, list[int]] = defaultdict(list)
        for doc in committed:
            by_order[doc.get("order_id")].append(doc["quantity"])
        invariant = Invariant("every paid order has its units; every sold unit one paid order", len(paid) + len(committed))
        for order_id in sorted(paid):
            if by_order.get(order_id) != [placed.get(order_id)]:
                invariant.violations.append(f"paid order {order_id}: ordered {placed.get(order_id)}, committed {by_order.get(order_id)}")
        for order_id in sorted(set(by_order) - paid):
            invariant.violations.append(f"committed for {order_id}, which was not paid")
        return invariant

    async def every_charge_kept_or_refunded_once(self, orders: list[Any], db: Any) -> Invariant:
        """Per distinct charge, what its orders keep plus what is refunded for it
        equals what was charged, counting each order event once by message_id
        (as a downstream that dedups on it does)."""
        events = {r.json["message_id"]: r.json for r in orders if isinstance(r.json, dict) and r.json.get("message_id")}
        price = {e["order_id"]: Decimal(e["total_price"]) for e in events.values() if e.get("type") == "OrderPlaced"}
        paid_by = {
            doc["_id"]: doc["paid_reference"]
            async for doc in db["checkout.sagas"].find({"paid_reference": {"$ne": None}}, {"paid_reference": 1})
        }
        kept: dict[str, Decimal] = defaultdict(Decimal)
        refunded: dict[str, list[str]] = defaultdict(list)
        back: dict[str, Decimal] = defaultdict(Decimal)
        taken_back = _taken_back_after_payment(orders)
        invariant = Invariant("per distinct charge, money kept + refunded = charged", len(self.charges))
        for event in events.values():
            kind = event.get("type")
            if kind == "OrderPaid":
                charge = paid_by.get(event["payment_id"])
                if charge is None:
                    invariant.violations.append(f"order {event['order_id']} paid, but its checkout names no charge")
                    continue
                if event["order_id"] not in taken_back:  # refunded instead (PaymentRefundRequired)
                    kept[charge] += price.get(event["order_id"], Decimal(0))
            elif kind in REFUNDS:
                charge = event.get("gateway_reference") or self.charge_of.get(event.get("causation_id") or "")
                if charge not in self.charges:
                    continue  # a hostile producer's payment, not one of ours
                amount = Decimal(event["received"] if kind == "PaymentAmountMismatch" else event["amount"])
                back[charge] += amount
                refunded[charge].append(f"{kind} {amount}")
        for charge, (payment_id, amount) in sorted(self.charges.items()):
            if kept[charge] + back[charge] != amount:
                invariant.violations.append(
                    f"charge {charge} of {payment_id}: charged {amount}, kept {kept[charge]}, refunded {refunded[charge] or 'nothing'}"
                )
        return invariant

    async def outboxes_drained(self, db: Any) -> Invariant:
        invariant = Invariant("every outbox drained, nothing parked", 2 * len(WORKERS))
        for worker in WORKERS:
            for collection, left in (
                (f"{worker}.outbox", await db[f"{worker}.outbox"].count_documents({"sent": False})),
                (f"{worker}.outbox.parked", await db[f"{worker}.outbox.parked"].count_documents({})),
            ):
                if left:
                    invariant.violations.append(f"{collection}: {left} unsent chunk(s) or parked record(s)")
        return invariant

    async def background_tasks_alive(self) -> Invariant:
        invariant = Invariant("no background task died (/healthz)", len(WORKERS))
        for worker, port in self.ports.items():
            status, body = await asyncio.to_thread(healthz, port)
            if status != 200:
                invariant.violations.append(f"{worker} worker: {status} {body}")
        return invariant


async def run_chaos(bootstrap: str, mongo: EmbeddedMongo, log_dir: Path, config: ChaosConfig, echo: Callable[[str], None] = print) -> ChaosReport:
    return await Chaos(bootstrap, mongo, log_dir, config, echo).run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--users", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--report", type=Path, default=Path("docs/chaos/report.md"))
    args = parser.parse_args()
    home = Path(".cartflow/chaos")
    kafka = EmbeddedKafka(log_path=home / "kafka.log")
    mongo = EmbeddedMongo(storage_path=home / f"mongo-{uuid.uuid4().hex[:6]}", log_path=home / "mongo.log")
    kafka.start()
    mongo.start()
    try:
        config = ChaosConfig(duration=args.duration, users=args.users, seed=args.seed)
        report = asyncio.run(run_chaos(kafka.bootstrap, mongo, home / "logs", config))
    finally:
        mongo.stop()
        kafka.stop()
    text = f"# Chaos run\n\n`python -m harness.chaos --duration {args.duration:g} --users {args.users} --seed {args.seed}`\n\n" + report.markdown()
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    print(text)
    raise SystemExit(0 if report.holds else 1)


if __name__ == "__main__":
    main()


def _taken_back_after_payment(orders: list[Any]) -> set[str]:
    """Orders paid, then cancelled out_of_stock: a recount took their units back
    before the commit reached the stock worker, and their amount was refunded."""
    paid: set[str] = set()
    taken: set[str] = set()
    for record in orders:
        event = record.json if isinstance(record.json, dict) else {}
        if event.get("type") == "OrderPaid":
            paid.add(event.get("order_id"))
        elif event.get("type") == "OrderCancelled" and event.get("reason") == "out_of_stock" and event.get("order_id") in paid:
            taken.add(event["order_id"])
    return taken
