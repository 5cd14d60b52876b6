"""The stock and money invariants under every interleaving hypothesis can find.

The cart, stock and checkout workers' ``handle`` run in memory, wired by a bus
that delivers the head of any key's queue next (Kafka keeps order per key and
nothing else), delivers some messages twice (at-least-once; each worker dedups
on ``message_id`` as its inbox does) and lets time jump so that reservations
expire, stock answers time out and payment deadlines pass. Buyers add,
increase, decrease and remove, check out one line or the whole cart, pay, pay
twice and pay late.

After every step: for every product, reserved + sold <= on hand, and the
counters equal the sums of the reservation records. Whenever no message is in
flight: every paid order has its units committed, and every committed unit
belongs to exactly one paid order.

What every buyer sees is checked by a second machine (``Buyers``), with
reservation at add-to-cart on and several stock steps of one cart in flight:
on top of the same buyers, the catalog changes (products deleted, prices
changed), buyers look at their carts, and the cart's overdue sweep finds the
steps past their deadline in any order, or only some of them in one pass.
After every step: each command has had at most one reply, and each buyer's
replies from the cart worker came in the order the commands were sent (a
checkout is answered by the checkout worker once it took it on, which may be
after the cart worker answered later commands). At the end, once every message
arrived and every deadline passed: every command was answered, no cart is left
with steps in flight or commands queued, and the stock worker holds nothing for
a cart line the cart does not know of.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict, deque
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from services.cart_worker.handlers import CartLogic
from services.cart_worker.unit import CartUnit, StockAnswerOverdue
from services.checkout_worker.domain import AWAITING_PAYMENT, PAID
from services.checkout_worker.handlers import CheckoutLogic, CheckoutUnit, OverdueDeadline, UnknownPayment
from services.runtime.clock import ManualClock
from services.runtime.records import Incoming
from services.runtime.settings import Settings
from services.stock_worker.domain import ACTIVE, COMMITTED
from services.stock_worker.handlers import ExpireReservation, StockLogic, StockUnit

START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PRODUCTS = [f"p{n}" for n in range(30)]
USERS = ["ada", "bob", "cyd"]
PAYMENT = {"payment_method": "card", "gateway_name": "gw", "shipping_address": {}}

#: Which workers read which topic.
READERS = {
    "cart.commands": ["cart"],
    "catalog.events": ["cart"],
    "stock.events": ["cart", "checkout"],
    "stock.commands": ["stock"],
    "checkout.commands": ["checkout"],
    "payment.events": ["checkout"],
}


class Shop(RuleBasedStateMachine):
    @initialize(reserve_at_add=st.booleans(), seed=st.integers(0, 2**32))
    def open_shop(self, reserve_at_add: bool, seed: int) -> None:
        self.clock = ManualClock(START)
        self.rng = random.Random(seed)
        config = Settings(
            cart_stock_reservation_enabled=reserve_at_add,
            cart_reservation_ttl=60,  # shorter than the payment deadline
            stock_reply_timeout_seconds=10,
            payment_timeout_seconds=120,
        )
        self.logic = {"cart": CartLogic(config, self.clock), "stock": StockLogic(config, self.clock),
                      "checkout": CheckoutLogic(config, self.clock)}
        self.units = {"cart": CartUnit(), "stock": StockUnit(), "checkout": CheckoutUnit()}
        self.seen: dict[str, set[str]] = defaultdict(set)
        self.queues: dict[tuple[str, str, str], deque[bytes]] = defaultdict(deque)
        self.number = 0
        for pid in PRODUCTS:
            self.publish("catalog.events", pid, {"type": "ProductUpserted", "product_id": pid, "name": pid, "price": "2.50"})
            self.publish("stock.commands", pid, {"type": "SetStock", "product_id": pid, "on_hand": 3})
        self.drain()

    # --- the bus --------------------------------------------------------------------------

    def publish(self, topic: str, key: str, body: dict[str, Any]) -> None:
        self.number += 1
        message = {"message_id": f"m{self.number}", "occurred_at": self.clock.now().isoformat(), **body}
        self.enqueue(topic, key, json.dumps(message).encode())

    def enqueue(self, topic: str, key: str, value: bytes) -> None:
        for group in READERS.get(topic, ()):
            self.queues[(group, topic, key)].append(value)

    def route(self, outputs) -> None:
        for output in outputs:
            topic = output.topic
            if topic in READERS:
                self.enqueue(topic, (output.key or b"").decode(), output.value)
                if self.rng.random() < 0.1:  # the relay published it twice
                    self.enqueue(topic, (output.key or b"").decode(), output.value)

    def deliver_one(self) -> bool:
        ready = [queue for queue, items in self.queues.items() if items]
        if not ready:
            return False
        group, topic, key = self.rng.choice(ready)
        value = self.queues[(group, topic, key)].popleft()
        work = self.logic[group].decode(Incoming(topic, 0, 0, key.encode(), value))
        assert work.skip or work.message is not None, work.outputs  # everything the workers send is valid
        message = work.message
        if work.skip or message.message_id in self.seen[group]:
            return True  # the inbox: a repeat changes nothing
        self.seen[group].add(message.message_id)
        self.handle(group, message)
        return True

    def handle(self, group: str, message: Any) -> None:
        unit = self.units[group]
        checkpoint = unit.checkpoint()
        try:
            self.route(self.logic[group].handle(unit, message))
            if finish := getattr(self.logic[group], "finish", None):
                self.route(finish(unit))  # each message is a batch of its own here
        except UnknownPayment:
            unit.rollback(checkpoint)  # dead-lettered: nothing changes

    def drain(self) -> None:
        while self.deliver_one():
            pass

    # --- buyers ---------------------------------------------------------------------------

    def cart_lines(self, user: str):
        cart = self.units["cart"].carts.get(user)
        return list(cart.lines) if cart else []

    def command(self, kind: str, user: str, **fields: Any) -> None:
        self.publish("cart.commands", user, {"type": kind, "user_id": user, **fields})

    @rule(user=st.sampled_from(USERS), product=st.sampled_from(PRODUCTS[:4]), quantity=st.integers(1, 2))
    def add(self, user, product, quantity):
        """Buyers mostly want the same few products: contention."""
        self.command("AddItem", user, product_id=product, quantity=quantity)

    @rule(user=st.sampled_from(USERS), lines=st.integers(5, 30))
    def fill_the_cart(self, user, lines):
        for product in PRODUCTS[:lines]:
            self.command("AddItem", user, product_id=product, quantity=1)

    @rule(user=st.sampled_from(USERS), quantity=st.integers(1, 4), pick=st.integers(0, 29))
    def change_quantity(self, user, quantity, pick):
        lines = self.cart_lines(user)
        if lines:
            self.command("UpdateItemQuantity", user, item_id=lines[pick % len(lines)].item_id, quantity=quantity)

    @rule(user=st.sampled_from(USERS), pick=st.integers(0, 29))
    def decrease_then_increase(self, user, pick):
        lines = self.cart_lines(user)
        if lines:
            line = lines[pick % len(lines)]
            self.command("UpdateItemQuantity", user, item_id=line.item_id, quantity=1)
            self.command("UpdateItemQuantity", user, item_id=line.item_id, quantity=3)

    @rule(user=st.sampled_from(USERS), pick=st.integers(0, 29))
    def remove(self, user, pick):
        lines = self.cart_lines(user)
        if lines:
            self.command("RemoveItem", user, item_id=lines[pick % len(lines)].item_id)

    @rule(user=st.sampled_from(USERS), pick=st.integers(0, 29), whole=st.booleans())
    def check_out(self, user, pick, whole):
        lines = self.cart_lines(user)
        if whole:
            self.command("CheckoutCart", user, **PAYMENT)
        elif lines:
            self.command("CheckoutItem", user, item_id=lines[pick % len(lines)].item_id, **PAYMENT)

    @rule(pick=st.integers(0, 100), reference=st.sampled_from(["ch_1", "ch_2"]))
    def pay(self, pick, reference):
        sagas = sorted(self.units["checkout"].checkouts.values(), key=lambda c: c.payment_id)
        if sagas:
            saga = sagas[pick % len(sagas)]
            self.publish("payment.events", saga.payment_id, {
                "type": "PaymentSucceeded", "payment_id": saga.payment_id,
                "amount": str(saga.total_amount), "gateway_reference": reference,
            })

    # --- the network and time ---------------------------------------------------------------

    @rule(count=st.integers(1, 20))
    def deliver(self, count):
        for _ in range(count):
            self.deliver_one()

    @rule()
    def everything_arrives(self):
        self.drain()

    @rule(seconds=st.sampled_from([5, 11, 61, 121]))
    def time_passes(self, seconds):
        """Time jumps; the workers' sweeps find what came due."""
        self.clock.advance(seconds)
        now = self.clock.now()
        for r in list(self.units["stock"].reservations.values()):
            if r.state == ACTIVE and r.expires_at and r.expires_at <= now:
                self.handle("stock", ExpireReservation(r.reservation_id, r.expires_at))
        for cart in list(self.units["cart"].carts.values()):
            for step in cart.steps:  # as the sweep finds them: every step past its deadline, unanswered
                if step.deadline <= now and step.answer is None:
                    self.handle("cart", StockAnswerOverdue.of(cart.user_id, step))
        for saga in list(self.units["checkout"].checkouts.values()):
            if saga.state == AWAITING_PAYMENT and saga.deadline <= now:
                self.handle("checkout", OverdueDeadline(saga.payment_id, saga.deadline))

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def no_unit_is_promised_twice(self):
        stock = self.units["stock"]
        active: dict[str, int] = defaultdict(int)
        sold: dict[str, int] = defaultdict(int)
        for r in stock.reservations.values():
            key = f"{r.product_id}|{r.size or ''}"
            if r.state == ACTIVE:
                active[key] += r.quantity
            elif r.state == COMMITTED:
                sold[key] += r.quantity
        for key, level in stock.levels.items():
            assert level.reserved + level.sold <= level.on_hand, level
            assert (level.reserved, level.sold) == (active[key], sold[key]), level

    @precondition(lambda self: hasattr(self, "queues") and not any(self.queues.values()))
    @invariant()
    def every_paid_order_has_its_units_and_every_sold_unit_one_paid_order(self):
        reservations = self.units["stock"].reservations
        paid = {
            o.order_id: o
            for saga in self.units["checkout"].checkouts.values()
            for o in saga.orders
            if o.status == PAID
        }
        for order in paid.values():
            r = reservations.get(order.reservation_id or "")
            assert r is not None and r.state == COMMITTED and r.quantity == order.quantity, (order, r)
            assert r.order_id == order.order_id
        committed = [r for r in reservations.values() if r.state == COMMITTED]
        assert sorted(r.order_id for r in committed) == sorted(paid), "every sold unit belongs to one paid order"
        for saga in self.units["checkout"].checkouts.values():
            if saga.state == PAID:
                assert saga.total_amount == sum((o.total_price for o in saga.orders), Decimal(0))

    @precondition(lambda self: hasattr(self, "queues") and not any(self.queues.values()))
    @invariant()
    def every_cart_promises_exactly_what_the_stock_worker_holds_for_it(self):
        reservations = self.units["stock"].reservations
        for cart in self.units["cart"].carts.values():
            if cart.pending is not None:
                continue  # a step in flight: its timeout resolves it
            for line in cart.lines:
                if not line.is_reserved:
                    continue
                r = reservations.get(line.reservation_id or "")
                assert r is not None and r.state == ACTIVE, (line, r)
                assert r.holder == f"cart:{cart.user_id}:{line.item_id}"
                assert r.quantity == line.reserved_quantity == line.quantity, (line, r)

    def teardown(self) -> None:
        if hasattr(self, "queues"):
            for _ in range(2):  # as things stand, then once every deadline and expiry has passed
                self.drain()
                self.every_paid_order_has_its_units_and_every_sold_unit_one_paid_order()
                self.every_cart_promises_exactly_what_the_stock_worker_holds_for_it()
                self.no_unit_is_promised_twice()
                self.time_passes(121)


