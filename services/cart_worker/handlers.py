"""The cart worker's handlers: contract messages in, domain calls, contract messages out.

Catalog events keep the catalog read model current. Every cart command gets
exactly one ``CommandResult`` on its ``reply_to`` topic, and each change to a cart
one event on ``cart.events``. Message ids of everything produced are derived
from the command's id, so handling a command again produces identical messages.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from contracts import cart as cart_contract
from contracts.catalog import ProductDeleted, ProductUpserted, catalog_event_adapter
from contracts.envelope import Command, derived_message_id
from contracts.errors import ErrorCode
from contracts.topics import CART_EVENTS, CART_REPLIES, CATALOG_EVENTS
from services.cart_worker import domain, repository
from services.cart_worker.domain import Accepted, Cart, Product, Rejected, SizeOption
from services.runtime.clock import Clock
from services.runtime.codec import Malformed, dead_letter, parse
from services.runtime.processing import Work
from services.runtime.records import Incoming, Outgoing
from services.runtime.settings import Settings

CATALOG_TYPES = frozenset({"ProductUpserted", "ProductDeleted"})


@dataclass
class CartUnit:
    """The carts and catalog entries one batch touches, changed in memory."""

    carts: dict[str, Cart] = field(default_factory=dict)
    products: dict[str, Product] = field(default_factory=dict)
    dirty_carts: set[str] = field(default_factory=set)
    dirty_products: set[str] = field(default_factory=set)

    def cart(self, user_id: str) -> Cart:
        return self.carts.setdefault(user_id, Cart(user_id))

    def put_cart(self, cart: Cart) -> None:
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
        self.catalog_topic = settings.topic(CATALOG_EVENTS)
        self.replies_topic = settings.topic(CART_REPLIES)
        self.events_topic = settings.topic(CART_EVENTS)

    # --- decoding ----------------------------------------------------------------

    def decode(self, record: Incoming) -> Work:
        if record.topic == self.catalog_topic:
            parsed = parse(record, catalog_event_adapter, CATALOG_TYPES)
        else:
            parsed = parse(record, cart_contract.cart_command_adapter, cart_contract.CART_COMMAND_TYPES)
        if not isinstance(parsed, Malformed):
            return Work(record, parsed.message_id, parsed)
        key = parsed.message_id or record.fingerprint
        reply = self._invalid_reply(record, parsed) if record.topic != self.catalog_topic else None
        if reply is None:
            now = self.clock.now()
            return Work(record, key, None, (dead_letter(record, error_code=ErrorCode.INVALID_MESSAGE, reason=parsed.reason, now=now),))
        return Work(record, key, None, (reply,))

    def arrange(self, works: list[Work]) -> list[Work]:
        # Catalog events fetched together with commands were published no later
        # than those commands were fetched: apply them first (a stable sort keeps
        # each partition's own order).
        return sorted(works, key=lambda work: work.record.topic != self.catalog_topic)

    def _invalid_reply(self, record: Incoming, malformed: Malformed) -> Outgoing | None:
        """A rejection addressed to the sender, when the record says who that is."""
        message_id = malformed.message_id
        if message_id is None:
            return None
        fields = malformed.fields or {}
        correlation_id = fields.get("correlation_id")
        if not (isinstance(correlation_id, str) and 0 < len(correlation_id) <= 200):
            correlation_id = message_id
        user_id = fields.get("user_id") if isinstance(fields.get("user_id"), str) else None
        reply_to = fields.get("reply_to")
        topic = reply_to if _is_topic_name(reply_to) else self.replies_topic
        result = cart_contract.CommandResult(
            message_id=derived_message_id(message_id, 0),
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
        user_ids = {m.user_id for m in messages if isinstance(m, Command)}
        carts = await repository.load_carts(db, user_ids)
        product_ids = {m.product_id for m in messages if hasattr(m, "product_id")}
        product_ids.update(line.product_id for cart in carts.values() for line in cart.lines)
        products = await repository.load_products(db, product_ids)
        return CartUnit(carts=carts, products=products)

    async def save(self, unit: CartUnit, db: AsyncDatabase, session: AsyncClientSession) -> None:
        await repository.save_products(db, [unit.products[p] for p in sorted(unit.dirty_products)], session)
        await repository.save_carts(db, [unit.carts[u] for u in sorted(unit.dirty_carts)], session)

    # --- handling ------------------------------------------------------------------

    def handle(self, unit: CartUnit, message: Any) -> list[Outgoing]:
        if isinstance(message, ProductUpserted | ProductDeleted):
            self._apply_catalog_event(unit, message)
            return []
        outcome = self._decide(unit, message)
        if isinstance(outcome, Accepted) and outcome.cart is not unit.cart(message.user_id):
            unit.put_cart(outcome.cart)
        return self._answer(message, outcome)

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

    def _apply_catalog_event(self, unit: CartUnit, event: ProductUpserted | ProductDeleted) -> None:
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
        else:
            known = unit.products.get(event.product_id)
            unit.put_product(
                replace(known, is_deleted=True)
                if known
                else Product(event.product_id, name="", price=Decimal(0), is_deleted=True)
            )

    def _decide(self, unit: CartUnit, command: Any) -> domain.Outcome:
        now = self.clock.now()
        cart = unit.cart(command.user_id)
        max_quantity = self.settings.cart_item_max_quantity
        catalog = unit.products
        match command:
            case cart_contract.AddItem():
                return domain.add_item(
                    cart,
                    catalog.get(command.product_id),
                    product_id=command.product_id,
                    quantity=command.quantity,
                    size=command.size,
                    properties=command.properties,
                    new_item_id=derived_message_id(command.message_id, -1),
                    now=now,
                    max_quantity=max_quantity,
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
                return Accepted(cart, (), domain.cart_summary(cart, catalog))
            case cart_contract.CheckChanges():
                return domain.check_changes(cart, catalog, now=now)
            case cart_contract.AcceptChanges():
                return domain.accept_changes(cart, catalog, item_ids=command.item_ids, now=now)
            case cart_contract.ValidateCart():
                return domain.validate_cart(cart, catalog, item_ids=command.item_ids)
            case cart_contract.CheckoutItem() | cart_contract.CheckoutCart():
                return Rejected(
                    ErrorCode.CHECKOUT_NOT_AVAILABLE,
                    "Checkout is not available in this deployment yet",
                    "Keep the cart; retry the checkout once the checkout worker is deployed",
                )
        raise TypeError(f"no handler for {type(command).__name__}")

    def _answer(self, command: Any, outcome: domain.Outcome) -> list[Outgoing]:
        now = self.clock.now()
        envelope = {
            "occurred_at": now,
            "correlation_id": command.correlation_id,
            "causation_id": command.message_id,
        }
        key = command.user_id.encode()
        if isinstance(outcome, Accepted):
            result = cart_contract.CommandResult(
                message_id=derived_message_id(command.message_id, 0),
                command_type=command.type,
                command_message_id=command.message_id,
                user_id=command.user_id,
                success=True,
                cart_item_id=outcome.item_id,
                data=outcome.data,
                **envelope,
            )
            events = [
                _event_message(event, derived_message_id(command.message_id, index), envelope)
                for index, event in enumerate(outcome.events, start=1)
            ]
        else:
            result = cart_contract.CommandResult(
                message_id=derived_message_id(command.message_id, 0),
                command_type=command.type,
                command_message_id=command.message_id,
                user_id=command.user_id,
                success=False,
                error_code=outcome.code,
                error_message=outcome.message,
                suggested_action=outcome.suggested_action,
                available_quantity=outcome.available_quantity,
                cart_item_id=outcome.item_id,
                data=outcome.data,
                **envelope,
            )
            events = []
        reply_to = command.reply_to or self.replies_topic
        return [
            Outgoing(reply_to, key, result.to_json_bytes(), is_reply=True),
            *(Outgoing(self.events_topic, key, event.to_json_bytes()) for event in events),
        ]


def _event_message(event: domain.DomainEvent, message_id: str, envelope: dict[str, Any]) -> BaseModel:
    contract_type = getattr(cart_contract, type(event).__name__)
    return contract_type(message_id=message_id, **envelope, **asdict(event))


def _is_topic_name(value: object) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= 249
        and all(c.isascii() and (c.isalnum() or c in "._-") for c in value)
    )
