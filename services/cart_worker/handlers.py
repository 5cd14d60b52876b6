"""The cart worker's handling as the batch processor drives it: decode each record,
load what the batch touches, handle each message, save.

Every cart command gets exactly one ``CommandResult`` on its ``reply_to`` topic,
and each change to a cart one event on ``cart.events``. What is not a command
edit lives beside this module: the stock steps (``stock_steps``), the hand-over
to the checkout worker (``checkout``), catalog events and timers (``upkeep``),
how answers are written (``answers``) and what a batch works on (``unit``).

Message ids of everything produced are derived from the id of what caused it,
so handling a message again produces identical messages."""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from contracts import cart as cart_contract
from contracts import stock as stock_contract
from contracts.catalog import ProductDeleted, ProductUpserted, catalog_event_adapter
from contracts.checkout import HANDOVER_ANSWER_TYPES, CheckoutAccepted, CheckoutRefused, handover_answer_adapter
from contracts.envelope import Command
from contracts.errors import ErrorCode
from contracts.holders import parse_cart_line_holder
from contracts.topics import CART_COMMANDS, CATALOG_EVENTS, CHECKOUT_HANDOVERS, STOCK_EVENTS
from services.cart_worker import domain, housekeeping, repository
from services.cart_worker.checkout import CheckoutHandover
from services.cart_worker.domain import Accepted, Rejected
from services.cart_worker.housekeeping import HousekeepingDue
from services.cart_worker.stock_steps import StockSteps
from services.cart_worker.unit import CartUnit, StockAnswerOverdue, new_item_id
from services.cart_worker.upkeep import CatalogAndHousekeeping
from services.runtime.clock import Clock
from services.runtime.decoding import decode_record, invalid_command_reply
from services.runtime.processing import Work
from services.runtime.records import Incoming, Outgoing
from services.runtime.routing import Routes, received_on
from services.runtime.settings import Settings

CATALOG_TYPES = frozenset({"ProductUpserted", "ProductDeleted"})
HANDOVER_TYPES = frozenset(kind.__name__ for kind in HANDOVER_ANSWER_TYPES)
#: Most commands that wait behind one cart's stock step (a cart document stays bounded).
MAX_QUEUED_COMMANDS = 100
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


