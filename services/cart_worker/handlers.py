"""The cart worker's handlers: contract messages in, domain calls, contract messages out.

- Catalog events keep the catalog read model current.
- Every cart command gets exactly one ``CommandResult`` on its ``reply_to`` topic,
  and each change to a cart one event on ``cart.events``.
- With cart-time reservation on, an add or an increase is confirmed only once
  the stock worker answered on ``stock.events``: the cart keeps the command as
  pending (and queues the user's later commands behind it), and answers when
  the stock answer arrives, or with ``RESERVATION_FAILED`` when it does not
  arrive in time.

Message ids of everything produced are derived from the id of what caused it,
so handling a message again produces identical messages.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from contracts import cart as cart_contract
from contracts import notifications as notification_contract
from contracts import stock as stock_contract
from contracts.catalog import ProductDeleted, ProductUpserted, catalog_event_adapter
from contracts.envelope import Command, is_identifier, message_id_for
from contracts.errors import ErrorCode
from contracts.checkout import CheckoutLine, StartCheckout
from contracts.topics import (
    CART_EVENTS,
    CART_REPLIES,
    CATALOG_EVENTS,
    CHECKOUT_COMMANDS,
    NOTIFICATIONS_EVENTS,
    STOCK_COMMANDS,
    STOCK_EVENTS,
)
from services.cart_worker import domain, housekeeping, repository
from services.cart_worker.housekeeping import HousekeepingDue
from services.cart_worker.domain import Accepted, Cart, PendingStock, Product, Rejected, SizeOption
from services.runtime.clock import Clock
from services.runtime.codec import Malformed
from services.runtime.decoding import decode_record
from services.runtime.emit import causal_envelope, event_records
from services.runtime.processing import UnitOfWork, Work
from services.runtime.records import Incoming, Outgoing
from services.runtime.settings import Settings

CATALOG_TYPES = frozenset({"ProductUpserted", "ProductDeleted"})
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


def new_item_id(command_id: str) -> str:
    """The id of the cart line an add creates."""
    return message_id_for(command_id, "CartLine")


def stock_command_id(cause_id: str, kind: str, reservation_id: str) -> str:
    """The message_id of the stock command of ``kind`` that ``cause_id`` sends about a reservation."""
    return message_id_for(cause_id, kind, reservation_id)


def payment_id_for(command_id: str) -> str:
    """The payment id (and checkout id) a checkout command creates."""
    return "pay-" + message_id_for(command_id, "Payment")


@dataclass(frozen=True)
class StockAnswerOverdue:
    """Internal: a cart waited longer than allowed for the stock worker."""

    user_id: str
    reservation_id: str
    #: The message_id of the command whose stock step is overdue: two steps on
    #: one reservation (an increase, later another) time out separately.
    command_id: str

    @property
    def dedup_key(self) -> str:
        return f"stock-timeout:{self.reservation_id}:{self.command_id}"


@dataclass
class CartUnit(UnitOfWork):
    """The carts, catalog entries and stock levels one batch touches, changed in memory."""

    carts: dict[str, Cart] = field(default_factory=dict)
    products: dict[str, Product] = field(default_factory=dict)
    stock: dict[str, int] = field(default_factory=dict)
    dirty_carts: set[str] = field(default_factory=set)
    dirty_products: set[str] = field(default_factory=set)
    dirty_stock: set[str] = field(default_factory=set)

    def cart(self, user_id: str) -> Cart:
        return self.carts.setdefault(user_id, Cart(user_id))

    def put_cart(self, cart: Cart) -> None:
        if self.carts.get(cart.user_id) is cart:
            return  # unchanged: no write, no new version
        self.carts[cart.user_id] = cart
        self.dirty_carts.add(cart.user_id)

    def put_product(self, product: Product) -> None:
        self.products[product.product_id] = product
        self.dirty_products.add(product.product_id)


class CartLogic:
    name = "cart"

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.reserving = settings.cart_stock_reservation_enabled
        self.catalog_topic = settings.topic(CATALOG_EVENTS)
        self.stock_events_topic = settings.topic(STOCK_EVENTS)
        self.stock_commands_topic = settings.topic(STOCK_COMMANDS)
        self.replies_topic = settings.topic(CART_REPLIES)
        self.events_topic = settings.topic(CART_EVENTS)
        self.checkout_commands_topic = settings.topic(CHECKOUT_COMMANDS)
        self.notifications_topic = settings.topic(NOTIFICATIONS_EVENTS)
        self.limits = domain.CartLimits(
            max_quantity=settings.cart_item_max_quantity,
            max_lines=settings.cart_max_lines,
            max_property_keys=settings.properties_max_keys,
            max_property_bytes=settings.properties_max_bytes,
        )
        self.policy = housekeeping.Policy(
            remind_after=timedelta(days=settings.cart_abandoned_threshold_days),
            expire_after=timedelta(days=settings.cart_session_timeout_days),
            check_every=timedelta(hours=settings.cart_change_check_interval_hours),
            notify_changes=settings.cart_change_notifications_enabled,
            notify_abandoned=settings.cart_abandoned_notifications_enabled,
            auto_remove_unavailable=settings.cart_auto_remove_unavailable,
        )

    # --- decoding ----------------------------------------------------------------

    def decode(self, record: Incoming) -> Work:
        # No one waits for an answer to an event; a malformed command is answered when it can be addressed.
        if record.topic == self.catalog_topic:
            return decode_record(record, catalog_event_adapter, CATALOG_TYPES, self.clock)
        if record.topic == self.stock_events_topic:
            adapter, types = stock_contract.stock_event_adapter, stock_contract.STOCK_EVENT_TYPES
            return decode_record(record, adapter, types, self.clock)
        return decode_record(
            record,
            cart_contract.cart_command_adapter,
            cart_contract.CART_COMMAND_TYPES,
            self.clock,
            settings=self.settings,
            answer=self._invalid_reply,
        )

    def arrange(self, works: list[Work]) -> list[Work]:
        # Catalog events fetched together with commands were published no later
        # than those commands were fetched: apply them first (a stable sort keeps
        # each partition's own order).
        return sorted(works, key=lambda work: work.record is None or work.record.topic != self.catalog_topic)

    def _invalid_reply(self, record: Incoming, malformed: Malformed) -> Outgoing | None:
        """A rejection addressed to the sender, when the record says who that is."""
        message_id = malformed.message_id
        if message_id is None:
            return None
        fields = malformed.fields or {}
        correlation_id = fields.get("correlation_id")
        if not is_identifier(correlation_id):
            correlation_id = message_id
        user_id = fields.get("user_id") if isinstance(fields.get("user_id"), str) else None
        reply_to = fields.get("reply_to")
        topic = reply_to if self.settings.reply_topic_allowed(reply_to) else self.replies_topic
        result = cart_contract.CommandResult(
            message_id=message_id_for(message_id, "CommandResult"),
            occurred_at=self.clock.now(),
            correlation_id=correlation_id,
            causation_id=message_id,
            command_type=str(fields.get("type"))[:100],
            command_message_id=message_id,
            user_id=user_id[:200] if user_id else None,
            success=False,
            error_code=ErrorCode.INVALID_MESSAGE,
            error_message=f"Invalid message: {malformed.reason}",
            suggested_action="Fix the message to match the cartflow contract v1 and send it with a new message_id",
        )
        key = user_id.encode() if user_id else record.key
        return Outgoing(topic, key, result.to_json_bytes(), is_reply=True)

    # --- loading and saving --------------------------------------------------------

    async def load(self, db: AsyncDatabase, messages: list[Any]) -> CartUnit:
        user_ids: set[str] = set()
        for message in messages:
            if isinstance(message, Command | StockAnswerOverdue | HousekeepingDue):
                user_ids.add(message.user_id)
            elif (holder := domain.parse_holder(getattr(message, "holder", None))) is not None:
                user_ids.add(holder[0])
        carts = await repository.load_carts(db, user_ids)
        deleted = [m.product_id for m in messages if isinstance(m, ProductDeleted)]
        if self.reserving and deleted:
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
        return CartUnit(
            carts=carts,
            products=await repository.load_products(db, product_ids),
            stock=await repository.load_stock(db, stock_keys),
        )

    async def save(self, unit: CartUnit, db: AsyncDatabase, session: AsyncClientSession) -> None:
        await repository.save_products(db, [unit.products[p] for p in sorted(unit.dirty_products)], session)
        await repository.save_stock(db, {k: unit.stock[k] for k in sorted(unit.dirty_stock)}, session)
        await repository.save_carts(db, [unit.carts[u] for u in sorted(unit.dirty_carts)], session)

    # --- dispatch ------------------------------------------------------------------

    def handle(self, unit: CartUnit, message: Any) -> list[Outgoing]:
        if isinstance(message, ProductUpserted | ProductDeleted):
            return self._on_catalog_event(unit, message)
        if isinstance(message, stock_contract.StockLevelChanged):
            key = domain.stock_key(message.product_id, message.size)
            unit.stock[key] = message.available
            unit.dirty_stock.add(key)
            return []
        if isinstance(message, StockAnswerOverdue):
            return self._on_overdue(unit, message)
        if isinstance(message, HousekeepingDue):
            return self._on_housekeeping(unit, message)
        if isinstance(message, Command):
            before = unit.cart(message.user_id)
            outputs = self._on_command(unit, message)
            after = unit.cart(message.user_id)
            if isinstance(message, ACTIVITY) and after is not before:
                # The buyer changed the cart (a refused command changes nothing, not even this).
                unit.put_cart(housekeeping.touch(after, self.clock.now(), self.policy))
            return outputs
        return self._on_stock_answer(unit, message)

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

    # --- catalog -------------------------------------------------------------------

    def _on_catalog_event(self, unit: CartUnit, event: ProductUpserted | ProductDeleted) -> list[Outgoing]:
        if isinstance(event, ProductUpserted):
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
        known = unit.products.get(event.product_id)
        unit.put_product(
            replace(known, is_deleted=True)
            if known
            else Product(event.product_id, name="", price=Decimal(0), is_deleted=True)
        )
        return self._release_deleted_product(unit, event) if self.reserving else []

    def _release_deleted_product(self, unit: CartUnit, event: ProductDeleted) -> list[Outgoing]:
        """A product that is no longer sold gives back the units carts held for it."""
        now = self.clock.now()
        releases = []
        for cart in list(unit.carts.values()):
            for line in cart.lines:
                if line.product_id != event.product_id or not line.is_reserved or line.reservation_id is None:
                    continue
                cause = f"{event.message_id}:{cart.user_id}:{line.item_id}"
                releases.append(
                    self._stock_command(
                        stock_contract.ReleaseReservation,
                        cause,
                        event.correlation_id,
                        reservation_id=line.reservation_id,
                        product_id=line.product_id,
                        reason="product_deleted",
                        holder=domain.holder_of(cart.user_id, line.item_id),
                    )
                )
                unit.put_cart(domain.mark_released(unit.cart(cart.user_id), line.reservation_id, now=now))
        return releases

    # --- commands ------------------------------------------------------------------

    def _on_command(self, unit: CartUnit, command: Any, *, late: bool = False) -> list[Outgoing]:
        cart = unit.cart(command.user_id)
        if cart.pending is not None:
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
        outcome = replace(outcome, cart=new_cart)
        if isinstance(command, cart_contract.AddItem | cart_contract.UpdateItemQuantity) and outcome.item_id:
            outcome = self._with_cart_view(unit, outcome)
        return [*self._answer(command, outcome, late=late), *stock_step]

    def _decide(self, unit: CartUnit, command: Any) -> domain.Outcome:
        now = self.clock.now()
        cart = unit.cart(command.user_id)
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
                )
            case cart_contract.UpdateItemQuantity():
                return domain.update_item_quantity(
                    cart, item_id=command.item_id, quantity=command.quantity, now=now, max_quantity=max_quantity
                )
            case cart_contract.RemoveItem():
                return domain.remove_item(cart, item_id=command.item_id, now=now)
            case cart_contract.ClearCart():
                return domain.clear_cart(cart, now=now)
            case cart_contract.GetCart():
                return Accepted(cart, (), domain.cart_summary(cart, catalog, stock))
            case cart_contract.CheckChanges():
                return domain.check_changes(cart, catalog, now=now, stock=stock)
            case cart_contract.AcceptChanges():
                return domain.accept_changes(cart, catalog, item_ids=command.item_ids, now=now)
            case cart_contract.ValidateCart():
                return domain.validate_cart(cart, catalog, item_ids=command.item_ids, stock=stock)
        raise TypeError(f"no handler for {type(command).__name__}")

    # --- checkout --------------------------------------------------------------------

    def _checkout(self, unit: CartUnit, command: Any, *, late: bool) -> list[Outgoing]:
        """Validate, make sure every line holds its stock, then hand the lines over
        to the checkout worker, which answers the upstream once the orders exist."""
        now = self.clock.now()
        cart = unit.cart(command.user_id)
        item_ids = [command.item_id] if isinstance(command, cart_contract.CheckoutItem) else None
        validation = domain.validate_cart(cart, unit.products, item_ids=item_ids, stock=unit.stock)
        if isinstance(validation, Rejected):
            return self._answer(command, validation, late=late)
        assert validation.data is not None
        if not validation.data["is_valid"]:
            rejection = Rejected(
                ErrorCode.CHECKOUT_VALIDATION_FAILED,
                "Some items cannot be checked out as they are",
                "See validation_details: accept the changes or remove the unavailable items, then check out again",
                data=validation.data,
            )
            return self._answer(command, rejection, late=late)
        lines = [line for line in cart.lines if item_ids is None or line.item_id in item_ids]
        for line in lines:
            if not line.is_reserved:
                # Reserve first (the cart reservation expired, or reservation at
                # add-to-cart is off); the checkout runs again once stock answered.
                # The checkout runs again after each answer, at a new cart version:
                # a line whose reservation lapsed meanwhile gets a new one.
                reservation_id = message_id_for(command.message_id, "Reservation", f"{line.item_id}@{cart.version}")
                expires_at = now + timedelta(seconds=self.settings.cart_reservation_ttl)
                reserve = self._reserve(command, line, reservation_id, expires_at)
                pending = PendingStock(
                    command=command.model_dump(mode="json"),
                    item_id=line.item_id,
                    reservation_id=reservation_id,
                    operation="reserve",
                    previous=line,
                    deadline=now + timedelta(seconds=self.settings.stock_reply_timeout_seconds),
                    stock_command_id=stock_command_id(command.message_id, "ReserveStock", reservation_id),
                )
                unit.put_cart(domain.await_stock(cart, pending, now=now))
                return [reserve]

        payment_id = payment_id_for(command.message_id)
        checkout_lines = [
            CheckoutLine(
                order_id=message_id_for(command.message_id, "Order", line.item_id),
                item_id=line.item_id,
                product_id=line.product_id,
                product_name=line.product_name,
                size=line.size,
                quantity=line.quantity,
                unit_price=line.unit_price,
                total_price=line.line_total,
                reservation_id=line.reservation_id,
            )
            for line in lines
        ]
        total = sum((line.line_total for line in lines), Decimal(0))
        fingerprint = "|".join([payment_id, *(line.order_id for line in checkout_lines), str(total)])
        checkout_type = "single_item" if item_ids else "full_cart"
        start = StartCheckout(
            message_id=message_id_for(command.message_id, "StartCheckout", payment_id),
            **causal_envelope(command.message_id, command.correlation_id, now),
            reply_to=command.reply_to or self.replies_topic,
            payment_id=payment_id,
            payment_hash=hashlib.sha256(fingerprint.encode()).hexdigest(),
            user_id=command.user_id,
            checkout_type=checkout_type,
            lines=checkout_lines,
            total_amount=total,
            payment_method=command.payment_method,
            gateway_name=command.gateway_name,
            shipping_address=command.shipping_address,
            command_type=command.type,
            command_message_id=command.message_id,
        )
        handover_bytes = start.to_json_bytes()
        if len(handover_bytes) > self.settings.max_message_bytes:
            # The checkout worker would refuse it unread: refuse it here, before anything moved.
            rejection = Rejected(
                ErrorCode.CART_LIMIT_REACHED,
                f"These {len(lines)} items are too many to check out at once",
                "Check out fewer items at a time",
            )
            return self._answer(command, rejection, late=late)
        item_ids_out = [line.item_id for line in lines]
        unit.put_cart(cart.without(item_ids_out, now))
        events = event_records(
            [domain.CartCheckedOut(command.user_id, payment_id, checkout_type, item_ids_out)],
            cart_contract,
            topic=self.events_topic,
            key=command.user_id,
            cause_id=command.message_id,
            envelope=causal_envelope(command.message_id, command.correlation_id, now),
        )
        # The hand-over counts as the command's reply: a repeat of the command
        # sends it again, and the checkout worker answers the repeat with its
        # stored response.
        handover = Outgoing(
            self.checkout_commands_topic,
            payment_id.encode(),
            handover_bytes,
            is_reply=True,
            answers=command.message_id if late else None,
        )
        return [handover, *events]

    def _with_cart_view(self, unit: CartUnit, outcome: Accepted) -> Accepted:
        cart = outcome.cart
        line = cart.line(outcome.item_id or "")
        if line is None:
            return outcome
        product = unit.products.get(line.product_id)
        data = {
            **domain.line_view(line, product, live=True, stock=unit.stock),
            "cart": domain.cart_summary(cart, unit.products, unit.stock),
        }
        return replace(outcome, data=data)

    # --- the stock step --------------------------------------------------------------

    def _stock_step(
        self, before: Cart, outcome: Accepted, command: Any
    ) -> tuple[PendingStock | None, list[Outgoing], Cart]:
        """What the stock worker must do for this change, and whether the answer waits for it."""
        now = self.clock.now()
        after = outcome.cart
        if isinstance(command, cart_contract.RemoveItem | cart_contract.ClearCart):
            gone = [line for line in before.lines if after.line(line.item_id) is None]
            releases = [
                self._stock_command(
                    stock_contract.ReleaseReservation,
                    command.message_id,
                    command.correlation_id,
                    reservation_id=line.reservation_id,
                    product_id=line.product_id,
                    reason="removed_from_cart",
                    holder=domain.holder_of(command.user_id, line.item_id),
                )
                for line in gone
                if line.is_reserved and line.reservation_id
            ]
            return None, releases, after
        if not isinstance(command, cart_contract.AddItem | cart_contract.UpdateItemQuantity) or not outcome.events:
            return None, [], after
        item_id = outcome.item_id or ""
        previous, line = before.line(item_id), after.line(item_id)
        if not self.reserving and (previous is None or not previous.is_reserved):
            return None, [], after  # reserved at checkout, not now
        assert line is not None
        expires_at = now + timedelta(seconds=self.settings.cart_reservation_ttl)
        if previous is not None and previous.is_reserved and previous.reservation_id:
            adjust = self._stock_command(
                stock_contract.AdjustReservation,
                command.message_id,
                command.correlation_id,
                reservation_id=previous.reservation_id,
                product_id=line.product_id,
                quantity=line.quantity,
                expires_at=expires_at,
                holder=domain.holder_of(command.user_id, item_id),
            )
            if line.quantity <= previous.reserved_quantity:
                # Shrinking cannot fail: confirm now, let the stock worker catch up.
                shrunk = replace(line, reserved_quantity=line.quantity)
                return None, [adjust], after.with_line(shrunk, now)
            reservation_id, operation, stock_command = previous.reservation_id, "adjust", adjust
        else:
            reservation_id = message_id_for(command.message_id, "Reservation", item_id)
            operation = "reserve"
            stock_command = self._reserve(command, line, reservation_id, expires_at)
        kind = "AdjustReservation" if operation == "adjust" else "ReserveStock"
        pending = PendingStock(
            command=command.model_dump(mode="json"),
            item_id=item_id,
            reservation_id=reservation_id,
            operation=operation,
            previous=previous,
            deadline=now + timedelta(seconds=self.settings.stock_reply_timeout_seconds),
            stock_command_id=stock_command_id(command.message_id, kind, reservation_id),
        )
        return pending, [stock_command], domain.await_stock(after, pending, now=now)

    def _reserve(self, command: Any, line: domain.CartLine, reservation_id: str, expires_at: datetime) -> Outgoing:
        return self._stock_command(
            stock_contract.ReserveStock,
            command.message_id,
            command.correlation_id,
            reservation_id=reservation_id,
            product_id=line.product_id,
            size=line.size,
            quantity=line.quantity,
            holder=domain.holder_of(command.user_id, line.item_id),
            expires_at=expires_at,
        )

    def _stock_command(self, kind: type, cause_id: str, correlation_id: str | None, **fields: Any) -> Outgoing:
        message = kind(
            message_id=stock_command_id(cause_id, kind.__name__, fields["reservation_id"]),
            **causal_envelope(cause_id, correlation_id, self.clock.now()),
            **fields,
        )
        return Outgoing(self.stock_commands_topic, fields["product_id"].encode(), message.to_json_bytes())

    # --- stock answers -----------------------------------------------------------------

    def _on_stock_answer(self, unit: CartUnit, event: Any) -> list[Outgoing]:
        holder = domain.parse_holder(getattr(event, "holder", None))
        if holder is None:
            return []
        now = self.clock.now()
        cart = unit.cart(holder[0])
        pending = cart.pending
        if isinstance(event, stock_contract.StockReleased):
            if not event.no_op:
                unit.put_cart(domain.mark_released(cart, event.reservation_id, now=now))
            return []
        if pending is None or not pending.is_answered_by(event.causation_id, event.reservation_id):
            # Not the answer to the step in flight: a late one (the timeout already
            # compensated for it) or one to an earlier command on the same reservation.
            return []
        command = cart_contract.cart_command_adapter.validate_python(pending.command)
        if isinstance(event, stock_contract.StockReserved | stock_contract.ReservationAdjusted):
            confirmed = domain.confirm_stock(cart, event.quantity, now=now)
            unit.put_cart(confirmed)
            if isinstance(command, cart_contract.CheckoutItem | cart_contract.CheckoutCart):
                return [*self._on_command(unit, command, late=True), *self._drain(unit, cart.user_id)]
            outcome = self._with_cart_view(unit, Accepted(confirmed, _events_of(command, pending, confirmed), None, pending.item_id))
            return [*self._answer(command, outcome, late=True), *self._drain(unit, cart.user_id)]
        if isinstance(event, stock_contract.StockReservationRejected):
            rejection = domain.insufficient_stock(pending, command.type, event.requested, event.available)
            if isinstance(command, cart_contract.CheckoutItem | cart_contract.CheckoutCart):
                rejection = replace(
                    rejection,
                    code=ErrorCode.CHECKOUT_VALIDATION_FAILED,
                    data={"validation_details": [{"item_id": pending.item_id, "is_valid": False, "issues": [
                        {"field": "stock", "old": str(event.requested), "new": str(event.available), "message": rejection.message}
                    ]}]},
                )
            return self._resolve_refused(unit, cart, command, rejection)
        if (
            isinstance(event, stock_contract.StockCommandRejected)
            and event.error_code == ErrorCode.RESERVATION_NOT_ACTIVE
            and pending.operation == "adjust"
        ):
            # The line's reservation lapsed while the change was on its way:
            # ask for the whole quantity afresh, once.
            line = cart.line(pending.item_id)
            assert line is not None
            reservation_id = message_id_for(command.message_id, "Reservation.retry", pending.item_id)
            expires_at = now + timedelta(seconds=self.settings.cart_reservation_ttl)
            retry = replace(
                pending,
                reservation_id=reservation_id,
                operation="reserve",
                # The lapsed reservation holds nothing: a refusal leaves the line without one.
                previous=domain.unreserved(pending.previous) if pending.previous else None,
                stock_command_id=stock_command_id(command.message_id, "ReserveStock", reservation_id),
            )
            unit.put_cart(domain.await_stock(replace(cart, pending=None), retry, now=now))
            return [self._reserve(command, line, reservation_id, expires_at)]
        return self._resolve_refused(unit, cart, command, domain.reservation_timed_out(pending))

    def _resolve_refused(self, unit: CartUnit, cart: Cart, command: Any, rejection: Rejected) -> list[Outgoing]:
        unit.put_cart(domain.roll_back_stock(cart, now=self.clock.now()))
        return [*self._answer(command, rejection, late=True), *self._drain(unit, cart.user_id)]

    def _on_overdue(self, unit: CartUnit, overdue: StockAnswerOverdue) -> list[Outgoing]:
        cart = unit.cart(overdue.user_id)
        pending = cart.pending
        if pending is None or (pending.reservation_id, pending.command.get("message_id")) != (
            overdue.reservation_id,
            overdue.command_id,
        ):
            return []
        command = cart_contract.cart_command_adapter.validate_python(pending.command)
        line = cart.line(pending.item_id)
        product_id = line.product_id if line else (pending.previous.product_id if pending.previous else "")
        previous = pending.previous
        if pending.operation == "adjust" and previous is not None and previous.reserved_quantity:
            # Whatever the stock worker did with the adjustment, put it back.
            kind: type = stock_contract.AdjustReservation
            undo: dict[str, Any] = {"quantity": previous.reserved_quantity}
        else:
            # Release whatever may be reserved late.
            kind, undo = stock_contract.ReleaseReservation, {"reason": "reservation_timeout"}
        compensation = self._stock_command(
            kind,
            overdue.dedup_key,
            command.correlation_id,
            reservation_id=pending.reservation_id,
            product_id=product_id,
            holder=domain.holder_of(cart.user_id, pending.item_id),
            **undo,
        )
        return [*self._resolve_refused(unit, cart, command, domain.reservation_timed_out(pending)), compensation]

    def _drain(self, unit: CartUnit, user_id: str) -> list[Outgoing]:
        """Run the commands that waited behind a resolved stock step, until one waits again."""
        outputs: list[Outgoing] = []
        while True:
            cart = unit.cart(user_id)
            if cart.pending is not None or not cart.queue:
                return outputs
            unit.put_cart(replace(cart, queue=cart.queue[1:]))
            command = cart_contract.cart_command_adapter.validate_python(cart.queue[0])
            outputs.extend(self._on_command(unit, command, late=True))

    # --- housekeeping ----------------------------------------------------------------

    def _on_housekeeping(self, unit: CartUnit, due: HousekeepingDue) -> list[Outgoing]:
        now = self.clock.now()
        cart = unit.cart(due.user_id)
        if not housekeeping.is_due(cart, due, now):
            return []  # the buyer was active since: the timer moved
        if due.task == housekeeping.CHECK:
            stock = unit.stock if self.reserving else None
            result = housekeeping.periodic_check(cart, unit.products, stock, now, self.policy)
        elif due.task == housekeeping.REMIND:
            result = housekeeping.remind(cart, now)
        else:
            retry_after = timedelta(seconds=self.settings.stock_reply_timeout_seconds)
            result = housekeeping.expire(cart, now, retry_after)
        unit.put_cart(result.cart)
        cause, envelope = due.dedup_key, causal_envelope(due.dedup_key, None, now)
        releases = [
            self._stock_command(
                stock_contract.ReleaseReservation,
                cause,
                None,
                reservation_id=line.reservation_id,
                product_id=line.product_id,
                reason="cart_expired" if due.task == housekeeping.EXPIRE else "item_unavailable",
                holder=domain.holder_of(cart.user_id, line.item_id),
            )
            for line in result.releases
        ]
        return [
            *event_records(
                result.cart_events, cart_contract, topic=self.events_topic, key=cart.user_id,
                cause_id=cause, envelope=envelope,
            ),
            *event_records(
                result.notifications, notification_contract, topic=self.notifications_topic, key=cart.user_id,
                cause_id=cause, envelope=envelope,
            ),
            *releases,
        ]

    # --- answers -------------------------------------------------------------------

    def _answer(self, command: Any, outcome: domain.Outcome, *, late: bool = False) -> list[Outgoing]:
        now = self.clock.now()
        envelope = causal_envelope(command.message_id, command.correlation_id, now)
        common = {
            "message_id": message_id_for(command.message_id, "CommandResult"),
            "command_type": command.type,
            "command_message_id": command.message_id,
            "user_id": command.user_id,
            "cart_item_id": outcome.item_id,
            "data": outcome.data,
            **envelope,
        }
        events: list[Outgoing] = []
        if isinstance(outcome, Accepted):
            result = cart_contract.CommandResult(success=True, **common)
            events = event_records(
                outcome.events, cart_contract, topic=self.events_topic, key=command.user_id,
                cause_id=command.message_id, envelope=envelope,
            )
        else:
            result = cart_contract.CommandResult(
                success=False,
                error_code=outcome.code,
                error_message=outcome.message,
                suggested_action=outcome.suggested_action,
                available_quantity=outcome.available_quantity,
                **common,
            )
        reply_to = command.reply_to or self.replies_topic
        answers = command.message_id if late else None
        reply = Outgoing(reply_to, command.user_id.encode(), result.to_json_bytes(), is_reply=True, answers=answers)
        return [reply, *events]


def _events_of(command: Any, pending: PendingStock, cart: Cart) -> tuple[domain.DomainEvent, ...]:
    """The cart events of a change confirmed by the stock worker."""
    line = cart.line(pending.item_id)
    if line is None:
        return ()
    previous = pending.previous
    if isinstance(command, cart_contract.AddItem):
        added = line.quantity - (previous.quantity if previous else 0)
        return (
            domain.ItemAdded(
                cart.user_id, line.item_id, line.product_id, line.size, added, line.quantity, line.unit_price, line.product_name
            ),
        )
    return (
        domain.ItemQuantityChanged(
            cart.user_id, line.item_id, line.product_id, line.size, previous.quantity if previous else 0, line.quantity
        ),
    )


async def find_overdue(db: AsyncDatabase, clock: Clock, settings: Settings, limit: int) -> list[StockAnswerOverdue]:
    carts = await repository.carts_past_deadline(db, clock.now(), limit)
    return [
        StockAnswerOverdue(cart.user_id, cart.pending.reservation_id, str(cart.pending.command.get("message_id")))
        for cart in carts
        if cart.pending
    ]


async def find_housekeeping_due(db: AsyncDatabase, clock: Clock, settings: Settings, limit: int) -> list[HousekeepingDue]:
    now, due = clock.now(), []
    for task, moment in housekeeping.TASK_FIELDS.items():
        for cart in await repository.carts_due(db, moment, now, limit):
            due.append(HousekeepingDue(cart.user_id, task, getattr(cart, moment)))
    return due