Shop.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)
TestStockAndMoneyInvariantsUnderInterleavings = Shop.TestCase


class Buyers(Shop):
    @initialize(reserve_at_add=st.just(True), seed=st.integers(0, 2**32))
    def open_shop(self, reserve_at_add: bool, seed: int) -> None:
        self.sent: dict[str, list[str]] = defaultdict(list)  # user -> command message_ids, as sent
        self.answered: dict[str, list[str]] = defaultdict(list)  # user -> command_message_ids, as replied
        #: Checkouts, answered by the checkout worker once it took them on: their
        #: replies may come after those to later cart commands.
        self.handed_over: set[str] = set()
        super().open_shop(reserve_at_add, seed)

    def publish(self, topic: str, key: str, body: dict[str, Any]) -> None:
        super().publish(topic, key, body)
        if topic == "cart.commands":
            self.sent[body["user_id"]].append(f"m{self.number}")
            if body["type"] in ("CheckoutItem", "CheckoutCart"):
                self.handed_over.add(f"m{self.number}")

    def route(self, outputs) -> None:
        for output in outputs:
            reply = json.loads(output.value)
            if output.is_reply and reply.get("type") == "CommandResult":
                self.answered[reply["user_id"]].append(reply["command_message_id"])
        super().route(outputs)

    # --- the catalog, the buyers' looks and the sweeps -------------------------------------

    @rule(product=st.sampled_from(PRODUCTS[:6]))
    def product_deleted(self, product):
        self.publish("catalog.events", product, {"type": "ProductDeleted", "product_id": product})

    @rule(product=st.sampled_from(PRODUCTS[:6]), price=st.sampled_from(["1.00", "2.50", "9.99"]))
    def price_changed(self, product, price):
        self.publish("catalog.events", product, {"type": "ProductUpserted", "product_id": product, "name": product, "price": price})

    @rule(user=st.sampled_from(USERS))
    def look(self, user):
        self.command("GetCart", user)

    @rule(seconds=st.sampled_from([5, 11, 61]), some=st.booleans())
    def sweep_finds_steps_in_any_order(self, seconds, some):
        """Time passes; the cart's sweep times out the overdue steps shuffled, or only some of them."""
        self.clock.advance(seconds)
        now = self.clock.now()
        self.expire_reservations()
        overdue = [
            StockAnswerOverdue.of(cart.user_id, step)
            for cart in list(self.units["cart"].carts.values())
            for step in cart.steps
            if step.deadline <= now and step.answer is None
        ]
        self.rng.shuffle(overdue)
        for item in overdue:
            if not some or self.rng.random() < 0.5:
                self.handle("cart", item)

    @rule(seconds=st.sampled_from([55, 61]))
    def reservations_expire_before_any_sweep(self, seconds):
        self.clock.advance(seconds)
        self.expire_reservations()

    def expire_reservations(self) -> None:
        now = self.clock.now()
        for r in list(self.units["stock"].reservations.values()):
            if r.state == ACTIVE and r.expires_at and r.expires_at <= now:
                self.handle("stock", ExpireReservation(r.reservation_id, r.expires_at))

    # --- what the buyers see ---------------------------------------------------------------

    @invariant()
    def each_buyer_gets_at_most_one_reply_per_command_in_the_order_sent(self):
        for user, answered in getattr(self, "answered", {}).items():
            assert len(answered) == len(set(answered)), ("a command answered twice", user, answered)
            replied = set(answered) - self.handed_over
            in_order = [m for m in self.sent[user] if m in replied]
            assert [m for m in answered if m in replied] == in_order, ("replies out of order", user)

    def teardown(self) -> None:
        super().teardown()
        if not hasattr(self, "answered"):
            return
        for _ in range(3):  # what the last deadlines set going (queued commands) settles too
            self.drain()
            self.time_passes(121)
        self.drain()
        for user, sent in self.sent.items():
            unanswered = [m for m in sent if m not in self.answered[user]]
            assert not unanswered, ("commands never answered", user, unanswered, self.units["cart"].carts.get(user))
        carts = self.units["cart"].carts
        for cart in carts.values():
            assert not cart.steps and not cart.queue, ("a cart left waiting", cart)
        for r in self.units["stock"].reservations.values():
            if r.state == ACTIVE and (r.holder or "").startswith("cart:"):
                _, user, item_id = r.holder.split(":", 2)
                line = carts[user].line(item_id) if user in carts else None
                assert line is not None and line.reservation_id == r.reservation_id, ("units held for a forgotten line", r)


Buyers.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)
TestWhatEveryBuyerSeesUnderInterleavings = Buyers.TestCase