class CartLogic(StockSteps, CheckoutHandover, CatalogAndHousekeeping):
    """The cart worker's logic as the batch processor drives it: decode, load, handle, save."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        super().__init__(settings, clock)
        stock_answers = [kind for kind in stock_contract.STOCK_EVENTS if kind is not stock_contract.StockLevelChanged]
        self.routes = Routes(
            {
                ProductUpserted: self._on_catalog_event,
                ProductDeleted: self._on_catalog_event,
                stock_contract.StockLevelChanged: self._on_level_changed,
                **{kind: self._on_stock_answer for kind in stock_answers},
                StockAnswerOverdue: self._on_overdue,
                CheckoutAccepted: self._on_handover,
                CheckoutRefused: self._on_handover,
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
            return decode_record(record, adapter, types, self.clock)
        return decode_record(
            record,
            cart_contract.cart_command_adapter,
            cart_contract.CART_COMMAND_TYPES,
            self.clock,
            settings=self.settings,
            answer=functools.partial(invalid_command_reply, self.settings, self.clock, self.replies_topic),
        )

    def arrange(self, works: list[Work]) -> list[Work]:
        # Catalog events fetched together with commands were published no later
        # than those commands were fetched: apply them first (a stable sort keeps
        # each partition's own order).
        return sorted(works, key=lambda work: work.record is None or work.record.topic != self.catalog_topic)

    async def load(self, db: AsyncDatabase, messages: list[Any]) -> CartUnit:
        user_ids: set[str] = set()
        for message in messages:
            if isinstance(message, Command | StockAnswerOverdue | HousekeepingDue | CheckoutAccepted | CheckoutRefused):
                user_ids.add(message.user_id)
            elif (holder := parse_cart_line_holder(getattr(message, "holder", None))) is not None:
                user_ids.add(holder[0])
        carts = await repository.load_carts(db, user_ids)
        deleted = [m.product_id for m in messages if isinstance(m, ProductDeleted)]
        if deleted:
            carts.update(await repository.load_carts_holding(db, deleted))
        product_ids = {m.product_id for m in messages if isinstance(m, Command | ProductUpserted | ProductDeleted) and hasattr(m, "product_id")}
        product_ids.update(line.product_id for cart in carts.values() for line in cart.lines)
        stock_keys = {domain.stock_key(m.product_id, m.size) for m in messages if hasattr(m, "product_id") and hasattr(m, "size")}
        stock_keys.update(domain.stock_key(line.product_id, line.size) for cart in carts.values() for line in cart.lines)
        for cart in carts.values():  # queued adds may name products of their own
            for queued in cart.queue:
                if isinstance(queued.get("product_id"), str):
                    product_ids.add(queued["product_id"])
                    stock_keys.add(domain.stock_key(queued["product_id"], queued.get("size")))
        pages = {
            m.message_id: await repository.list_product_ids(db, m.after, m.limit + 1)
            for m in messages
            if isinstance(m, cart_contract.ListProducts)
        }
        product_ids.update(pid for page in pages.values() for pid in page)
        products = await repository.load_products(db, product_ids)
        for pid in (pid for page in pages.values() for pid in page):
            product = products.get(pid)
            sizes = [option.size for option in product.sizes] if product and product.has_sizes else [None]
            stock_keys.update(domain.stock_key(pid, size) for size in sizes)
        return CartUnit(
            carts=carts,
            products=products,
            stock=await repository.load_stock(db, stock_keys),
            pages=pages,
        )

    async def save(self, unit: CartUnit, db: AsyncDatabase, session: AsyncClientSession) -> None:
        await repository.save_products(db, [unit.products[p] for p in sorted(unit.dirty_products)], session)
        await repository.save_stock(db, {k: unit.stock[k] for k in sorted(unit.dirty_stock)}, session)
        await repository.save_carts(db, [unit.carts[u] for u in sorted(unit.dirty_carts)], session)

    def handle(self, unit: CartUnit, message: Any) -> list[Outgoing]:
        return self.routes(unit, message)

    def _on_level_changed(self, unit: CartUnit, message: stock_contract.StockLevelChanged) -> list[Outgoing]:
        key = domain.stock_key(message.product_id, message.size)
        unit.stock[key] = message.available
        unit.dirty_stock.add(key)
        return []

    def _on_handover(self, unit: CartUnit, answer: CheckoutAccepted | CheckoutRefused) -> list[Outgoing]:
        return [*self._on_handover_answer(unit, answer), *self._drain(unit, answer.user_id)]

    def _on_cart_command(self, unit: CartUnit, command: Command) -> list[Outgoing]:
        before = unit.cart(command.user_id)
        outputs = self._on_command(unit, command)
        after = unit.cart(command.user_id)
        if isinstance(command, ACTIVITY) and after is not before:
            # The buyer changed the cart (a refused command changes nothing, not even this).
            unit.put_cart(housekeeping.touch(after, self.clock.now(), self.policy))
        return outputs

    def failed(self, work: Work, error: Exception) -> list[Outgoing]:
        message = work.message
        if not isinstance(message, Command):
            return []
        rejection = Rejected(
            ErrorCode.INTERNAL_ERROR,
            "The command could not be processed and was set aside for an operator",
            "Retry later with a new message_id; contact support if it persists",
        )
        return self._answer(message, rejection)

    def _on_command(self, unit: CartUnit, command: Any, *, late: bool = False) -> list[Outgoing]:
        cart = unit.cart(command.user_id)
        if cart.is_busy and not isinstance(command, cart_contract.ListProducts):
            # The catalog is no part of the cart: listing it waits for nothing.
            if not cart.queue and (started := self._start_alongside(unit, cart, command)) is not None:
                return started
            if len(cart.queue) >= MAX_QUEUED_COMMANDS:
                busy = Rejected(
                    ErrorCode.CART_LIMIT_REACHED,
                    f"{MAX_QUEUED_COMMANDS} commands already wait for this cart",
                    "Wait for the answers to the commands already sent, then send this one again",
                )
                return self._answer(command, busy, late=late)
            unit.put_cart(replace(cart, queue=(*cart.queue, command.model_dump(mode="json"))))
            return []
        if isinstance(command, cart_contract.CheckoutItem | cart_contract.CheckoutCart):
            return self._checkout(unit, command, late=late)
        outcome = self._decide(unit, command)
        if isinstance(outcome, Rejected):
            return self._answer(command, outcome, late=late)
        stock_step: list[Outgoing] = []
        new_cart = outcome.cart
        # A line that holds units (with reservation at add-to-cart off: from a
        # checkout that was refused) keeps its reservation in step with it.
        if self.reserving or any(line.is_reserved for line in cart.lines):
            pending, stock_step, new_cart = self._stock_step(cart, outcome, command)
            if pending is not None:
                unit.put_cart(new_cart)
                return stock_step
        if new_cart is not cart:
            unit.put_cart(new_cart)
        if isinstance(command, cart_contract.AddItem | cart_contract.UpdateItemQuantity) and (
            new_cart is not outcome.cart or outcome.data is None or command.include_cart
        ):
            # Answered now (not after a stock step), the stock step changed the line
            # (a shrunk reservation), or the whole cart was asked for: answer with the line as it is now.
            outcome = self._with_cart_view(unit, replace(outcome, cart=new_cart), command)
        elif new_cart is not outcome.cart:
            outcome = replace(outcome, cart=new_cart)
        return [*self._answer(command, outcome, late=late), *stock_step]

    def _decide(self, unit: CartUnit, command: Any, cart: domain.Cart | None = None) -> domain.Outcome:
        now = self.clock.now()
        cart = cart or unit.cart(command.user_id)
        max_quantity = self.settings.cart_item_max_quantity
        catalog, stock = unit.products, unit.stock
        match command:
            case cart_contract.AddItem():
                return domain.add_item(
                    cart,
                    catalog.get(command.product_id),
                    product_id=command.product_id,
                    quantity=command.quantity,
                    size=command.size,
                    properties=command.properties,
                    new_item_id=new_item_id(command.message_id),
                    now=now,
                    limits=self.limits,
                    available=self._units_for(unit, cart.line_for(command.product_id, command.size), command.product_id, command.size),
                    catalog=catalog,
                    stock=stock,
                    view=not self.reserving,  # an add that reserves is answered once the stock worker did
                )
            case cart_contract.UpdateItemQuantity():
                line = cart.line(command.item_id)
                return domain.update_item_quantity(
                    cart,
                    item_id=command.item_id,
                    quantity=command.quantity,
                    now=now,
                    max_quantity=max_quantity,
                    catalog=catalog,
                    available=self._units_for(unit, line, line.product_id, line.size) if line else None,
                    stock=stock,
                    view=not self.reserving,
                )
            case cart_contract.RemoveItem():
                return domain.remove_item(cart, item_id=command.item_id, now=now, catalog=catalog, stock=stock)
            case cart_contract.ClearCart():
                return domain.clear_cart(cart, now=now)
            case cart_contract.GetCart():
                return Accepted(cart, (), domain.cart_summary(cart, catalog, stock, now=now))
            case cart_contract.ListProducts():
                listed = [unit.products[pid] for pid in unit.pages.get(command.message_id, []) if pid in unit.products]
                return Accepted(cart, (), domain.product_page(listed, stock, command.limit))
            case cart_contract.GetCartCount():
                return Accepted(cart, (), domain.cart_count(cart, catalog, stock))
            case cart_contract.CheckChanges():
                return domain.check_changes(cart, catalog, now=now, stock=stock)
            case cart_contract.AcceptChanges():
                return domain.accept_changes(cart, catalog, item_ids=command.item_ids, now=now, stock=stock)
            case cart_contract.ValidateCart():
                return domain.validate_cart(cart, catalog, item_ids=command.item_ids, stock=stock)
        raise TypeError(f"no handler for {type(command).__name__}")

    def _units_for(self, unit: CartUnit, line: domain.CartLine | None, product_id: str, size: str | None) -> int | None:
        """Units a line may grow to by the stock read model, when no stock worker
        decides at once (reservation at add-to-cart off); None where unknown."""
        if self.reserving:
            return None
        if line is not None:
            return domain.units_available(line, unit.stock)
        return unit.stock.get(domain.stock_key(product_id, size))
