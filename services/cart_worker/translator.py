"""The one place the cart worker's effects become contract messages: the
``CommandResult`` each command gets on its ``reply_to`` topic and the events of
its change on ``cart.events``, the stock commands of a step on
``stock.commands``, the ``StartCheckout`` of a hand-over on
``checkout.commands``.

Message ids are derived from the id of what caused them, so translating the
same effects again produces identical messages."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from collections.abc import Iterable
from typing import Any

from contracts import cart as cart_contract
from contracts import stock as stock_contract
from contracts.checkout import CheckoutLine, StartCheckout
from contracts.derived_ids import start_checkout_id, stock_command_id
from contracts.envelope import is_identifier, message_id_for
from contracts.errors import ErrorCode
from contracts.holders import cart_line_holder
from contracts.topics import CART_EVENTS, CART_REPLIES, CHECKOUT_COMMANDS, NOTIFICATIONS_EVENTS, STOCK_COMMANDS
from services.cart_worker import published
from services.cart_worker.domain import Accepted, Rejected
from services.cart_worker.domain.effects import (
    Adjust,
    Announce,
    Cause,
    Effect,
    HandOver,
    Release,
    Reply,
    ReplyUnreadable,
    Reserve,
)
from services.runtime.clock import Clock
from services.runtime.codec import unstorable
from services.runtime.emit import causal_envelope, event_records
from services.runtime.records import Outgoing
from services.runtime.settings import Settings


class Translator:
    """Effects in, records out."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.replies_topic = settings.topic(CART_REPLIES)
        self.events_topic = settings.topic(CART_EVENTS)
        self.stock_commands_topic = settings.topic(STOCK_COMMANDS)
        self.checkout_commands_topic = settings.topic(CHECKOUT_COMMANDS)
        self.notifications_topic = settings.topic(NOTIFICATIONS_EVENTS)

    def records(self, effects: Iterable[Effect]) -> list[Outgoing]:
        out: list[Outgoing] = []
        for effect in effects:
            match effect:
                case Reply():
                    out.extend(self.reply(effect.command, effect.outcome, late=effect.late))
                case ReplyUnreadable():
                    out.extend(self._unreadable(effect))
                case Reserve() | Adjust() | Release():
                    out.append(self.stock_command(effect))
                case HandOver():
                    out.append(self._handover(effect))
                case Announce():
                    out.extend(self.events(effect.events, effect.cause, key=None, derived_from=effect.derived_from))
                case _:
                    raise TypeError(f"{type(effect).__name__} is translated into nothing")
        return out

    # --- replies and events ---

    def reply(self, command: Any, outcome: Accepted | Rejected, *, late: bool = False) -> list[Outgoing]:
        """The command's ``CommandResult`` and, when accepted, the events of its change."""
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
            events = self.events(outcome.events, Cause.of(command), key=command.user_id)
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

    def events(
        self, events: Iterable[Any], cause: Cause, *, key: str | None, notifications: bool = False,
        derived_from: str | None = None,
    ) -> list[Outgoing]:
        """Domain events as ``cart.events`` (or ``notifications.events``) messages,
        keyed by their user, their ids derived from ``derived_from`` (by default the cause's id)."""
        envelope = causal_envelope(cause.message_id, cause.correlation_id, self.clock.now())
        return event_records(
            events,
            published.NOTIFICATIONS if notifications else published.CART_EVENTS,
            topic=self.notifications_topic if notifications else self.events_topic,
            key=key if key is not None else (lambda event: event.user_id),
            cause_id=derived_from or cause.message_id,
            envelope=envelope,
        )

    def _unreadable(self, effect: ReplyUnreadable) -> list[Outgoing]:
        """The reply to a command kept in the cart that no longer reads (stored by
        an earlier release) and so cannot be carried out: sent when what is left
        of it still says who sent it."""
        stored = effect.stored
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
            error_code=effect.code,
            error_message=effect.message,
            suggested_action="Send the command again with a new message_id",
        )
        reply_to = stored.get("reply_to")
        topic = reply_to if self.settings.reply_topic_allowed(reply_to) else self.replies_topic
        return [Outgoing(topic, user_id.encode(), result.to_json_bytes(), is_reply=True, answers=message_id)]

    # --- stock commands ---

    def stock_command(self, effect: Reserve | Adjust | Release) -> Outgoing:
        holder = cart_line_holder(effect.user_id, effect.item_id)
        fields: dict[str, Any] = {"reservation_id": effect.reservation_id, "product_id": effect.product_id, "holder": holder}
        kind: type
        match effect:
            case Reserve():
                kind = stock_contract.ReserveStock
                fields |= {"size": effect.size, "quantity": effect.quantity, "expires_at": effect.expires_at}
            case Adjust():
                kind = stock_contract.AdjustReservation
                fields["quantity"] = effect.quantity
                if effect.expires_at is not None:
                    fields["expires_at"] = effect.expires_at
            case Release():
                kind, fields["reason"] = stock_contract.ReleaseReservation, effect.reason
        cause_id, correlation_id = effect.cause.message_id, effect.cause.correlation_id
        # A cause derived from a long command id (a timeout's key, say) may not
        # pass as an identifier itself: its digest stands in for it.
        causation_id = cause_id if is_identifier(cause_id) else message_id_for(cause_id, "Cause")
        message = kind(
            message_id=stock_command_id(cause_id, kind.__name__, effect.reservation_id),
            **causal_envelope(causation_id, correlation_id if is_identifier(correlation_id) else None, self.clock.now()),
            **fields,
        )
        return Outgoing(self.stock_commands_topic, effect.product_id.encode(), message.to_json_bytes())

    # --- the hand-over ---

    def start_checkout(self, handover: HandOver) -> StartCheckout:
        command = handover.command
        fingerprint = "|".join([handover.payment_id, *(line.order_id for line in handover.lines), str(handover.total)])
        return StartCheckout(
            message_id=start_checkout_id(command.message_id, handover.payment_id),
            **causal_envelope(command.message_id, command.correlation_id, handover.occurred_at),
            reply_to=command.reply_to or self.replies_topic,
            payment_id=handover.payment_id,
            payment_hash=hashlib.sha256(fingerprint.encode()).hexdigest(),
            user_id=command.user_id,
            checkout_type=handover.checkout_type,
            lines=[CheckoutLine(**asdict(line)) for line in handover.lines],
            total_amount=handover.total,
            payment_method=command.payment_method,
            gateway_name=handover.gateway_name,
            shipping_address=command.shipping_address,
            command_type=command.type,
            command_message_id=command.message_id,
        )

    def handover_refusal(self, handover: HandOver) -> Rejected | None:
        """Why the checkout worker could not take this hand-over, as the buyer's refusal."""
        start = self.start_checkout(handover)
        if len(start.to_json_bytes()) > self.settings.max_message_bytes:
            # The checkout worker would refuse it unread.
            return Rejected(
                ErrorCode.CART_LIMIT_REACHED,
                f"These {len(handover.lines)} items are too many to check out at once",
                "Check out fewer items at a time",
            )
        if (problem := unstorable(start)) is not None:
            # The checkout worker could not keep it.
            return Rejected(ErrorCode.INVALID_MESSAGE, f"The checkout cannot be started: {problem}", "Check the shipping address")
        return None

    def _handover(self, handover: HandOver) -> Outgoing:
        # The hand-over counts as the command's reply: a repeat of the command
        # sends it again, and the checkout worker answers the repeat with its
        # stored response.
        command = handover.command
        return Outgoing(
            self.checkout_commands_topic,
            handover.payment_id.encode(),
            self.start_checkout(handover).to_json_bytes(),
            is_reply=True,
            answers=command.message_id if handover.late else None,
        )
