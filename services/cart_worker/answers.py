"""How the cart worker writes what it sends: the one reply each command gets, the
events of an accepted change, and the commands it sends the stock worker."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from contracts import cart as cart_contract
from contracts import stock as stock_contract
from contracts.envelope import is_identifier, message_id_for
from contracts.errors import ErrorCode
from contracts.holders import cart_line_holder
from contracts.topics import (
    CART_EVENTS,
    CART_REPLIES,
    CATALOG_EVENTS,
    CHECKOUT_COMMANDS,
    CHECKOUT_HANDOVERS,
    NOTIFICATIONS_EVENTS,
    STOCK_COMMANDS,
    STOCK_EVENTS,
)
from services.cart_worker import domain, housekeeping, published
from services.cart_worker.domain import Accepted
from services.cart_worker.unit import CartUnit, stock_command_id
from services.runtime.clock import Clock
from services.runtime.emit import causal_envelope, event_records
from services.runtime.records import Outgoing
from services.runtime.settings import Settings


class CartSteps:
    """What every part of the cart worker's handling shares: settings, clock, topics,
    limits, and how answers and stock commands are written."""

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
        self.handovers_topic = settings.topic(CHECKOUT_HANDOVERS)
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

    def _on_command(self, unit: CartUnit, command: Any, *, late: bool = False) -> list[Outgoing]:
        raise NotImplementedError  # the command dispatch, in handlers.CartLogic

    def _decide(self, unit: CartUnit, command: Any, cart: domain.Cart | None = None) -> domain.Outcome:
        raise NotImplementedError  # the cart rules applied, in handlers.CartLogic

    def _checkout(self, unit: CartUnit, command: Any, *, late: bool, reserved: str | None = None) -> list[Outgoing]:
        raise NotImplementedError  # the hand-over, in checkout.CheckoutHandover

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
                outcome.events, published.CART_EVENTS, topic=self.events_topic, key=command.user_id,
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

    def _answer_unreadable(self, stored: Any, code: ErrorCode, message: str) -> list[Outgoing]:
        """The reply to a command kept in the cart that no longer reads (stored by
        an earlier release) and so cannot be carried out: sent when what is left
        of it still says who sent it."""
        message_id, user_id = stored.get("message_id"), stored.get("user_id")
        if not (is_identifier(message_id) and is_identifier(user_id)):
            return []
        correlation_id = stored.get("correlation_id")
        result = cart_contract.CommandResult(
            message_id=message_id_for(message_id, "CommandResult"),
            occurred_at=self.clock.now(),
            correlation_id=correlation_id if is_identifier(correlation_id) else message_id,
            causation_id=message_id,
            command_type=str(stored.get("type"))[:100],
            command_message_id=message_id,
            user_id=user_id,
            success=False,
            error_code=code,
            error_message=message,
            suggested_action="Send the command again with a new message_id",
        )
        reply_to = stored.get("reply_to")
        topic = reply_to if self.settings.reply_topic_allowed(reply_to) else self.replies_topic
        return [Outgoing(topic, user_id.encode(), result.to_json_bytes(), is_reply=True, answers=message_id)]

    def _with_cart_view(self, unit: CartUnit, outcome: Accepted, command: Any) -> Accepted:
        """The answer to an add or a quantity change, judged against the catalog and stock now."""
        item_id = outcome.item_id or ""
        if outcome.cart.line(item_id) is None:
            return outcome
        view = domain.added_view if isinstance(command, cart_contract.AddItem) else domain.updated_view
        # Steps still in flight belong to later commands: the reply shows the cart without them.
        data = view(domain.before_steps(outcome.cart), item_id, unit.products, unit.stock, now=self.clock.now(), include_cart=command.include_cart)
        return replace(outcome, data=data)

    def _reserve(self, command: Any, line: domain.CartLine, reservation_id: str, expires_at: datetime) -> Outgoing:
        return self._stock_command(
            stock_contract.ReserveStock,
            command.message_id,
            command.correlation_id,
            reservation_id=reservation_id,
            product_id=line.product_id,
            size=line.size,
            quantity=line.quantity,
            holder=cart_line_holder(command.user_id, line.item_id),
            expires_at=expires_at,
        )

    def _stock_command(self, kind: type, cause_id: str, correlation_id: str | None, **fields: Any) -> Outgoing:
        # A cause derived from a long command id (a timeout's key, say) may not
        # pass as an identifier itself: its digest stands in for it.
        causation_id = cause_id if is_identifier(cause_id) else message_id_for(cause_id, "Cause")
        message = kind(
            message_id=stock_command_id(cause_id, kind.__name__, fields["reservation_id"]),
            **causal_envelope(causation_id, correlation_id if is_identifier(correlation_id) else None, self.clock.now()),
            **fields,
        )
        return Outgoing(self.stock_commands_topic, fields["product_id"].encode(), message.to_json_bytes())
