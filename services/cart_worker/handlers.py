"""The cart worker's handlers, as the batch processor drives them: decode each
record, load what the batch touches, route each message to its handler, save.

Each handler is thin: it picks the cart a message concerns, asks the cart's
rules (``domain.saga`` for commands, stock answers, timeouts and hand-overs;
``housekeeping`` for the cart's timers) for a ``Step``, keeps the new cart and
hands the step's effects to the ``Translator``, the one place they become
contract messages. Catalog events keep the catalog read model current, and a
deleted product gives back the units carts held for it."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from collections.abc import Iterable
from typing import Any, Protocol

from contracts import cart as cart_contract
from contracts import stock as stock_contract
from contracts.catalog import ProductDeleted, ProductUpserted, catalog_event_adapter
from contracts.checkout import HANDOVER_ANSWER_TYPES, CheckoutAccepted, CheckoutRefused, handover_answer_adapter
from contracts.envelope import Command
from contracts.errors import ErrorCode
from contracts.holders import parse_cart_line_holder
from contracts.topics import CART_COMMANDS, CATALOG_EVENTS, CHECKOUT_HANDOVERS, STOCK_EVENTS
from services.cart_worker import domain, housekeeping
from services.cart_worker.domain import Cart, Product, Rejected, SizeOption, StockAnswerOverdue, saga
from services.cart_worker.domain.effects import Cause, Release, Reply, Step
from services.cart_worker.housekeeping import HousekeepingDue
from services.cart_worker.translator import Translator
from services.cart_worker.unit import CartUnit
from services.runtime.clock import Clock
from services.runtime.decoding import decode_record, invalid_command_reply
from services.runtime.processing import Work
from services.runtime.records import Incoming, Outgoing
from services.runtime.routing import Routes, received_on
from services.runtime.settings import Settings

CATALOG_TYPES = frozenset({"ProductUpserted", "ProductDeleted"})
HANDOVER_TYPES = frozenset(kind.__name__ for kind in HANDOVER_ANSWER_TYPES)
#: Commands that count as the buyer's activity when they change the cart (they restart its timers).
ACTIVITY = (
    cart_contract.AddItem,
    cart_contract.UpdateItemQuantity,
    cart_contract.RemoveItem,
    cart_contract.ClearCart,
    cart_contract.AcceptChanges,
    cart_contract.CheckoutItem,
    cart_contract.CheckoutCart,
)

#: The contract topics the cart worker consumes (its spec's ``consumes``), for its routes.
CONSUMED = (CATALOG_EVENTS, CART_COMMANDS, STOCK_EVENTS, CHECKOUT_HANDOVERS)


#: The stock worker's answers to a cart's own stock commands, each matched to
#: the step that sent the command: a cart needs no dedup entry for them.
STEP_ANSWERS = (
    stock_contract.StockReserved,
    stock_contract.ReservationAdjusted,
    stock_contract.StockReservationRejected,
    stock_contract.StockCommandRejected,
)


class CartStore(Protocol):
    """Where ``CartLogic`` reads and writes carts and its copies of the catalog
    and of stock (on MongoDB: ``services.cart_worker.repository.CartStore``)."""

    async def carts(self, user_ids: Iterable[str]) -> dict[str, Cart]: ...
    async def carts_holding(self, product_ids: Iterable[str]) -> dict[str, Cart]: ...
    async def product_ids(self, after: str | None, limit: int) -> list[str]: ...
    async def products(self, product_ids: Iterable[str]) -> dict[str, Product]: ...
    async def stock(self, keys: Iterable[str]) -> dict[str, int]: ...
    async def save(self, products: Iterable[Product], stock: dict[str, int], carts: Iterable[Cart]) -> None: ...


class CartLogic:
    """The cart worker's logic as the batch processor drives it: decode, load, handle, save."""

    name = "cart"

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.catalog_topic = settings.topic(CATALOG_EVENTS)
        self.stock_events_topic = settings.topic(STOCK_EVENTS)
        self.handovers_topic = settings.topic(CHECKOUT_HANDOVERS)
        self.translator = Translator(settings, clock)
        self.rules = saga.Rules(
            reserving=settings.cart_stock_reservation_enabled,
            reservation_ttl=timedelta(seconds=settings.cart_reservation_ttl),
            answer_timeout=timedelta(seconds=settings.stock_reply_timeout_seconds),
            limits=domain.CartLimits(
                max_quantity=settings.cart_item_max_quantity,
                max_lines=settings.cart_max_lines,
                max_property_keys=settings.properties_max_keys,
                max_property_bytes=settings.properties_max_bytes,
            ),
            default_gateway=settings.checkout_default_gateway,
            handover_refusal=self.translator.handover_refusal,
            check_effects=self.translator.records,
        )
        self.policy = housekeeping.Policy(
            remind_after=timedelta(days=settings.cart_abandoned_threshold_days),
            expire_after=timedelta(days=settings.cart_session_timeout_days),
            check_every=timedelta(hours=settings.cart_change_check_interval_hours),
            notify_changes=settings.cart_change_notifications_enabled,
            notify_abandoned=settings.cart_abandoned_notifications_enabled,
            auto_remove_unavailable=settings.cart_auto_remove_unavailable,
        )
        stock_answers = [kind for kind in stock_contract.STOCK_EVENTS if kind is not stock_contract.StockLevelChanged]
        self.routes = Routes(
            {
                ProductUpserted: self._on_product_upserted,
                ProductDeleted: self._on_product_deleted,
                stock_contract.StockLevelChanged: self._on_level_changed,
                **{kind: self._on_stock_answer for kind in stock_answers},
                StockAnswerOverdue: self._on_overdue,
                CheckoutAccepted: self._on_handover_answer,
                CheckoutRefused: self._on_handover_answer,
                HousekeepingDue: self._on_housekeeping,
                Command: self._on_cart_command,
            },
            receives=(*received_on(CONSUMED), StockAnswerOverdue, HousekeepingDue),
        )

    def decode(self, record: Incoming) -> Work:
        # No one waits for an answer to an event; a malformed command is answered when it can be addressed.
        if record.topic == self.catalog_topic:
            return decode_record(record, catalog_event_adapter, CATALOG_TYPES, self.clock)
        if record.topic == self.handovers_topic:
            return decode_record(record, handover_answer_adapter, HANDOVER_TYPES, self.clock)
        if record.topic == self.stock_events_topic:
            adapter, types = stock_contract.stock_event_adapter, stock_contract.STOCK_EVENT_TYPES
            work = decode_record(record, adapter, types, self.clock)
            if isinstance(work.message, STEP_ANSWERS):
                # It resolves only the step that waits for it (matched by the stock
                # command's id): a repeat finds no step and changes nothing.
                work = replace(work, idempotent=True)
            return work
        return decode_record(
            record,
            cart_contract.cart_command_adapter,
            cart_contract.CART_COMMAND_TYPES,
            self.clock,
            settings=self.settings,
            answer=functools.partial(invalid_command_reply, self.settings, self.clock, self.translator.replies_topic),
        )

    def arrange(self, works: list[Work]) -> list[Work]:
        # Catalog events fetched together with commands were published no later
        # than those commands were fetched: apply them first (a stable sort keeps
        # each partition's own order).
        return sorted(works, key=lambda work: work.record is None or work.record.topic != self.catalog_topic)

    async def load(self, store: CartStore, messages: list[Any]) -> CartUnit:
        user_ids: set[str] = set()
        for message in messages:
            if isinstance(message, Command | StockAnswerOverdue | HousekeepingDue | CheckoutAccepted | CheckoutRefused):
                user_ids.add(message.user_id)
            elif (holder := parse_cart_line_holder(getattr(message, "holder", None))) is not None:
                user_ids.add(holder[0])
        carts = await store.carts(user_ids)
        deleted = [m.product_id for m in messages if isinstance(m, ProductDeleted)]
        if deleted:
            carts.update(await store.carts_holding(deleted))
        product_ids = {m.product_id for m in messages if isinstance(m, Command | ProductUpserted | ProductDeleted) and hasattr(m, "product_id")}
        product_ids.update(line.product_id for cart in carts.values() for line in cart.lines)
        stock_keys = {domain.stock_key(m.product_id, m.size) for m in messages if hasattr(m, "product_id") and hasattr(m, "size")}
        stock_keys.update(domain.stock_key(line.product_id, line.size) for cart in carts.values() for line in cart.lines)
        for cart in carts.values():  # queued adds may name products of their own
            for queued in cart.queue:
                if isinstance(product_id := getattr(queued, "product_id", None), str):
                    product_ids.add(product_id)
                    stock_keys.add(domain.stock_key(product_id, getattr(queued, "size", None)))
        pages = {
            m.message_id: await store.product_ids(m.after, m.limit + 1)
            for m in messages
            if isinstance(m, cart_contract.ListProducts)
        }
        product_ids.update(pid for page in pages.values() for pid in page)
        if pages:
            # A page's stock keys depend on its products' sizes: read them first.
            products = await store.products(product_ids)
            for pid in (pid for page in pages.values() for pid in page):
                product = products.get(pid)
                sizes = [option.size for option in product.sizes] if product and product.has_sizes else [None]
                stock_keys.update(domain.stock_key(pid, size) for size in sizes)
            stock = await store.stock(stock_keys)
        else:
            products, stock = await asyncio.gather(store.products(product_ids), store.stock(stock_keys))
        return CartUnit(carts=carts, products=products, stock=stock, pages=pages)

    async def save(self, unit: CartUnit, store: CartStore) -> None:
        await store.save(
            [unit.products[p] for p in sorted(unit.dirty_products)],
            {k: unit.stock[k] for k in sorted(unit.dirty_stock)},
            [unit.carts[u] for u in sorted(unit.dirty_carts)],
        )

    def handle(self, unit: CartUnit, message: Any) -> list[Outgoing]:
        return self.routes(unit, message)

    def failed(self, work: Work, error: Exception) -> list[Outgoing]:
        message = work.message
        if not isinstance(message, Command):
            return []
        rejection = Rejected(
            ErrorCode.INTERNAL_ERROR,
            "The command could not be processed and was set aside for an operator",
            "Retry later with a new message_id; contact support if it persists",
        )
        return self.translator.records([Reply(message, rejection)])

    def _context(self, unit: CartUnit) -> saga.Context:
        return saga.Context(self.clock.now(), unit.products, unit.stock, unit.pages)

    def _apply(self, unit: CartUnit, step: Step) -> list[Outgoing]:
        unit.put_cart(step.cart)
        return self.translator.records(step.effects)

    # --- the saga's messages ---

    def _on_cart_command(self, unit: CartUnit, command: Command) -> list[Outgoing]:
        before = unit.cart(command.user_id)
        step = saga.on_command(before, command, self._context(unit), self.rules)
        if isinstance(command, ACTIVITY) and step.cart is not before:
            # The buyer changed the cart (a refused command changes nothing, not even this).
            step = replace(step, cart=housekeeping.touch(step.cart, self.clock.now(), self.policy))
        return self._apply(unit, step)

    def _on_stock_answer(self, unit: CartUnit, event: Any) -> list[Outgoing]:
        holder = parse_cart_line_holder(getattr(event, "holder", None))
        if holder is None:
            return []  # a checkout's or a warehouse's: none of the carts' business
        return self._apply(unit, saga.on_stock_answer(unit.cart(holder[0]), event, self._context(unit), self.rules))

    def _on_overdue(self, unit: CartUnit, overdue: StockAnswerOverdue) -> list[Outgoing]:
        return self._apply(unit, saga.on_overdue(unit.cart(overdue.user_id), overdue, self._context(unit), self.rules))

    def _on_handover_answer(self, unit: CartUnit, answer: CheckoutAccepted | CheckoutRefused) -> list[Outgoing]:
        cart = unit.cart(answer.user_id)
        return self._apply(unit, saga.on_handover_answer(cart, answer, self._context(unit), self.rules))

    # --- the read models ---

    def _on_level_changed(self, unit: CartUnit, message: stock_contract.StockLevelChanged) -> list[Outgoing]:
        key = domain.stock_key(message.product_id, message.size)
        unit.stock[key] = message.available
        unit.dirty_stock.add(key)
        return []

    def _on_product_upserted(self, unit: CartUnit, event: ProductUpserted) -> list[Outgoing]:
        unit.put_product(
            Product(
                product_id=event.product_id,
                name=event.name,
                price=event.price,
                image_url=event.image_url,
                is_deleted=event.is_deleted,
                sizes=tuple(SizeOption(s.size, s.price) for s in event.sizes or ()),
            )
        )
        return []

    def _on_product_deleted(self, unit: CartUnit, event: ProductDeleted) -> list[Outgoing]:
        """A product that is no longer sold gives back the units carts held for it,
        whether reserved at add-to-cart or by a checkout that did not go through."""
        known = unit.products.get(event.product_id)
        unit.put_product(
            replace(known, is_deleted=True) if known else Product(event.product_id, name="", price=Decimal(0), is_deleted=True)
        )
        cause = Cause(event.message_id, event.correlation_id)
        return [
            record
            for cart in list(unit.carts.values())
            for record in self._apply(unit, saga.on_product_deleted(cart, event.product_id, cause, self.clock.now()))
        ]

    # --- the cart's timers ---

    def _on_housekeeping(self, unit: CartUnit, due: HousekeepingDue) -> list[Outgoing]:
        now = self.clock.now()
        cart = unit.cart(due.user_id)
        if not housekeeping.is_due(cart, due, now):
            return []  # the buyer was active since: the timer moved
        if due.task == housekeeping.CHECK:
            stock = unit.stock if self.rules.reserving else None
            result = housekeeping.periodic_check(cart, unit.products, stock, now, self.policy)
        elif due.task == housekeeping.REMIND:
            result = housekeeping.remind(cart, now, unit.products, unit.stock)
        else:
            result = housekeeping.expire(cart, now, self.rules.answer_timeout)
        unit.put_cart(result.cart)
        cause = Cause(due.dedup_key)
        reason = "cart_expired" if due.task == housekeeping.EXPIRE else "item_unavailable"
        releases = [
            Release(cause, cart.user_id, line.item_id, line.reservation_id or "", line.product_id, reason)
            for line in result.releases
        ]
        return [
            *self.translator.events(result.cart_events, cause, key=cart.user_id),
            *self.translator.events(result.notifications, cause, key=cart.user_id, notifications=True),
            *self.translator.records(releases),
        ]
